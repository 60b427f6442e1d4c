"""Compile the Triton kernels to GPU machine code without a GPU, as the JIT would compile them.

    python -m yolov12_kernels.triton.compile_check [--quick] [--archs 80 90]

The interpreter runs the kernels' Python semantics on a CPU but never lowers them, so it cannot
catch what only the compiler rejects (types, layouts, shapes ``tl.dot`` refuses, register
explosions). This script builds the launches with the backend's own code (``launch.dry_run``: the
real views, strides, flags and configurations of each call, on CPU tensors), derives from them the
specialisation Triton's JIT would use (its own binder: pointer alignment, strides divisible by 16 or
equal to 1, the kernels' ``do_not_specialize`` sizes) and compiles each distinct variant with it,
reporting registers, spills and shared memory per variant (ptxas' own report).

The launch set: every YOLOv12 attention call (``shapes.all_shapes()``, batch 1/8/32) of both entry
points, forward with and without gradient and backward, in float16/bfloat16/float32; plus head_dim
16/64/128, a cropped view (2-D token strides) and a 3x3 pe without bias. Every variant must fit the
99 KB of shared memory of sm_86/sm_89. ``--quick``: the YOLOv12 float16 variants and the float32
head_dim-128 backward (the largest shared memory), for sm_80. Needs Triton's NVIDIA backend (ptxas
ships with the wheel), no driver. Exit status 1 on any failure, including a spill that
``SPILL_ALLOWED`` does not list with its reason. It unsets TRITON_INTERPRET before importing the
kernels, and compiles into a fresh cache (so ptxas runs and reports).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time

from .jit_variants import jit_function  # noqa: F401 (also the binder's JITFunction here)

# The smallest shared memory per block of the supported GPUs (sm_86/sm_89; A100 163 KB, H100 227).
MAX_SHARED = 99 * 1024
BATCHES = (1, 8, 32)

# Variants that spill registers, each with the reason it may (``main`` fails on any other spill:
# a new one). Keys: the variant labels printed ("sm_<cc> <kernel> <dtype> d=<head_dim> <tile>
# w<warps>s<stages> <flags>"). Measured 2026-12-03 under Triton 3.6.0 and 3.9.0; every YOLOv12
# variant (head_dim 32, the model layout and the drop-in) is free of spills under both.
_D128_FP32_BWD = (
    "head_dim 128 in float32, backward (not a YOLOv12 head_dim: drop-in users training in fp32): "
    "dK and dV accumulate 2 x 32 x 128 fp32 per program beside the Q^T and dO tiles; every tile "
    "tried spills 0.5-1.9 KB (32x32, 32x16, 16x32, 16x16; 4 or 8 warps; 1 or 2 stages, both "
    "Triton versions). Splitting the head dim over programs would remove it; fp32 training at "
    "head_dim 128 does not justify that kernel")
_TOKENS_2D_BWD_16BIT = (
    "2-D token strides (a cropped view of qkv, not the model's layout) in the fused 16-bit "
    "backward: 64 B under Triton 3.9 on sm_80 only, clean under 3.6 (the GPU machine's) and on "
    "sm_90; one stage would remove it but would also drop the software pipelining of every "
    "16-bit backward, the training path")
SPILL_ALLOWED = {
    "sm_80 _bwd_kernel fp32 d=128 32x32 w8s1": _D128_FP32_BWD + " (sm_80: 1640 B under 3.6, "
                                                "588 B under 3.9)",
    "sm_90 _bwd_kernel fp32 d=128 32x32 w8s1": _D128_FP32_BWD + " (sm_90: 1056 B under 3.6, "
                                                "1196 B under 3.9)",
    "sm_80 _bwd_kernel fp16 d=32 64x64 w8s2 FUSE_PE TOKENS_2D KS=3": _TOKENS_2D_BWD_16BIT,
    "sm_80 _bwd_kernel bf16 d=32 64x64 w8s2 FUSE_PE TOKENS_2D KS=3": _TOKENS_2D_BWD_16BIT,
}


def _torch_dtype(name):
    import torch
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _drop_in(B, N, heads, d, dtype, area, records_grad=True):
    """The drop-in op's launches: forward without and with lse, backward."""
    import torch
    from . import backend as T
    q, k, v = (torch.empty(B, N, heads, d, dtype=dtype) for _ in range(3))
    scale = d ** -0.5
    T.area_forward_impl(q, k, v, area, scale, False)
    if records_grad:
        out, lse = T.area_forward_impl(q, k, v, area, scale, True)
        T.area_backward_impl(torch.empty_like(q), q, k, v, out, lse, area, scale)


