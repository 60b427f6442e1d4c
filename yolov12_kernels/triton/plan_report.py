"""The fused forward's launch plan on paper: per launch, its work, its waves and its roofline bound.

    python -m yolov12_kernels.triton.plan_report --scale x --batch 32 --arch sm90
        [--dtype float16] [--compile] [--cache FILE] [--imgsz 640]

One row per kernel launch of the fused forward (``docs/fusion.md``: input cast, dense convs, split-K
reductions, depthwise convs, MLP pairs, attention cores, upsample copies, box decode), built from the
launchers' own ``launches`` on meta tensors (so the report shows what runs, with each arch's
configuration) and from the attention backend's dry run:

* ``programs`` and ``waves`` = programs / the arch's SMs (one program per SM per wave; the CTA/SM
  column says how many fit at once);
* tensor-core work the tiles issue (padded M, N, K) over the work the layer needs, in GFLOP;
* ``HBM≥``: a lower bound on memory traffic: inputs, weights and outputs once (+ a split's fp32
  partials); ``W reads``: the weight bytes all programs load (every pixel block reads the whole
  weight: the L2 traffic that large pixel tiles cut);
* with ``--compile``: registers, spills, shared memory and CTAs per SM from the compile report
  (Triton's NVIDIA backend and ptxas, no GPU; slow, so cached in ``--cache``), and the MMA
  instruction the PTX uses (wgmma, mma.sync, or none: FMA);
* ``roofline µs``: max(tensor-core FLOPs issued / peak, FMA FLOPs / fp32 peak, HBM≥ / bandwidth)
  at the peaks of ``PEAKS`` — a lower bound, not a prediction: launch latency, L2 traffic, tails
  and pipeline fill are not in it.

Arithmetic, not measurements: every figure here follows from shapes and configurations. Run it as
its own process (it unsets TRITON_INTERPRET for the attention backend's configurations); in a
process that imported the kernels interpreted, the attention rows show the interpreter's.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import NamedTuple

import torch
import triton


class Peak(NamedTuple):
    device: str
    tensor_tflops: float   # dense fp16/bf16 tensor-core
    fp32_tflops: float     # plain fp32 (FMA units)
    tb_per_s: float        # HBM
    source: str


PEAKS = {
    "sm90": Peak("H200 SXM", 989.4, 66.9, 4.8,
                 "NVIDIA H200 datasheet (dense fp16/bf16 989 TFLOP/s, fp32 67, HBM3e 4.8 TB/s; "
                 "the H100 SXM has the same compute and 3.35 TB/s). This project's H100 run "
                 "measured a 2.97 TB/s device copy (benchmarks/results/runs/2026-11-23-h100, "
                 "copy_bw_gbs)"),
    "sm80": Peak("A100 SXM4 80GB", 312.0, 19.5, 2.039,
                 "NVIDIA A100 datasheet (dense fp16/bf16 312 TFLOP/s, fp32 19.5, HBM2e 2,039 "
                 "GB/s; the 40 GB part has 1,555 GB/s)"),
}

# Per SM: registers, shared memory (the CUDA occupancy limits of compute capability 8.0 / 9.0),
# warps and CTAs; the driver reserves 1 KB of shared memory per CTA.
SM_LIMITS = {"sm80": dict(regs=65536, smem=164 * 1024, warps=64, ctas=32),
             "sm90": dict(regs=65536, smem=228 * 1024, warps=64, ctas=32)}
_CC = {"sm80": 80, "sm90": 90}


class Row(NamedTuple):
    layer: str
    kernel: str
    config: str
    programs: int
    tc_issued: float = 0.0   # FLOPs
    tc_needed: float = 0.0
    fma: float = 0.0         # FLOPs on the FMA units
    hbm: float = 0.0         # bytes, lower bound
    w_reads: float = 0.0     # bytes of weights loaded by all programs
    warps: int = 4
    variant: tuple | None = None  # (kernel, args, kwargs) or ("attention", run) to compile
    note: str = ""
    steps: int = 0           # reduction steps (dots) one program walks


def _nbytes(t) -> float:
    """Bytes of a tensor's logical elements (a slice of a buffer counts only its own)."""
    return 0.0 if t is None else float(t.numel() * t.element_size())


