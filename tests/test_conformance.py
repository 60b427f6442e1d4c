"""Every backend x dtype x the YOLOv12 attention shapes, against the reference in float64.

One table of shapes (``yolov12_kernels.shapes``), one loop over backends: each backend available
here runs the public ops with ``backend=<name>`` on random inputs, forward and, where it has a
backward, the gradients too, and must stay within twice the reference's own error in that dtype
(``_utils.assert_close_to_reference``). A backend that cannot take a case says why
(``unsupported``) and the case is skipped with that reason. Without a GPU the shapes are those of a
96x96 input (areas of 9 tokens) at batch 1 and Triton runs in its interpreter; on a GPU,
640x640 at batch 1 and 8. Special cases (odd tails, strided views, > 65,535 problems, poisoned outputs) live in each
backend's own test file.
"""
from __future__ import annotations

import pytest
import torch

import yolov12_kernels as yk
from _utils import assert_close_to_reference, full_fp32
from yolov12_kernels import dispatch, reference, shapes

GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if GPU else "cpu")
IMGSZ = 640 if GPU else 96
BATCHES = (1, 8) if GPU else (1,)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# each distinct attention call once (m and l share theirs); batch > 1 is also in every backend's
# own tests, and on a CPU the interpreter makes each extra case cost seconds
_DISTINCT = {(s.heads, s.side, s.area): s for s in reversed(shapes.all_shapes(IMGSZ))}
CASES = [(s, b) for s in sorted(_DISTINCT.values(), key=shapes.all_shapes(IMGSZ).index)
         for b in BATCHES]


# Triton's interpreter runs every program in numpy: seconds per head for the fused kernel's 7x7
# pe. Each head is a separate problem on the same grid axis and runs the same code, so on a CPU
# the interpreted Triton cases stop at this many heads; a GPU runs them all.
INTERPRETED_MAX_HEADS = 4


def _backend_or_skip(name: str, op: str, dtype: torch.dtype, needs_grad: bool, heads: int = 1):
    if name == "triton" and not GPU and heads > INTERPRETED_MAX_HEADS:
        pytest.skip(f"triton: {heads} heads in the interpreter; the same kernel runs every head, "
                    "all head counts are checked on a GPU")
    mod, reason = dispatch.load(name)
    if reason is None and getattr(mod, op, None) is None:
        reason = f"{name} has no {op}"
    if reason is None:
        reason = mod.unsupported(op, DEVICE, dtype, shapes.HEAD_DIM, needs_grad)
    if reason:
        pytest.skip(f"{name}: {reason}")
    return mod


def _grads(fn, inputs, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(grad_out)
    return out.detach(), [t.grad for t in leaves]


def _check(fn_backend, fn_reference, inputs, names, with_grad):
    """fn_backend vs the reference in float64 (truth) and in the inputs' dtype (yardstick), all
    in full float32 where float32 is asked for (no TF32; see ``full_fp32``)."""
    with full_fp32():
        _compare(fn_backend, fn_reference, inputs, names, with_grad)


def _compare(fn_backend, fn_reference, inputs, names, with_grad):
    hi_inputs = [t.double() for t in inputs]
    if not with_grad:
        with torch.no_grad():
            out = fn_backend(*inputs)
            assert_close_to_reference(out, fn_reference(*hi_inputs), fn_reference(*inputs))
        return
    g = torch.randn_like(fn_reference(*inputs))
    out, grads = _grads(fn_backend, inputs, g)
    hi, hi_grads = _grads(fn_reference, hi_inputs, g.double())
    lo, lo_grads = _grads(fn_reference, inputs, g)
    assert_close_to_reference(out, hi, lo)
    for name, a, b, c in zip(names, grads, hi_grads, lo_grads):
        assert_close_to_reference(a, b, c, name=f"d{name}")


@pytest.mark.parametrize("grad", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].scale}-{c[0].level}-b{c[1]}")
@pytest.mark.parametrize("backend", dispatch.BACKENDS)
def test_area_attention(backend, case, dtype, grad):
    shape, batch = case
    _backend_or_skip(backend, "area_attention", dtype, grad, shape.heads)
    q, k, v = (torch.randn(batch, shape.tokens, shape.heads, shape.head_dim, device=DEVICE,
                           dtype=dtype) for _ in range(3))
    _check(lambda a, b, c: yk.area_attention(a, b, c, shape.area, backend=backend),
           lambda a, b, c: reference.area_attention(a, b, c, shape.area),
           (q, k, v), "qkv", grad)


@pytest.mark.parametrize("grad", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].scale}-{c[0].level}-b{c[1]}")
@pytest.mark.parametrize("backend", dispatch.BACKENDS)
def test_fused_area_attention(backend, case, dtype, grad):
    shape, batch = case
    _backend_or_skip(backend, "fused_area_attention", dtype, grad, shape.heads)
    C = shape.channels
    qkv = torch.randn(batch, 3 * C, shape.side, shape.side, device=DEVICE, dtype=dtype)
    w = torch.randn(C, 1, 7, 7, device=DEVICE, dtype=dtype) / 7
    b = torch.randn(C, device=DEVICE, dtype=dtype)
    _check(lambda x, ww, bb: yk.fused_area_attention(x, shape.heads, shape.area, ww, bb,
                                                     backend=backend),
           lambda x, ww, bb: reference.fused_area_attention(x, shape.heads, shape.area, ww, bb),
           (qkv, w, b), ("qkv", "pe_weight", "pe_bias"), grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("scale", shapes.SCALES)
@pytest.mark.parametrize("backend", dispatch.BACKENDS)
def test_position_perceiver(backend, scale, dtype):
    _backend_or_skip(backend, "position_perceiver", dtype, False)
    shape = shapes.attention_shape(scale, "P4", IMGSZ)
    C = shape.channels
    v = torch.randn(BATCHES[-1], C, shape.side, shape.side, device=DEVICE, dtype=dtype)
    w = torch.randn(C, 1, 7, 7, device=DEVICE, dtype=dtype) / 7
    b = torch.randn(C, device=DEVICE, dtype=dtype)
    _check(lambda x, ww, bb: yk.position_perceiver(x, ww, bb, backend=backend),
           reference.position_perceiver, (v, w, b), ("v", "weight", "bias"), False)