def _fused(B, heads, d, H, W, dtype, area, ks=7, bias=True, crop=False):
    """The fused op's launches: forward without and with gradient, backward."""
    import torch
    from . import backend as T
    C = heads * d
    qkv = torch.empty(B, 3 * C, H + 2 * crop, W + 3 * crop, dtype=dtype)
    if crop:  # a cropped view: rows do not follow each other (2-D token strides)
        qkv = qkv[:, :, 1:H + 1, 2:W + 2]
    w = torch.empty(C, 1, ks, ks, dtype=dtype)
    b = torch.empty(C, dtype=dtype) if bias else None
    scale = d ** -0.5
    T.fused_forward_impl(qkv, w, b, heads, area, scale, False)
    out, o, lse = T.fused_forward_impl(qkv, w, b, heads, area, scale, True)
    T.fused_backward_impl(torch.empty_like(out), qkv, o, lse, w, heads, area, scale)


def yolov12_launches(dtypes=("fp16", "bf16", "fp32"), batches=BATCHES):
    """(plan, pointers, scale) of every launch the YOLOv12 attention calls make."""
    from . import launch
    from ..shapes import all_shapes
    with launch.dry_run() as runs:
        for dt in dtypes:
            for shape in all_shapes():
                for B in batches:
                    _drop_in(B, shape.tokens, shape.heads, shape.head_dim, _torch_dtype(dt),
                             shape.area)
                    _fused(B, shape.heads, shape.head_dim, shape.side, shape.side,
                           _torch_dtype(dt), shape.area)
    return runs


def other_launches(quick: bool):
    """Head dims 16/64/128, 2-D token strides, a 3x3 pe without bias (``quick``: only the float32
    head_dim-128 drop-in, whose backward needs the most shared memory)."""
    from . import launch
    with launch.dry_run() as runs:
        import torch
        _drop_in(1, 400, 2, 128, torch.float32, 1)
        if not quick:
            for dt in ("fp16", "bf16", "fp32"):
                for d in (16, 64, 128):
                    _drop_in(1, 400, 2, d, _torch_dtype(dt), 1)
                _fused(1, 2, 32, 12, 10, _torch_dtype(dt), 2, ks=3, bias=False, crop=True)
    return runs


def jit_call(run) -> tuple:
    """(kernel, args, kwargs) of the JIT call a dry-run launch (plan, pointers, scale) makes:
    ``kernel[grid](*args, **kwargs)``, as ``launch.Plan`` calls it."""
    from .launch import _pointer_view
    plan, ptrs, scale = run
    views = [_pointer_view(p, o) for p, o in zip(ptrs, plan.offsets)]
    return (plan.kernel, (*views, scale, *plan.tail),
            dict(num_warps=plan.config.num_warps, num_stages=plan.config.num_stages))


