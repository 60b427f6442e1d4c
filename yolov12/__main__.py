"""Command line: ``yolov12 {info,bench,predict,val,export} [options]`` (``--help`` on each), also
run as ``python -m yolov12`` and under ``torchrun ... -m yolov12``.

Besides the ``--flag value`` options, the ultralytics way of writing a command is accepted:
``yolov12 predict model=yolo12n.pt source=bus.jpg conf=0.25``, ``yolov12 val model=yolo12n.pt
data=coco.yaml``, ``yolov12 export model=yolo12n.pt format=onnx`` (and ``yolov12 detect predict
...``). Each ``key=value`` becomes the option of the same meaning (``translate``); an unknown key
ends the run with the list of known ones.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Each sub-command is a module of this package exposing ``add_parser(subparsers)`` (which must set
# ``func`` on the parser via set_defaults) — one module per command keeps this file trivial.
COMMANDS = ["yolov12.cli_info", "yolov12.bench.cli", "yolov12.predict", "yolov12.val", "yolov12.export"]

# ultralytics key -> our option, per command. None: the value is a positional argument (IMAGE).
_COMMON = {"model": "--model", "weights": "--weights", "imgsz": "--imgsz", "device": "--device",
           "batch": "--batch", "half": "--half", "backend": "--backend", "nc": "--nc",
           "scale": "--scale", "variant": "--variant"}
KEYS = {
    "predict": {**_COMMON, "source": None, "conf": "--conf", "iou": "--iou",
                "max_det": "--max-det", "out": "--out", "project": "project", "name": "name",
                "exist_ok": "--exist-ok"},
    "val": {**_COMMON, "data": "--data", "images": "--images", "annotations": "--annotations",
            "conf": "--conf", "iou": "--iou", "max_det": "--max-det", "out": "--out",
            "workers": "--workers", "limit": "--limit"},
    "export": {**_COMMON, "format": "--format", "dynamic": "--dynamic", "opset": "--opset",
               "out": "--out", "exporter": "--exporter"},
}
_FLAGS = {"--half", "--exist-ok", "--dynamic"}  # options that take no value
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def translate(argv: list[str]) -> list[str]:
    """ultralytics-style ``key=value`` arguments -> our options (anything else passes as is)."""
    argv = list(argv)
    if argv[:1] == ["detect"]:  # `yolo detect predict ...`: detection is the only task here
        argv = argv[1:]
    if not argv or argv[0] not in KEYS:
        return argv
    command, keys, out, positional = argv[0], KEYS[argv[0]], [argv[0]], []
    folder = {}  # ultralytics' project=DIR name=NAME: results in DIR/NAME
    for tok in argv[1:]:
        key, eq, value = tok.partition("=")
        if tok.startswith("-") or not eq or not key.replace("_", "").isalnum():
            out.append(tok)
            continue
        key = key.lower()
        if key not in keys:
            raise SystemExit(f"{key}=: not an argument of `yolov12 {command}` (known: "
                             f"{', '.join(sorted(keys))}; or see yolov12 {command} --help)")
        opt = keys[key]
        if opt is None:
            positional.append(value)
        elif opt in _FLAGS:
            if value.lower() not in _TRUE | _FALSE:
                raise SystemExit(f"{key}=: expected True or False, got {value!r}")
            if value.lower() in _TRUE:
                out.append(opt)
        elif key == "imgsz" and command == "export":  # imgsz=640,480 or [640, 480]
            out += [opt, *value.strip("[]()").replace(",", " ").split()]
        elif opt in ("project", "name"):
            folder[opt] = value
        else:
            out += [opt, value]
    if folder:
        out += ["--out", f"{folder.get('project', 'runs')}/{folder.get('name', command)}"]
    return out + positional


def build_parser() -> argparse.ArgumentParser:
    from yolov12_kernels import __version__
    import torch
    parser = argparse.ArgumentParser(
        prog="yolov12",
        description="YOLOv12 with fast area-attention kernels (also: python -m yolov12). Options "
                    "are --flags, or ultralytics-style key=value (model=yolo12n.pt "
                    "source=bus.jpg conf=0.25).")
    parser.add_argument("--version", action="version",
                        version=f"yolov12-kernels {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(translate(argv))
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