def _cdiv(a, b):
    return -(-a // b)


# ------------------------------------------------------------------------------------------------
# rows from launches
# ------------------------------------------------------------------------------------------------
def _conv_row(name, run, fp32) -> Row:
    from . import conv as K
    x, w, bias, res, gamma, out, part = run.args[:7]
    H, W, cin, HO, WO, cout, m = run.args[7:14]
    kw = run.kwargs
    bm, bn, bk, split, ks = (kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], kw["SPLIT_K"],
                             kw["KS"])
    k_iss = K.k_steps(ks, cin, bk) * bk
    issued = 2.0 * _cdiv(m, bm) * bm * _cdiv(cout, bn) * bn * k_iss
    needed = 2.0 * m * cout * ks * ks * cin
    hbm = (_nbytes(x) + _nbytes(w) + _nbytes(bias) + _nbytes(res) + _nbytes(gamma)
           + (_nbytes(part) if split > 1 else _nbytes(out)))
    cfg = f"{bm}x{bn}x{bk} w{kw['num_warps']}s{kw['num_stages']}" + (
        f" split{split}" if split > 1 else "")
    kind = "conv" + ("·taps-in-K" if kw["TAPS_IN_K"] else "") + (" (partials)" if split > 1
                                                                  else "")
    return Row(name, kind, cfg, run.grid[0], 0.0 if fp32 else issued, 0.0 if fp32 else needed,
               issued if fp32 else 0.0, hbm, _cdiv(m, bm) * _nbytes(w), kw["num_warps"],
               (run.kernel, run.args, run.kwargs), steps=_cdiv(K.k_steps(ks, cin, bk), split))


def _reduce_row(name, run) -> Row:
    part, bias, res, gamma, out = run.args[:5]
    kw = run.kwargs
    hbm = _nbytes(part) + _nbytes(bias) + _nbytes(res) + _nbytes(gamma) + _nbytes(out)
    return Row(name, "split-K reduce + epilogue",
               f"{kw['BLOCK_M']}x{kw['BLOCK_N']} w{kw['num_warps']} sum of {kw['SPLIT_K']}",
               run.grid[0], hbm=hbm, warps=kw["num_warps"],
               variant=(run.kernel, run.args, run.kwargs))


def _mlp_row(name, run, fp32) -> Row:
    x, w1, b1, w2, b2, out, part = run.args[:7]
    C, hid, m = run.args[9:12]
    kw = run.kwargs
    bm, bh, bk, split = kw["BLOCK_M"], kw["BLOCK_H"], kw["BLOCK_K"], kw["SPLIT_H"]
    mp, hp = _cdiv(m, bm) * bm, _cdiv(hid, bh) * bh
    issued = 2.0 * mp * hp * _cdiv(C, bk) * bk + 2.0 * mp * kw["C_PAD"] * hp
    needed = 4.0 * m * C * hid
    w_bytes = 2.0 * C * hid * x.element_size()  # w1 and w2 (the padded w2 rows are not read)
    hbm = (_nbytes(x) + w_bytes + _nbytes(b1) + _nbytes(b2)
           + (_nbytes(part) if split > 1 else _nbytes(out)))
    cfg = f"{bm}x{bh}x{bk} w{kw['num_warps']}s{kw['num_stages']}" + (
        f" split{split}" if split > 1 else "")
    steps = _cdiv(_cdiv(hid, bh), split) * (_cdiv(C, bk) + 1)
    return Row(name, "mlp pair (fused)" + (" (partials)" if split > 1 else ""), cfg,
               run.grid[0], 0.0 if fp32 else issued, 0.0 if fp32 else needed,
               issued if fp32 else 0.0, hbm, _cdiv(m, bm) * w_bytes, kw["num_warps"],
               (run.kernel, run.args, run.kwargs), steps=steps)


