"""Compile the fused conv kernels to GPU machine code without a GPU, as the JIT would specialise
them for the model's real tensors.

    python -m yolov12_kernels.triton.conv_check [--quick] [--archs 80 90] [--scales n s m l x]

For every conv of YOLOv12 (``conv_shapes.model_convs``: each scale at 640, batch 1 and 32, float16,
bfloat16 and float32, with its epilogue and concat slice) it builds meta tensors of the real
shapes, strides and offsets, asks the launcher for the exact launch (``launch_args``: grid, arguments, the fixed
configuration of that arch class), runs Triton's own JIT binder on them — the specialisation a
real launch gets: which integers are 1 or divisible by 16, pointer alignment, constexprs — and
lowers each distinct variant with ``triton.compile`` for the target. Reports registers, spills
(ptxas' own report of the compile) and shared memory, which must fit the arch class's limit
(``ARCHS``). A spill in a variant that ``conv_spills.ALLOWED`` does not list (with its reason)
is a failure. ``--quick``: YOLOv12-N in float16 at batch 1 for sm_80. ``--ci``: one variant per
configuration class (``representatives``), what CI compiles under each Triton version
(tests/test_compile_checks.py); the full matrix is the default.

Needs Triton's NVIDIA backend (ptxas ships with the wheel), no driver. Exit status 1 on a failure.
Run it as its own process: it unsets TRITON_INTERPRET before importing the kernels, and compiles
into a fresh cache (a cached kernel would not run ptxas, nor report).
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time

os.environ.pop("TRITON_INTERPRET", None)  # before triton.jit runs: we want compiled kernels

_ARCH_CLASS = {80: "sm80", 86: "sm86", 89: "sm86", 90: "sm90"}
_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def jit_compile(kernel, args, kwargs, cc: int):
    """``kernel[grid](*args, **kwargs)``'s compile step for sm_``cc``, without a driver: Triton's
    JIT binder computes the specialisation from the real arguments, then ``triton.compile``.
    With TRITON_DUMP_PTXAS_LOG=1 (``main`` sets it) Triton prints ptxas' report."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature
    target = GPUTarget("cuda", cc, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound,
                                                              specialization, options)
    src = ASTSource(kernel, signature, constexprs, attrs)
    return triton.compile(src, target=target, options=options.__dict__)


def specialization_key(kernel, args, kwargs) -> tuple:
    """What makes two launches compile to the same binary (the JIT's cache key, minus device)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature
    backend = make_backend(GPUTarget("cuda", 80, 32))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    _, specialization, options = binder(*args, **kwargs)
    return (kernel.__name__, tuple(map(str, specialization)), tuple(sorted(options.items())))


def fresh_cache_dir(prefix: str) -> str:
    """An empty Triton cache directory, removed when the process exits (a kernel found in a cache
    is not compiled, so ptxas would not report on it)."""
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


def compile_with_usage(kernel, args, kwargs, cc: int):
    """(compiled kernel, {"regs", "spill"}): ``jit_compile`` with ptxas' report of that compile
    (TRITON_DUMP_PTXAS_LOG: the compiled kernel's metadata gets registers from the driver, which
    we do not have; reading the compile's own report spares a second ptxas run)."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        k = jit_compile(kernel, args, kwargs, cc)
    regs = re.findall(r"Used (\d+) registers", log.getvalue())
    spill = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log.getvalue())
    return k, {"regs": max(map(int, regs)) if regs else -1,
               "spill": max(int(a) + int(b) for a, b in spill) if spill else -1}


# ------------------------------------------------------------------------------------------------
# variants: (label, kernel, args, kwargs, arch class) per op
# ------------------------------------------------------------------------------------------------
def _empty(*shape, dtype, nchw: bool = False):
    """A meta tensor: real shapes, strides and offsets (its data_ptr is its byte offset, so slices
    specialise like real ones: the base of a real allocation is 256-byte aligned), no memory."""
    import torch
    fmt = torch.contiguous_format if nchw or len(shape) != 4 else torch.channels_last
    return torch.empty(*shape, dtype=dtype, device="meta", memory_format=fmt)


