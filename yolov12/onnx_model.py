"""An exported ``.onnx`` detector run in onnxruntime, in place of the PyTorch model.

``yolov12 predict model=yolov12n.onnx``, ``yolov12 val model=...onnx`` and the ``onnxruntime``
provider of ``yolov12 bench`` run the file through this class. It is an *engine*: the few things
``predict.Predictor`` needs from whatever computes the detections, the PyTorch model included —

* ``model(x)``: ``x`` (B, 3, H, W) float in [0, 1] -> float32 (B, 4 + nc, anchors), xywh boxes in
  input pixels then class probabilities (``YOLOv12.forward`` in eval mode, ``output0`` of
  ``yolov12 export``);
* ``device`` / ``dtype``: where and in what ``x`` is handed over (the host, float32: onnxruntime
  takes numpy arrays); ``nc``, ``names``;
* ``fixed_shape``: (H, W) for a static export, which takes exactly that size (the predictor
  letterboxes into it), None for a ``--dynamic`` one (any sides that are multiples of 32).

Class count and names come from the file: ``nc`` from ``output0``'s shape, names from its metadata
(``yolov12 export`` writes them; ultralytics' exports carry the same ``names`` key). A file without
names (exported before they were written) gets COCO's names for 80 classes, else the indices.
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np
import torch

from .coco import class_names
from .model import STRIDE

STRIDES = (8, 16, 32)  # the Detect head's levels: anchors = sum of (H/s)(W/s)
INSTALL = "pip install onnxruntime"
_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16}

log = logging.getLogger("yolov12")


def import_onnxruntime():
    """onnxruntime, or an ``ImportError`` whose message says how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"running a .onnx model needs onnxruntime ({INSTALL}; "
                          "onnxruntime-gpu for CUDA)") from e
    return onnxruntime


def anchors(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in STRIDES)


def _names(text: str | None) -> dict[int, str] | None:
    """``{0: 'person', ...}`` as ultralytics writes it (a Python literal; JSON reads the same):
    parsed with ``ast.literal_eval``, never ``eval``."""
    if not text:
        return None
    try:
        d = ast.literal_eval(text)
        if isinstance(d, (list, tuple)):
            d = dict(enumerate(d))
        return {int(k): str(v) for k, v in d.items()}
    except (ValueError, SyntaxError, TypeError, AttributeError, MemoryError, RecursionError):
        return None


