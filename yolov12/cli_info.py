"""``python -m yolov12 info``: params and GFLOPs per scale beside the paper's figures."""
from __future__ import annotations

from pathlib import Path

from .model import SCALES, STRIDE, VARIANTS, YOLOv12


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="params and GFLOPs per scale, beside the paper's figures")
    p.add_argument("--model", "--scale", dest="scales", default="n",
                   help="scales, comma-separated, or 'all' (default: n); or a checkpoint FILE "
                        "(.pt, .safetensors): its scale, classes and configuration")
    p.add_argument("--imgsz", type=int, default=640, help="square image size (default 640)")
    p.add_argument("--nc", type=int, default=None, help="number of classes (default 80)")
    p.add_argument("--variant", default=None, choices=list(VARIANTS),
                   help="yolo12 (the paper's table) or turbo (the official README's turbo table)")
    p.set_defaults(func=run)


def _from_file(args) -> None:
    """``--model FILE``: scale, nc and variant read from the checkpoint (a contradicting --nc or
    --variant is one line, as in predict); the table then describes that model."""
    from .weights import read_checkpoint
    path = Path(args.scales)
    if path.suffix.lower() == ".onnx":
        raise SystemExit(f"--model: {path.name} is an exported ONNX file; info describes a "
                         "checkpoint (.pt, .safetensors) or a scale")
    try:
        ckpt = read_checkpoint(path)
    except ValueError as e:
        raise SystemExit(f"--model: {str(e).removeprefix('path: ')}") from None
    for key, given, held in (("--nc", args.nc, ckpt.nc), ("--variant", args.variant,
                                                           ckpt.variant)):
        if given is not None and given != held:
            raise SystemExit(f"{key} {given} contradicts {path.name}, which holds {held}; "
                             f"drop {key}")
    args.scales, args.nc, args.variant = ckpt.scale, ckpt.nc, ckpt.variant
    print(f"{path.name}: YOLOv12-{ckpt.scale} ({ckpt.variant}), {ckpt.nc} classes")


def parse_scales(text: str) -> list[str]:
    scales = list(SCALES) if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in scales if s not in SCALES]
    if bad or not scales:
        raise SystemExit(f"--model: unknown scale(s) {bad or text!r}; choose from "
                         f"{','.join(SCALES)} or 'all'")
    return scales


def run(args) -> int:
    if Path(args.scales).suffix.lower() in (".pt", ".pth", ".safetensors", ".onnx") or \
            Path(args.scales).is_file():
        _from_file(args)
    args.nc = 80 if args.nc is None else args.nc
    args.variant = args.variant or "yolo12"
    scales = parse_scales(args.scales)
    if args.imgsz < STRIDE or args.imgsz % STRIDE:
        raise SystemExit(f"--imgsz: expected a positive multiple of {STRIDE} (the model's "
                         f"input sides), got {args.imgsz}")
    if args.nc < 1:
        raise SystemExit(f"--nc: expected a positive number of classes, got {args.nc}")
    rows = [YOLOv12(s, nc=args.nc, variant=args.variant).info(args.imgsz,
                                                              print_fn=lambda *_: None)
            for s in scales]
    src = "README" if args.variant == "turbo" else "paper"
    print(f"| scale | params | params ({src}) | GFLOPs convs | GFLOPs ({src}) | "
          "GFLOPs attention | GFLOPs total |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']} | {r['params']:,} | {r['paper']['params_M']} M | "
              f"{r['gflops_conv']:.1f} | {r['paper']['gflops']} | {r['gflops_attention']:.2f} | "
              f"{r['gflops']:.1f} |")
    what = ("YOLOv12-turbo, figures of the official README's turbo table"
            if args.variant == "turbo" else "YOLO12, figures of the paper's Table 1")
    print(f"\n{what}. At {args.imgsz}x{args.imgsz}, nc={args.nc}. FLOPs counted with "
          f"torch.utils.flop_counter (a multiply-add = 2 FLOPs); the {src} counts convolutions "
          "only, so compare its figure with the 'convs' column.")
    return 0