def conv_variants(scales, dtypes, batches, arch: str):
    """The dense convs (1x1, 3x3) of every layer: tensors as the fused path lays them out."""
    import torch

    from ..conv_shapes import model_convs
    from . import conv as K
    for scale in scales:
        for r in model_convs(scale):
            if r.depthwise or r.role in ("mlp1", "mlp2"):
                continue  # other kernels (dwconv, mlp), checked by their own variants
            for dt in dtypes:
                dtype = getattr(torch, _DTYPES[dt])
                x_buf = _empty(1, r.in_total or r.cin, r.h, r.w, dtype=dtype)
                xs = [x_buf[:, r.in_off:r.in_off + r.cin]]
                if r.name == "model.0":  # the image, NCHW
                    xs.append(_empty(1, r.cin, r.h, r.w, dtype=dtype, nchw=True))
                w = _empty(r.cout, r.cin, r.k, r.k, dtype=dtype)
                b = _empty(r.cout, dtype=dtype)
                o_buf = _empty(1, r.out_total or r.cout, r.ho, r.wo, dtype=dtype)
                out = o_buf[:, r.out_off:r.out_off + r.cout]
                res = _empty(1, r.cout, r.ho, r.wo, dtype=dtype) if r.residual else None
                gamma = _empty(r.cout, dtype=dtype) if r.gamma else None
                for x in xs:
                    for batch in batches:
                        cfg = K.conv_config(arch, dtype, batch * r.ho * r.wo, r.cout, r.cin, r.k)
                        _, args, kwargs = K.launch_args(x, w, b, res, gamma, out, r.stride,
                                                        r.silu, config=cfg)
                        yield f"{scale}:{r.name}:b{batch}", K._conv_kernel, args, kwargs


def dwconv_variants(scales, dtypes):
    """Detect's depthwise 3x3 convs (one fixed configuration for every arch and batch)."""
    import torch

    from ..conv_shapes import model_convs
    from . import dwconv as D
    for scale in scales:
        for r in model_convs(scale):
            if not r.depthwise:
                continue
            for dt in dtypes:
                dtype = getattr(torch, _DTYPES[dt])
                x = _empty(1, r.cin, r.h, r.w, dtype=dtype)
                w = _empty(r.cin, 1, r.k, r.k, dtype=dtype, nchw=True)
                out = _empty(1, r.cout, r.ho, r.wo, dtype=dtype)
                _, args, kwargs = D.launch_args(x, w, _empty(r.cin, dtype=dtype), out, r.stride,
                                                r.silu)
                yield f"{scale}:{r.name}", D._dwconv_kernel, args, kwargs


def mlp_variants(scales, dtypes):
    """The ABlock MLP pairs (rows mlp1 + mlp2) as one kernel, w2 packed with ``pack_w2``."""
    import torch

    from ..conv_shapes import model_convs
    from . import mlp as Mk
    for scale in scales:
        rows = model_convs(scale)
        for r1, r2 in zip(rows, rows[1:]):
            if r1.role != "mlp1":
                continue
            for dt in dtypes:
                dtype = getattr(torch, _DTYPES[dt])
                C, hid = r1.cin, r1.cout
                x = _empty(1, C, r1.h, r1.w, dtype=dtype)
                o_buf = _empty(1, r2.out_total or C, r1.h, r1.w, dtype=dtype)
                out = o_buf[:, r2.out_off:r2.out_off + C]
                w2 = Mk.pack_w2(_empty(C, hid, 1, 1, dtype=dtype))
                _, args, kwargs = Mk.launch_args(x, _empty(hid, C, 1, 1, dtype=dtype),
                                                 _empty(hid, dtype=dtype), w2,
                                                 _empty(C, dtype=dtype), out, True)
                yield f"{scale}:{r1.name.removesuffix('.0')}", Mk._mlp_kernel, args, kwargs


def box_decode_variants(dtypes):
    """The Detect decode at 640 (three levels, 80 classes), feats as the head writes them."""
    import torch

    from . import box_decode as Bk
    shapes = [(80, 80), (40, 40), (20, 20)]
    A = sum(h * w for h, w in shapes)
    for dt in dtypes:
        dtype = getattr(torch, _DTYPES[dt])
        feats = _empty(1, A, 144, dtype=dtype).permute(0, 2, 1)
        out = _empty(1, 84, A, dtype=torch.float32)
        _, args, kwargs = Bk.launch_args(feats, out, shapes, (8.0, 16.0, 32.0), 16)
        yield "decode:640", Bk._box_decode_kernel, args, kwargs


def variants(quick: bool, archs, scales=None):
    """(cc, arch class, label, kernel, args, kwargs) for every launch to check."""
    scales = scales or ("n", "s", "m", "l", "x")
    if quick:
        return [(80, "sm80", *v) for v in (*conv_variants(("n",), ("fp16",), (1,), "sm80"),
                                           *dwconv_variants(("n",), ("fp16",)),
                                           *mlp_variants(("n",), ("fp16",)),
                                           *box_decode_variants(("fp16",)))]
    out = []
    dtypes = ("fp16", "bf16", "fp32")
    for cc in archs:
        arch = _ARCH_CLASS[cc]
        out += [(cc, arch, *v) for v in (*conv_variants(scales, dtypes, (1, 32), arch),
                                         *dwconv_variants(scales, dtypes),
                                         *mlp_variants(scales, dtypes),
                                         *box_decode_variants(dtypes))]
    return out


