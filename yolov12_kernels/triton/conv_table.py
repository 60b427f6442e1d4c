"""The fused conv kernels' launch plan for YOLOv12, printed as markdown (for docs/fusion.md).

    python -m yolov12_kernels.triton.conv_table [--scale n] [--batch 1 32] [--dtype float16]

Per layer: the kernel that runs it and its fixed configuration on each arch class (BLOCK_M x
BLOCK_N x BLOCK_K, warps, stages; ``conv.conv_config``, ``mlp.mlp_config``,
``dwconv.dwconv_config``); then the launch count of one fused forward. Pure Python: no GPU, no
compile.
"""
from __future__ import annotations

import argparse
import os

os.environ.pop("TRITON_INTERPRET", None)  # the GPU configurations, not the interpreter's

import torch  # noqa: E402

from ..conv_shapes import model_convs  # noqa: E402


def launch_plan(scale: str, imgsz: int = 640) -> dict:
    """Kernel launches of one fused forward, by kind (see docs/fusion.md for the sequence)."""
    rows = model_convs(scale, imgsz)
    mlp = sum(r.role == "mlp1" for r in rows)
    c3k = sum(r.name.endswith(".cv3") for r in rows)  # one C3k per cv3
    plan = {
        "input cast to fp16 channels-last": 1,
        "dense conv (1x1 / 3x3 implicit GEMM)": sum(not r.depthwise and not r.role.startswith(
            "mlp") for r in rows),
        "depthwise 3x3": sum(r.depthwise for r in rows),
        "ABlock MLP pair": mlp,
        "area attention + pe (fused core)": sum(r.name.endswith("attn.qkv") for r in rows),
        "nearest 2x upsample into its concat slice": 2,
        "box decode": 1,
    }
    return {"plan": plan, "total": sum(plan.values()), "c3k_merge": c3k,
            "dw_into_1x1": sum(r.depthwise for r in rows)}


def _config(r, arch, batch, dtype):
    from . import conv as K
    from . import dwconv as D
    from . import mlp as Mk
    m = batch * r.ho * r.wo
    if r.depthwise:
        c = D.dwconv_config(r.cin, m, arch, dtype, r.k, r.stride)
        return "dwconv", f"{c.block_m}x{c.block_c} w{c.num_warps}"
    if r.role == "mlp1":
        c = Mk.mlp_config(r.cin, dtype, m, r.cout, arch)
        if c.two_gemms:
            return "mlp", "two GEMMs (conv)"
        split = f" split{c.split_h}" if c.split_h > 1 else ""
        return "mlp", f"{c.block_m}x{c.block_h}x{c.block_k} w{c.num_warps}s{c.num_stages}{split}"
    c = K.conv_config(arch, dtype, m, r.cout, r.cin, r.k, r.stride)
    kind = "conv" + ("·taps-in-K" if K.taps_in_k(r.k, r.cin) else "")
    split = f" split{c.split_k}" if c.split_k > 1 else ""
    return kind, f"{c.block_m}x{c.block_n}x{c.block_k} w{c.num_warps}s{c.num_stages}{split}"


def table(scale: str, batches, dtype: torch.dtype, archs=("sm80", "sm90")) -> str:
    rows = [r for r in model_convs(scale) if r.role != "mlp2"]
    head = ["layer", "in → out", "k/s", "map", "epilogue", "kernel"] + [
        f"{a} b{b}" for b in batches for a in archs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        epi = ("silu " if r.silu else "") + ("+γ·res" if r.gamma else "+res" if r.residual else "")
        if r.out_total:
            epi += f" →cat[{r.out_off}:{r.out_off + r.cout}/{r.out_total}]"
        width = f"{r.cin}→{r.cout}" + (" (dw)" if r.depthwise else "")
        kind = _config(r, archs[0], batches[0], dtype)[0]
        cfgs = [_config(r, a, b, dtype)[1] for b in batches for a in archs]
        name = r.name.removeprefix("model.") + (" (mlp pair)" if r.role == "mlp1" else "")
        lines.append(f"| {name} | {width} | {r.k}/{r.stride} | {r.h}×{r.w} | {epi.strip()} | "
                     f"{kind} | " + " | ".join(cfgs) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="n")
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--dtype", default="float16")
    args = ap.parse_args(argv)
    print(table(args.scale, args.batch, getattr(torch, args.dtype)))
    for s in ("n", "s", "m", "l", "x"):
        p = launch_plan(s)
        print(f"\n{s}: {p['total']} launches per forward: " + ", ".join(
            f"{k} {v}" for k, v in p["plan"].items())
            + f"; optional: -{p['c3k_merge']} merging each C3k's cv1|cv2 into one GEMM, "
            f"-{p['dw_into_1x1']} fusing each depthwise conv into the 1x1 after it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
