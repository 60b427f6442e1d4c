"""ONNX export of the fused model, checked against PyTorch with onnxruntime.

``yolov12 export --format onnx --weights yolo12n.pt [--imgsz 640] [--dynamic | --dynamic-batch]``

* BN is folded into the convs (``model.fuse()``) and area attention runs on the "reference" backend,
  i.e. plain matmul/softmax/conv ops that every ONNX runtime has (custom kernels cannot be
  exported).
* Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` by default (opsets 9
  to the installed torch's maximum for it, 20 on torch 2.13; default 17). ``--exporter dynamo``
  uses ``torch.export`` instead (needs onnxscript; opset 18 and up, default 18); on torch 2.13 it
  exports this model too, fixed or dynamic, and writes the weights beside the graph in
  ``<file>.data``. ``opset_range`` says which opsets each exporter takes here.
* Input ``images`` (B, 3, H, W) float32 in [0, 1]; output ``output0`` (B, 4 + nc, anchors): xywh
  boxes in input pixels, then class probabilities — the same as ``YOLOv12.forward`` in eval mode.
* Metadata (``metadata``): class names and count, scale, export size, stride — what
  ``yolov12 predict model=FILE.onnx`` (``onnx_model.OnnxModel``) reads.
"""
from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from .cli_args import (
    BACKEND_CHOICES,
    add_model_args,
    model_from_args,
    pick_device,
    weights_and_scale,
)
from .coco import class_names
from .model import STRIDE, YOLOv12
from .onnx_model import OnnxModel
from .outputs import OutputError, cause, check_file, refuse_special

# fp32 tolerance, the flash-attention rule (docs/design.md): against a float64 run of the same model,
# ONNX Runtime may err at most FACTOR times what PyTorch's float32 errs, and never less than a
# floor. A fixed atol does not work: boxes are pixels computed as differences of ~imgsz-sized
# terms, so their float32 error grows with the image size (and the network's gain), while
# probabilities stay ~1e-6.
#
# "What PyTorch's float32 errs" is the envelope (largest error) over several equally valid float32
# computations of the model (see ``fp32_runs``): BN folded or not, reference or SDPA
# attention, NCHW or channels-last activations — each runs different kernels and rounds
# differently, as onnxruntime's own kernels do. The max error of any single one of them is a noisy
# yardstick (one outlier element decides it): measured on one CPU over 300 seeded checks (5 random
# models x 30 inputs x boxes/scores), onnxruntime's error reached 2.9x that of the model as given
# and BN-folded (the previous yardstick), so a correct file could fail; against the envelope of the
# eight runs it stayed within 1.7x.
FACTOR = 2.0
FLOOR = {"boxes": 1e-3, "scores": 1e-5}  # pixels, probability
# Past these, PyTorch's own float32 runs are so far from float64 that the model is numerically
# unstable in float32 (an error that grows through the layers): twice that error would let a wrong
# file pass, so the check refuses to judge instead of passing vacuously. Boxes: a fraction of the
# input's longer side; probabilities: absolute. Trained weights err by ~1e-3 px and ~1e-6.
UNSTABLE = {"boxes": 0.05, "scores": 0.05}


class UnstableModel(RuntimeError):
    """``check_onnx`` cannot judge the file: PyTorch's own float32 runs are too far from float64."""


# The opset each exporter writes when none is asked for: 17 for the TorchScript exporter (what
# every current runtime reads), 18 for dynamo (the lowest it writes).
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}


def opset_range(exporter: str) -> tuple[int, int]:
    """(lowest, highest) ONNX opset this model exports at with ``exporter`` on the installed torch.

    TorchScript: from 9 (the upsampling layers have no export below it) to the highest that
    torch's TorchScript exporter knows; dynamo: from 18 (the lowest it writes) to the highest that
    torch's exporter declares. A number outside is refused up front: torch would fail after
    tracing, with the whole IR graph in its error.
    """
    try:
        from torch.onnx import _constants  # torch's own table; private, hence the fallback
        top = {"torchscript": _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET,
               "dynamo": _constants.ONNX_MAX_OPSET}
    except (ImportError, AttributeError):
        top = {"torchscript": 20, "dynamo": 23}  # torch 2.13's
    if exporter not in top:
        raise ValueError(f"exporter: expected 'torchscript' or 'dynamo', got {exporter!r}")
    return (9 if exporter == "torchscript" else 18), top[exporter]


