"""Command line: ``python -m yolov12 {info,bench,...} [options]`` (``--help`` on each)."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each sub-command is a module of this package exposing ``add_parser(subparsers)`` (which must set
# ``func`` on the parser via set_defaults) — one module per command keeps this file trivial.
COMMANDS = ["yolov12.cli_info", "yolov12.bench.cli", "yolov12.predict", "yolov12.val", "yolov12.export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m yolov12",
                                     description="YOLOv12 with fast area-attention kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
