"""The Triton backend (see ``yolov12_kernels.dispatch`` for the interface).

Both ops are ``torch.library`` custom ops in the ``yolov12`` namespace, each with a fake (meta)
implementation and an autograd formula (``register_autograd``, which wraps them in a
``torch.autograd.Function``): eager autograd works, and ``torch.compile`` sees one opaque op per
call instead of a graph break inside the Triton launcher.

* ``yolov12::triton_area_attention_fwd(q, k, v, area, scale, need_lse) -> (out, lse)``
* ``yolov12::triton_area_attention_bwd(dout, q, k, v, out, lse, area, scale) -> (dq, dk, dv)``
* ``yolov12::triton_fused_area_attention_fwd(qkv, pe_weight, pe_bias, num_heads, area, scale,
  need_grad) -> (out, o, lse)``: out = attention + pe(v); o (attention alone) and lse are saved for
  backward and are empty when no gradient is needed (inference writes only ``out``).
* ``yolov12::triton_fused_area_attention_bwd(dout, qkv, o, lse, pe_weight, num_heads, area,
  scale) -> dqkv``: dq, dk and dv (attention + pe's input gradient) written straight into one
  (B, 3C, H, W) tensor by the kernels.

The pe weight and bias gradients of the fused path are computed with PyTorch
(``aten.convolution_backward``): they reduce over the whole batch and image, which a per-area
attention kernel cannot do without atomics, and they are a small part of the backward's work.

This module deliberately has no ``from __future__ import annotations``: ``custom_op`` reads the
type annotations to build the op schema.
"""
import contextlib
from typing import Optional

import torch
from torch import Tensor


try:
    import triton  # noqa: F401
    _IMPORT_ERROR = None
except ImportError as e:  # optional dependency: say why instead of failing
    _IMPORT_ERROR = f"triton is not installed ({e})"

_OPS = ("area_attention", "fused_area_attention")
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _kernels():
    # imported on first use: importing the kernels needs Triton, registering the ops does not
    from . import area_attention
    return area_attention


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
    if device.type == "cpu":
        if not K.INTERPRET:
            return ("CPU tensors run only in Triton's interpreter: set TRITON_INTERPRET=1 before "
                    "importing yolov12_kernels")
        if dtype == torch.bfloat16:
            return "bfloat16 tl.dot is not exact in Triton's interpreter (bfloat16 needs a GPU)"
    elif device.type == "cuda":
        if not K.INTERPRET and torch.cuda.get_device_capability(device) < (8, 0):
            return "Triton emits no tensor-core code below sm_80, use the cuda backend"
    else:
        return f"the Triton kernels need a CUDA tensor (or a CPU one, interpreted), got {device}"
    return None