def _dwconv_row(name, run) -> Row:
    x, w, bias, out = run.args[:4]
    C, HO, WO, m = run.args[6:10]
    kw = run.kwargs
    bm, bc, ks = kw["BLOCK_M"], kw["BLOCK_C"], kw["KS"]
    issued = 2.0 * ks * ks * _cdiv(m, bm) * bm * _cdiv(C, bc) * bc
    return Row(name, "dwconv", f"{bm}x{bc} w{kw['num_warps']}", run.grid[0], fma=issued,
               hbm=_nbytes(x) + _nbytes(w) + _nbytes(bias) + _nbytes(out),
               w_reads=_cdiv(m, bm) * _nbytes(w), warps=kw["num_warps"],
               variant=(run.kernel, run.args, run.kwargs))


def under_wave_note(row: Row, arch: str) -> str:
    """Why a launch gives fewer programs than the arch has SMs (every program then runs at
    once: the launch takes one program's time)."""
    from .conv import SPLIT_MIN_STEPS
    if not row.programs or waves(row, arch) >= 1 or row.note:
        return row.note
    if row.kernel.endswith("(partials)"):
        return f"under one wave: split into all its {row.steps}-step parts"
    if 0 < row.steps < SPLIT_MIN_STEPS:
        return (f"under one wave: {row.programs} programs at once, {row.steps} reduction steps "
                f"each (< {SPLIT_MIN_STEPS}: too few to pay for a split's second launch)")
    if row.kernel == "dwconv" and row.config.startswith("8x8 "):
        return f"under one wave: {row.programs} programs at once (the smallest tiles)"
    return ""  # no reason: a configuration to fix


def launch_rows(name: str, runs, fp32: bool, mlp_pair: bool = False) -> list[Row]:
    """Report rows of the launches of one layer (``conv.Launch`` tuples; ``mlp_pair``: an
    ABlock MLP pair's, whatever kernels its configuration runs it with)."""
    rows = []
    for run in runs:
        kname = run.kernel.fn.__name__ if hasattr(run.kernel, "fn") else run.kernel.__name__
        if kname == "_conv_kernel":
            rows.append(_conv_row(name, run, fp32))
        elif kname == "_splitk_reduce_kernel":
            rows.append(_reduce_row(name, run))
        elif kname == "_mlp_kernel":
            rows.append(_mlp_row(name, run, fp32))
        elif kname == "_dwconv_kernel":
            rows.append(_dwconv_row(name, run))
        else:
            raise ValueError(f"no report row for kernel {kname}")
    if mlp_pair and rows[0].kernel.startswith("conv"):  # the pair as two GEMMs
        gemm = 1
        for i, r in enumerate(rows):
            rows[i] = r._replace(kernel=f"mlp GEMM{gemm}: {r.kernel}")
            gemm += r.kernel.startswith("split") or not r.kernel.endswith("(partials)")
    elif mlp_pair:
        rows = [r if r.kernel.startswith("mlp") else r._replace(kernel="mlp " + r.kernel)
                for r in rows]
    return rows


def _attention_rows(name, r, batch, dtype, fp32) -> list[Row]:
    """The fused attention core (attention + 7x7 pe) on the qkv the qkv conv wrote."""
    from ..shapes import HEAD_DIM
    from . import backend as T
    from . import launch
    C = r.cout // 3
    heads = C // HEAD_DIM
    area = 4 if r.name.startswith("model.6.") else 1  # A2C2f areas: layer 6 (P4) 4, layer 8 1
    qkv = torch.empty(batch, 3 * C, r.h, r.w, dtype=dtype, device="meta",
                      memory_format=torch.channels_last)
    pe_w = torch.empty(C, 1, 7, 7, dtype=dtype, device="meta")
    pe_b = torch.empty(C, dtype=dtype, device="meta")
    with launch.dry_run() as runs:
        T.fused_forward_impl(qkv, pe_w, pe_b, heads, area, HEAD_DIM ** -0.5, False)
    rows = []
    for run in runs:
        plan = run[0]
        cfg = plan.config
        n_area = r.h * r.w // area
        problems = batch * area * heads
        lm, ln = _cdiv(n_area, cfg.block_m) * cfg.block_m, _cdiv(n_area, cfg.block_n) * cfg.block_n
        issued = 4.0 * problems * lm * ln * HEAD_DIM
        needed = 4.0 * problems * n_area * n_area * HEAD_DIM
        pe = 2.0 * 49 * batch * C * r.h * r.w
        hbm = _nbytes(qkv) + batch * C * r.h * r.w * qkv.element_size() + _nbytes(pe_w)
        rows.append(Row(name.replace(".qkv", ".core"), "attention + pe (fused)",
                        f"{cfg.block_m}x{cfg.block_n} w{cfg.num_warps}s{cfg.num_stages} "
                        f"area{area}", plan.grid, 0.0 if fp32 else issued,
                        0.0 if fp32 else needed, pe + (issued if fp32 else 0.0), hbm,
                        warps=cfg.num_warps, variant=("attention", run),
                        note="attention configs: issue 21 item 4"))
    return rows


