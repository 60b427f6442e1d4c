"""Command line: ``yolov12 {info,bench,predict,val,export,compile} [options]`` (``--help`` on each), also
run as ``python -m yolov12`` and under ``torchrun ... -m yolov12``.

Besides the ``--flag value`` options, the ultralytics way of writing a command is accepted:
``yolov12 predict model=yolo12n.pt source=bus.jpg conf=0.25``, ``yolov12 val model=yolo12n.pt
data=coco.yaml``, ``yolov12 export model=yolo12n.pt format=onnx``, ``yolov12 bench model=n
device=cpu`` (and ``yolov12 detect predict ...``). Each ``key=value`` becomes the option of the
same name (``translate``): every command takes both forms, with the same keys — its options — and
an unknown key ends the run with the list of known ones.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Each sub-command is a module of this package exposing ``add_parser(subparsers)`` (which must set
# ``func`` on the parser via set_defaults) — one module per command keeps this file trivial.
COMMANDS = ["yolov12.cli_info", "yolov12.bench.cli", "yolov12.predict", "yolov12.val", "yolov12.export",
            "yolov12.precompile"]

# Keys that are not options of their command: ultralytics' project=DIR name=NAME (predict's
# results in DIR/NAME, i.e. --out DIR/NAME).
ALIASES = {"predict": ("project", "name")}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(dict(a.choices) for a in parser._actions
                if isinstance(a, argparse._SubParsersAction))


def _keys(sub: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.Action]]:
    """key -> (option, action) for every ``--long-option`` of a sub-command: ``max_det`` for
    ``--max-det``; an option with several names (``--model``/``--scale``) has a key for each."""
    keys = {}
    for action in sub._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        for opt in action.option_strings:
            if opt.startswith("--"):
                keys.setdefault(opt[2:].replace("-", "_"), (opt, action))
    return keys


def _switch(key, value, action, sub) -> list[str]:
    """``key=True/False`` for an option that takes no value: the option that stores what was
    asked (``compile=False`` -> ``--no-compile``), or nothing when that is the default."""
    if value.lower() not in _TRUE | _FALSE:
        raise SystemExit(f"{key}=: expected True or False, got {value!r}")
    want = action.const if value.lower() in _TRUE else not action.const
    for other in sub._actions:
        if other.dest == action.dest and other.nargs == 0 and other.const == want:
            return [other.option_strings[0]]
    return []  # e.g. half=False: the default already


def translate(argv: list[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """ultralytics-style ``key=value`` arguments -> our options (anything else passes as is).

    The keys of a command are its own options (``yolov12 CMD --help``), spelled with ``_`` for
    ``-``: every command takes both forms, the same keys. Switches take True/False; options with
    several values take them comma-separated (``imgsz=640,480``).
    """
    argv = list(argv)
    if argv[:1] == ["detect"]:  # `yolo detect predict ...`: detection is the only task here
        argv = argv[1:]
    subs = _subcommands(parser or build_parser())
    if not argv or argv[0] not in subs:
        return argv
    command, sub = argv[0], subs[argv[0]]
    keys, aliases = _keys(sub), ALIASES.get(command, ())
    by_option = {opt: a for a in sub._actions for opt in a.option_strings}
    out, folder, value_next = [command], {}, False
    for tok in argv[1:]:
        key, eq, value = tok.partition("=")
        if (value_next or tok.startswith("-") or not eq or not key.replace("_", "").isalnum()
                or Path(tok).exists()):  # an option, its value, or a file named a=b.jpg
            action = by_option.get(tok)
            value_next = not value_next and action is not None and action.nargs is None
            out.append(tok)
            continue
        key = key.lower()
        if key in aliases:
            folder[key] = value
            continue
        if key not in keys:
            raise SystemExit(f"{key}=: not an argument of `yolov12 {command}` (known: "
                             f"{', '.join(sorted([*keys, *aliases]))}; or see yolov12 {command} "
                             "--help)")
        opt, action = keys[key]
        if action.nargs == 0:
            out += _switch(key, value, action, sub)
        elif action.nargs in ("+", "*"):  # imgsz=640,480 or [640, 480]
            out += [opt, *value.strip("[]()").replace(",", " ").split()]
        else:
            out += [opt, value]
    if folder:
        if "--out" in out:  # out=Q project=P: two answers to one question
            raise SystemExit(f"out= and {'/'.join(f'{k}=' for k in folder)} both name the "
                             f"output folder of `yolov12 {command}`; give one")
        out += ["--out", f"{folder.get('project', 'runs')}/{folder.get('name', command)}"]
    return out


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
    """Run one command. Every command ends the same way on Ctrl-C (one line, exit 130; a command
    that keeps partial results says where itself) and on an output it cannot write
    (``outputs.OutputError``: one line naming the path and the cause, exit 1)."""
    from .outputs import OutputError
    argv = sys.argv[1:] if argv is None else list(argv)
    command, threads = "yolov12", None
    try:
        parser = build_parser()
        args = parser.parse_args(translate(argv, parser))
        command = args.command
        import torch
        threads = torch.get_num_threads()  # --threads sets it for the run, not for the caller
        return args.func(args) or 0
    except KeyboardInterrupt:
        print(f"\n{command}: interrupted", file=sys.stderr)
        return 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)
    except OutputError as e:
        raise SystemExit(f"{command}: {e}") from None
    finally:
        if threads is not None:
            torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
