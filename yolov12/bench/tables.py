"""Markdown tables in the paper's layouts, rendered from e2e records only (no timing here).

* ``table1`` — per scale at batch 1: params, GFLOPs (convs, as the paper counts, + attention),
  latency of our fast path (median, p20-p80) beside the paper's mAP / params / GFLOPs / T4 latency;
* ``table4`` — FP32 and FP16 latency per scale, one column pair per device, merged from every
  record given (several runs, several machines);
* ``baselines`` — eager / eager-graph / compile / compile-max-autotune / fast-noconv[-graph] /
  fast / fast-graph / onnxruntime side by side, with speed-ups as ratios;
* ``ablations`` — area vs global attention at P4, fused vs unfused attention, position-perceiver
  kernel size and MLP ratio (latency / params / GFLOPs measured, mAP from the paper);
* ``batch_sweep`` — latency, images/s and peak memory per batch size.

Where several records share a key (same device, name, provider, dtype, batch, shape, experiment),
the newest (``date``) wins, so re-running a measurement updates the tables.
"""
from __future__ import annotations

from collections import defaultdict

from ..model import PAPER, SCALES
from .ablations import PAPER_AREA, PAPER_FLASH, PAPER_MLP, PAPER_PE
from .e2e import PROVIDERS

FAST_PROVIDERS = ("fast-graph", "fast")  # our fast path, preferred first
SHORT_DTYPE = {"float32": "FP32", "float16": "FP16", "bfloat16": "BF16"}


def _key(r: dict) -> tuple:
    return (r["device"], r["name"], r["provider"], r["dtype"], r["batch"], tuple(r["shape"]),
            r.get("experiment", "baseline"))


def latest(records: list[dict]) -> list[dict]:
    """One record per key: the newest."""
    best: dict = {}
    for r in records:
        if r.get("suite") != "e2e":
            continue
        k = _key(r)
        if k not in best or r.get("date", "") >= best[k].get("date", ""):
            best[k] = r
    return list(best.values())


def _ms(t: float | None) -> str:
    if t is None:
        return "–"
    return f"{t:.3g}" if t < 10 else f"{t:.1f}" if t < 100 else f"{t:.0f}"


def _spread(r: dict) -> str:
    return f"{_ms(r['p20_ms'])}–{_ms(r['p80_ms'])}"


def _size(r: dict) -> str:
    return "x".join(str(s) for s in r["shape"][2:])


def _fast(rows: list[dict]) -> dict | None:
    """Our fast path's record among rows: fast-graph when measured, else fast."""
    for p in FAST_PROVIDERS:
        for r in rows:
            if r["provider"] == p:
                return r
    return None


def _groups(records, experiment: str) -> dict:
    """{(device, dtype, size, batch): [records]} of one experiment."""
    out = defaultdict(list)
    for r in latest(records):
        if r.get("experiment", "baseline") == experiment:
            out[(r["device"], r["dtype"], _size(r), r["batch"])].append(r)
    return out


def _header(cols: list[str]) -> list[str]:
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


# --------------------------------------------------------------------------------------------

def table1(records: list[dict]) -> str:
    """Table 1 layout, one table per (device, dtype, size) at batch 1."""
    out = []
    for (device, dtype, size, batch), rows in sorted(_groups(records, "baseline").items()):
        if batch != 1:
            continue
        lines = [f"**Table 1 layout** — {device}, {dtype}, batch 1, {size} "
                 "(latency: our fast path; paper: COCO mAP, T4 TensorRT FP16)", ""]
        lines += _header(["model", "params", "params (paper)", "GFLOPs@640 convs",
                          "GFLOPs (paper)", "+ attention", "latency ms (median)", "p20–p80",
                          "provider", "paper ms: T4 TensorRT FP16 (another device)",
                          "paper mAP"])
        for scale in SCALES:
            r = _fast([x for x in rows if x["name"] == scale])
            if r is None:
                continue
            p = PAPER[scale]
            lines.append(
                f"| {scale} | {r.get('params', 0) / 1e6:.2f} M | {p['params_M']} M | "
                f"{r.get('gflops_conv', float('nan')):.1f} | {p['gflops']} | "
                f"{r.get('gflops_attention', float('nan')):.2f} | {_ms(r['median_ms'])} | "
                f"{_spread(r)} | {r['provider']} | {p['t4_ms']} | {p['mAP']} |")
        if len(lines) > 4:
            out.append("\n".join(lines))
    return "\n\n".join(out)