def plan_rows(scale: str, batch: int, arch: str, dtype: torch.dtype = torch.float16,
              imgsz: int = 640) -> list[Row]:
    """Every launch of YOLOv12-``scale``'s fused forward at (batch, imgsz), in order."""
    from ..conv_shapes import model_convs
    from .box_decode import _box_decode_kernel
    from .box_decode import launch_args as decode_args
    from .conv_check import row_kind, row_launches
    fp32 = dtype == torch.float32
    elem = torch.empty(0, dtype=dtype).element_size()
    rows = model_convs(scale, imgsz)
    out = [Row("input", "cast fp32 NCHW → NHWC", "aten copy", 0,
               hbm=batch * 3 * imgsz * imgsz * (4 + elem))]
    upsampled = set()
    for r, nxt in zip(rows, rows[1:] + [None]):
        kind = row_kind(r)
        if kind is None:
            continue
        layer = int(r.name.split(".")[1])
        for src, dst_layer in ((8, 11), (11, 14)):  # nearest 2x into the next concat's slice
            if layer == dst_layer and dst_layer not in upsampled:
                upsampled.add(dst_layer)
                src_row = next(x for x in rows if x.name.startswith(f"model.{src}.cv2"))
                n = batch * src_row.cout * src_row.ho * src_row.wo * elem
                out.append(Row(f"upsample {src}", "strided copy into cat", "aten copy", 0,
                               hbm=5.0 * n))  # read once, write 4x
        name = r.name.removeprefix("model.")
        if kind == "mlp":
            name = name.removesuffix(".0") + " (pair)"
        runs = row_launches(r, batch, dtype, arch, nchw_input=r.name == "model.0", next_row=nxt)
        out += launch_rows(name, runs, fp32, mlp_pair=kind == "mlp")
        if r.name.endswith("attn.qkv"):
            out += _attention_rows(name, r, batch, dtype, fp32)
    side = [(imgsz // s, imgsz // s) for s in (8, 16, 32)]
    A = sum(h * w for h, w in side)
    feats = torch.empty(batch, A, 144, dtype=dtype, device="meta").permute(0, 2, 1)
    dec = torch.empty(batch, 84, A, dtype=torch.float32, device="meta")
    grid, args, kwargs = decode_args(feats, dec, side, (8.0, 16.0, 32.0), 16)
    out.append(Row("decode", "box decode", f"{kwargs['BLOCK_A']}x{kwargs['BLOCK_C']} "
                   f"w{kwargs['num_warps']}", grid[0], hbm=_nbytes(feats) + _nbytes(dec),
                   warps=kwargs["num_warps"], variant=(_box_decode_kernel, args, kwargs)))
    return [r._replace(note=under_wave_note(r, arch)) for r in out]


# ------------------------------------------------------------------------------------------------
# compile data (optional, cached)
# ------------------------------------------------------------------------------------------------
def default_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "yolov12_kernels" / f"plan_report-triton{triton.__version__}.json"


class CompileCache:
    """{variant key: {"regs", "spill", "shared", "mma"}}, kept in a JSON file between runs
    (compiling every variant of x at b32 takes minutes on a small machine)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._dir = None
        self.data = {}
        if path is not None and path.is_file():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}

    def get(self, variant, cc: int) -> dict:
        from . import compile_check, conv_check
        if variant[0] == "attention":
            key = f"sm_{cc}|{compile_check.specialise(variant[1], cc)[0]}"
        else:
            key = f"sm_{cc}|{conv_check.specialization_key(*variant)}"
        if key not in self.data:
            # registers and spills come from ptxas' report of this very compile, which Triton
            # prints only when asked and only when it compiles (not on a cache hit): both set
            # here with Triton's own scoped knobs, the cache a fresh directory of our own
            from triton import knobs
            with knobs.nvidia.scope(), knobs.cache.scope():
                knobs.nvidia.dump_ptxas_log = True
                knobs.cache.dir = self._compile_dir()
                if variant[0] == "attention":
                    k, regs, spill = compile_check.compile_run(variant[1], cc)
                else:
                    k, u = conv_check.compile_with_usage(*variant, cc)
                    regs, spill = u["regs"], u["spill"]
            if regs is None or regs < 0:
                raise RuntimeError(f"ptxas printed no register report for {key}")
            ptx = k.asm["ptx"]
            mma = "wgmma" if "wgmma" in ptx else "mma.sync" if "mma.sync" in ptx else "none"
            self.data[key] = dict(regs=regs, spill=max(spill or 0, 0),
                                  shared=k.metadata.shared, mma=mma)
            self.save()
        return self.data[key]

    def _compile_dir(self) -> str:
        if self._dir is None:
            from .conv_check import fresh_cache_dir
            self._dir = fresh_cache_dir("yolov12-plan-report-")
        return self._dir

    def save(self):
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=0, sort_keys=True))
            tmp.replace(self.path)


def ctas_per_sm(arch: str, regs: int, warps: int, shared: int) -> int:
    """CTAs that fit on one SM at once: registers (allocated per warp in units of 256),
    shared memory (+1 KB per CTA reserved), warps, CTAs."""
    lim = SM_LIMITS[arch]
    per_warp = _cdiv(max(regs, 1) * 32, 256) * 256
    return max(0, min(lim["regs"] // (per_warp * warps), lim["smem"] // (shared + 1024),
                      lim["warps"] // warps, lim["ctas"]))


# ------------------------------------------------------------------------------------------------
# figures and tables
# ------------------------------------------------------------------------------------------------
def roofline_us(row: Row, arch: str) -> float:
    p = PEAKS[arch]
    return 1e6 * max(row.tc_issued / (p.tensor_tflops * 1e12), row.fma / (p.fp32_tflops * 1e12),
                     row.hbm / (p.tb_per_s * 1e12))


def waves(row: Row, arch: str) -> float:
    from .conv import ARCHS
    return row.programs / ARCHS[arch][0]


def totals(rows: list[Row], arch: str) -> dict:
    tc_i = sum(r.tc_issued for r in rows)
    tc_n = sum(r.tc_needed for r in rows)
    mlp = [r for r in rows if r.kernel.startswith("mlp")]
    return {"launches": len(rows), "tc_issued_gflop": tc_i / 1e9, "tc_needed_gflop": tc_n / 1e9,
            "padding": tc_i / tc_n if tc_n else 1.0, "fma_gflop": sum(r.fma for r in rows) / 1e9,
            "hbm_mb": sum(r.hbm for r in rows) / 1e6,
            "w_reads_mb": sum(r.w_reads for r in rows) / 1e6,
            "mlp_w_reads_mb": sum(r.w_reads for r in mlp) / 1e6,
            "roofline_us": sum(roofline_us(r, arch) for r in rows),
            "under_one_wave": sum(1 for r in rows if r.programs and waves(r, arch) < 1),
            "under_one_wave_no_reason": sum(1 for r in rows if r.programs and waves(r, arch) < 1
                                            and not r.note)}


def _fmt(v: float, digits: int = 3) -> str:
    if v == 0:
        return "0"
    return f"{v:.{max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))}f}" if abs(v) < 1000 \
        else f"{v:,.0f}"


def table(rows: list[Row], arch: str, compiled: CompileCache | None = None) -> str:
    head = ["#", "layer", "kernel", "config", "programs", "waves", "TC GFLOP issued / needed",
            "HBM≥ MB", "W reads MB"]
    if compiled is not None:
        head += ["regs", "spill B", "smem KB", "CTA/SM", "MMA"]
    head += ["roofline µs", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows):
        tc = (f"{_fmt(r.tc_issued / 1e9)} / {_fmt(r.tc_needed / 1e9)} "
              f"({r.tc_issued / r.tc_needed:.2f}×)") if r.tc_needed else (
            f"FMA {_fmt(r.fma / 1e9)}" if r.fma else "-")
        cells = [str(i), r.layer, r.kernel, r.config, str(r.programs or "-"),
                 f"{waves(r, arch):.2f}" if r.programs else "-", tc, _fmt(r.hbm / 1e6),
                 _fmt(r.w_reads / 1e6) if r.w_reads else "-"]
        if compiled is not None:
            if r.variant is None:
                cells += ["-"] * 5
            else:
                c = compiled.get(r.variant, _CC[arch])
                cells += [str(c["regs"]), str(c["spill"]), f"{c['shared'] / 1024:.0f}",
                          str(ctas_per_sm(arch, c["regs"], r.warps, c["shared"])), c["mma"]]
        cells += [_fmt(roofline_us(r, arch)), r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def totals_line(scale: str, batch: int, arch: str, dtype, t: dict) -> str:
    return (f"| {scale} | {batch} | {arch} | {str(dtype).removeprefix('torch.')} | {t['launches']} "
            f"| {_fmt(t['tc_issued_gflop'])} / {_fmt(t['tc_needed_gflop'])} "
            f"({t['padding']:.3f}×) | {_fmt(t['fma_gflop'])} | {_fmt(t['hbm_mb'])} "
            f"| {_fmt(t['w_reads_mb'])} | {_fmt(t['mlp_w_reads_mb'])} | {t['under_one_wave']} "
            f"({t['under_one_wave_no_reason']} without a reason) "
            f"| {_fmt(t['roofline_us'])} |")


TOTALS_HEAD = ("| scale | batch | arch | dtype | launches | TC GFLOP issued / needed | FMA GFLOP "
               "| HBM≥ MB | W reads MB | MLP W reads MB | launches < 1 wave | roofline µs |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", nargs="+", default=["n"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1])
    ap.add_argument("--arch", nargs="+", default=["sm90"], choices=sorted(PEAKS))
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--compile", action="store_true",
                    help="registers, spills, shared memory, CTAs/SM from the compile report")
    ap.add_argument("--cache", default=None,
                    help=f"compile data cache (default {default_cache()}; 'none': no cache)")
    ap.add_argument("--totals-only", action="store_true")
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    cache = None
    if args.compile:
        path = None if args.cache == "none" else Path(args.cache or default_cache())
        cache = CompileCache(path)
    summary = []
    for arch in args.arch:
        for scale in args.scale:
            for batch in args.batch:
                rows = plan_rows(scale, batch, arch, dtype, args.imgsz)
                t = totals(rows, arch)
                summary.append(totals_line(scale, batch, arch, dtype, t))
                if not args.totals_only:
                    print(f"\n### YOLOv12-{scale}, batch {batch}, {args.imgsz}×{args.imgsz}, "
                          f"{args.dtype}, {arch} ({PEAKS[arch].device})\n")
                    print(table(rows, arch, cache))
    print("\n" + TOTALS_HEAD + "\n" + "\n".join(summary))
    print("\nPeaks: " + "; ".join(f"{a}: {p.device}, {p.tensor_tflops:g} TFLOP/s tensor, "
                                  f"{p.fp32_tflops:g} fp32, {p.tb_per_s:g} TB/s — {p.source}"
                                  for a, p in PEAKS.items() if a in args.arch))
    print("Arithmetic from shapes and configurations, not measurements.")
    return 0


if __name__ == "__main__":
    # before the kernels are imported: the attention backend's GPU configurations, not the
    # interpreter's (the conv, MLP and depthwise launchers take the arch explicitly)
    os.environ.pop("TRITON_INTERPRET", None)
    sys.exit(main())
