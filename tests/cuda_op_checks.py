"""Checks of the yolov12::cuda_* operators that tests/test_cuda_backend.py runs in a child process
(``python -X faulthandler tests/cuda_op_checks.py WHAT --device DEV [--library PATH]``): a native
crash there is reported with its Python traceback as a test failure, instead of killing a test
worker. Prints "OK" at the end.

* ``--device cuda``: the real library (AOT or JIT, through ``cuda_backend.extension()``);
* ``--device cpu --library PATH``: the host build of csrc/bindings.cpp (``-DY12_HOST_TEST``, stub
  launchers from tests/host_launchers.cpp), which runs the same binding code on CPU tensors.

WHAT is ``errors`` (every argument check raises a Python exception naming the argument, many
times over), ``reference`` (outputs of every op and layout against yolov12_kernels.reference) or
``opcheck`` (torch.library.opcheck of every op: schema, fake kernel vs real outputs, autograd
registration, AOT dispatch).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import torch

from yolov12_kernels import cuda_backend, reference

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: tests/_utils
from _utils import attention_only  # noqa: E402

ops = cuda_backend.ops


def raises(exc, pattern, fn, *args):
    try:
        fn(*args)
    except exc as e:
        assert re.search(pattern, str(e)), f"{exc.__name__} without {pattern!r}: {e}"
        return
    raise AssertionError(f"no {exc.__name__} matching {pattern!r} from {fn}")


def check_errors(dev: str, host: bool, repeat: int = 20) -> None:
    h16 = torch.float16
    q = torch.randn(1, 8, 2, 32, device=dev, dtype=h16)
    x16 = torch.randn(1, 8, 2, 16, device=dev, dtype=h16)
    qkv = torch.randn(1, 192, 4, 5, device=dev, dtype=h16)
    w7 = torch.randn(64, 1, 7, 7, device=dev)
    v = torch.randn(1, 4, 5, 5, device=dev)
    wv = torch.randn(4, 1, 7, 7, device=dev)
    for _ in range(repeat):  # an error path that corrupts anything crashes on a later round
        if dev == "cuda":
            raises(ValueError, "q: expected a CUDA tensor", ops.cuda_area_attention,
                   q.cpu(), q, q, 1, 1.0)
            raises(ValueError, "bias: expected a CUDA tensor", ops.cuda_position_perceiver,
                   v, wv, torch.randn(4))
        raises(TypeError, "k: dtype Float does not match q's Half", ops.cuda_area_attention,
               q, q.float(), q, 1, 1.0)
        raises(ValueError, "q: head_dim 16 is not supported", ops.cuda_area_attention,
               x16, x16, x16, 1, 1.0)
        raises(TypeError, "q: dtype Float is not supported", ops.cuda_area_attention,
               q.float(), q.float(), q.float(), 1, 1.0)
        raises(ValueError, "area: 3 does not divide", ops.cuda_area_attention, q, q, q, 3, 1.0)
        raises(ValueError, "k: shape", ops.cuda_area_attention, q, q[:, :4], q, 1, 1.0)
        raises(ValueError, "out: expected shape", ops.cuda_area_attention_out,
               q, q, q, 1, 1.0, torch.empty_like(q[:, :4]))
        # an out aliasing an input is a race (other CTAs still read it), not an in-place op
        raises(RuntimeError, "single memory location", ops.cuda_area_attention_out,
               q, q.clone(), q.clone(), 1, 1.0, q)
        raises(ValueError, "qkv: channel count 100", ops.cuda_fused_area_attention,
               torch.randn(1, 100, 4, 4, device=dev, dtype=h16), 2, 1, None, None, 1.0)
        raises(ValueError, "num_heads: must be >= 1", ops.cuda_fused_area_attention,
               qkv, 0, 1, None, None, 1.0)
        raises(ValueError, "qkv: head_dim 16", ops.cuda_fused_area_attention,
               qkv, 4, 1, None, None, 1.0)
        raises(ValueError, "area: 3 does not divide", ops.cuda_fused_area_attention,
               qkv, 2, 3, w7, None, 1.0)
        raises(ValueError, "pe_bias: given without pe_weight", ops.cuda_fused_area_attention,
               qkv, 2, 1, None, torch.randn(64, device=dev), 1.0)
        raises(ValueError, r"pe_weight: expected a depthwise weight of shape \(64, 1, k, k\)",
               ops.cuda_fused_area_attention, qkv, 2, 1, w7[:32], None, 1.0)
        raises(ValueError, "pe_bias: expected shape", ops.cuda_fused_area_attention,
               qkv, 2, 1, w7, torch.randn(3, device=dev), 1.0)
        raises(ValueError, "out: the H and W dimensions must be flattenable",
               ops.cuda_fused_area_attention_out, qkv, 2, 1, w7, None, 1.0,
               torch.empty(1, 64, 4, 7, device=dev, dtype=h16)[..., :5])
        raises(ValueError, "weight: expected a depthwise weight", ops.cuda_position_perceiver,
               v, torch.randn(4, 1, 7, 5, device=dev), None)
        raises(ValueError, "weight: kernel size must be odd", ops.cuda_position_perceiver,
               v, torch.randn(4, 1, 6, 6, device=dev), None)
        raises(TypeError, "v: dtype Double", ops.cuda_position_perceiver, v.double(), wv, None)
        raises(RuntimeError, "single memory location", ops.cuda_position_perceiver_out,
               v, wv, None, v, True)
        g = q.clone().requires_grad_()
        raises(RuntimeError, "forward only",
               lambda: ops.cuda_area_attention(g, g, g, 1, 1.0).sum().backward())
    if host:  # knobs of the stub launchers: an arch without bf16 code, a failed launch
        bf = q.to(torch.bfloat16)
        os.environ["Y12_HOST_TEST_PTX_ARCH"] = "75"
        raises(TypeError, "q: bfloat16 attention needs kernels compiled for sm_80",
               ops.cuda_area_attention, bf, bf, bf, 1, 1.0)
        del os.environ["Y12_HOST_TEST_PTX_ARCH"]
        os.environ["Y12_HOST_TEST_FAIL"] = "1"
        raises(RuntimeError, r"area_attention: CUDA kernel launch failed: invalid configuration",
               ops.cuda_area_attention, q, q, q, 1, 1.0)
        raises(RuntimeError, r"position_perceiver: CUDA kernel launch failed",
               ops.cuda_position_perceiver, v, wv, None)
        del os.environ["Y12_HOST_TEST_FAIL"]
    else:  # the public op refuses gradients for this backend before reaching the kernels
        import yolov12_kernels as yk

        raises(RuntimeError, "forward only", yk.area_attention, g, g, g, 1, backend="cuda")


def _close(out, ref, dtype, name):
    tol = {torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float32: 1e-5}[dtype]
    assert not torch.isnan(out).any(), f"{name}: NaN (an element not written)"
    err = (out.double() - ref.double()).abs().max().item()
    assert err <= tol * (1 + ref.abs().max().item()), f"{name}: max error {err:.3g}"


def _drop_in_views(B, N, heads, d, dev, dtype):
    def rnd(*shape):
        return torch.randn(*shape, device=dev, dtype=dtype)
    yield "contiguous", [rnd(B, N, heads, d) for _ in range(3)]
    yield "bhnd", [rnd(B, heads, N, d).transpose(1, 2) for _ in range(3)]
    yield "sliced", list(rnd(B, N, heads, 3 * d).split(d, dim=-1))
    numel = B * N * heads * d
    yield "offset1", [rnd(numel + 1)[1:].view(B, N, heads, d) for _ in range(3)]


def check_reference(dev: str) -> None:
    dtypes = [torch.float16, torch.bfloat16]
    if dev == "cuda" and cuda_backend.extension().attention_ptx_arch(
            torch.cuda.current_device(), True) < 80:
        dtypes = [torch.float16]
    for dtype in dtypes:
        for B, N, heads, d, area in ((2, 42, 3, 32, 3), (1, 130, 1, 64, 2)):
            for view, (q, k, v) in _drop_in_views(B, N, heads, d, dev, dtype):
                ref = reference.area_attention(q.double(), k.double(), v.double(), area, 0.3)
                _close(ops.cuda_area_attention(q, k, v, area, 0.3), ref, dtype, f"drop-in {view}")
                out = torch.full_like(q, float("nan"))
                ops.cuda_area_attention_out(q, k, v, area, 0.3, out)
                _close(out, ref, dtype, f"drop-in out {view}")
        B, heads, d, H, W, area = 2, 2, 32, 6, 7, 3
        C = heads * d
        w = torch.randn(C, 1, 7, 7, device=dev, dtype=dtype) / 7
        b = torch.randn(C, device=dev, dtype=dtype)
        big = torch.randn(B, 3 * C + 4, H, W + 3, device=dev, dtype=dtype)
        layouts = {
            "nchw": torch.randn(B, 3 * C, H, W, device=dev, dtype=dtype),
            "channels_last": torch.randn(B, 3 * C, H, W, device=dev, dtype=dtype).to(
                memory_format=torch.channels_last),
            "not flattenable": big[:, 2:2 + 3 * C, :, 1:1 + W],  # copied by the binding
        }
        for name, qkv in layouts.items():
            hi = qkv.double()
            # the output takes qkv's memory format (NCHW for the copied view: its source was)
            fmt = torch.channels_last if name == "channels_last" else torch.contiguous_format
            ref = attention_only(hi, heads, area)
            got = ops.cuda_fused_area_attention(qkv, heads, area, None, None, d ** -0.5)
            _close(got, ref, dtype, f"attention {name}")
            assert got.is_contiguous(memory_format=fmt), f"attention {name}: {got.stride()}"
            ref = reference.fused_area_attention(hi, heads, area, w.double(), b.double())
            for w_, b_ in ((w, b), (w.float(), b.float())):  # weights in qkv's dtype or fp32
                got = ops.cuda_fused_area_attention(qkv, heads, area, w_, b_, d ** -0.5)
                _close(got, ref, dtype, f"fused {name} {w_.dtype} weights")
                assert got.is_contiguous(memory_format=fmt), f"fused {name}: {got.stride()}"
            out = torch.full((B, C, H, W), float("nan"), device=dev, dtype=dtype).to(
                memory_format=torch.channels_last)
            ops.cuda_fused_area_attention_out(qkv, heads, area, w, b, d ** -0.5, out)
            _close(out, ref, dtype, f"fused out (channels_last) {name}")
    check_pe_channels_last(dev)
    check_no_conversions(dev)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        v = torch.randn(2, 10, 9, 26, device=dev, dtype=dtype)[:, 3:8, :, ::2]  # strided view
        w = torch.randn(5, 1, 5, 5, device=dev, dtype=dtype) / 5
        b = torch.randn(5, device=dev, dtype=dtype)
        ref = reference.position_perceiver(v.double(), w.double(), b.double())
        _close(ops.cuda_position_perceiver(v, w, b), ref, dtype, f"pe {dtype}")
        base = torch.randn(v.shape, device=dev, dtype=dtype)
        out = base.clone()
        ops.cuda_position_perceiver_out(v, w, None, out, True)
        _close(out, base.double() + reference.position_perceiver(v.double(), w.double()), dtype,
               f"pe accumulate {dtype}")


def check_pe_channels_last(dev: str) -> None:
    """The depthwise conv on channels-last tensors: the 8-channel kernel (k = 3 and 7, C a
    multiple of 8, aligned) and what it leaves to the row kernel (k = 5, C = 12, a view one
    element off alignment), written and accumulated, weights in the input's dtype and in fp32."""
    cases = [(2, 16, 9, 11, 7), (1, 64, 6, 5, 3), (1, 8, 3, 2, 7), (1, 24, 5, 7, 5),
             (2, 12, 6, 9, 7)]
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for B, C, H, W, k in cases:
            v = torch.randn(B, C, H, W, device=dev, dtype=dtype).to(
                memory_format=torch.channels_last)
            views = {"channels_last": v,
                     "misaligned": torch.randn(B * C * H * W + 1, device=dev, dtype=dtype)[1:]
                     .view(B, H, W, C).permute(0, 3, 1, 2)}
            w = torch.randn(C, 1, k, k, device=dev, dtype=dtype) / k
            b = torch.randn(C, device=dev, dtype=dtype)
            for name, x in views.items():
                ref = reference.position_perceiver(x.double(), w.double(), b.double())
                # weights in v's dtype, in fp32, and a bias of another dtype than the weight
                for w_, b_ in ((w, b), (w.float(), b.float()), (w, b.float())):
                    what = f"pe {name} {tuple(x.shape)} k={k} {dtype} {w_.dtype} weights"
                    out = ops.cuda_position_perceiver(x, w_, b_)
                    _close(out, ref, dtype, what)
                    base = torch.randn(B, C, H, W, device=dev, dtype=dtype).to(
                        memory_format=torch.channels_last)
                    acc = base.clone()
                    ops.cuda_position_perceiver_out(x, w_, None, acc, True)
                    _close(acc, base.double() + reference.position_perceiver(
                        x.double(), w.double()), dtype, f"{what} accumulate")


