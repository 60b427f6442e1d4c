"""Latency vs params per scale (the paper's Figure 1 shape) from e2e records, as a PNG.

One curve per (device, dtype) measured with our fast path at batch 1, beside the paper's T4
TensorRT FP16 points. The latency axis is logarithmic: a CPU at 640 is two orders of magnitude
slower than a T4, and both must stay readable.
"""
from __future__ import annotations

from pathlib import Path

from ..model import PAPER, SCALES
from ..outputs import writing
from .tables import FAST_PROVIDERS, _size, latest


def _curves(records: list[dict]) -> dict:
    """{(device, dtype, size): [(params_M, median_ms, scale)]} of the fast path at batch 1."""
    best: dict = {}
    for r in latest(records):
        if r.get("experiment", "baseline") != "baseline" or r["batch"] != 1:
            continue
        if r["name"] not in SCALES or r["provider"] not in FAST_PROVIDERS:
            continue
        key = (r["device"], r["dtype"], _size(r), r["name"])
        # fast-graph preferred over fast, as in the tables
        if key not in best or FAST_PROVIDERS.index(r["provider"]) < \
                FAST_PROVIDERS.index(best[key]["provider"]):
            best[key] = r
    curves: dict = {}
    for (device, dtype, size, scale), r in best.items():
        params = r.get("params")
        params_m = params / 1e6 if params else PAPER[scale]["params_M"]
        curves.setdefault((device, dtype, size), []).append((params_m, r["median_ms"], scale))
    for pts in curves.values():
        pts.sort()
    return curves


def plot_latency_vs_params(records: list[dict], path: str | Path) -> Path | None:
    """Write the plot to ``path``; returns it, or None when there is nothing to plot."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    curves = _curves(records)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5.8))
    xs = [PAPER[s]["params_M"] for s in SCALES]
    ys = [PAPER[s]["t4_ms"] for s in SCALES]
    ax.plot(xs, ys, "k--o", label="paper: YOLOv12, T4 TensorRT FP16 (Table 1)")
    for x, y, s in zip(xs, ys, SCALES):
        ax.annotate(s.upper(), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    for (device, dtype, size), pts in sorted(curves.items()):
        px, py, ps = zip(*pts)
        line, = ax.plot(px, py, "-s", label=f"measured: {device}, {dtype}, {size} (our fast path)")
        for x, y, s in pts:
            ax.annotate(s.upper(), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8,
                        color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("latency, batch 1 (ms, log scale)")
    ax.set_title("YOLOv12 latency vs parameters (forward pass only)")
    ax.grid(True, which="both", alpha=0.3)
    # below the axes: measured and paper points can sit anywhere in the plot area
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1)
    fig.tight_layout()
    path = Path(path)
    try:
        with writing(path) as tmp:  # whole or not at all; the format from the name's suffix
            fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
