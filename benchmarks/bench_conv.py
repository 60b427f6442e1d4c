"""Fused conv kernels vs what the model runs today, layer by layer (issue 13, stage 1).

    python -m benchmarks.bench_conv [--scales n x] [--batches 1 32] [--dtypes float16]
                                    [--kinds conv dwconv mlp decode] [--rep 50] [--out DIR]

For each distinct layer of ``yolov12_kernels.conv_shapes.model_convs`` (640x640):

* ``triton``: the fused op (``fused_conv2d`` with its epilogue and concat slice,
  ``fused_depthwise_conv2d``, ``fused_mlp`` for the ABlock MLP pair, ``box_decode``) on
  channels-last tensors;
* ``eager``: the same computation as the fast path runs it today: NCHW ``F.conv2d`` with bias, then
  SiLU, the residual add (and ``gamma *``), and for a concat slice the ``cat`` copy of its share;
  the Detect decode as ``reference.box_decode``;
* ``eager-nhwc``: the same ops on channels-last tensors (cuDNN without layout conversions).

Each provider is captured in a CUDA graph of ``--inner`` calls and timed per replay with CUDA
events (the GPU time a graph-replayed forward pays, host overhead excluded), median of ``--rep``.
Records ``conv/<scale>/<layer>`` (provider as above, ``pass`` fwd) are appended to kernel.jsonl in
a new runs/conv/<date-time> (or ``--out``) with FLOPs and the bytes the op must move. Small batch-1 layers
stay L2-resident for every provider alike (no input rotation). Exits with one line (status 0)
without a GPU.
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from yolov12.bench.records import (
    append_records,
    cuda_graph_replay,
    make_record,
    new_run_dir,
    time_ms,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _conv_case(r, batch, dtype, dev):
    """(triton fn, eager fn, nhwc fn, flops, bytes) of one dense conv row."""
    from yolov12_kernels.conv import fused_conv2d

    def t(*s, scale=1.0):
        return torch.randn(*s, device=dev, dtype=dtype) * scale
    x = t(batch, r.cin, r.h, r.w)
    w = t(r.cout, r.cin, r.k, r.k, scale=(r.cin * r.k * r.k) ** -0.5)
    b = t(r.cout)
    res = t(batch, r.cout, r.ho, r.wo) if r.residual else None
    gamma = t(r.cout) if r.gamma else None
    total = r.out_total or r.cout
    cl = torch.channels_last
    x_cl, w_cl = x.contiguous(memory_format=cl), w.contiguous(memory_format=cl)
    res_cl = res.contiguous(memory_format=cl) if res is not None else None
    buf = torch.empty(batch, total, r.ho, r.wo, device=dev, dtype=dtype, memory_format=cl)
    out = buf[:, r.out_off:r.out_off + r.cout]
    buf_nchw = torch.empty(batch, total, r.ho, r.wo, device=dev, dtype=dtype)

    def fused():
        return fused_conv2d(x_cl, w_cl, b, r.stride, silu=r.silu, residual=res_cl, gamma=gamma,
                            out=out)

    def unfused(xx, ww, rr, dst):
        y = F.conv2d(xx, ww, b, r.stride, r.k // 2)
        if r.silu:
            y = F.silu(y)
        if rr is not None:
            y = rr + (gamma.view(1, -1, 1, 1) * y if gamma is not None else y)
        if r.out_total:
            dst[:, r.out_off:r.out_off + r.cout].copy_(y)  # its share of the cat
        return y

    es = x.element_size()
    moved = (x.numel() + w.numel() + batch * r.cout * r.ho * r.wo * (2 if r.residual else 1)) * es
    return (fused, lambda: unfused(x, w, res, buf_nchw),
            lambda: unfused(x_cl, w_cl, res_cl, buf), r.gflops(batch) * 1e9, moved)


def _dw_case(r, batch, dtype, dev):
    from yolov12_kernels.dwconv import fused_depthwise_conv2d
    cl = torch.channels_last
    x = torch.randn(batch, r.cin, r.h, r.w, device=dev, dtype=dtype)
    w = torch.randn(r.cin, 1, 3, 3, device=dev, dtype=dtype) / 3
    b = torch.randn(r.cin, device=dev, dtype=dtype)
    x_cl = x.contiguous(memory_format=cl)
    out = torch.empty_like(x_cl)
    moved = 2 * x.numel() * x.element_size()
    return (lambda: fused_depthwise_conv2d(x_cl, w, b, silu=True, out=out),
            lambda: F.silu(F.conv2d(x, w, b, 1, 1, groups=r.cin)),
            lambda: F.silu(F.conv2d(x_cl, w, b, 1, 1, groups=r.cin)), r.gflops(batch) * 1e9, moved)


def _mlp_case(r, batch, dtype, dev):
    from yolov12_kernels.mlp import fused_mlp
    from yolov12_kernels.triton.mlp import pack_w2
    cl = torch.channels_last
    C, hid = r.cin, r.cout
    x = torch.randn(batch, C, r.h, r.w, device=dev, dtype=dtype)
    w1 = torch.randn(hid, C, 1, 1, device=dev, dtype=dtype) / C ** 0.5
    w2 = torch.randn(C, hid, 1, 1, device=dev, dtype=dtype) / hid ** 0.5
    b1, b2 = torch.randn(hid, device=dev, dtype=dtype), torch.randn(C, device=dev, dtype=dtype)
    x_cl, w1_cl, w2_p = x.contiguous(memory_format=cl), w1.contiguous(memory_format=cl), pack_w2(w2)
    out = torch.empty_like(x_cl)

    def unfused(xx):
        return xx + F.conv2d(F.silu(F.conv2d(xx, w1, b1)), w2, b2)
    moved = 2 * x.numel() * x.element_size()
    return (lambda: fused_mlp(x_cl, w1_cl, b1, w2_p, b2, out=out), lambda: unfused(x),
            lambda: unfused(x_cl), 2 * r.gflops(batch) * 1e9, moved)


def _decode_case(batch, dtype, dev, imgsz):
    from yolov12_kernels import reference
    from yolov12_kernels.box_decode import box_decode
    strides = (8.0, 16.0, 32.0)
    shapes = [(imgsz // int(s), imgsz // int(s)) for s in strides]
    A = sum(h * w for h, w in shapes)
    feats = torch.randn(batch, A, 144, device=dev, dtype=dtype).permute(0, 2, 1)
    feats_nchw = feats.contiguous()
    moved = feats.numel() * feats.element_size() + batch * 84 * A * 4
    return (lambda: box_decode(feats, shapes, strides),
            lambda: reference.box_decode(feats_nchw.float(), shapes, strides),
            lambda: reference.box_decode(feats.float(), shapes, strides), 0.0, moved)


def cases(scale: str, kinds, batch: int, dtype, dev, imgsz: int = 640):
    """(layer, kind, (triton fn, eager fn, eager-nhwc fn, flops, bytes)) per distinct layer;
    every fn returns its result (the benchmark ignores it, the tests compare them)."""
    from yolov12_kernels.conv_shapes import model_convs
    seen = set()
    for r in model_convs(scale, imgsz):
        kind = "dwconv" if r.depthwise else "mlp" if r.role == "mlp1" else (
            None if r.role == "mlp2" else "conv")
        key = r._replace(name="", role=r.role if kind == "mlp" else "")
        if kind not in kinds or key in seen:
            continue
        seen.add(key)
        make = {"conv": _conv_case, "dwconv": _dw_case, "mlp": _mlp_case}[kind]
        yield r.name.removeprefix("model."), kind, make(r, batch, dtype, dev)
    if "decode" in kinds:
        yield "decode", "decode", _decode_case(batch, dtype, dev, imgsz)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", nargs="+", default=["n"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--dtypes", nargs="+", default=["float16"], choices=list(DTYPES))
    ap.add_argument("--kinds", nargs="+", default=["conv", "dwconv", "mlp", "decode"])
    ap.add_argument("--rep", type=int, default=50)
    ap.add_argument("--inner", type=int, default=20, help="calls per captured graph")
    ap.add_argument("--out", default=None,
                    help="results directory (default: a new runs/conv/<date-time>; "
                         "--out benchmarks/results updates the committed records)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_conv: no CUDA GPU visible; nothing to measure")
        return 0
    dev = torch.device("cuda")
    records, totals = [], {}
    print(f"{'layer':<26} {'kind':<6} {'dtype':<8} {'b':>3} {'triton ms':>10} {'eager ms':>9} "
          f"{'nhwc ms':>8} {'speedup':>7} {'TFLOP/s':>7} {'GB/s':>6}")
    with torch.inference_mode():
        for scale in args.scales:
            for dtype_name in args.dtypes:
                for batch in args.batches:
                    for name, kind, (fused, eager, nhwc, flops, moved) in cases(
                            scale, args.kinds, batch, DTYPES[dtype_name], dev):
                        ms = {}
                        for provider, fn in (("triton", fused), ("eager", eager),
                                             ("eager-nhwc", nhwc)):
                            t = time_ms(cuda_graph_replay(fn, args.inner), dev, warmup=5, rep=args.rep)
                            t = {k: v / args.inner if k.endswith("_ms") else v
                                 for k, v in t.items()}
                            ms[provider] = t["median_ms"]
                            records.append(make_record(
                                suite="kernel", name=f"conv/{scale}/{name}", provider=provider,
                                device=dev, dtype=DTYPES[dtype_name], batch=batch, shape=kind,
                                timing=t, **{"pass": "fwd"}, flops=flops, bytes_moved=moved))
                        key = (scale, dtype_name, batch)
                        tot = totals.setdefault(key, [0.0, 0.0, 0.0])
                        for i, p in enumerate(("triton", "eager", "eager-nhwc")):
                            tot[i] += ms[p]
                        tm = ms["triton"] * 1e-3
                        print(f"{name:<26} {kind:<6} {dtype_name:<8} {batch:>3} "
                              f"{ms['triton']:>10.4f} {ms['eager']:>9.4f} "
                              f"{ms['eager-nhwc']:>8.4f} {ms['eager'] / ms['triton']:>6.2f}x "
                              f"{flops / tm / 1e12:>7.1f} {moved / tm / 1e9:>6.0f}")
    for (scale, dt, b), (tri, eag, nhwc) in totals.items():
        print(f"sum over distinct layers, {scale} {dt} b{b}: triton {tri:.3f} ms, eager "
              f"{eag:.3f} ms, eager-nhwc {nhwc:.3f} ms")
    path = append_records(records, "kernel", args.out or new_run_dir("conv"))
    print(f"{len(records)} records appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
