"""Compile the Triton kernels to GPU machine code without a GPU (``triton.compile`` + ptxas).

    python -m yolov12_kernels.triton.compile_check [--quick] [--archs 80 90]

The interpreter runs the kernels' Python semantics on a CPU but never lowers them, so it cannot
catch what only the compiler rejects (types, layouts, shapes ``tl.dot`` refuses, register
explosions). This script lowers every variant the launchers can produce (dtypes, head_dims, the
pe / lse / 2-D-token flags, each autotuning configuration) for the given NVIDIA architectures and
reports failures; ``--quick`` does the three YOLOv12 fp16 variants (fused forward, dq, dk/dv) for
sm_80, plus the fixed-configuration fp32 head_dim-128 backward kernels, whose shared memory must
fit the 99 KB of sm_86/sm_89 (every fixed configuration is checked for that in the full run).
Needs Triton's NVIDIA backend (ptxas ships with the wheel), no driver. Exit status 1 on any
failure. It must run with TRITON_INTERPRET unset (it unsets it before importing the kernels).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)  # before triton.jit runs: we want compiled kernels

_PTRS = {"_fwd_kernel": ["Q", "K", "V", "O", "Out", "Lse", "Wpe", "Bpe"],
         "_bwd_dq_kernel": ["Q", "K", "V", "O", "dO", "Lse", "Delta", "dQ"],
         "_bwd_dkdv_kernel": ["Q", "K", "V", "dO", "Lse", "Delta", "dK", "dV", "Wpe"]}
_F32_PTRS = {"Lse", "Delta"}
_FLOATS = {"qk_scale", "sm_scale"}
# The fixed (autotuner off) configurations must fit the smallest shared memory of the supported
# GPUs: 99 KB per block on sm_86/sm_89 (A100 has 163 KB, H100 227 KB). Autotuning configurations
# may use more: the autotuner skips those that do not fit (OutOfResources).
_DEFAULT_MAX_SHARED = 99 * 1024


def _signature(kernel, dtype: str, none_ptrs, consts):
    sig, cx = {}, {}
    name = kernel.__name__
    for arg in kernel.arg_names:
        if arg in consts:
            sig[arg], cx[arg] = "constexpr", consts[arg]
        elif arg in _PTRS[name]:
            if arg in none_ptrs:  # launched with None: a constexpr None
                sig[arg], cx[arg] = "constexpr", None
            else:
                sig[arg] = "*fp32" if arg in _F32_PTRS else f"*{dtype}"
        else:
            sig[arg] = "fp32" if arg in _FLOATS else "i32"
    return sig, cx


def _default_variants(K, dt: str, hd: int, cc: int, kernels=("dq", "dkdv")):
    """The backward kernels (the largest) at the fixed configuration, checked for shared memory."""
    cfg = K._default_config(hd, 400, fp32=dt == "fp32")
    base = dict(HEAD_DIM=hd, PREC="ieee" if dt == "fp32" else "tf32", TOKENS_2D=False,
                BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"])
    w, s = cfg["num_warps"], cfg["num_stages"]
    out = {"dq": (K._bwd_dq_kernel, dt, set(), base, cc, w, s, _DEFAULT_MAX_SHARED),
           "dkdv": (K._bwd_dkdv_kernel, dt, set(), dict(base, FUSE_PE=True, KS=7), cc, w, s,
                    _DEFAULT_MAX_SHARED)}
    return [out[k] for k in kernels]


def variants(quick: bool, archs):
    """(kernel, dtype, None pointers, constexprs, arch, warps, stages, max shared bytes or None)."""
    from . import area_attention as K
    fwd, dq, dkdv = K._fwd_kernel, K._bwd_dq_kernel, K._bwd_dkdv_kernel
    out = []
    if quick:
        base = dict(HEAD_DIM=32, PREC="tf32", BLOCK_M=64, BLOCK_N=64, TOKENS_2D=False)
        return [(fwd, "fp16", set(), dict(base, STORE_O=True, STORE_LSE=True, FUSE_PE=True,
                                          HAS_BIAS=True, KS=7), 80, 4, 2, None),
                (dq, "fp16", set(), base, 80, 4, 2, None),
                (dkdv, "fp16", set(), dict(base, FUSE_PE=True, KS=7), 80, 4, 2, None),
                # the largest fixed configuration (fp32, head_dim 128) fits 99 KB
                *_default_variants(K, "fp32", 128, 80)]
    for cc in archs:
        out += [v for dt in ("bf16", "fp32") for v in _default_variants(K, dt, 128, cc)]
        for dt in ("fp16", "bf16", "fp32"):
            for hd in (K.HEAD_DIMS if dt == "fp16" else (32,)):
                cfg = K._default_config(hd, 400, fp32=dt == "fp32")
                base = dict(HEAD_DIM=hd, PREC="ieee" if dt == "fp32" else "tf32",
                            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"])
                w, s = cfg["num_warps"], cfg["num_stages"]
                lim = _DEFAULT_MAX_SHARED  # the fixed configuration
                out += [
                    (fwd, dt, {"Out", "Wpe", "Bpe"}, dict(base, TOKENS_2D=False, STORE_O=True,
                     STORE_LSE=True, FUSE_PE=False, HAS_BIAS=False, KS=1), cc, w, s, lim),
                    (fwd, dt, {"O", "Lse"}, dict(base, TOKENS_2D=False, STORE_O=False,
                     STORE_LSE=False, FUSE_PE=True, HAS_BIAS=True, KS=7), cc, w, s, lim),
                    (fwd, dt, set(), dict(base, TOKENS_2D=True, STORE_O=True, STORE_LSE=True,
                     FUSE_PE=True, HAS_BIAS=False, KS=3), cc, w, s, lim),
                    (dq, dt, set(), dict(base, TOKENS_2D=False), cc, w, s, lim),
                    (dkdv, dt, {"Wpe"}, dict(base, TOKENS_2D=False, FUSE_PE=False, KS=1), cc, w,
                     s, lim),
                    (dkdv, dt, set(), dict(base, TOKENS_2D=True, FUSE_PE=True, KS=7), cc, w, s,
                     lim)]
        for c in K._gpu_configs():  # what the autotuner may pick, YOLOv12's fp16 head_dim 32
            base = dict(HEAD_DIM=32, PREC="tf32", TOKENS_2D=False, **c.kwargs)
            out += [(fwd, "fp16", set(), dict(base, STORE_O=True, STORE_LSE=True, FUSE_PE=True,
                                              HAS_BIAS=True, KS=7), cc, c.num_warps,
                     c.num_stages, None),
                    (dq, "fp16", set(), base, cc, c.num_warps, c.num_stages, None),
                    (dkdv, "fp16", set(), dict(base, FUSE_PE=True, KS=7), cc, c.num_warps,
                     c.num_stages, None)]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--archs", nargs="+", type=int, default=[80, 90])
    args = ap.parse_args(argv)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    failures, t0 = 0, time.time()
    todo = variants(args.quick, args.archs)
    for kernel, dt, none_ptrs, consts, cc, warps, stages, max_shared in todo:
        sig, cx = _signature(kernel, dt, none_ptrs, consts)
        label = (f"sm_{cc} {kernel.__name__} {dt} d={consts['HEAD_DIM']} "
                 f"{consts['BLOCK_M']}x{consts['BLOCK_N']} w{warps}s{stages} "
                 + " ".join(k for k, v in consts.items() if v is True))
        try:
            k = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=cx),
                               target=GPUTarget("cuda", cc, 32),
                               options={"num_warps": warps, "num_stages": stages})
            if max_shared is not None and k.metadata.shared > max_shared:
                raise RuntimeError(f"needs {k.metadata.shared} B of shared memory, over the "
                                   f"{max_shared} B of sm_86/sm_89 (a fixed configuration)")
            print(f"ok   {label}  shared={k.metadata.shared}B", flush=True)
        except Exception as e:  # report every failure, not just the first
            failures += 1
            print(f"FAIL {label}: {type(e).__name__}: {str(e)[:1500]}", flush=True)
    print(f"{len(todo) - failures}/{len(todo)} compiled in {time.time() - t0:.0f}s "
          f"(triton {triton.__version__})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
