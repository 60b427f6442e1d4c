"""Position-perceiver benchmark: the 7x7 depthwise conv + bias added onto the attention output
("x + pe(v)" of AAttn) at the P4 shapes of YOLOv12 (640x640 input: 40x40, C = 32 * heads).

    python -m benchmarks.bench_pe [--scales n s] [--batches 1 8 32] [--dtypes float16 ...]

Providers: ``cuda`` (csrc/depthwise_conv.cu, accumulating in place, as the fused AAttn path runs
it) and ``eager`` (``x + F.conv2d(v, w, b, padding=3, groups=C)``, what the public model runs).
Records ``pe7x7/P4/<scale>`` go to benchmarks/results/kernel.jsonl (see records.py) with the
bandwidth roofline: bytes the op must move (read v, read and write x) over the measured
device-to-device copy bandwidth, as a fraction of the measured time. Inputs are rotated over a
ring of buffers larger than the L2 cache so the cache does not flatter small batches.
Exits cleanly (status 0, one line) without a GPU.
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from yolov12.bench.records import append_records, make_record, new_run_dir, time_ms

# P4 (40x40 at 640) channels of the attention layer per scale: heads * 32 (yolov12_facts.md)
P4_CHANNELS = {"n": 64, "s": 128, "m": 256, "l": 256, "x": 384}
P4_HW = (40, 40)
K = 7
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def copy_bandwidth(device, nbytes: int = 512 << 20) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted), median of 20."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = time_ms(lambda: dst.copy_(src), device, warmup=5, rep=20)
    return 2 * nbytes / (t["median_ms"] * 1e-3)


def gpu_memory_context(device) -> tuple[int, float]:
    """(L2 size in bytes, measured copy bandwidth in bytes/s): what the roofline fractions and the
    input rotation (enough sets to defeat L2) of the kernel benchmarks need. Prints both."""
    props = torch.cuda.get_device_properties(device)
    l2 = int(getattr(props, "L2_cache_size", 50 << 20) or (50 << 20))
    bw = copy_bandwidth(device)
    print(f"{torch.cuda.get_device_name(device)}: copy bandwidth {bw / 1e9:.0f} GB/s, "
          f"L2 {l2 >> 20} MiB")
    return l2, bw


def _ring(n_sets: int, make):
    items = [make() for _ in range(n_sets)]
    state = {"i": 0}

    def nxt():
        state["i"] = (state["i"] + 1) % n_sets
        return items[state["i"]]
    return nxt


def bench_one(ext, scale: str, batch: int, dtype: torch.dtype, bw: float, device, rep: int,
              l2_bytes: int) -> list[dict]:
    C = P4_CHANNELS[scale]
    H, W = P4_HW
    shape = (batch, C, H, W)
    es = torch.empty((), dtype=dtype).element_size()
    tensor_bytes = batch * C * H * W * es
    moved = 3 * tensor_bytes  # read v, read x, write x (+ C*49 weights: negligible)
    # enough distinct (v, x) pairs that one lap is well over the L2 size
    n_sets = max(1, min(64, -(-4 * l2_bytes // (2 * tensor_bytes))))
    w = torch.randn(C, 1, K, K, device=device, dtype=dtype) / K
    b = torch.randn(C, device=device, dtype=dtype)
    nxt = _ring(n_sets, lambda: (torch.randn(shape, device=device, dtype=dtype),
                                 torch.randn(shape, device=device, dtype=dtype)))

    def run_cuda():
        v, x = nxt()
        ext.position_perceiver_fwd(v, w, b, x, True)

    def run_eager():
        v, x = nxt()
        return x + F.conv2d(v, w, b, padding=K // 2, groups=C)

    # correctness guard before timing: the two providers agree
    v, x = torch.randn(shape, device=device, dtype=dtype), torch.randn(shape, device=device,
                                                                       dtype=dtype)
    ref = (x.float() + F.conv2d(v.float(), w.float(), b.float(), padding=K // 2, groups=C))
    got = x.clone()
    ext.position_perceiver_fwd(v, w, b, got, True)
    err = (got.float() - ref).abs().max().item()
    if err > {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 1.5e-1}[dtype]:
        raise RuntimeError(f"pe7x7 cuda result differs from F.conv2d by {err:.3g} ({dtype})")

    records = []
    for provider, fn in (("cuda", run_cuda), ("eager", run_eager)):
        t = time_ms(fn, device, warmup=10, rep=rep)
        roof = moved / bw / (t["median_ms"] * 1e-3)
        records.append(make_record(
            suite="kernel", name=f"pe7x7/P4/{scale}", provider=provider, device=device,
            dtype=dtype, batch=batch, shape=list(shape), timing=t, **{"pass": "fwd"},
            bytes_moved=moved, copy_bw_gbs=round(bw / 1e9, 1), roofline_fraction=round(roof, 3)))
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", nargs="+", default=list(P4_CHANNELS), choices=list(P4_CHANNELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16", "float32"],
                    choices=list(DTYPES))
    ap.add_argument("--rep", type=int, default=100)
    ap.add_argument("--out", default=None,
                    help="results directory (default: a new runs/pe/<date-time>; "
                         "--out benchmarks/results updates the committed records)")
    args = ap.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench_pe: no CUDA GPU visible; nothing to measure")
        return 0
    from yolov12_kernels import cuda_backend

    reason = cuda_backend.unavailable()
    if reason:
        print(f"bench_pe: the CUDA extension is unavailable: {reason}")
        return 0
    ext = cuda_backend.extension()
    device = torch.device("cuda")
    l2, bw = gpu_memory_context(device)
    records = []
    print(f"{'name':<14} {'dtype':<9} {'batch':>5} {'cuda ms':>9} {'eager ms':>9} {'speedup':>7} "
          f"{'cuda roof':>9}")
    for scale in args.scales:
        for dtype_name in args.dtypes:
            for batch in args.batches:
                recs = bench_one(ext, scale, batch, DTYPES[dtype_name], bw, device, args.rep, l2)
                records += recs
                c, e = recs
                print(f"{c['name']:<14} {dtype_name:<9} {batch:>5} {c['median_ms']:>9.4f} "
                      f"{e['median_ms']:>9.4f} {e['median_ms'] / c['median_ms']:>6.2f}x "
                      f"{c['roofline_fraction']:>9.2f}")
    path = append_records(records, "kernel", args.out or new_run_dir("pe"))
    print(f"{len(records)} records appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
