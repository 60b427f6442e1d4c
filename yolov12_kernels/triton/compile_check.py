"""Compile the Triton kernels to GPU machine code without a GPU (``triton.compile`` + ptxas).

    python -m yolov12_kernels.triton.compile_check [--quick] [--archs 80 90]

The interpreter runs the kernels' Python semantics on a CPU but never lowers them, so it cannot
catch what only the compiler rejects (types, layouts, shapes ``tl.dot`` refuses, register
explosions). This script lowers every variant the launchers can produce (dtypes, head_dims, the
pe / lse / 2-D-token flags, each autotuning configuration) for the given NVIDIA architectures and
reports failures; ``--quick`` does the three YOLOv12 fp16 variants (fused forward, dq, dk/dv) for
sm_80. Needs Triton's NVIDIA backend (ptxas ships with the wheel), no driver. Exit status 1 on
any failure. It must run with TRITON_INTERPRET unset (it unsets it before importing the kernels).
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


def variants(quick: bool, archs):
    from . import area_attention as K
    fwd, dq, dkdv = K._fwd_kernel, K._bwd_dq_kernel, K._bwd_dkdv_kernel
    out = []
    if quick:
        base = dict(HEAD_DIM=32, PREC="tf32", BLOCK_M=64, BLOCK_N=64, TOKENS_2D=False)
        return [(fwd, "fp16", set(), dict(base, STORE_O=True, STORE_LSE=True, FUSE_PE=True,
                                          HAS_BIAS=True, KS=7), 80, 4, 2),
                (dq, "fp16", set(), base, 80, 4, 2),
                (dkdv, "fp16", set(), dict(base, FUSE_PE=True, KS=7), 80, 4, 2)]
    for cc in archs:
        for dt in ("fp16", "bf16", "fp32"):
            for hd in (K.HEAD_DIMS if dt == "fp16" else (32,)):
                cfg = K._default_config(hd, 400)
                base = dict(HEAD_DIM=hd, PREC="ieee" if dt == "fp32" else "tf32",
                            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"])
                w, s = cfg["num_warps"], cfg["num_stages"]
                out += [
                    (fwd, dt, {"Out", "Wpe", "Bpe"}, dict(base, TOKENS_2D=False, STORE_O=True,
                     STORE_LSE=True, FUSE_PE=False, HAS_BIAS=False, KS=1), cc, w, s),
                    (fwd, dt, {"O", "Lse"}, dict(base, TOKENS_2D=False, STORE_O=False,
                     STORE_LSE=False, FUSE_PE=True, HAS_BIAS=True, KS=7), cc, w, s),
                    (fwd, dt, set(), dict(base, TOKENS_2D=True, STORE_O=True, STORE_LSE=True,
                     FUSE_PE=True, HAS_BIAS=False, KS=3), cc, w, s),
                    (dq, dt, set(), dict(base, TOKENS_2D=False), cc, w, s),
                    (dkdv, dt, {"Wpe"}, dict(base, TOKENS_2D=False, FUSE_PE=False, KS=1), cc, w, s),
                    (dkdv, dt, set(), dict(base, TOKENS_2D=True, FUSE_PE=True, KS=7), cc, w, s)]
        for c in K._gpu_configs():  # what the autotuner may pick, YOLOv12's fp16 head_dim 32
            base = dict(HEAD_DIM=32, PREC="tf32", TOKENS_2D=False, **c.kwargs)
            out += [(fwd, "fp16", set(), dict(base, STORE_O=True, STORE_LSE=True, FUSE_PE=True,
                                              HAS_BIAS=True, KS=7), cc, c.num_warps, c.num_stages),
                    (dq, "fp16", set(), base, cc, c.num_warps, c.num_stages),
                    (dkdv, "fp16", set(), dict(base, FUSE_PE=True, KS=7), cc, c.num_warps,
                     c.num_stages)]
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
    for kernel, dt, none_ptrs, consts, cc, warps, stages in todo:
        sig, cx = _signature(kernel, dt, none_ptrs, consts)
        label = (f"sm_{cc} {kernel.__name__} {dt} d={consts['HEAD_DIM']} "
                 f"{consts['BLOCK_M']}x{consts['BLOCK_N']} w{warps}s{stages} "
                 + " ".join(k for k, v in consts.items() if v is True))
        try:
            k = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=cx),
                               target=GPUTarget("cuda", cc, 32),
                               options={"num_warps": warps, "num_stages": stages})
            print(f"ok   {label}  shared={k.metadata.shared}B", flush=True)
        except Exception as e:  # report every failure, not just the first
            failures += 1
            print(f"FAIL {label}: {type(e).__name__}: {str(e)[:1500]}", flush=True)
    print(f"{len(todo) - failures}/{len(todo)} compiled in {time.time() - t0:.0f}s "
          f"(triton {triton.__version__})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