def representatives(groups: dict) -> dict:
    """One distinct variant per configuration class: (arch, kernel, dtype class, every
    constexpr but the epilogue flags), the one with the most epilogue flags (a residual, gamma:
    the most registers). 16-bit variants: bfloat16 for sm_80, float16 for sm_90 (the two share
    every configuration, and their compile reports agree: same spills in all 161 pairs of the full
    matrix under Triton 3.6 and 3.9, registers within a few). ``groups``: {key: [cc, arch,
    kernel, args, kwargs, labels]} as ``main`` builds it; the result keeps that form."""
    best: dict = {}
    for key, (cc, arch, kernel, a, kw, labels) in groups.items():
        dtype = str(a[0].dtype).removeprefix("torch.")
        if dtype != "float32" and dtype != ("bfloat16" if cc == 80 else "float16"):
            continue
        flags = tuple(k for k, v in kw.items() if v is True and k in _EPILOGUE_FLAGS)
        rest = tuple((k, v) for k, v in kw.items() if k not in _EPILOGUE_FLAGS)
        cls = (cc, kernel.__name__, dtype, rest)
        if cls not in best or len(flags) > best[cls][0]:
            best[cls] = (len(flags), key)
    return {key: groups[key] for _, key in best.values()}


_EPILOGUE_FLAGS = {"HAS_BIAS", "SILU", "HAS_RES", "HAS_GAMMA"}


def _describe(kwargs) -> str:
    flags = " ".join(k for k, v in kwargs.items() if v is True)
    blocks = "x".join(str(v) for k, v in kwargs.items() if k.startswith("BLOCK_"))
    others = " ".join(f"{k}={v}" for k, v in kwargs.items()
                      if k.isupper() and not k.startswith("BLOCK_") and not isinstance(v, bool)
                      and k != "PREC")
    return (f"{others} {blocks} w{kwargs['num_warps']}s{kwargs.get('num_stages', '-')} "
            f"{flags}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--archs", nargs="+", type=int, default=[80, 90])
    ap.add_argument("--scales", nargs="+", default=None)
    ap.add_argument("--ci", action="store_true",
                    help="one variant per configuration class (representatives), not every one")
    args = ap.parse_args(argv)
    # before the first compile: ptxas' report printed, a fresh cache (a cached kernel reports
    # nothing)
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    os.environ["TRITON_CACHE_DIR"] = fresh_cache_dir("yolov12-conv-check-")
    import triton

    from . import conv as K
    from .conv_spills import ALLOWED
    t0 = time.time()
    todo = variants(args.quick, args.archs, args.scales)
    groups: dict = {}  # the first launch of each distinct variant, and every launch's label
    for cc, arch, label, kernel, a, kw in todo:
        key = (cc, specialization_key(kernel, a, kw))
        groups.setdefault(key, [cc, arch, kernel, a, kw, []])[5].append(label)
    n_distinct = len(groups)
    if args.ci:
        groups = representatives(groups)
    failures = spilled = 0
    for cc, arch, kernel, a, kw, labels in groups.values():
        dtype = str(a[0].dtype).removeprefix("torch.")
        name = f"sm_{cc} {kernel.__name__} {dtype} {_describe(kw)}".rstrip()
        used = f"{labels[0]}" + (f" (+{len(labels) - 1} more)" if len(labels) > 1 else "")
        t = time.time()
        try:
            k, u = compile_with_usage(kernel, a, kw, cc)
            if u["regs"] < 0:  # no report: a spill would go unseen
                raise RuntimeError("ptxas printed no register report (TRITON_DUMP_PTXAS_LOG)")
            limit = K.ARCHS[arch][1]
            if k.metadata.shared > limit:
                raise RuntimeError(f"needs {k.metadata.shared} B of shared memory, over the "
                                   f"{limit} B of {arch}")
            spilled += u["spill"] > 0
            if u["spill"] > 0 and name not in ALLOWED:
                raise RuntimeError(f"spills {u['spill']} B at {u['regs']} registers, and "
                                   "conv_spills.ALLOWED gives no reason for it (a new spill)")
            print(f"ok   {name}: regs={u['regs']} spill={u['spill']}B "
                  f"shared={k.metadata.shared}B {time.time() - t:.1f}s  [{used}]", flush=True)
        except Exception as e:  # report every failure, not just the first
            failures += 1
            print(f"FAIL {name} [{used}]: {type(e).__name__}: {str(e)[:1500]}", flush=True)
    print(f"{len(groups) - failures}/{len(groups)} variants compiled "
          f"({'one per configuration class of ' if args.ci else ''}{n_distinct} distinct, "
          f"{len(todo)} launches; {spilled} with spills) in {time.time() - t0:.0f}s "
          f"(triton {triton.__version__})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