def table4(records: list[dict], size: str | None = None) -> str:
    """Table 4 layout: rows scales, a FP32 and a FP16 column per device (our fast path, batch 1).

    ``size`` ("HxW"): the input size to show; default 640x640 when measured, else the largest.
    """
    if size is None:
        sizes = {k[2] for k, rows in _groups(records, "baseline").items() if k[3] == 1}
        if not sizes:
            return ""
        size = "640x640" if "640x640" in sizes else max(
            sizes, key=lambda s: int(s.split("x")[0]) * int(s.split("x")[1]))
    cells: dict = {}
    devices: list[str] = []
    for (device, dtype, sz, batch), rows in _groups(records, "baseline").items():
        if batch != 1 or sz != size:
            continue
        for scale in SCALES:
            r = _fast([x for x in rows if x["name"] == scale])
            if r is not None:
                cells[(scale, device, dtype)] = r
                if device not in devices:
                    devices.append(device)
    if not cells:
        return ""
    devices.sort()
    dtypes = ["float32", "float16"]
    if any(k[2] == "bfloat16" for k in cells):
        dtypes.append("bfloat16")
    cols = ["model"] + [f"{d} {SHORT_DTYPE[t]}" for d in devices for t in dtypes] + \
        ["paper: T4 TensorRT FP16 (another device)"]
    lines = [f"**Table 4 layout** — latency ms (median) of our fast path at batch 1, {size}; "
             "† = replayed from a CUDA graph (fast-graph)", ""] + _header(cols)
    for scale in SCALES:
        vals = []
        for d in devices:
            for t in dtypes:
                r = cells.get((scale, d, t))
                vals.append("–" if r is None else
                            _ms(r["median_ms"]) + ("†" if r["provider"] == "fast-graph" else ""))
        if any(v != "–" for v in vals):
            lines.append(f"| YOLOv12-{scale.upper()} | " + " | ".join(vals) +
                         f" | {PAPER[scale]['t4_ms']} |")
    return "\n".join(lines)


def _pair(by: dict, slow: str, fast: str) -> str:
    """``slow``'s median over ``fast``'s, e.g. "3.10×", or "–" unless both were measured."""
    if slow in by and fast in by:
        return f"{by[slow]['median_ms'] / by[fast]['median_ms']:.2f}×"
    return "–"


def _noconv_gain(by: dict) -> str:
    """The fused conv kernels' gain: fast path without them over with them, graph-replayed
    where both were."""
    if "fast-noconv-graph" in by and "fast-graph" in by:
        return _pair(by, "fast-noconv-graph", "fast-graph")
    return _pair(by, "fast-noconv", "fast")


def baselines(records: list[dict]) -> str:
    """Providers side by side (same run), with the speed-ups of our fast path: over the eager
    reference, over the reference replayed from a CUDA graph (the fair comparison for fast-graph:
    graphs on both sides), over compile-max-autotune (graph-replayed too on a GPU), and the
    fused conv kernels' own gain (fast-noconv[-graph] over fast[-graph]). A compile row shows its
    compile time beside its latency."""
    out = []
    for (device, dtype, size, batch), rows in sorted(_groups(records, "baseline").items()):
        lines = [f"**Baselines** — {device}, {dtype}, batch {batch}, {size}: latency ms "
                 "(median, p20–p80)", ""]
        lines += _header(["model"] + list(PROVIDERS) +
                         ["fast vs eager", "fast-graph vs eager-graph",
                          "fast vs compile-max-autotune", "fused convs' gain"])
        for scale in SCALES:
            by = {r["provider"]: r for r in rows if r["name"] == scale}
            if not by:
                continue
            cells = []
            for p in PROVIDERS:
                r = by.get(p)
                cell = "–" if r is None else f"{_ms(r['median_ms'])} ({_spread(r)})"
                if r is not None and r.get("compile_s") is not None:
                    cell += f", compiled in {r['compile_s']:.0f} s"
                cells.append(cell)
            best = _fast(list(by.values()))
            ratios = [_pair(by, "eager", best["provider"]) if best else "–",
                      _pair(by, "eager-graph", "fast-graph"),
                      _pair(by, "compile-max-autotune", best["provider"]) if best else "–",
                      _noconv_gain(by)]
            lines.append(f"| {scale} | " + " | ".join(cells + ratios) + " |")
        if len(lines) > 4:
            out.append("\n".join(lines))
    return "\n\n".join(out)