def _device_guard(t: Tensor):
    # Triton launches on the current CUDA device: make it the tensors' one
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _empty_f32(t: Tensor, shape) -> Tensor:
    return t.new_empty(shape, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------
# implementations (plain functions; ``out=``/``dq=``... let tests hand in NaN-poisoned buffers)
# ------------------------------------------------------------------------------------------------
def area_forward_impl(q, k, v, area, scale, need_lse, out=None):
    K = _kernels()
    B, N, heads, d = q.shape
    out = q.new_empty(q.shape) if out is None else out
    lse = _empty_f32(q, (B * area * heads, N // area) if need_lse else (0,))
    with _device_guard(q):
        K.forward(K.drop_in_view(q), K.drop_in_view(k), K.drop_in_view(v), batch=B, heads=heads,
                  head_dim=d, area=area, img_h=1, img_w=N, scale=scale,
                  o=K.drop_in_view(out), lse=lse if need_lse else None)
    return out, lse


def area_backward_impl(dout, q, k, v, out, lse, area, scale, dq=None, dk=None, dv=None):
    K = _kernels()
    B, N, heads, d = q.shape
    dq = q.new_empty(q.shape) if dq is None else dq
    dk = k.new_empty(k.shape) if dk is None else dk
    dv = v.new_empty(v.shape) if dv is None else dv
    V = K.drop_in_view
    with _device_guard(q):
        K.backward(V(q), V(k), V(v), V(out), V(dout), lse, V(dq), V(dk), V(dv), batch=B,
                   heads=heads, head_dim=d, area=area, img_h=1, img_w=N, scale=scale)
    return dq, dk, dv


def fused_forward_impl(qkv, pe_weight, pe_bias, num_heads, area, scale, need_grad, out=None):
    K = _kernels()
    B, C3, H, W = qkv.shape
    C = C3 // 3
    d = C // num_heads
    out = qkv.new_empty((B, C, H, W)) if out is None else out
    o = qkv.new_empty((B, C, H, W) if need_grad else (0,))
    lse = _empty_f32(qkv, (B * area * num_heads, H * W // area) if need_grad else (0,))
    with _device_guard(qkv):
        K.forward(K.model_view(qkv, d, 0), K.model_view(qkv, d, 1), K.model_view(qkv, d, 2),
                  batch=B, heads=num_heads, head_dim=d, area=area, img_h=H, img_w=W,
                  scale=scale, o=K.nchw_view(o, d) if need_grad else None,
                  out=K.nchw_view(out, d), lse=lse if need_grad else None,
                  pe_weight=pe_weight, pe_bias=pe_bias)
    return out, o, lse


def fused_backward_impl(dout, qkv, o, lse, pe_weight, num_heads, area, scale, dqkv=None):
    K = _kernels()
    B, C3, H, W = qkv.shape
    d = C3 // 3 // num_heads
    dqkv = qkv.new_empty(qkv.shape) if dqkv is None else dqkv
    M = K.model_view
    do = K.nchw_view(dout, d)
    with _device_guard(qkv):
        K.backward(M(qkv, d, 0), M(qkv, d, 1), M(qkv, d, 2), K.nchw_view(o, d), do, lse,
                   M(dqkv, d, 0), M(dqkv, d, 1), M(dqkv, d, 2), batch=B, heads=num_heads,
                   head_dim=d, area=area, img_h=H, img_w=W, scale=scale,
                   pe_weight=pe_weight)
    return dqkv


# ------------------------------------------------------------------------------------------------
# custom ops
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
    if dout is None:
        dout = torch.zeros_like(out)
    dq, dk, dv = _area_bwd_op(dout, q, k, v, out, lse, ctx.area, ctx.scale)
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
    return (qkv.new_empty((B, C, H, W)), qkv.new_empty((B, C, H, W) if need_grad else (0,)),
            _empty_f32(qkv, (B * area * num_heads, H * W // area) if need_grad else (0,)))


@torch.library.custom_op("yolov12::triton_fused_area_attention_bwd", mutates_args=())
def _fused_bwd_op(dout: Tensor, qkv: Tensor, o: Tensor, lse: Tensor, pe_weight: Tensor,
                  num_heads: int, area: int, scale: float) -> Tensor:
    return fused_backward_impl(dout, qkv, o, lse, pe_weight, num_heads, area, scale)


@_fused_bwd_op.register_fake
def _(dout, qkv, o, lse, pe_weight, num_heads, area, scale):
    return qkv.new_empty(qkv.shape)


def _fused_setup(ctx, inputs, output):
    qkv, pe_weight, pe_bias, num_heads, area, scale, need_grad = inputs
    out, o, lse = output
    ctx.save_for_backward(qkv, pe_weight, o, lse)
    ctx.num_heads, ctx.area, ctx.scale = num_heads, area, scale
    ctx.has_bias = pe_bias is not None
    ctx.bias_dtype = pe_bias.dtype if pe_bias is not None else None
    ctx.mark_non_differentiable(o, lse)


def _fused_backward(ctx, dout, _do, _dlse):
    qkv, pe_weight, o, lse = ctx.saved_tensors
    if lse.numel() == 0:
        raise _no_lse_error()
    if dout is None:
        dout = qkv.new_zeros(o.shape)
    want_qkv, want_w, want_b = ctx.needs_input_grad[:3]
    dqkv = dw = db = None
    if want_qkv:  # the Triton kernels: dq, dk, dv incl. pe's input gradient
        dqkv = _fused_bwd_op(dout, qkv, o, lse, pe_weight, ctx.num_heads, ctx.area, ctx.scale)
    if want_w or (want_b and ctx.has_bias):
        # pe's weight/bias gradients with PyTorch (reductions over batch and image, see above);
        # v as (B, C, H, W) is a (copying) reshape of a strided view of qkv.
        B, C3, H, W = qkv.shape
        C = C3 // 3
        d = C // ctx.num_heads
        v = qkv.unflatten(1, (ctx.num_heads, 3, d))[:, :, 2].reshape(B, C, H, W)
        ks = pe_weight.shape[-1]
        _, dw, db = torch.ops.aten.convolution_backward(
            dout, v, pe_weight.to(qkv.dtype), [C] if ctx.has_bias else None, [1, 1],
            [ks // 2, ks // 2], [1, 1], False, [0, 0], C, [False, bool(want_w), bool(want_b)])
        dw = dw.to(pe_weight.dtype) if want_w else None
        db = db.to(ctx.bias_dtype) if (want_b and ctx.has_bias) else None
    return dqkv, dw, db, None, None, None, None


_fused_fwd_op.register_autograd(_fused_backward, setup_context=_fused_setup)


# ------------------------------------------------------------------------------------------------
# the backend's ops (signature of the public ops minus ``backend``)
# ------------------------------------------------------------------------------------------------
def _needs_grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def area_attention(q, k, v, area, scale):
    out, _ = _area_fwd_op(q, k, v, area, scale, _needs_grad(q, k, v))
    return out


def fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale):
    out, _, _ = _fused_fwd_op(qkv, pe_weight, pe_bias, num_heads, area, scale,
                              _needs_grad(qkv, pe_weight, pe_bias))
    return out