def specialise(run, cc: int):
    """(variant key, JITFunction, backend, bound args, specialisation, options) of one recorded
    launch, exactly as Triton's JIT would bind it for an sm_``cc`` GPU."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature
    kernel, args, kwargs = jit_call(run)
    fn = jit_function(kernel)
    backend = make_backend(GPUTarget("cuda", cc, 32))
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, options = binder(*args, **kwargs, debug=False)
    key = (fn.fn.__name__, str(spec), str(options))
    return key, fn, backend, bound, spec, options


def distinct_variants(runs, cc: int = 90) -> dict:
    """{variant key: one recorded launch}: the kernels the JIT would compile for ``runs``."""
    out = {}
    for run in runs:
        out.setdefault(specialise(run, cc)[0], run)
    return out


def _label(run) -> str:
    plan, ptrs, _ = run
    names = plan.kernel.arg_names
    consts = dict(zip(names[len(names) - len(plan.tail):], plan.tail))
    dtype = str(ptrs[0].dtype).replace("torch.", "").replace("float", "fp").replace("bfp", "bf")
    flags = " ".join(k for k in ("STORE_O", "STORE_LSE", "FUSE_PE", "HAS_BIAS", "TOKENS_2D")
                     if consts.get(k) is True)
    ks = f" KS={consts['KS']}" if consts.get("FUSE_PE") else ""
    c = plan.config
    return (f"{plan.kernel.__name__} {dtype} d={consts['HEAD_DIM']} "
            f"{c.block_m}x{c.block_n} w{c.num_warps}s{c.num_stages} {flags}{ks}").rstrip()


_PTXAS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def compile_run(run, cc: int):
    """Compile one recorded launch with the JIT's specialisation; (kernel, registers, spill
    bytes) from ptxas' report."""
    import triton
    from triton.compiler import ASTSource
    _, fn, backend, bound, spec, options = specialise(run, cc)
    kwargs = dict(num_warps=run[0].config.num_warps, num_stages=run[0].config.num_stages)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, spec, options)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG prints ptxas -v here
        k = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=backend.target,
                           options=options.__dict__)
    regs = [int(m) for m in _PTXAS.findall(log.getvalue())]
    spills = [int(a) + int(b) for a, b in _SPILLS.findall(log.getvalue())]
    return k, (max(regs) if regs else None), (max(spills) if spills else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--archs", nargs="+", type=int, default=None)
    args = ap.parse_args(argv)
    archs = args.archs or ([80] if args.quick else [80, 90])
    import triton

    runs = yolov12_launches(("fp16",) if args.quick else ("fp16", "bf16", "fp32"),
                            (1,) if args.quick else BATCHES)
    n_yolo = len(distinct_variants(runs))
    runs += other_launches(args.quick)
    failures, count, t0 = 0, 0, time.time()
    print(f"{len(runs)} launches, {n_yolo} distinct compiled variants for the YOLOv12 shape set",
          flush=True)
    for cc in archs:
        for run in distinct_variants(runs, cc).values():
            count += 1
            label = f"sm_{cc} {_label(run)}"
            t = time.time()
            try:
                k, regs, spills = compile_run(run, cc)
                if regs is None:  # no report: a spill would go unseen
                    raise RuntimeError("ptxas printed no register report "
                                       "(TRITON_DUMP_PTXAS_LOG)")
                if k.metadata.shared > MAX_SHARED:
                    raise RuntimeError(f"needs {k.metadata.shared} B of shared memory, over the "
                                       f"{MAX_SHARED} B of sm_86/sm_89")
                if spills and label not in SPILL_ALLOWED:
                    raise RuntimeError(f"spills {spills} B at {regs} registers, and SPILL_ALLOWED "
                                       "gives no reason for it (a new spill)")
                print(f"ok   {label}  regs={regs} spills={spills}B shared={k.metadata.shared}B "
                      f"{time.time() - t:.1f}s", flush=True)
            except Exception as e:  # report every failure, not just the first
                failures += 1
                print(f"FAIL {label}: {type(e).__name__}: {str(e)[:1500]}", flush=True)
    print(f"{count - failures}/{count} compiled in {time.time() - t0:.0f}s "
          f"(triton {triton.__version__})")
    return 1 if failures else 0


if __name__ == "__main__":
    # before triton.jit runs: compiled kernels, a fresh cache (ptxas runs, and reports)
    os.environ.pop("TRITON_INTERPRET", None)
    from .conv_check import fresh_cache_dir  # no kernel imported: TRITON_INTERPRET is unset
    os.environ["TRITON_CACHE_DIR"] = fresh_cache_dir("yolov12-compile-check-")
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    sys.exit(main())
