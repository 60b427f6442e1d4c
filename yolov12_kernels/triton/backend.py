"""The Triton backend (see ``yolov12_kernels.dispatch`` for the interface).

The public ops (``yolov12_kernels.attention``) validate the arguments once; the functions here
receive validated tensors and do the least work per call, by what the call needs:

* no gradient, nothing tracing (the inference case): the kernel launch directly (``launch.Plan``:
  one cached plan per shape class, Triton's launcher called with the pointers);
* a gradient, eager: a plain ``torch.autograd.Function`` around the same launches;
* anything tracing (``torch.compile``, fake tensors, ``make_fx``, functorch transforms, jit
  tracing): the ``torch.library`` custom ops below, each with a fake (meta) implementation and an
  autograd formula, so the compiler sees one opaque op per call instead of the launcher's Python:

  * ``yolov12::triton_area_attention_fwd(q, k, v, area, scale, need_lse) -> (out, lse)``
  * ``yolov12::triton_area_attention_bwd(dout, q, k, v, out, lse, area, scale) -> (dq, dk, dv)``
  * ``yolov12::triton_fused_area_attention_fwd(qkv, pe_weight, pe_bias, num_heads, area, scale,
    need_grad) -> (out, o, lse)``: out = attention + pe(v); o (attention alone) and lse are saved
    for backward and are empty when no gradient is needed (inference writes only ``out``).
  * ``yolov12::triton_fused_area_attention_bwd(dout, qkv, o, lse, pe_weight, num_heads, area,
    scale, want_qkv, want_weight, want_bias) -> (dqkv, dweight, dbias)``: dq, dk and dv
    (attention + pe's input gradient) written by the kernel straight into one (B, 3C, H, W)
    tensor; the pe weight and bias gradients (empty when not wanted).

The pe weight and bias gradients are reductions over the whole batch and image, which a per-area
kernel cannot do without atomics; they are a small part of the work and use cuDNN/ATen
(``aten.convolution_backward``) in float32 with TF32 off, so they are accurate whatever the input
dtype, the memory format and the algorithm cuDNN picks.

This module deliberately has no ``from __future__ import annotations``: ``custom_op`` reads the
type annotations to build the op schema.
"""
from typing import Optional

import torch
from torch import Tensor

from .._layout import empty_like_qkv
from .._tracing import untraced
from .devices import device_guard, unsupported_device

try:
    import triton  # noqa: F401
    _IMPORT_ERROR = None
except ImportError as e:  # optional dependency: say why instead of failing
    _IMPORT_ERROR = f"triton is not installed ({e})"

_OPS = ("area_attention", "fused_area_attention")
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_K = None


def _kernels():
    # imported on first use: importing the kernels needs Triton, registering the ops does not
    global _K
    if _K is None:
        from . import area_attention
        _K = area_attention
    return _K


def unavailable():
    return _IMPORT_ERROR


def unsupported(op, device, dtype, head_dim, needs_grad):
    if op not in _OPS:
        return f"no Triton kernel for {op}"
    device = torch.device(device)
    K = _kernels()
    # what the kernels cannot compute at all first, then where they cannot run
    if dtype not in _DTYPES:
        return (f"the Triton kernels take float16/bfloat16/float32, got {dtype} "
                "(use the reference backend for float64)")
    if head_dim is not None and head_dim not in K.HEAD_DIMS:
        return f"the Triton kernels take head_dim in {K.HEAD_DIMS}, got {head_dim}"
    return unsupported_device(device, dtype, K.INTERPRET, "the Triton kernels",
                              below_sm80=", use the cuda backend")


def _empty_f32(t: Tensor, shape) -> Tensor:
    return t.new_empty(shape, dtype=torch.float32)


def _needs_grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


