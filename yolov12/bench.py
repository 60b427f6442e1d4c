"""``python -m yolov12 bench``: forward-pass latency of each scale on the device at hand.

Method (like the paper's forward-only latency): random input of the given batch and size, model in
eval mode under ``torch.inference_mode``, ``--warmup`` untimed calls, then ``--runs`` timed calls
(CUDA events on a GPU, ``perf_counter`` on the CPU); median and 20th/80th percentiles reported.
No pre/post-processing and no NMS are timed. Records go to ``benchmarks/results/`` (``--out``).
"""
from __future__ import annotations

import argparse

import torch

from .cli_info import parse_scales
from .model import PAPER, YOLOv12

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
          "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency of the model per scale on this device",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--scale", dest="scales", default="all",
                   help="scales, comma-separated, or 'all' (default)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                   help="default: float16 on CUDA, float32 on CPU")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--imgsz", type=int, nargs="+", default=[640],
                   help="image size: one value (square) or H W; multiples of 32")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls (default 10 CPU / 50 GPU)")
    p.add_argument("--runs", type=int, default=None, help="timed calls (default 20 CPU / 200 GPU)")
    p.add_argument("--out", default=None, help="directory for the JSONL records "
                   "(default benchmarks/results; 'none' to skip writing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve(args):
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda requested but torch sees no CUDA device")
    dtype = DTYPES[args.dtype] if args.dtype else (
        torch.float16 if device.type == "cuda" else torch.float32)
    if len(args.imgsz) not in (1, 2):
        raise SystemExit("--imgsz: give one size (square) or two (H W)")
    h, w = (args.imgsz * 2)[:2]
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise SystemExit(f"--imgsz: sides must be positive multiples of 32, got {h}x{w}")
    if args.batch < 1:
        raise SystemExit(f"--batch: must be >= 1, got {args.batch}")
    gpu = device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (50 if gpu else 10)
    runs = args.runs if args.runs is not None else (200 if gpu else 20)
    if runs < 1 or warmup < 0:
        raise SystemExit("--runs must be >= 1 and --warmup >= 0")
    return device, dtype, (h, w), warmup, runs


def run(args) -> int:
    from tqdm import tqdm

    from benchmarks.records import append_records, make_record, time_ms
    scales = parse_scales(args.scales)
    device, dtype, (h, w), warmup, runs = resolve(args)
    rows, records = [], []
    bar = tqdm(total=len(scales) * runs, desc="bench", unit="run", disable=args.no_progress)
    for scale in scales:
        bar.set_postfix_str(f"{scale} {dtype} b{args.batch} {h}x{w}")
        model = YOLOv12(scale)
        info = model.info(640, print_fn=lambda *_: None)
        model = model.to(device=device, dtype=dtype).eval()
        x = torch.randn(args.batch, 3, h, w, device=device, dtype=dtype)
        with torch.inference_mode():
            t = time_ms(lambda: model(x), device, warmup, runs, progress=bar.update)
        rows.append((scale, info, t))
        records.append(make_record(suite="e2e", name=scale, provider="eager", device=device,
                                   dtype=dtype, batch=args.batch, shape=[args.batch, 3, h, w],
                                   timing=t, runs=t["runs"], warmup=warmup,
                                   params=info["params"], gflops=info["gflops"]))
        del model, x
    bar.close()
    print_table(rows, device, dtype, args.batch, (h, w))
    if args.out != "none":
        path = append_records(records, "e2e", args.out, stem="e2e")
        print(f"\n{len(records)} records appended to {path}")
    return 0


def print_table(rows, device, dtype, batch, size) -> None:
    from benchmarks.records import device_name
    print(f"\nYOLOv12 reference model (eager PyTorch), {device_name(device)}, "
          f"{str(dtype).replace('torch.', '')}, batch {batch}, {size[0]}x{size[1]}")
    print("| scale | params | params (paper) | GFLOPs@640 convs | GFLOPs (paper) | "
          "latency ms median | p20–p80 | paper T4 TRT fp16 ms | paper mAP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scale, info, t in rows:
        p = PAPER[scale]
        print(f"| {scale} | {info['params'] / 1e6:.2f} M | {p['params_M']} M | "
              f"{info['gflops_conv']:.1f} | {p['gflops']} | {t['median_ms']:.2f} | "
              f"{t['p20_ms']:.2f}–{t['p80_ms']:.2f} | {p['t4_ms']} | {p['mAP']} |")
