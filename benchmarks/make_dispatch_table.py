"""Derive ``yolov12_kernels/dispatch_table.py`` (what "auto" picks on a GPU) from kernel records.

    python -m benchmarks.make_dispatch_table [RECORDS ...]   # default: benchmarks/results

Reads every ``suite == "kernel"`` record (``benchmarks/bench_attention.py``, ``bench_pe.py``)
that carries a KERNEL time, maps each provider to the backend that runs it, and ranks the backends
by median time per (GPU architecture, op, pass, size class, memory format). Size class: batch x
channels x tokens of the call, below 2^20 "S", below 2^23 "M", else "L" (YOLOv12 at 640: n..x at
batch 1 are S, n at batch 32 is M, l/x at batch 32 are L). Where a class holds several records,
backends are ranked by their summed median over the records where all of them were measured.

Kernel time only: a record replayed from a CUDA graph (``bench_attention --graph``: its
``median_ms``, with ``cuda_graph: true``) or timed both ways (``--kernel-time``: its
``graph_median_ms``). Eager timings are left out: at batch 1 they measure the host (the first H100
run timed Triton slower at batch 1 than at batch 32), and what the fast path runs is a CUDA graph.
Memory format: ``layout`` of the record ("contiguous" or "channels_last": the qkv / v the call
read; records without the field were NCHW), so the fused NHWC path's core is ranked from
channels-last measurements only. Without such records the table is empty and "auto" takes
``dispatch.FALLBACK_ORDER``.

Provider -> backend: ``triton``, ``cuda`` and ``flash-attn`` are ours one to one; the ``sdpa``
backend lets PyTorch pick among its flash / memory-efficient / cuDNN kernels, so it is credited
with the SLOWEST of the ``sdpa-*`` rows present (a conservative estimate; ``sdpa-math`` is left
out: PyTorch takes it only when the others cannot run); ``eager`` is the reference backend for the
position perceiver (one cuDNN conv) and for the fused core (the public code path's ops).
Run it after committing new GPU records, and commit the regenerated table with them.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "yolov12_kernels" / "dispatch_table.py"
DEFAULT_RECORDS = REPO / "benchmarks" / "results"

OPS = {"area_attention": "area_attention", "aattn": "fused_area_attention",
       "pe7x7": "position_perceiver"}
ONE_TO_ONE = {"triton": "triton", "cuda": "cuda", "flash-attn": "flash"}
SDPA_KERNELS = ("sdpa-flash", "sdpa-efficient", "sdpa-cudnn")
SIZE_BOUNDS = (1 << 20, 1 << 23)

# GPU names (as torch reports them) -> architecture class
ARCHS = {"H100": "sm90", "H200": "sm90", "H800": "sm90", "GH200": "sm90",
         "A100": "sm80", "A800": "sm80", "A30": "sm80", "A10": "sm86", "A40": "sm86",
         "RTX 30": "sm86", "L4": "sm89", "L40": "sm89", "RTX 40": "sm89", "T4": "sm75",
         "RTX 20": "sm75"}


def arch_of(device_name: str) -> str | None:
    return next((arch for key, arch in ARCHS.items() if key in device_name), None)


def size_class(size: int) -> str:
    return "S" if size < SIZE_BOUNDS[0] else "M" if size < SIZE_BOUNDS[1] else "L"


def problem_size(rec: dict) -> int:
    """batch x channels x tokens of the call a record timed (shape as bench_* record it)."""
    shape = rec["shape"]
    if rec["name"].startswith("area_attention/"):  # (B, N, heads, d)
        b, n, h, d = shape
        return b * n * h * d
    b, c, hh, ww = shape  # aattn: qkv (B, 3C, H, W); pe: (B, C, H, W)
    return b * (c // 3 if rec["name"].startswith("aattn/") else c) * hh * ww


def kernel_time_ms(rec: dict) -> float | None:
    """The record's CUDA-graph-replayed median in ms, or None for an eager-only record."""
    if rec.get("graph_median_ms") is not None:
        return rec["graph_median_ms"]
    return rec["median_ms"] if rec.get("cuda_graph") is True else None


def layout_of(rec: dict) -> str:
    """The memory format of the input the record timed: "contiguous" or "channels_last"."""
    return rec.get("layout") or "contiguous"


def backend_times(rows: list[dict], op: str) -> dict[str, float]:
    """{backend: kernel median ms} of one measured case (rows = every provider timed for it,
    each with a kernel time)."""
    by = {r["provider"]: kernel_time_ms(r) for r in rows}
    out = {ONE_TO_ONE[p]: t for p, t in by.items() if p in ONE_TO_ONE}
    sdpa = [by[p] for p in SDPA_KERNELS if p in by]
    if sdpa:
        out["sdpa"] = max(sdpa)
    if "eager" in by and op in ("position_perceiver", "fused_area_attention"):
        out["reference"] = by["eager"]
    return out