def check_opset(opset, exporter: str) -> int:
    """``opset`` (None: the exporter's default) checked against ``opset_range``; ValueError
    naming it otherwise."""
    if opset is None:
        return DEFAULT_OPSET[exporter]
    lo, hi = opset_range(exporter)
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        raise ValueError(f"opset: the {exporter} exporter of torch {torch.__version__} writes "
                         f"opsets {lo} to {hi} of this model, got {opset!r}"
                         + ("; --exporter dynamo writes it" if exporter == "torchscript"
                            and isinstance(opset, int) and hi < opset <= opset_range("dynamo")[1]
                            else ""))
    return opset


def onnx_files(path) -> list[Path]:
    """The files an export wrote: ``path``, and ``path.data`` when the weights went beside it (the
    dynamo exporter's external data)."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return [path] + ([data] if data.is_file() else [])


@contextlib.contextmanager
def staged(path):
    """A path to write an export of ``path`` to: a temporary folder beside it holds the file (and
    the dynamo exporter's ``.data`` beside it, which the graph names by its file name), moved onto
    ``path`` when the block ends without an exception. A failure — a full disk, an error, Ctrl-C,
    a file that fails its check — leaves the previous files as they were and nothing new; a
    previous export's ``.data`` that the new file does not use is removed (it would be stale).
    ``OSError`` on the way comes out as ``outputs.OutputError``, one line naming ``path``."""
    final = Path(path)
    refuse_special(final)
    try:
        os.makedirs(final.parent if str(final.parent) else ".", exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{final.name}.", suffix=".part",
                                         dir=final.parent if str(final.parent) else ".") as tmp:
            part = Path(tmp) / final.name
            yield part
            new, old_data = onnx_files(part), final.with_name(final.name + ".data")
            if len(new) > 1:
                os.replace(new[1], old_data)
            elif old_data.exists():
                old_data.unlink()
            os.replace(part, final)
    except OSError as e:
        raise OutputError(final, cause(e)) from None
    except OutputError as e:  # from a writer given the staged name: say the final one
        raise OutputError(final, e.reason) from None


def export_onnx(model: YOLOv12, path, imgsz=640, batch: int = 1, dynamic_batch: bool = False,
                opset: int | None = None, exporter: str = "torchscript",
                dynamic: bool = False) -> Path:
    """Write ``model`` (fused, reference attention, eval) to ``path`` as ONNX; returns the path.

    ``imgsz``: the example input's (H, W) (an int: square). Without ``dynamic`` the file takes
    exactly that size, so a letterboxed image of another aspect ratio (640x480 ...) must be padded
    to it; ``dynamic=True`` makes batch, height and width dynamic axes (any sides that are
    multiples of 32, as for the PyTorch model), ``dynamic_batch=True`` the batch only.

    The file is written whole or not at all (``staged``).
    """
    path = Path(path)
    with staged(path) as part:
        write_onnx(model, part, imgsz, batch, dynamic_batch, opset, exporter, dynamic)
    return path


def write_onnx(model: YOLOv12, path: Path, imgsz=640, batch: int = 1,
               dynamic_batch: bool = False, opset: int | None = None,
               exporter: str = "torchscript", dynamic: bool = False) -> None:
    """``export_onnx``'s work, written straight to ``path``: for a caller that stages the file
    itself (``run`` checks it before it is published)."""
    if not isinstance(model, YOLOv12):
        raise ValueError(f"model: expected a YOLOv12, got {type(model).__name__}")
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    if h % STRIDE or w % STRIDE or h <= 0 or w <= 0:
        raise ValueError(f"imgsz: sides must be positive multiples of {STRIDE}, got {h}x{w}")
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter: expected 'torchscript' or 'dynamo', got {exporter!r}")
    opset = check_opset(opset, exporter)
    if exporter == "dynamo" and dynamic_batch and not dynamic:
        raise ValueError("dynamic_batch: torch.export fixes this model's batch when height and "
                         "width are fixed (the file would take one batch size only); with the "
                         "dynamo exporter use dynamic=True (--dynamic: batch, height and width)")
    model = model.cpu().float().eval().fuse().set_attention_backend("reference")
    x = torch.zeros(batch, 3, h, w)
    _export(model, path, x, exporter, opset, dynamic, dynamic_batch)
    write_metadata(path, metadata(model, (h, w), batch, dynamic, dynamic_batch))


def _export(model, path: Path, x, exporter: str, opset: int, dynamic: bool,
            dynamic_batch: bool) -> None:
    """torch.onnx.export of the prepared ``model`` to ``path`` at ``x``'s shape."""
    batch, _, h, w = x.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation warnings: noise for users here
        if exporter == "torchscript":
            axes = None
            if dynamic:  # the traced graph computes every reshape from the input's sizes
                axes = {"images": {0: "batch", 2: "height", 3: "width"},
                        "output0": {0: "batch", 2: "anchors"}}
            elif dynamic_batch:
                axes = {"images": {0: "batch"}, "output0": {0: "batch"}}
            torch.onnx.export(
                model, (x,), str(path), dynamo=False, opset_version=opset,
                input_names=["images"], output_names=["output0"], do_constant_folding=True,
                dynamic_axes=axes)
        else:
            Dim = torch.export.Dim
            shapes = None
            if dynamic:
                shapes = ({0: Dim("batch", min=1, max=1024), 2: STRIDE * Dim("h", min=1, max=256),
                           3: STRIDE * Dim("w", min=1, max=256)},)
                # torch.export fixes an axis that is 1 in the example input: trace at 2 or more
                x = torch.zeros(max(batch, 2), 3, max(h, 2 * STRIDE), max(w, 2 * STRIDE))
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset,
                              input_names=["images"], output_names=["output0"],
                              dynamic_shapes=shapes)