def check_no_conversions(dev: str) -> None:
    """A fused call with the model's weights (in qkv's dtype, or fp32) runs no conversion or
    copy: only the output's allocation and the launches (the binding converted the pe weights to
    fp32 on every call before, two cast kernels per call)."""
    from torch.profiler import ProfilerActivity, profile

    h16 = torch.float16
    qkv = torch.randn(2, 192, 5, 8, device=dev, dtype=h16).to(memory_format=torch.channels_last)
    for wdtype in (h16, torch.float32):
        w = torch.randn(64, 1, 7, 7, device=dev, dtype=wdtype)
        b = torch.randn(64, device=dev, dtype=wdtype)
        ops.cuda_fused_area_attention(qkv, 2, 5, w, b, 0.17)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ops.cuda_fused_area_attention(qkv, 2, 5, w, b, 0.17)
        names = {e.name for e in prof.events()}
        copies = names & {"aten::_to_copy", "aten::copy_", "aten::clone"}
        assert not copies, f"{wdtype} pe weights: the fused call converts or copies ({copies})"


def check_opcheck(dev: str) -> None:
    from torch.library import opcheck

    h16 = torch.float16
    q, k, v = (torch.randn(2, 40, 3, 32, device=dev, dtype=h16) for _ in range(3))
    qkv = torch.randn(2, 192, 5, 8, device=dev, dtype=h16)
    w, b = torch.randn(64, 1, 7, 7, device=dev, dtype=h16), torch.randn(64, device=dev, dtype=h16)
    x = torch.randn(2, 64, 5, 8, device=dev, dtype=h16)
    opcheck(ops.cuda_area_attention, (q, k, v, 4, 0.17))
    opcheck(ops.cuda_area_attention_out, (q, k, v, 4, 0.17, torch.empty_like(q)))
    opcheck(ops.cuda_fused_area_attention, (qkv, 2, 5, w, b, 0.17))
    opcheck(ops.cuda_fused_area_attention, (qkv.to(memory_format=torch.channels_last), 2, 1,
                                            None, None, 0.17))
    opcheck(ops.cuda_fused_area_attention_out, (qkv, 2, 5, w, None, 0.17, torch.empty_like(x)))
    opcheck(ops.cuda_position_perceiver, (x, w, b))
    opcheck(ops.cuda_position_perceiver_out, (x, w, None, torch.randn_like(x), True))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["errors", "reference", "opcheck"])
    ap.add_argument("--device", choices=["cpu", "cuda"], required=True)
    ap.add_argument("--library", help="the host build to load (with --device cpu)")
    args = ap.parse_args(argv)
    if args.library:
        torch.ops.load_library(args.library)
    else:
        cuda_backend.extension()  # loads the AOT or JIT library, or says why it cannot
    torch.manual_seed(0)
    {"errors": lambda: check_errors(args.device, host=bool(args.library)),
     "reference": lambda: check_reference(args.device),
     "opcheck": lambda: check_opcheck(args.device)}[args.what]()
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