def load(paths) -> list[dict]:
    recs = []
    for p in map(Path, paths):
        files = sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
        for f in files:
            recs += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return [r for r in recs if r.get("suite") == "kernel" and r.get("dtype") != "float32"]


def derive(records: list[dict]) -> tuple[dict, dict]:
    """(rankings, evidence): {(arch, op, pass, size class, layout): backends fastest first} and
    the kernel timings behind each ranking. Records without a kernel time are ignored."""
    cases = defaultdict(list)  # one measured case -> its rows (latest date per provider)
    for r in sorted(records, key=lambda r: r.get("date", "")):
        arch, family = arch_of(r["device"]), r["name"].split("/")[0]
        if arch is None or family not in OPS or kernel_time_ms(r) is None:
            continue
        key = (arch, OPS[family], r.get("pass", "fwd"), layout_of(r), r["name"], r["dtype"],
               r["batch"], tuple(r["shape"]))
        cases[key] = [x for x in cases[key] if x["provider"] != r["provider"]] + [r]
    classes = defaultdict(list)
    for (arch, op, passname, layout, name, dtype, batch, _), rows in sorted(cases.items()):
        times = backend_times(rows, op)
        if len(times) > 1:
            cls = (arch, op, passname, size_class(problem_size(rows[0])), layout)
            classes[cls].append((name, dtype, batch, times))
    rankings, evidence = {}, {}
    for cls, cases_ in sorted(classes.items()):
        common = set.intersection(*(set(t) for *_, t in cases_))
        total = {b: sum(t[b] for *_, t in cases_) for b in common}
        rankings[cls] = tuple(sorted(total, key=total.get))
        evidence[cls] = [(name, dtype, batch, {b: round(ms, 4) for b, ms in sorted(t.items())})
                         for name, dtype, batch, t in cases_]
    return rankings, evidence


def render(rankings: dict, evidence: dict, sources: list[str]) -> str:
    lines = ['"""Measured backend rankings for "auto" on GPUs. GENERATED by',
             "``python -m benchmarks.make_dispatch_table`` from the kernel records in",
             f"{', '.join(sources)}; do not edit by hand (see that script for the method).",
             "",
             "Ranked from kernel times only (records replayed from a CUDA graph: bench_attention",
             "--graph or --kernel-time); eager timings, which host overhead decides, are left out.",
             "Key: (GPU architecture, op, pass, size class, memory format of the input); value:",
             "backends, fastest first. Size class of a call: batch x channels x tokens below 2^20",
             'is "S", below 2^23 "M", else "L"; memory format "contiguous" or "channels_last" (the',
             "fused NHWC path's qkv). A key that is not here falls back to",
             "``dispatch.FALLBACK_ORDER``."]
    if not rankings:
        lines += ["",
                  "No record there carries a kernel time (all are eager timings), so RANKINGS is",
                  'empty and "auto" takes ``dispatch.FALLBACK_ORDER`` on every GPU.']
    lines += ['"""', "from __future__ import annotations", "",
             f"SIZE_BOUNDS = ({SIZE_BOUNDS[0]}, {SIZE_BOUNDS[1]})", "", "RANKINGS = {"]
    for cls, order in rankings.items():
        lines.append(f"    {cls!r}: {order!r},")
    lines += ["}", "", "# the median times (ms) behind each ranking: (record name, dtype, batch, "
              "{backend: ms})", "EVIDENCE = {"]
    for cls, rows in evidence.items():
        lines.append(f"    {cls!r}: [")
        lines += [f"        {row!r}," for row in rows]
        lines.append("    ],")
    lines += ["}", "", "",
              "def size_class(size: int | None) -> str | None:",
              '    if size is None:',
              '        return None',
              '    return "S" if size < SIZE_BOUNDS[0] else "M" if size < SIZE_BOUNDS[1] else "L"',
              "", "",
              "def ranking(capability: tuple[int, int], op: str, needs_grad: bool,",
              "            size: int | None, channels_last: bool = False) -> tuple[str, ...]:",
              '    """Measured backends for this call, fastest first; () where nothing was measured."""',
              '    arch = f"sm{capability[0]}{capability[1]}"',
              '    key = (arch, op, "fwd+bwd" if needs_grad else "fwd", size_class(size),',
              '           "channels_last" if channels_last else "contiguous")',
              "    return RANKINGS.get(key, ())", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="*", default=[str(DEFAULT_RECORDS)],
                    help="kernel .jsonl files or directories (default benchmarks/results)")
    ap.add_argument("--out", default=str(TABLE), help="where to write the table")
    ap.add_argument("--check", action="store_true",
                    help="do not write: exit 1 if the table differs from what the records give")
    args = ap.parse_args(argv)
    sources = [str(Path(p).resolve().relative_to(REPO)) if Path(p).resolve().is_relative_to(REPO)
               else str(p) for p in args.records]
    text = render(*derive(load(args.records)), sources)
    if args.check:
        same = Path(args.out).read_text() == text
        print("dispatch table is up to date" if same else
              f"{args.out} differs from what the records give: rerun without --check")
        return 0 if same else 1
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
