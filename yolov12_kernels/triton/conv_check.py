"""Compile the fused conv kernels to GPU machine code without a GPU, as the JIT would specialise
them for the model's real tensors.

    python -m yolov12_kernels.triton.conv_check [--quick] [--archs 80 90] [--scales n s m l x]
        [--dtypes fp16 bf16 fp32] [--batches 1 32] [--tables [DIR]]

For every conv of YOLOv12 (``conv_shapes.model_convs``: each scale at 640, batch 1 and 32, float16,
bfloat16 and float32, with its epilogue and concat slice) it builds meta tensors of the real
shapes, strides and offsets, asks the launcher for the exact launches (``launches``: grids,
arguments, the configuration of that arch class; two launches for a split-K conv), runs Triton's own JIT binder on them — the specialisation a
real launch gets: which integers are 1 or divisible by 16, pointer alignment, constexprs — and
lowers each distinct variant with ``triton.compile`` for the target. Reports registers, spills
(ptxas' own report of the compile) and shared memory, which must fit the arch class's limit
(``ARCHS``). A spill in a variant that ``conv_spills.ALLOWED`` does not list (with its reason)
is a failure. ``--quick``: YOLOv12-N in float16 at batch 1 for sm_80. ``--ci``: one variant per
configuration class (``representatives``), what CI compiles under each Triton version
(tests/test_compile_checks.py); the full matrix is the default. ``--tables [DIR]``: instead,
every entry of the tuned config tables (``config_tables``) on the layer it was measured on, for
the table's arch.

Needs Triton's NVIDIA backend (ptxas ships with the wheel), no driver. Exit status 1 on a failure.
Run it as its own process: ``main`` compiles into a fresh cache (a cached kernel would not run
ptxas, nor report); as a module it changes nothing (``row_launches`` & co. work on meta tensors in
any mode).
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


_ARCH_CLASS = {80: "sm80", 86: "sm86", 89: "sm86", 90: "sm90"}
_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def jit_compile(kernel, args, kwargs, cc: int):
    """``kernel[grid](*args, **kwargs)``'s compile step for sm_``cc``, without a driver: Triton's
    JIT binder computes the specialisation from the real arguments, then ``triton.compile``
    (``jit_variants``: exactly the JIT's inputs, so the launch later finds it in the cache).
    With TRITON_DUMP_PTXAS_LOG=1 (``main`` sets it) Triton prints ptxas' report."""
    from . import jit_variants as J
    return J.compile_variant(J.bind(kernel, args, kwargs, cc), J.jit_function(kernel))[0]


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


def row_kind(r) -> str | None:
    """Which kernel family runs a ``conv_shapes`` row: "conv", "dwconv", "mlp" (the pair, on its
    mlp1 row) or None (the mlp2 row: part of the pair)."""
    if r.depthwise:
        return "dwconv"
    return {"mlp1": "mlp", "mlp2": None}.get(r.role, "conv")


def row_tensors(r, batch: int, dtype, new=_empty, nchw_input: bool = False, next_row=None):
    """The tensors one layer of ``conv_shapes.model_convs`` runs on at ``batch``, laid out as the
    fused path lays them out (concat slices, channels-last), as the positional arguments of its
    family's ``launches`` before ``config``: ``new(*shape, dtype=, nchw=)`` makes each one (meta
    tensors by default). ``next_row``: the mlp2 row after an mlp1 row (where the pair writes)."""
    from . import mlp as Mk
    kind = row_kind(r)
    if kind == "dwconv":
        return (new(batch, r.cin, r.h, r.w, dtype=dtype),
                new(r.cin, 1, r.k, r.k, dtype=dtype, nchw=True), new(r.cin, dtype=dtype),
                new(batch, r.cout, r.ho, r.wo, dtype=dtype), r.stride, r.silu)
    if kind == "mlp":
        C, hid = r.cin, r.cout
        r2 = next_row or r._replace(out_total=0, out_off=0)
        out = new(batch, r2.out_total or C, r.h, r.w, dtype=dtype)[:, r2.out_off:r2.out_off + C]
        return (new(batch, C, r.h, r.w, dtype=dtype), new(hid, C, 1, 1, dtype=dtype),
                new(hid, dtype=dtype), Mk.pack_w2(new(C, hid, 1, 1, dtype=dtype)),
                new(C, dtype=dtype), out, True)
    if nchw_input:  # the image, NCHW (the stem)
        x = new(batch, r.cin, r.h, r.w, dtype=dtype, nchw=True)
    else:
        x = new(batch, r.in_total or r.cin, r.h, r.w, dtype=dtype)[:, r.in_off:r.in_off + r.cin]
    out = new(batch, r.out_total or r.cout, r.ho, r.wo, dtype=dtype)[
        :, r.out_off:r.out_off + r.cout]
    return (x, new(r.cout, r.cin, r.k, r.k, dtype=dtype), new(r.cout, dtype=dtype),
            new(batch, r.cout, r.ho, r.wo, dtype=dtype) if r.residual else None,
            new(r.cout, dtype=dtype) if r.gamma else None, out, r.stride, r.silu)


def family_launches(kind: str, tensors: tuple, config=None, arch: str | None = None) -> list:
    """``launches`` of the kernel family ``kind`` on ``row_tensors``' arguments."""
    from . import conv as K
    from . import dwconv as D
    from . import mlp as Mk
    launches = {"conv": K.launches, "dwconv": D.launches, "mlp": Mk.launches}[kind]
    return launches(*tensors, config=config, arch=arch)


def row_launches(r, batch: int, dtype, arch: str, config=None, nchw_input: bool = False,
                 next_row=None):
    """The launches (``conv.Launch``) of one layer at ``batch`` on meta tensors (``row_tensors``),
    with ``config`` or the one the launcher picks for ``arch``."""
    return family_launches(row_kind(r), row_tensors(r, batch, dtype, nchw_input=nchw_input,
                                                    next_row=next_row), config, arch)


def _kind_variants(kind, scales, dtypes, batches, arch):
    import torch

    from ..conv_shapes import model_convs
    for scale in scales:
        rows = model_convs(scale)
        for r, nxt in zip(rows, rows[1:] + [None]):
            if row_kind(r) != kind:
                continue
            for dt in dtypes:
                dtype = getattr(torch, _DTYPES[dt])
                for nchw in (False, True) if r.name == "model.0" else (False,):
                    for batch in batches:
                        for run in row_launches(r, batch, dtype, arch, nchw_input=nchw,
                                                next_row=nxt):
                            name = r.name.removesuffix(".0") if kind == "mlp" else r.name
                            yield f"{scale}:{name}:b{batch}", run.kernel, run.args, run.kwargs


def conv_variants(scales, dtypes, batches, arch: str):
    """The dense convs (1x1, 3x3) of every layer: tensors as the fused path lays them out."""
    return _kind_variants("conv", scales, dtypes, batches, arch)


def dwconv_variants(scales, dtypes, batches=(1,), arch: str = "sm80"):
    """Detect's depthwise 3x3 convs."""
    return _kind_variants("dwconv", scales, dtypes, batches, arch)


def mlp_variants(scales, dtypes, batches=(1,), arch: str = "sm80"):
    """The ABlock MLP pairs (rows mlp1 + mlp2): the fused kernel (w2 packed with ``pack_w2``),
    or the launches its configuration makes of it (split hidden, two GEMMs)."""
    return _kind_variants("mlp", scales, dtypes, batches, arch)


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


def table_variants(directory=None):
    """The launches of every entry of the config tables in ``directory`` (default: the shipped
    ones), each on its recorded example layer with the entry's configuration, for the table's
    arch — with and without a residual for a conv (the key does not include the epilogue)."""
    import json
    from pathlib import Path

    import torch

    from ..conv_shapes import ConvShape
    from . import config_tables as T
    from . import conv as K
    from . import dwconv as D
    from . import mlp as Mk
    paths = sorted(Path(directory).glob("*.json")) if directory else T.shipped_tables()
    configs = {"conv": K.Config, "mlp": Mk.Config, "dwconv": D.Config}
    out = []
    for path in paths:
        arch = path.stem
        cc = {v: k for k, v in _ARCH_CLASS.items() if k != 89}[arch]
        for key, entry in json.loads(path.read_text())["entries"].items():
            kind, dtype_name = key.split("/")[:2]
            dtype = getattr(torch, dtype_name)
            ex = entry["example"]
            row = ConvShape(**ex["row"])
            nxt = ConvShape(**ex["next_row"]) if ex.get("next_row") else None
            rows = [row] + ([row._replace(residual=not row.residual)] if kind == "conv" else [])
            for r in rows:
                for run in row_launches(r, ex["batch"], dtype, arch,
                                        config=configs[kind](*entry["config"]), next_row=nxt):
                    out.append((cc, arch, f"{path.name}:{key}", run.kernel, run.args,
                                run.kwargs))
    return out


def variants(quick: bool, archs, scales=None, dtypes=None, batches=None):
    """(cc, arch class, label, kernel, args, kwargs) for every launch to check."""
    scales = scales or ("n", "s", "m", "l", "x")
    if quick:
        return [(80, "sm80", *v) for v in (*conv_variants(("n",), ("fp16",), (1,), "sm80"),
                                           *dwconv_variants(("n",), ("fp16",), (1,), "sm80"),
                                           *mlp_variants(("n",), ("fp16",), (1,), "sm80"),
                                           *box_decode_variants(("fp16",)))]
    out = []
    dtypes = tuple(dtypes or ("fp16", "bf16", "fp32"))
    batches = tuple(batches or (1, 32))
    for cc in archs:
        arch = _ARCH_CLASS[cc]
        out += [(cc, arch, *v) for v in (*conv_variants(scales, dtypes, batches, arch),
                                         *dwconv_variants(scales, dtypes, batches, arch),
                                         *mlp_variants(scales, dtypes, batches, arch),
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
    ap.add_argument("--dtypes", nargs="+", default=None, choices=list(_DTYPES))
    ap.add_argument("--batches", nargs="+", type=int, default=None)
    ap.add_argument("--tables", nargs="?", const="", default=None, metavar="DIR",
                    help="instead: every entry of the config tables in DIR (no DIR: the shipped "
                         "ones, yolov12_kernels/triton/configs/)")
    args = ap.parse_args(argv)
    # before the first compile: ptxas' report printed, a fresh cache (a cached kernel reports
    # nothing)
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    os.environ["TRITON_CACHE_DIR"] = fresh_cache_dir("yolov12-conv-check-")
    import triton

    from . import conv as K
    from .conv_spills import ALLOWED
    t0 = time.time()
    if args.tables is not None:
        todo = table_variants(args.tables or None)
    else:
        todo = variants(args.quick, args.archs, args.scales, args.dtypes, args.batches)
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
    # before triton.jit runs: compiled kernels (a module that imports this one, e.g. the plan
    # report, keeps its own mode)
    os.environ.pop("TRITON_INTERPRET", None)
    sys.exit(main())