def metadata(model: YOLOv12, shape: tuple[int, int], batch: int = 1, dynamic: bool = False,
             dynamic_batch: bool = False) -> dict[str, str]:
    """What a runtime needs to use the file without its PyTorch model: class count and names
    (``onnx_model.OnnxModel`` reads them), the export size, the stride. Keys and formats as
    ultralytics writes them (``names`` a Python dict literal, ``imgsz`` a list), so that either
    project reads the other's files."""
    from yolov12_kernels import __version__
    return {"description": f"YOLOv12-{model.scale} ({model.variant}) exported by yolov12-kernels",
            "version": __version__, "task": "detect", "scale": model.scale,
            "variant": model.variant, "stride": str(STRIDE), "nc": str(model.nc),
            "names": repr(class_names(model.nc, getattr(model, "names", None))),
            "imgsz": str(list(shape)), "batch": "dynamic" if dynamic or dynamic_batch else str(batch),
            "dynamic": str(bool(dynamic))}


def write_metadata(path, props: dict[str, str]) -> None:
    """Set ``props`` in the ONNX file's metadata_props, in place. The weights are not loaded: a
    file with external data (``.onnx.data``) keeps pointing at it."""
    import onnx
    proto = onnx.load(str(path), load_external_data=False)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def onnx_session(path):
    """An onnxruntime CPU session of ``path`` on as many threads as PyTorch uses (its default is
    one per core, which oversubscribes a machine running several test processes): the one
    ``onnx_model.OnnxModel`` builds."""
    return OnnxModel(path).session


@torch.no_grad()
def fp32_runs(model: YOLOv12, x: torch.Tensor):
    """Yield (name, output) of equally valid float32 CPU computations of ``model`` (left
    untouched) on ``x``: as given and BN-folded (if it has BNs), each on NCHW and channels-last
    activations, each with reference and SDPA attention. One copy of the model at a time."""
    has_bn = any(getattr(m, "bn", None) is not None for m in model.modules())
    for folded in ((False, True) if has_bn else (False,)):
        m = copy.deepcopy(model).cpu().float().eval()
        if folded:
            m.fuse()
        for layout in (torch.contiguous_format, torch.channels_last):
            m.to(memory_format=layout)
            for backend in ("reference", "sdpa"):
                m.set_attention_backend(backend)
                name = (f"{'folded' if folded else 'as given'}, {backend} attention, "
                        f"{'channels-last' if layout is torch.channels_last else 'NCHW'}")
                yield name, m(x.float().contiguous(memory_format=layout))