# ------------------------------------------------------------------------------------------------
# implementations (plain functions; ``out=``/``dq=``... let tests hand in NaN-poisoned buffers)
# ------------------------------------------------------------------------------------------------
def area_forward_impl(q, k, v, area, scale, need_lse, out=None):
    K = _kernels()
    B, N, heads, d = q.shape
    out = q.new_empty(q.shape) if out is None else out
    lse = _empty_f32(q, (B * area * heads, N // area) if need_lse else (0,))
    with device_guard(q):
        K.forward_drop_in(q, k, v, out, lse if need_lse else None, area, scale)
    return out, lse


def area_backward_impl(dout, q, k, v, out, lse, area, scale, dq=None, dk=None, dv=None):
    K = _kernels()
    B, N, heads, d = q.shape
    dq = q.new_empty(q.shape) if dq is None else dq
    dk = k.new_empty(k.shape) if dk is None else dk
    dv = v.new_empty(v.shape) if dv is None else dv
    with device_guard(q):
        K.backward_drop_in(dout, q, k, v, out, lse, dq, dk, dv, area, scale)
    return dq, dk, dv


def fused_forward_impl(qkv, pe_weight, pe_bias, num_heads, area, scale, need_grad, out=None):
    K = _kernels()
    B, C3, H, W = qkv.shape
    out = empty_like_qkv(qkv, (B, C3 // 3, H, W)) if out is None else out
    o = empty_like_qkv(qkv, out.shape) if need_grad else qkv.new_empty((0,))
    lse = _empty_f32(qkv, (B * area * num_heads, H * W // area) if need_grad else (0,))
    with device_guard(qkv):
        K.forward_fused(qkv, num_heads, area, out, o if need_grad else None,
                        lse if need_grad else None, K.pe_taps(pe_weight, pe_bias),
                        pe_weight.shape[-1], pe_bias is not None, scale)
    return out, o, lse


def _infer_drop_in(q, k, v, area, scale):
    """Inference, nothing tracing: the output and one launch, nothing else."""
    out = q.new_empty(q.shape)
    if q.is_cuda and q.device.index != torch.cuda.current_device():
        with torch.cuda.device(q.device):
            _K.forward_drop_in(q, k, v, out, None, area, scale)
    else:
        _K.forward_drop_in(q, k, v, out, None, area, scale)
    return out


def _infer_fused(qkv, num_heads, area, pe_weight, pe_bias, scale):
    B, C3, H, W = qkv.shape
    out = empty_like_qkv(qkv, (B, C3 // 3, H, W))
    with device_guard(qkv):
        _K.forward_fused(qkv, num_heads, area, out, None, None, _K.pe_taps(pe_weight, pe_bias),
                         pe_weight.shape[-1], pe_bias is not None, scale)
    return out


def fused_backward_impl(dout, qkv, o, lse, pe_weight, num_heads, area, scale, dqkv=None):
    """dqkv: dq, dk and dv (attention + pe's input gradient), one kernel launch."""
    K = _kernels()
    dqkv = qkv.new_empty(qkv.shape) if dqkv is None else dqkv
    with device_guard(qkv):
        K.backward_fused(dout, qkv, o, lse, dqkv, K.pe_taps(pe_weight, None),
                         pe_weight.shape[-1], num_heads, area, scale)
    return dqkv


def _no_tf32():
    """cuDNN with TF32 off (its other settings as they are), for accurate float32 convolutions."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                       deterministic=cudnn.deterministic, allow_tf32=False)


def pe_param_grads(dout, qkv, pe_weight, num_heads, want_weight, want_bias):
    """(dweight, dbias) of pe(v) = depthwise conv (C, 1, ks, ks) of v, in float32.

    Computed in float32 with TF32 off whatever the input dtype: a sum over B*H*W products per
    tap, whose error in the input dtype would depend on the algorithm cuDNN picks for the layout
    (and, for float32, on TF32, on by default for cuDNN convolutions)."""
    B, C3, H, W = qkv.shape
    C = C3 // 3
    d = C // num_heads
    ks = pe_weight.shape[-1]
    v = qkv.unflatten(1, (num_heads, 3, d))[:, :, 2].reshape(B, C, H, W).float()
    with _no_tf32():
        _, dw, db = torch.ops.aten.convolution_backward(
            dout.float(), v, pe_weight.detach().float(), [C] if want_bias else None, [1, 1],
            [ks // 2, ks // 2], [1, 1], False, [0, 0], C, [False, want_weight, want_bias])
    return dw, db


# ------------------------------------------------------------------------------------------------
# eager autograd (no custom-op layer)
# ------------------------------------------------------------------------------------------------
def _zeros_if_none(dout, like):
    return torch.zeros_like(like) if dout is None else dout


class _AreaAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, area, scale):
        out, lse = area_forward_impl(q, k, v, area, scale, True)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.area, ctx.scale = area, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = area_backward_impl(_zeros_if_none(dout, out), q, k, v, out, lse, ctx.area,
                                        ctx.scale)
        return dq, dk, dv, None, None


def _fused_grads(dout, qkv, o, lse, pe_weight, bias_dtype, num_heads, area, scale, want_qkv,
                 want_w, want_b):
    dqkv = dw = db = None
    if want_qkv:  # the Triton kernel: dq, dk, dv incl. pe's input gradient
        dqkv = fused_backward_impl(dout, qkv, o, lse, pe_weight, num_heads, area, scale)
    if want_w or want_b:
        dw, db = pe_param_grads(dout, qkv, pe_weight, num_heads, want_w, want_b)
        dw = dw.to(pe_weight.dtype) if want_w else None
        db = db.to(bias_dtype) if want_b else None
    return dqkv, dw, db


class _FusedAreaAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, pe_weight, pe_bias, num_heads, area, scale):
        out, o, lse = fused_forward_impl(qkv, pe_weight, pe_bias, num_heads, area, scale, True)
        ctx.save_for_backward(qkv, pe_weight, o, lse)
        ctx.num_heads, ctx.area, ctx.scale = num_heads, area, scale
        ctx.bias_dtype = None if pe_bias is None else pe_bias.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        qkv, pe_weight, o, lse = ctx.saved_tensors
        want_qkv, want_w, want_b = ctx.needs_input_grad[:3]
        dqkv, dw, db = _fused_grads(_zeros_if_none(dout, o), qkv, o, lse, pe_weight,
                                    ctx.bias_dtype, ctx.num_heads, ctx.area, ctx.scale,
                                    want_qkv, want_w, want_b and ctx.bias_dtype is not None)
        return dqkv, dw, db, None, None, None


# ------------------------------------------------------------------------------------------------
# custom ops (what torch.compile and other tracers see)
# ------------------------------------------------------------------------------------------------
@torch.library.custom_op("yolov12::triton_area_attention_fwd", mutates_args=())
def _area_fwd_op(q: Tensor, k: Tensor, v: Tensor, area: int, scale: float,
                 need_lse: bool) -> tuple[Tensor, Tensor]:
    return area_forward_impl(q, k, v, area, scale, need_lse)


@_area_fwd_op.register_fake
def _(q, k, v, area, scale, need_lse):
    B, N, heads, d = q.shape
    return q.new_empty(q.shape), _empty_f32(q, (B * area * heads, N // area) if need_lse else (0,))


@torch.library.custom_op("yolov12::triton_area_attention_bwd", mutates_args=())
def _area_bwd_op(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                 area: int, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    return area_backward_impl(dout, q, k, v, out, lse, area, scale)


@_area_bwd_op.register_fake
def _(dout, q, k, v, out, lse, area, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _area_setup(ctx, inputs, output):
    q, k, v, area, scale, need_lse = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.area, ctx.scale = area, scale
    ctx.mark_non_differentiable(lse)


def _no_lse_error():
    return RuntimeError("yolov12 triton attention: backward called on a forward that ran without "
                        "gradients enabled (no logsumexp saved)")


def _area_backward(ctx, dout, _dlse):
    q, k, v, out, lse = ctx.saved_tensors
    if lse.numel() == 0:
        raise _no_lse_error()
    dq, dk, dv = _area_bwd_op(_zeros_if_none(dout, out), q, k, v, out, lse, ctx.area, ctx.scale)
    return dq, dk, dv, None, None, None


_area_fwd_op.register_autograd(_area_backward, setup_context=_area_setup)


@torch.library.custom_op("yolov12::triton_fused_area_attention_fwd", mutates_args=())
def _fused_fwd_op(qkv: Tensor, pe_weight: Tensor, pe_bias: Optional[Tensor], num_heads: int,
                  area: int, scale: float, need_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
    return fused_forward_impl(qkv, pe_weight, pe_bias, num_heads, area, scale, need_grad)


@_fused_fwd_op.register_fake
def _(qkv, pe_weight, pe_bias, num_heads, area, scale, need_grad):
    B, C3, H, W = qkv.shape
    C = C3 // 3
    return (empty_like_qkv(qkv, (B, C, H, W)),
            empty_like_qkv(qkv, (B, C, H, W)) if need_grad else qkv.new_empty((0,)),
            _empty_f32(qkv, (B * area * num_heads, H * W // area) if need_grad else (0,)))


@torch.library.custom_op("yolov12::triton_fused_area_attention_bwd", mutates_args=())
def _fused_bwd_op(dout: Tensor, qkv: Tensor, o: Tensor, lse: Tensor, pe_weight: Tensor,
                  num_heads: int, area: int, scale: float, want_qkv: bool, want_weight: bool,
                  want_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    dqkv, dw, db = _fused_grads(dout, qkv, o, lse, pe_weight, pe_weight.dtype, num_heads, area,
                                scale, want_qkv, want_weight, want_bias)
    empty = qkv.new_empty((0,))
    return (empty if dqkv is None else dqkv, empty if dw is None else dw,
            empty if db is None else db)


@_fused_bwd_op.register_fake
def _(dout, qkv, o, lse, pe_weight, num_heads, area, scale, want_qkv, want_weight, want_bias):
    C = qkv.shape[1] // 3
    return (qkv.new_empty(qkv.shape if want_qkv else (0,)),
            pe_weight.new_empty(pe_weight.shape if want_weight else (0,)),
            pe_weight.new_empty((C,) if want_bias else (0,)))


def _fused_setup(ctx, inputs, output):
    qkv, pe_weight, pe_bias, num_heads, area, scale, need_grad = inputs
    out, o, lse = output
    ctx.save_for_backward(qkv, pe_weight, o, lse)
    ctx.num_heads, ctx.area, ctx.scale = num_heads, area, scale
    ctx.bias_dtype = None if pe_bias is None else pe_bias.dtype
    ctx.mark_non_differentiable(o, lse)


def _fused_backward(ctx, dout, _do, _dlse):
    qkv, pe_weight, o, lse = ctx.saved_tensors
    if lse.numel() == 0:
        raise _no_lse_error()
    want_qkv, want_w, want_b = ctx.needs_input_grad[:3]
    want_b = want_b and ctx.bias_dtype is not None
    dqkv, dw, db = _fused_bwd_op(_zeros_if_none(dout, o), qkv, o, lse, pe_weight, ctx.num_heads,
                                 ctx.area, ctx.scale, want_qkv, want_w, want_b)
    return (dqkv if want_qkv else None, dw if want_w else None,
            db.to(ctx.bias_dtype) if want_b else None, None, None, None, None)


_fused_fwd_op.register_autograd(_fused_backward, setup_context=_fused_setup)


# ------------------------------------------------------------------------------------------------
# the backend's ops: validated tensors in (the public ops check), a float scale (None: default)
# ------------------------------------------------------------------------------------------------
def area_attention(q, k, v, area, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    grad = _needs_grad(q, k, v)
    if untraced(q, k, v):
        if not grad:
            _kernels()
            return _infer_drop_in(q, k, v, area, scale)
        return _AreaAttention.apply(q, k, v, area, scale)
    return _area_fwd_op(q, k, v, area, scale, grad)[0]


def fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias=None, scale=None):
    scale = (qkv.shape[1] // 3 // num_heads) ** -0.5 if scale is None else float(scale)
    grad = _needs_grad(qkv, pe_weight, pe_bias)
    if untraced(qkv, pe_weight, pe_bias):
        if not grad:
            _kernels()
            return _infer_fused(qkv, num_heads, area, pe_weight, pe_bias, scale)
        return _FusedAreaAttention.apply(qkv, pe_weight, pe_bias, num_heads, area, scale)
    return _fused_fwd_op(qkv, pe_weight, pe_bias, num_heads, area, scale, grad)[0]
