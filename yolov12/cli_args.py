"""Command-line pieces shared by predict, val and export: which model, which device, which backend.

Every mistake here ends the run with one line that names the option (``SystemExit``), before any
model is built.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from .model import SCALES, VARIANTS, YOLOv12
from .onnx_model import OnnxModel
from .weights import public_weights_url

BACKEND_CHOICES = ("auto", "cuda", "triton", "flash", "sdpa", "reference")


def add_model_args(p) -> None:
    p.add_argument("--weights", metavar="FILE", default=None,
                   help="checkpoint: YOLO12 .pt (ultralytics or the official turbo), a state "
                        "dict, or .safetensors")
    p.add_argument("--model", metavar="FILE|SCALE", default=None,
                   help="a checkpoint file (same as --weights, like ultralytics' model=...), or "
                        "one of n/s/m/l/x for a randomly initialised model (smoke runs only)")
    p.add_argument("--scale", default=None, choices=list(SCALES),
                   help="a randomly initialised model of this scale (smoke runs only)")
    p.add_argument("--variant", default=None, choices=list(VARIANTS),
                   help="configuration of the random model: yolo12 (default; ultralytics' YOLO12, "
                        "the paper) or turbo (the official repository's default); checkpoints "
                        "carry their own")
    p.add_argument("--nc", type=int, default=None,
                   help="classes of the random model (default 80); a checkpoint carries its own "
                        "(a different --nc is refused)")


def add_threads_arg(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for PyTorch and onnxruntime (default: the cores this process "
                        "may use minus one, at most 8, or OMP_NUM_THREADS when set: on a shared "
                        "machine one thread per core makes OpenMP threads wait on each other)")


def default_threads() -> int:
    """Threads for inference when ``--threads`` is not given: ``OMP_NUM_THREADS`` when set (the
    user's, or a test runner's share), else the cores this process may run on minus one, at least
    1 and at most 8. PyTorch's own default, one per core, collapses when anything else runs: on a
    busy 2-core machine an image took 8-10x longer on 2 threads than on 1 (README, "Threads";
    benchmarks/results/runs/2026-12-07-cpu-threads)."""
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    from .cores import usable_cores
    return max(1, min(8, usable_cores() - 1))


def apply_threads(args) -> int:
    """``--threads`` (or ``default_threads()``) set for PyTorch (``torch.set_num_threads``;
    onnxruntime sessions take the same number); ``SystemExit`` with one line for a count < 1."""
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads: expected a number of threads >= 1, got {args.threads}")
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    return threads


def one_imgsz(values, command: str) -> int | None:
    """``--imgsz`` of predict and val: the long side each image is letterboxed to (its aspect is
    kept, so each image runs at its own rectangle). ``imgsz=640,640`` (how ultralytics and export
    write a size) is 640; two different sides are refused with one line: a fixed H x W input is
    what ``export`` and ``bench`` take, not a letterbox target."""
    if values is None:
        return None
    values = values if isinstance(values, (list, tuple)) else [values]
    if len(values) == 2 and values[0] == values[1]:
        values = values[:1]
    if len(values) != 1:
        raise SystemExit(f"--imgsz: {command} takes one size, the long side every image is "
                         "letterboxed to with its aspect ratio kept (each image runs at its own "
                         f"rectangle); got {' '.join(map(str, values))}: use --imgsz "
                         f"{max(values)}")
    return values[0]


def add_backend_arg(p) -> None:
    # the choices are the backend names: a typo fails at parse time with the list, not later
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="attention backend (default auto: the fastest that runs here)")


def weights_and_scale(args) -> tuple[str | None, str | None]:
    """(weights file, random scale) from --weights / --model / --scale, contradictions refused.

    ``--model`` is a checkpoint file, or a scale: one of n/s/m/l/x, or an ultralytics config name
    (``yolo12n.yaml``: YOLO12; ``yolov12n.yaml``: the official repository's, turbo), which also
    sets ``args.variant``.
    """
    weights, scale = args.weights, args.scale
    model = getattr(args, "model", None)
    if model is not None:
        config = re.fullmatch(r"yolo(v?)12([nsmlx])\.ya?ml", Path(model).name)
        if config and not Path(model).is_file():
            model = config.group(2)
            _set_variant(args, "turbo" if config.group(1) else "yolo12")
        if model in SCALES:
            if scale and scale != model:
                raise SystemExit(f"--model {model} contradicts --scale {scale}")
            scale = model
        else:
            if weights and weights != model:
                raise SystemExit(f"--model {model} and --weights {weights} name two checkpoints; "
                                 "give one")
            weights = model
    return weights, scale


def _set_variant(args, variant: str) -> None:
    given = getattr(args, "variant", None)
    if given and given != variant:
        raise SystemExit(f"--variant {given} contradicts --model {args.model}")
    args.variant = variant


def model_from_args(args, command: str):
    """The model named on the command line: a checkpoint (--weights FILE, --model FILE), an
    exported ``.onnx`` file (an ``OnnxModel``; predict and val), or with a loud warning a randomly
    initialised scale (--model SCALE, --scale SCALE)."""
    weights, scale = weights_and_scale(args)
    if weights and Path(weights).is_dir():
        inside = sorted(p.name for p in Path(weights).iterdir()
                        if p.suffix in (".pt", ".pth", ".safetensors", ".onnx"))
        raise SystemExit(f"--weights: {weights} is a folder; give the checkpoint file"
                         + (f" (in it: {', '.join(inside[:5])})" if inside else ""))
    if weights and Path(weights).suffix.lower() == ".onnx":
        return onnx_model_from_args(args, command, Path(weights), scale)
    if weights:
        path = Path(weights)
        if not path.is_file():
            url = public_weights_url(path.name)
            raise SystemExit(f"--weights: no such file {weights!r}"
                             + (f"; download it from {url}" if url else ""))
        try:
            model = YOLOv12.load(path)
        except ValueError as e:
            raise SystemExit(f"--weights: {e}") from e
        if scale and scale != model.scale:
            raise SystemExit(f"--scale {scale} contradicts {weights}, which holds scale "
                             f"{model.scale}; drop --scale")
        variant = getattr(args, "variant", None)
        if variant and variant != model.variant:
            raise SystemExit(f"--variant {variant} contradicts {weights}, which holds a "
                             f"{model.variant} model; drop --variant")
        nc = getattr(args, "nc", None)
        if nc is not None and nc != model.nc:
            raise SystemExit(f"--nc {nc} contradicts {weights}, which holds {model.nc} classes; "
                             "drop --nc")
        return model
    if not scale:
        raise SystemExit(f"{command}: give --weights FILE (or model=FILE), e.g. yolo12n.pt; "
                         "--model n|s|m|l|x alone builds a randomly initialised model for smoke "
                         "tests")
    nc = 80 if args.nc is None else args.nc
    if isinstance(nc, bool) or nc < 1:
        raise SystemExit(f"--nc: expected a positive number of classes, got {nc}")
    warnings.warn(f"{command}: no weights, using a randomly initialised YOLOv12-{scale}: its "
                  "outputs are noise", stacklevel=2)
    return YOLOv12(scale, nc=nc, **_variant_kwargs(args)).eval()


def onnx_model_from_args(args, command: str, path: Path, scale: str | None):
    """An exported ``.onnx`` file as the model (``onnx_model.OnnxModel``, run in onnxruntime):
    options that only mean something for a PyTorch model end the run with one line."""
    if command == "export":
        raise SystemExit(f"--weights: {path} is already an ONNX file; export takes a PyTorch "
                         "checkpoint (.pt, .safetensors)")
    if not path.is_file():
        raise SystemExit(f"--weights: no such file {str(path)!r}")
    for given, why in ((scale, f"--scale {scale}"), (getattr(args, "variant", None), "--variant"),
                       (getattr(args, "half", False), "--half"),
                       (getattr(args, "backend", "auto") not in (None, "auto"),
                        f"--backend {getattr(args, 'backend', None)}")):
        if given:
            raise SystemExit(f"{why}: {path.name} is an exported ONNX file, which runs in "
                             "onnxruntime in float32 with its own standard ops; drop "
                             f"{why.split()[0]}")
    try:
        model = OnnxModel(path)
    except (ImportError, ValueError) as e:
        raise SystemExit(f"--weights: {str(e).removeprefix('model: ')}") from e
    nc = getattr(args, "nc", None)
    if nc is not None and nc != model.nc:
        raise SystemExit(f"--nc {nc} contradicts {path.name}, which outputs {model.nc} classes; "
                         "drop --nc")
    return model


def _variant_kwargs(args) -> dict:
    variant = getattr(args, "variant", None)
    return {"variant": variant} if variant else {}


def pick_device(name: str | None) -> torch.device:
    """``--device``: cpu, cuda, cuda:N or N (a CUDA index, as ultralytics writes it); default cuda
    when torch sees one. Anything else ends the run with one line."""
    if name is None or name == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(name).strip().lower()
    if text.isdigit():
        text = f"cuda:{text}"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise SystemExit(f"--device: unknown device {name!r}; use cpu, cuda, cuda:N or N") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device: {name!r} is not supported by this command; use cpu, cuda, "
                         "cuda:N or N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device: {name!r} requested but torch sees no CUDA device "
                             f"(torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SystemExit(f"--device: {name!r} but torch sees {torch.cuda.device_count()} CUDA "
                             "device(s)")
    return device


def check_backend(backend: str, device: torch.device, half: bool = False) -> None:
    """``--backend`` (or ``YOLOV12_BACKEND`` under "auto") against this device and dtype, before
    any model is built: a backend that cannot run here ends the run with one line that names the
    argument or the variable, says why, and lists what does run here."""
    from yolov12_kernels import dispatch
    dtype = torch.float16 if half else torch.float32

    def runs(name):
        try:  # the model's attention op, as the fast path calls it (head_dim is 32)
            dispatch.select("fused_area_attention", name, device, dtype, 32, needs_grad=False)
            return True
        except (RuntimeError, ValueError):
            return False
    try:
        dispatch.select("fused_area_attention", backend, device, dtype, 32, needs_grad=False)
    except (RuntimeError, ValueError) as e:
        # the candidates "auto" would try here anyway (probing others could mean a JIT build)
        here = ", ".join(["auto"] + [b for b in dispatch.auto_order(device) if runs(b)])
        named = str(e).startswith(dispatch.ENV_VAR)
        raise SystemExit(f"{'' if named else '--backend: '}{e}; on {device} these run: {here}"
                         + (f" (or unset {dispatch.ENV_VAR})" if named else "")) from None


def check_half(half: bool, device: torch.device) -> None:
    if half and device.type != "cuda":
        raise SystemExit(f"--half: float16 inference needs a CUDA device, this run is on "
                         f"{device}; drop --half")