def check_onnx(model: YOLOv12, path, x: torch.Tensor, print_fn=print) -> dict:
    """Run ``path`` in onnxruntime on ``x`` and compare with ``model``: prints the max abs
    difference to PyTorch float32 and returns ``{part: (onnx error, allowed)}`` with errors taken
    against a float64 run of ``model``; raises ``RuntimeError`` when ONNX is beyond tolerance."""

    import onnx
    onnx.checker.check_model(str(path))
    got = torch.from_numpy(onnx_session(path).run(None, {"images": x.float().numpy()})[0]).double()
    with torch.no_grad():
        ref = copy.deepcopy(model).cpu().double().eval()(x.double())
        outs = [out.double() for _, out in fp32_runs(model, x)]
    want = outs[0]  # the model as given
    if got.shape != want.shape:
        raise RuntimeError(f"onnx: output shape {tuple(got.shape)} != PyTorch {tuple(want.shape)}")
    print_fn(f"onnxruntime vs PyTorch float32 on {tuple(x.shape)}: max abs diff "
             f"{(got - want).abs().max().item():.3g} (boxes in pixels "
             f"{(got - want)[:, :4].abs().max().item():.3g}, class probabilities "
             f"{(got - want)[:, 4:].abs().max().item():.3g})")
    report, bad = {}, []
    for part, sl in (("boxes", slice(0, 4)), ("scores", slice(4, None))):
        err = (got[:, sl] - ref[:, sl]).abs().max().item()
        torch_err = max((o[:, sl] - ref[:, sl]).abs().max().item() for o in outs)
        unstable = UNSTABLE[part] * (max(x.shape[-2:]) if part == "boxes" else 1)
        if not torch_err <= unstable:
            raise UnstableModel(
                f"model: PyTorch's own float32 runs differ from float64 by {torch_err:.3g} in "
                f"{part} (more than {unstable:.3g}): the model is numerically unstable in "
                "float32 and the ONNX file cannot be judged against it")
        allowed = max(FLOOR[part], FACTOR * torch_err)
        report[part] = (err, allowed)
        if not err <= allowed:  # also catches NaN
            bad.append(f"{part}: error {err:.3g} vs float64 > allowed {allowed:.3g}")
    if bad:
        raise RuntimeError("onnx: outputs differ from PyTorch beyond fp32 tolerance ("
                           + "; ".join(bad) + f"; allowed = max(floor, {FACTOR} x the largest "
                           f"error of {len(outs)} equally valid PyTorch float32 runs)")
    return report


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export to ONNX and check it against PyTorch")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="only onnx for now")
    add_model_args(p)
    p.add_argument("--imgsz", type=int, nargs="+", default=[640],
                   help="input size: one value (square) or H W, multiples of 32 (default 640)")
    p.add_argument("--dynamic", action="store_true",
                   help="batch, height and width as dynamic axes: one file for letterboxed "
                        "inputs of any aspect ratio (sides multiples of 32)")
    p.add_argument("--dynamic-batch", action="store_true", help="batch size as a dynamic axis")
    p.add_argument("--batch", type=int, default=1,
                   help="batch of the file's input (default 1; with --dynamic, any)")
    p.add_argument("--device", default=None,
                   help="accepted for ultralytics' device=...: the model is traced on the CPU "
                        "(the ONNX file is the same for every device)")
    p.add_argument("--half", action="store_true",
                   help="not supported: the file is float32 (refused with one line)")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="the file always computes area attention with standard ONNX ops (the "
                        "reference backend): auto or reference; custom kernels cannot be exported")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default 17; 18 with --exporter dynamo; the range the "
                        "installed torch writes is checked first)")
    p.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"],
                   help="torch.onnx exporter (default torchscript; see the module doc)")
    p.add_argument("--out", default=None, help="output file (default: <weights stem>.onnx or "
                   "yolov12<scale>.onnx)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.set_defaults(func=run)


def run(args) -> int:
    # torchrun: one file, written once. Every process would write the same bytes to the same
    # name at the same time; rank 0 does it alone and the others end at once.
    rank, world = int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)
    if rank != 0:
        return 0
    if world > 1:
        print(f"note: export writes one file: process 0 of the {world} started does it alone")
    if len(args.imgsz) not in (1, 2):
        raise SystemExit("--imgsz: give one size (square) or two (H W)")
    h, w = (args.imgsz * 2)[:2]
    if args.batch < 1:
        raise SystemExit(f"--batch: expected a value >= 1, got {args.batch}")
    if args.half:
        raise SystemExit("--half: export writes a float32 ONNX file (float16 export is not "
                         "supported); drop --half")
    if args.backend not in ("auto", "reference"):
        raise SystemExit(f"--backend {args.backend}: the ONNX file computes area attention with "
                         "standard ONNX ops (the reference backend), custom kernels cannot be "
                         "exported; drop --backend")
    device = pick_device(args.device or "cpu")  # a bad name: the one line predict gives
    if device.type != "cpu":
        print(f"note: --device {args.device}: the model is traced on the CPU; the ONNX file is the "
              "same for every device")
    try:  # before the model is built: torch would fail only after tracing, printing the graph
        args.opset = check_opset(args.opset, args.exporter)
    except ValueError as e:
        raise SystemExit(f"--{e}") from None
    try:  # torch's exporter writes the file with it, and fails only after tracing
        import onnx  # noqa: F401
    except ImportError as e:
        raise SystemExit("export: writing an ONNX file needs the onnx package (pip install onnx; "
                         "onnxruntime too for the check that follows)") from e
    weights, scale = weights_and_scale(args)
    out = args.out or (Path(weights).with_suffix(".onnx").name if weights
                       else f"yolov12{scale}.onnx" if scale else None)
    if out is not None:  # before any work: a folder or a device there, or nowhere to write
        check_file(out, "--out", f"{Path(weights or 'model').stem}.onnx")
    model = model_from_args(args, "export")
    out = Path(out or f"yolov12{model.scale}.onnx")
    unchecked = None
    with staged(out) as part:  # nothing under `out` unless exported (and checked) whole
        try:
            write_onnx(model, part, (h, w), batch=args.batch, dynamic_batch=args.dynamic_batch,
                       opset=args.opset, exporter=args.exporter, dynamic=args.dynamic)
        except ValueError as e:  # "dynamic_batch: ..." -> "--dynamic-batch: ..."
            key, _, why = str(e).partition(":")
            raise SystemExit(f"--{key.replace('_', '-')}:{why}") from e
        files = onnx_files(part)
        size = f"{sum(f.stat().st_size for f in files) / 1e6:.1f} MB" + (
            f" with its weights in {out.name}.data" if len(files) > 1 else "")
        if not args.no_check:
            unchecked = _check(model, part, args, h, w, out)
    # said once the file is there: a check that fails, or Ctrl-C, leaves no file to speak of
    print(f"exported YOLOv12-{model.scale} (fused, reference attention ops) to {out} "
          f"({size}, opset {args.opset}, {args.exporter} exporter)")
    if args.dynamic:
        print("input: images (batch, 3, height, width), sides multiples of 32: letterboxed "
              "images of any aspect ratio go in as they are")
    else:
        print(f"input: images ({'batch' if args.dynamic_batch else args.batch}, 3, {h}, {w}) "
              "exactly: pad letterboxed images of other aspect ratios (e.g. predict's 640x480 for "
              f"a 4:3 photo) to {h}x{w}, or export with --dynamic")
    if unchecked:  # written: it computes what the model computes, as far as float32 can tell
        print(f"warning: {out} is written but not checked: {unchecked}", file=sys.stderr)
    return 0


def _check(model, path: Path, args, h: int, w: int, out: Path) -> str | None:
    """The staged file in onnxruntime against the model: ``SystemExit`` (nothing is written) when
    it is beyond tolerance; the reason when the model is too unstable in float32 to judge."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"export: cannot check the file without onnx and onnxruntime ({e}); "
                         "pip install onnx onnxruntime, or pass --no-check") from e
    b = max(2, args.batch) if (args.dynamic_batch or args.dynamic) else args.batch
    shapes = [(b, 3, h, w)]
    if args.dynamic:  # another aspect ratio than the example input's, to check the axes
        shapes.append((1, 3, w, h) if h != w else (1, 3, h, max(STRIDE, w - STRIDE)))
    try:
        for shape in shapes:
            check_onnx(model, path, torch.rand(shape))
    except UnstableModel as e:
        return str(e).removeprefix("model: ")
    except RuntimeError as e:
        raise SystemExit(f"{e}; nothing written to {out}") from e
    return None