class OnnxModel:
    """``path`` (an exported detector) in an onnxruntime session; see the module docstring.

    ``device``: "cpu" (default) or a CUDA device, which runs onnxruntime's CUDA execution
    provider when the installed onnxruntime has one, else the CPU one with one log line.
    ``threads``: onnxruntime's intra-op threads (default: as many as PyTorch uses, so both engines
    are compared on the same cores). Raises ``ImportError`` (how to install onnxruntime) or
    ``ValueError`` (a file onnxruntime cannot load, or not a YOLO detection export).
    """

    dtype = torch.float32
    device = torch.device("cpu")  # inputs are handed over as numpy arrays on the host

    def __init__(self, path, device="cpu", threads: int | None = None):
        ort = import_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"model: no such file {str(path)!r}")
        target = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if target.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": target.index or 0}))
            else:
                log.warning("yolov12: onnxruntime %s has no CUDAExecutionProvider "
                            "(pip install onnxruntime-gpu): running %s on the CPU",
                            ort.__version__, self.path.name)
                target = torch.device("cpu")
        self.target, self.threads = target, threads or torch.get_num_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads  # its default, one per core, oversubscribes
        opts.log_severity_level = 3  # errors only: its graph-optimizer notes are noise here
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"model: onnxruntime cannot load {self.path}: {first}") from e
        self.execution_provider = self.session.get_providers()[0]
        self.onnxruntime_version = ort.__version__
        self._read_io()

    def _read_io(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        inp, out = inputs[0], outputs[0]
        fixed = [d if isinstance(d, int) else None for d in inp.shape]
        out_dims = [d if isinstance(d, int) else None for d in out.shape]
        expected = ("expected one input (B, 3, H, W) float and output0 (B, 4 + nc, anchors), "
                    "as yolov12 export writes")
        if (len(inputs) != 1 or len(fixed) != 4 or fixed[1] not in (3, None)
                or inp.type not in _NUMPY or len(out_dims) != 3):
            raise ValueError(f"model: {self.path.name} is not a YOLO detection export (input "
                             f"{inp.name} {inp.shape} {inp.type}, output {out.name} {out.shape}); "
                             + expected)
        meta = self.session.get_modelmeta().custom_metadata_map
        task = meta.get("task")
        if task not in (None, "detect"):
            raise ValueError(f"model: {self.path.name} is a {task!r} model; only detection runs "
                             "here")
        if any(str(meta.get(k, "")).lower() == "true" for k in ("end2end", "nms")):
            raise ValueError(f"model: {self.path.name} was exported with NMS inside (its output "
                             "is final boxes); export it without nms")
        h, w = fixed[2], fixed[3]
        if h is not None and w is not None and out_dims[2] is not None \
                and out_dims[2] != anchors(h, w):
            raise ValueError(f"model: {self.path.name} outputs {out_dims[2]} boxes for a {h}x{w} "
                             f"input, not the {anchors(h, w)} anchors of strides "
                             f"{STRIDES}; " + expected)
        self.input_name, self.input_type = inp.name, _NUMPY[inp.type]
        self.fixed_batch = fixed[0]
        self.fixed_shape = (h, w) if h is not None and w is not None else None
        channels = out_dims[1]
        if channels is None:  # a dynamic export may leave it symbolic: one small run tells
            probe = np.zeros((self.fixed_batch or 1, 3, h or STRIDE, w or STRIDE), self.input_type)
            channels = self.session.run(None, {self.input_name: probe})[0].shape[1]
        if channels < 5:
            raise ValueError(f"model: {self.path.name} outputs {channels} values per box, "
                             "fewer than 4 box coordinates + 1 class; " + expected)
        self.nc = channels - 4
        names = _names(meta.get("names"))
        if meta.get("names") and (names is None or len(names) != self.nc):
            # a file that carries names but not these: say so rather than name classes silently
            text = meta["names"] if len(meta["names"]) <= 40 else meta["names"][:37] + "..."
            log.warning("yolov12: %s: its 'names' metadata (%r) is not %d class names; using %s",
                        self.path.name, text, self.nc,
                        "COCO's names" if self.nc == 80 else "the class indices")
            names = None
        self.names = class_names(self.nc, names)
        self.metadata = dict(meta)

    def to(self, device) -> "OnnxModel":
        """This model on ``device`` (a new session when it differs; the PyTorch models' idiom)."""
        device = torch.device(device)
        same = (device.type == "cpu" and self.execution_provider == "CPUExecutionProvider") or \
            (device.type == "cuda" and self.target.type == "cuda"
             and (device.index or 0) == (self.target.index or 0))
        return self if same else OnnxModel(self.path, device, self.threads)

    def describe(self) -> str:
        """e.g. 'onnxruntime 1.20.1 CPUExecutionProvider'."""
        return f"onnxruntime {self.onnxruntime_version} {self.execution_provider}"

    def check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected an image batch (B, 3, H, W), got {got}")
        h, w = x.shape[-2:]
        if self.fixed_shape is not None and (h, w) != self.fixed_shape:
            H, W = self.fixed_shape
            raise ValueError(f"x: {self.path.name} takes exactly {H}x{W} inputs (a static "
                             f"export), got {h}x{w}; export with --dynamic for other sizes")
        if h % STRIDE or w % STRIDE or not h or not w:
            raise ValueError(f"x: sides must be multiples of {STRIDE}, got {h}x{w}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        xs = x.detach().cpu().numpy().astype(self.input_type, copy=False)
        step = self.fixed_batch or len(xs)  # a file of a fixed batch runs the batch in chunks
        outs = []
        for i in range(0, len(xs), step):
            part = xs[i:i + step]
            n = len(part)
            if n < step:  # the last chunk, padded to the file's batch; the padding is dropped
                part = np.concatenate([part, np.zeros((step - n, *part.shape[1:]), part.dtype)])
            outs.append(self.session.run(None, {self.input_name: part})[0][:n])
        return torch.from_numpy(np.concatenate(outs).astype(np.float32, copy=False))