def ablations(records: list[dict]) -> str:
    """The paper's ablations as latency rows (one block per device/dtype/size/batch)."""
    out = []
    for (device, dtype, size, batch), rows in sorted(_groups(records, "ablation").items()):
        by = {(r["name"], r["provider"]): r for r in rows}
        scales = [s for s in SCALES if (s, "fast") in by or (s, "eager") in by]
        for scale in scales:
            lines = [f"**Ablations, YOLOv12-{scale.upper()}** — {device}, {dtype}, batch {batch}, "
                     f"{size}: latency ms (median, p20–p80), measured side by side", ""]
            lines += _header(["what", "setting", "provider", "latency ms", "p20–p80", "ratio",
                              "params (M)", "GFLOPs@640", "paper"])

            def row(what, setting, name, provider, ratio="", paper=""):
                r = by.get((name, provider))
                if r is None:
                    return
                lines.append(f"| {what} | {setting} | {provider} | {_ms(r['median_ms'])} | "
                             f"{_spread(r)} | {ratio} | {r.get('params', 0) / 1e6:.2f} | "
                             f"{r.get('gflops', float('nan')):.2f} | {paper} |")

            def ratio(slow, fast):
                a, b = by.get(slow), by.get(fast)
                if not (a and b):
                    return ""
                q = a["median_ms"] / b["median_ms"]
                return f"{q:.2f}× faster" if q >= 1 else f"{1 / q:.2f}× slower"

            for prov in ("eager", "fast"):
                row("P4 attention", "area (4 areas)", scale, prov,
                    ratio((f"{scale}/p4-global", prov), (scale, prov)),
                    PAPER_AREA if prov == "eager" else "")
                row("P4 attention", "global (area 1)", f"{scale}/p4-global", prov)
            auto = by.get((scale, "fast"))
            row("attention kernel", f"fused ({auto.get('attention_backend', '?')})" if auto
                else "fused", scale, "fast",
                ratio((f"{scale}/attn-reference", "fast"), (scale, "fast")), PAPER_FLASH)
            row("attention kernel", "unfused (reference)", f"{scale}/attn-reference", "fast")
            for k, p in PAPER_PE.items():
                row("pe kernel", f"{k}×{k}", f"{scale}/pe{k}", "fast",
                    paper=f"T4 {p['t4_ms']} ms, mAP {p['mAP']}" if scale == "n" else "")
            for m, p in PAPER_MLP.items():
                row("MLP ratio", f"{m:g}", f"{scale}/mlp{m:g}", "fast",
                    paper=(f"{p['gflops']} GFLOPs, {p['params_M']} M, mAP {p['mAP']}"
                           if scale == "n" else ""))
            if len(lines) > 4:
                out.append("\n".join(lines))
    return "\n\n".join(out)


def batch_sweep(records: list[dict]) -> str:
    """Latency, throughput and peak memory per batch size, eager vs our fast path."""
    per = defaultdict(dict)  # (device, dtype, size, scale) -> {(batch, provider): record}
    for r in latest(records):
        if r.get("experiment") == "batch":
            per[(r["device"], r["dtype"], _size(r), r["name"])][(r["batch"], r["provider"])] = r
    out = []
    for (device, dtype, size, scale), by in sorted(per.items()):
        providers = [p for p in ("eager", "eager-graph", "fast", "fast-graph")
                     if any(k[1] == p for k in by)]
        lines = [f"**Batch sweep, YOLOv12-{scale.upper()}** — {device}, {dtype}, {size}: "
                 "latency ms (median) / images/s / peak memory MiB", ""]
        cols = ["batch"]
        for p in providers:
            cols += [f"{p} ms", f"{p} img/s", f"{p} MiB"]
        lines += _header(cols + ["fast img/s vs eager"])
        for b in sorted({k[0] for k in by}):
            cells = [str(b)]
            for p in providers:
                r = by.get((b, p))
                mem = r.get("peak_mem_mb") if r else None
                cells += ["–", "–", "–"] if r is None else [
                    _ms(r["median_ms"]), f"{b * 1e3 / r['median_ms']:.1f}",
                    "n/m" if mem is None else f"{mem:.0f}"]
            fast = _fast([by[k] for k in by if k[0] == b and k[1] != "eager"])
            eager = by.get((b, "eager"))
            cells.append(f"{eager['median_ms'] / fast['median_ms']:.2f}×"
                         if fast and eager else "–")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("n/m: not measured (PyTorch keeps no allocation peak on the CPU).")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def summary(records: list[dict]) -> str:
    """The first lines a user reads: per device/dtype/size/batch, each scale's latency and
    images/s with our fast path, against the reference model measured in the same run."""
    out = []
    for (device, dtype, size, batch), rows in sorted(_groups(records, "baseline").items()):
        lines = []
        for scale in SCALES:
            by = {r["provider"]: r for r in rows if r["name"] == scale}
            fast = _fast(list(by.values()))
            if fast is None:
                continue
            # against the reference run the same way: graph-replayed when ours is
            eager = by.get("eager-graph" if fast["provider"] == "fast-graph" else "eager",
                           by.get("eager"))
            line = (f"  YOLOv12-{scale}: {_ms(fast['median_ms'])} ms per batch, "
                    f"{batch * 1e3 / fast['median_ms']:.1f} images/s ({fast['provider']})")
            if eager is not None:
                line += (f", {eager['median_ms'] / fast['median_ms']:.2f}x the reference model "
                         f"({eager['provider']}, {_ms(eager['median_ms'])} ms)")
            ort = by.get("onnxruntime")
            if ort is not None:  # the best engine here may be the exported file
                q = fast["median_ms"] / ort["median_ms"]
                line += (f"; the exported .onnx in onnxruntime: {_ms(ort['median_ms'])} ms, "
                         + (f"{q:.2f}x faster" if q >= 1 else f"{1 / q:.2f}x slower")
                         + f" than {fast['provider']}")
            lines.append(line)
        if lines:
            out.append(f"How fast on this machine — {device}, {dtype}, batch {batch}, {size}, "
                       f"forward pass (median):\n" + "\n".join(lines))
    return "\n\n".join(out)


def render_all(records: list[dict], with_table4: bool = True) -> str:
    parts = [table1(records), baselines(records), table4(records) if with_table4 else "",
             ablations(records), batch_sweep(records)]
    return "\n\n".join(p for p in parts if p)
