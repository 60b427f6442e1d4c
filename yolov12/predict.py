"""Detections on images: letterbox -> model -> class-aware NMS -> boxes in original pixels.

``yolov12 predict IMAGE... --weights yolo12n.pt`` (or ``model=yolo12n.pt source=IMAGE``; a
``.onnx`` file from ``yolov12 export`` runs in onnxruntime, ``onnx_model.py``) writes
each image with its boxes drawn and ``predictions.json`` (boxes as [x1, y1, x2, y2] in original
pixels, score, class id and name; an image that could not be read as ``{"image", "error"}``).

Library use::

    from yolov12 import YOLOv12
    from yolov12.predict import Predictor, load_image
    pred = Predictor(YOLOv12.load("yolo12n.pt"), imgsz=640, conf=0.25)
    det = pred([load_image("bus.jpg")])[0]        # det.boxes (n, 4), det.scores, det.labels
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from yolov12_kernels.target import target

from . import distributed
from .cli_args import (
    add_backend_arg,
    add_model_args,
    add_threads_arg,
    apply_threads,
    check_backend,
    check_half,
    model_from_args,
    one_imgsz,
    pick_device,
)
from .coco import class_names
from .fast import FastYOLOv12, device_with_index
from .images import open_image, to_rgb8
from .model import STRIDE, YOLOv12
from .onnx_model import OnnxModel
from .outputs import OutputError, check_dir, writing

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
PAD_VALUE = 114  # grey padding, what the public models were trained with


# ---------------------------------------------------------------------------------------------
# images and letterbox
# ---------------------------------------------------------------------------------------------
def load_image(path):
    """An 8-bit RGB ``PIL.Image``, rotated upright per its EXIF orientation (as phones store
    photos); 16-bit and float images are scaled to 8 bits (``images.to_rgb8``), never clipped.

    Raises ``ValueError`` naming the file when it cannot be read: not an image, corrupt or
    truncated, or over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    from PIL import ImageOps
    with open_image(path) as im:
        im = ImageOps.exif_transpose(im)
        im.load()  # decode now: a truncated file fails here, inside open_image
        return to_rgb8(im, repr(str(path)))


@dataclass
class Letterbox:
    """How an image was fitted into the network input: ``x_in = x_orig * ratio[0] + pad[0]``."""
    ratio: tuple[float, float]   # (x, y) scale factors, exact after rounding the resized size
    pad: tuple[int, int]         # (left, top) padding in input pixels
    orig_shape: tuple[int, int]  # (h, w) of the original image
    shape: tuple[int, int]       # (h, w) of the letterboxed input


def letterbox_geometry(h: int, w: int, imgsz: int = 640, stride: int = STRIDE,
                       shape: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(new w, new h, H, W): the size an h x w image is resized to and the input it is padded to.

    Long side ``imgsz``, aspect kept, each side padded to the next multiple of ``stride``; or, with
    ``shape`` (a static ONNX file's (H, W)), the largest size that fits inside ``shape``, padded to
    exactly it.
    """
    r = min(imgsz / h, imgsz / w) if shape is None else min(shape[0] / h, shape[1] / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    if shape is not None:
        return min(nw, shape[1]), min(nh, shape[0]), shape[0], shape[1]
    return nw, nh, math.ceil(nh / stride) * stride, math.ceil(nw / stride) * stride


def letterbox(image, imgsz: int = 640, stride: int = STRIDE,
              shape: tuple[int, int] | None = None) -> tuple[torch.Tensor, Letterbox]:
    """Resize ``image`` (a PIL image or an array, see ``images.to_rgb8``) so its long side is
    ``imgsz``, keeping the aspect ratio, and pad it (grey, centred) to the next multiple of
    ``stride`` on each side — or, with ``shape`` (H, W), fit it inside and pad to exactly that.

    Returns a (3, H, W) float32 tensor in [0, 1] and the ``Letterbox`` to map boxes back.
    """
    from PIL import Image
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < stride:
        raise ValueError(f"imgsz: expected an int >= {stride}, got {imgsz!r}")
    image = to_rgb8(image)  # 16-bit / float pixels scaled, gray -> RGB
    w, h = image.size
    nw, nh, H, W = letterbox_geometry(h, w, imgsz, stride, shape)
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BILINEAR)
    left, top = (W - nw) // 2, (H - nh) // 2
    canvas = np.full((H, W, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top:top + nh, left:left + nw] = np.asarray(image)
    x = torch.from_numpy(canvas).permute(2, 0, 1).float().div_(255.0)
    return x, Letterbox((nw / w, nh / h), (left, top), (h, w), (H, W))


def upright_size(path) -> tuple[int, int]:
    """(h, w) of an image file as ``load_image`` will return it, from its header: the EXIF
    orientation swaps the sides (read where that is cheap: a PNG's EXIF may need the pixels)."""
    from PIL import Image
    with Image.open(path) as im:
        w, h = im.size
        if im.format in ("JPEG", "MPO", "TIFF", "WEBP") and \
                im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
            w, h = h, w
    return h, w


def scale_boxes(boxes: torch.Tensor, lb: Letterbox) -> torch.Tensor:
    """xyxy boxes in letterboxed-input pixels -> original-image pixels, clipped to the image."""
    rx, ry = lb.ratio
    px, py = lb.pad
    out = boxes.clone()
    out[:, [0, 2]] = ((boxes[:, [0, 2]] - px) / rx).clamp(0, lb.orig_shape[1])
    out[:, [1, 3]] = ((boxes[:, [1, 3]] - py) / ry).clamp(0, lb.orig_shape[0])
    return out


# ---------------------------------------------------------------------------------------------
# NMS
# ---------------------------------------------------------------------------------------------
def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        max_det: int | None = None) -> torch.Tensor:
    """Greedy NMS in plain torch: indices of kept boxes, highest score first. A box is dropped
    when its IoU with a kept, higher-scoring box is > ``iou_threshold`` (torchvision's rule).

    ``max_det``: stop once that many boxes are kept. Greedy NMS decides boxes in score order and
    never revisits a kept one, so the result is exactly the first ``max_det`` of the full run; with
    a low score threshold (mAP evaluation) thousands of candidates would otherwise each cost a pass.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = []
    # one pass per *kept* box, each vectorised over the boxes still in play
    while order.numel() and (max_det is None or len(keep) < max_det):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if not rest.numel():
            break
        iou = box_iou(boxes[i].unsqueeze(0), boxes[rest])[0]
        order = rest[iou <= iou_threshold]
    return torch.stack(keep) if keep else order.new_empty(0)


def _torchvision_ops():
    try:
        from torchvision import ops
        return ops
    except Exception:  # not installed, or installed for another torch build
        return None


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float, use_torchvision: bool | None = None,
                max_det: int | None = None) -> torch.Tensor:
    """Class-aware NMS: boxes of different ``idxs`` never suppress each other. Kept indices,
    highest score first, at most ``max_det`` of them (the first ``max_det`` of the full result).
    Uses ``torchvision.ops.batched_nms`` when importable (faster, same rule).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    ops = _torchvision_ops() if use_torchvision in (None, True) else None
    if use_torchvision and ops is None:
        raise ValueError("use_torchvision: True but torchvision cannot be imported")
    if ops is not None:
        return ops.batched_nms(boxes.float(), scores.float(), idxs, iou_threshold)[:max_det]
    # shift each class into its own disjoint region, then one plain NMS does all classes at once
    span = (boxes.max() - boxes.min() + 1).to(boxes.dtype)
    shifted = boxes + (idxs.to(boxes.dtype) * span)[:, None]
    return nms(shifted.float(), scores.float(), iou_threshold, max_det)


def postprocess(preds: torch.Tensor, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                multi_label: bool = False, max_nms: int = 30000):
    """Model output (B, 4+nc, anchors), xywh + class probabilities -> per image
    ``(boxes xyxy (n, 4), scores (n,), labels (n,))`` in input pixels, after class-aware NMS.

    ``multi_label``: an anchor may yield a box for every class above ``conf`` (what COCO mAP
    evaluation wants); otherwise only its best class (what a user looking at pictures wants).
    """
    if preds.dim() != 3 or preds.shape[1] < 5:
        raise ValueError(f"preds: expected (B, 4+nc, anchors), got {tuple(preds.shape)}")
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf: expected a value in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou: expected a value in [0, 1], got {iou}")
    out = []
    for p in preds.float().transpose(1, 2):  # (anchors, 4+nc)
        xy, wh, cls = p[:, :2], p[:, 2:4], p[:, 4:]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
        if multi_label:
            a, c = (cls > conf).nonzero(as_tuple=True)
            boxes, scores, labels = boxes[a], cls[a, c], c
        else:
            scores, labels = cls.max(1)
            m = scores > conf
            boxes, scores, labels = boxes[m], scores[m], labels[m]
        if scores.numel() > max_nms:  # bound NMS work on near-empty-threshold runs
            top = scores.topk(max_nms).indices
            boxes, scores, labels = boxes[top], scores[top], labels[top]
        keep = batched_nms(boxes, scores, labels, iou, max_det=max_det)
        out.append((boxes[keep], scores[keep], labels[keep]))
    return out


# ---------------------------------------------------------------------------------------------
# the predictor
# ---------------------------------------------------------------------------------------------
@dataclass
class Detections:
    boxes: torch.Tensor   # (n, 4) xyxy in original-image pixels
    scores: torch.Tensor  # (n,)
    labels: torch.Tensor  # (n,) class index 0..nc-1
    input_shape: tuple[int, int] | None = None  # (h, w) of the input the image ran at


class Predictor:
    """A callable ``images -> list[Detections]`` (PIL images in, boxes in their own pixels out).

    ``model``: a ``YOLOv12`` (run through its fast path ``model.optimize(device, dtype, backend)``
    unless ``fast=False``: BN folded, the fastest attention backend, channels-last on CPU), an
    already optimized ``FastYOLOv12``, or an exported file in onnxruntime
    (``onnx_model.OnnxModel``: float32, its own ops, so no ``half`` or ``backend``).
    ``imgsz``: the long side of the input; default 640, or the size a static ONNX file takes
    (which takes only that size: images are letterboxed into it).

    Each image runs at exactly the shape it would run at alone: a call letterboxes every image
    and runs one forward per distinct input shape (``Detections.input_shape``), so the size of a
    call's batch changes speed, never detections. ``times`` accumulates seconds spent per stage
    (pre-process: letterbox and batching; inference: the forward passes; nms: post-processing),
    ``seen`` the images. val.py takes any callable with this signature, so tests can substitute a
    stub.
    """

    def __init__(self, model, imgsz: int | None = None, conf: float = 0.25, iou: float = 0.7,
                 max_det: int = 300, multi_label: bool = False, device=None, half: bool = False,
                 *, backend: str = "auto", fast: bool = True):
        if not isinstance(model, (YOLOv12, FastYOLOv12, OnnxModel)):
            raise TypeError(f"model: expected a YOLOv12 (or its optimize() result, or an "
                            f"OnnxModel), got {type(model).__name__}")
        for name, v in (("conf", conf), ("iou", iou)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {v}")
        if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
            raise ValueError(f"max_det: expected a positive int, got {max_det!r}")
        if isinstance(model, OnnxModel):
            if half or backend != "auto":
                raise ValueError(f"{'half' if half else 'backend'}: {model.path.name} is an "
                                 "exported ONNX file; it runs in float32 with its own ops")
            self.model = model.to(device) if device is not None else model
            self.device, self.dtype = self.model.device, self.model.dtype
            self.fixed_shape = self.model.fixed_shape
            nc, names = self.model.nc, self.model.names
            self.runs_on = self.model.describe()
        else:
            self._init_torch(model, device, half, backend, fast)
            net = model.net if isinstance(model, FastYOLOv12) else model
            nc, names = net.nc, getattr(net, "names", None)
            self.fixed_shape = None
            self.runs_on = f"{self.device}{', float16' if half else ''}"
        if imgsz is None:
            imgsz = max(self.fixed_shape) if self.fixed_shape else 640
        if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < STRIDE:
            raise ValueError(f"imgsz: expected an int >= {STRIDE}, got {imgsz!r}")
        if self.fixed_shape and imgsz != max(self.fixed_shape):
            H, W = self.fixed_shape
            raise ValueError(f"imgsz: {self.model.path.name} takes exactly {H}x{W} inputs (a "
                             f"static export): use imgsz {max(H, W)}, or export with --dynamic "
                             f"to run at {imgsz}")
        self.imgsz, self.conf, self.iou = imgsz, conf, iou
        self.max_det, self.multi_label = max_det, multi_label
        self.names = class_names(nc, names)
        self.times = {"pre": 0.0, "infer": 0.0, "nms": 0.0}
        self.seen = 0

    def _init_torch(self, model, device, half, backend, fast) -> None:
        self.device = (torch.device(device) if device is not None
                       else next(model.parameters()).device)
        if half and target(self.device).type != "cuda":  # a GPU rehearsal's CPU: float16 too
            raise ValueError(f"half: float16 inference needs a CUDA device, got {self.device}")
        self.dtype = torch.float16 if half else torch.float32
        if isinstance(model, FastYOLOv12):
            if (model.device, model.dtype) != (device_with_index(self.device), self.dtype):
                raise ValueError(f"model: optimized for {model.device} {model.dtype}, but this "
                                 f"predictor runs on {self.device} {self.dtype}")
            self.model = model
        elif fast:
            self.model = model.optimize(self.device, self.dtype, backend=backend)
        else:
            self.model = model.to(self.device, self.dtype).eval()
            if backend != "auto":
                self.model.set_attention_backend(backend)

    def input_shape(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) an h x w image runs at."""
        return letterbox_geometry(h, w, self.imgsz, STRIDE, self.fixed_shape)[2:]

    def _sync(self):
        if self.device.type == "cuda":  # kernels run asynchronously: time them to completion
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def __call__(self, images) -> list[Detections]:
        if not images:
            return []
        t0 = time.perf_counter()
        boxed = [letterbox(im, self.imgsz, shape=self.fixed_shape) for im in images]
        # one forward per input shape: padding an image to a larger batch-mate would change its
        # detections (the model sees more grey border, more anchors)
        by_shape: dict = {}
        for k, (x, _) in enumerate(boxed):
            by_shape.setdefault(tuple(x.shape), []).append(k)
        self.times["pre"] += time.perf_counter() - t0
        out: list = [None] * len(images)
        for ks in by_shape.values():
            t0 = time.perf_counter()
            x = torch.stack([boxed[k][0] for k in ks]).to(self.device, self.dtype)
            self._sync()
            t1 = time.perf_counter()
            preds = self.model(x)
            self._sync()
            t2 = time.perf_counter()
            for k, (boxes, scores, labels) in zip(
                    ks, postprocess(preds, self.conf, self.iou, self.max_det, self.multi_label)):
                lb = boxed[k][1]
                out[k] = Detections(scale_boxes(boxes, lb).cpu(), scores.cpu(), labels.cpu(),
                                    lb.shape)
            t3 = time.perf_counter()
            for key, dt in (("pre", t1 - t0), ("infer", t2 - t1), ("nms", t3 - t2)):
                self.times[key] += dt
        self.seen += len(images)
        return out

    def speed(self) -> dict[str, float]:
        """Milliseconds per image for each stage so far: {"pre", "infer", "nms"}."""
        n = max(self.seen, 1)
        return {k: 1000.0 * v / n for k, v in self.times.items()}


def label_font(image_size: tuple[int, int]):
    """A font sized to the image (about 3.5% of its mean side, at least 12 px): the label stays
    legible on a 4000-pixel photo and does not cover a 300-pixel thumbnail. Pillow's scalable
    default font needs FreeType (Pillow >= 10.1); without it, the small bitmap font."""
    from PIL import ImageFont
    size = max(12, round(0.035 * (image_size[0] + image_size[1]) / 2))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow, or no FreeType
        return ImageFont.load_default()


def draw(image, det: Detections, names: dict[int, str]):
    """A copy of ``image`` with each box and "name score" drawn on it."""
    from PIL import ImageDraw
    im = image.copy()
    d = ImageDraw.Draw(im)
    font = label_font(im.size)
    lw = max(2, round(0.003 * (im.size[0] + im.size[1]) / 2))
    for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
        # corners in order: an inverted box (x2 < x1, from an exported or hand-made model) is
        # drawn as the box it spans, not a Pillow error that would lose the image's record
        x1, x2 = sorted(box[0::2])
        y1, y2 = sorted(box[1::2])
        box = [x1, y1, x2, y2]
        color = _PALETTE[int(label) % len(_PALETTE)]
        d.rectangle(box, outline=color, width=lw)
        text = f"{names.get(int(label), label)} {score:.2f}"
        l, t, r, b = d.textbbox((0, 0), text, font=font)
        pad = max(2, lw)
        y = max(0, box[1] - (b - t) - 2 * pad)
        d.rectangle((box[0], y, box[0] + (r - l) + 2 * pad, y + (b - t) + 2 * pad), fill=color)
        d.text((box[0] + pad - l, y + pad - t), text, fill=(255, 255, 255), font=font)
    return im


_PALETTE = [(255, 56, 56), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49),
            (72, 249, 10), (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187),
            (44, 153, 168), (0, 194, 255), (52, 69, 147), (100, 115, 255), (0, 24, 236),
            (132, 56, 255), (82, 0, 133), (203, 56, 255), (255, 149, 200), (255, 55, 199)]


def summarize(det: Detections, names: dict[int, str]) -> str:
    """'2 person, 1 bus' (most frequent first), or 'no detections'."""
    counts = Counter(int(c) for c in det.labels.tolist())
    if not counts:
        return "no detections"
    return ", ".join(f"{n} {names.get(c, str(c))}" for c, n in counts.most_common())


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def expand_images(paths) -> list[Path]:
    """Image files named on the command line, folders expanded (their image files, sorted)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            entries = sorted(p.iterdir())
            images = [f for f in entries if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
            files.extend(images)
            taken = set(images)
            _note_skipped(p, [f for f in entries if not f.is_dir() and f not in taken])
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise SystemExit(f"IMAGE: {str(p)!r} is not an image file (expected one of "
                                 f"{' '.join(sorted(IMAGE_SUFFIXES))})")
            files.append(p)
        else:
            raise SystemExit(f"IMAGE: no such file or directory {str(p)!r}")
    if not files:
        raise SystemExit(f"IMAGE: no images found in {[str(p) for p in paths]}")
    return files


def _note_skipped(folder: Path, skipped: list[Path]) -> None:
    """One line on stderr for a folder's entries that are not read as images: other suffixes
    (.gif, .txt, ...; counted by suffix) and links that point nowhere."""
    if not skipped:
        return
    kinds = Counter("link to nothing" if not f.exists() else (f.suffix.lower() or "no suffix")
                    for f in skipped)
    print(f"note: {folder}: {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} skipped, "
          f"not images of the kinds read here ({', '.join(f'{n} {k}' for k, n in kinds.items())};"
          f" read: {' '.join(sorted(IMAGE_SUFFIXES))})", file=sys.stderr)


def warn_upscale(files: list[Path], imgsz: int, sample: int = 32) -> None:
    """One warning line when ``imgsz`` enlarges an image more than 4x (headers of the first
    ``sample`` files): the forward's cost grows with the square of the input side, so such a run
    takes far longer than the image's own size suggests, and says nothing while it does."""
    worst = None
    for f in files[:sample]:
        try:
            h, w = upright_size(f)
        except Exception:  # unreadable: load_image reports it in order
            continue
        if imgsz / max(h, w, 1) > 4 and (worst is None or max(h, w) < max(worst[1:])):
            worst = (f, h, w)
    if worst:
        f, h, w = worst
        print(f"warning: --imgsz {imgsz} enlarges {f.name} ({w}x{h}) {imgsz / max(h, w):.0f}x; "
              "the forward's cost grows with the square of --imgsz (the image's own long side "
              f"is {max(h, w)})", file=sys.stderr)


def output_dir(path, exist_ok: bool = False) -> Path:
    """``path``, or when it already holds files and ``exist_ok`` is off, the first free
    ``path2``, ``path3``, ... (earlier results are never overwritten silently)."""
    path = Path(path)
    if exist_ok or not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return path
    n = 2
    while path.with_name(f"{path.name}{n}").exists():
        n += 1
    return path.with_name(f"{path.name}{n}")


def output_names(files: list[Path]) -> list[str]:
    """A distinct output file name per input (same-named images from different folders get
    ``name_2``, ``name_3``, ...), decided up front so it does not depend on processing order."""
    names, used = [], set()
    for f in files:
        name, n = f.name, 2
        while name in used:
            name, n = f"{f.stem}_{n}{f.suffix}", n + 1
        used.add(name)
        names.append(name)
    return names


def plan_batches(files: list[Path], batch: int, input_shape) -> list[list[int]]:
    """Indices of ``files`` in batches of up to ``batch`` images that run at the same input shape
    (``input_shape(h, w)``, from each file's header): shapes in the order they first appear, each
    shape's images in input order, so batches are full however the shapes are mixed. With batch
    1, input order. The plan only saves forwards: ``Predictor`` runs each shape of a batch
    separately anyway, so a header that misleads (or cannot be read) costs speed, not results."""
    if batch == 1:
        return [[i] for i in range(len(files))]
    groups: dict = {}
    for i, f in enumerate(files):
        try:
            key = input_shape(*upright_size(f))
        except Exception:  # unreadable, not an image, a bomb: load_image will say so, in order
            key = None
        groups.setdefault(key, []).append(i)
    return [g[k:k + batch] for g in groups.values() for k in range(0, len(g), batch)]


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="detect objects in images; write annotated images + JSON")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or directories")
    p.add_argument("--source", action="append", default=None, metavar="PATH",
                   help="an image file or directory, instead of IMAGE (may repeat; ultralytics' "
                        "source=PATH)")
    add_model_args(p)
    p.add_argument("--conf", type=float, default=0.25, help="score threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None,
                   help="long side of the input (default 640, or the size a static .onnx takes)")
    p.add_argument("--max-det", type=int, default=300, help="boxes per image at most")
    add_threads_arg(p)
    p.add_argument("--batch", type=int, default=1,
                   help="images per forward pass, of the same input shape: a speed knob, "
                        "detections do not change")
    p.add_argument("--out", default="runs/predict",
                   help="output directory (default runs/predict; runs/predict2, ... when it "
                        "already holds results, unless --exist-ok)")
    p.add_argument("--exist-ok", action="store_true", help="write into --out even if it exists")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or N (default: cuda when "
                   "present)")
    p.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    add_backend_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _record(f: Path, out: Path, im, det: Detections, names) -> dict:
    return {"image": str(f), "output": str(out), "width": im.size[0], "height": im.size[1],
            "detections": [{"box": [round(v, 2) for v in b], "score": round(s, 4),
                            "class_id": int(c), "class_name": names.get(int(c), str(c))}
                           for b, s, c in zip(det.boxes.tolist(), det.scores.tolist(),
                                              det.labels.tolist())]}


def run(args) -> int:
    args.imgsz = one_imgsz(args.imgsz, "predict")
    for name in ("conf", "iou"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SystemExit(f"--{name}: expected a value in [0, 1], got {getattr(args, name)}")
    for flag, v, lo in (("--imgsz", args.imgsz, STRIDE), ("--batch", args.batch, 1),
                        ("--max-det", args.max_det, 1)):
        if v is not None and v < lo:
            raise SystemExit(f"{flag}: expected a value >= {lo}, got {v}")
    if args.source and args.images:
        raise SystemExit(f"--source {' '.join(args.source)} and IMAGE {' '.join(args.images)} "
                         "both name the images; give them one way")
    args.images = args.images or args.source
    if not args.images:
        raise SystemExit("predict: name the images (IMAGE... or source=PATH)")
    files = expand_images(args.images)
    check_dir(args.out, "--out")  # before any work: a file there, or a folder not writable
    check_dir(output_dir(args.out, args.exist_ok), "--out")
    apply_threads(args)
    if args.imgsz:
        warn_upscale(files, args.imgsz)
    ctx = distributed.setup(args.device)  # torchrun: join the group; else one process
    try:
        return _run(args, files, ctx)
    finally:
        ctx.close()


def _run(args, files: list[Path], ctx) -> int:
    device = pick_device(distributed.device_for(ctx, args.device))
    check_half(args.half, device)
    check_backend(args.backend, device, args.half)
    model = model_from_args(args, "predict")
    try:
        pred = Predictor(model, args.imgsz, args.conf, args.iou, args.max_det, device=device,
                         half=args.half, backend=args.backend)
    except ValueError as e:  # e.g. an --imgsz a static .onnx file does not take
        raise SystemExit(f"--{e}") from e
    out_dir = ctx.broadcast(output_dir(args.out, args.exist_ok) if ctx.main else None)
    os.makedirs(out_dir, exist_ok=True)
    names = output_names(files)
    # batches of one input shape; this process's share: whole batches, as in distributed.py
    batches = plan_batches(files, args.batch, pred.input_shape)
    batches = [batches[b] for b in ctx.my_batches(len(batches))]
    mine = sum(map(len, batches))

    bar = None
    if mine > 1 and ctx.main and not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=mine, unit="img",
                   desc="predict" if ctx.world == 1 else f"predict (rank 0 of {ctx.world})")
    say = bar.write if bar is not None else print

    def warn(msg):
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    records = []  # (index in files, record)

    def write_json(all_records):  # whole or not at all (outputs.writing)
        with writing(out_dir / "predictions.json") as tmp, open(tmp, "w") as fh:
            json.dump([r for _, r in sorted(all_records, key=lambda t: t[0])], fh, indent=1)

    try:
        for indices in batches:
            chunk = [(i, files[i], names[i]) for i in indices]
            loaded = []
            for i, f, name in chunk:
                try:
                    loaded.append((i, f, name, load_image(f)))
                except ValueError as e:  # corrupt / not an image: skip it, keep going
                    warn(f"warning: {e}; skipped")
                    records.append((i, {"image": str(f), "error": str(e)}))
            infer_before = pred.times["infer"]
            dets = pred([im for *_, im in loaded])
            infer_ms = 1000.0 * (pred.times["infer"] - infer_before) / max(len(loaded), 1)
            for (i, f, name, im), det in zip(loaded, dets):
                with writing(out_dir / name) as tmp:
                    draw(im, det, pred.names).save(tmp)
                records.append((i, _record(f, out_dir / name, im, det, pred.names)))
                h, w = det.input_shape
                say(f"image {i + 1}/{len(files)} {f}: {h}x{w} {summarize(det, pred.names)}, "
                    f"{infer_ms:.1f}ms")
            if bar is not None:
                bar.update(len(chunk))
    except KeyboardInterrupt:
        if ctx.world > 1:
            raise
        write_json(records)  # what was done is not lost
        print(f"\npredict: interrupted; {out_dir / 'predictions.json'} holds the {len(records)} "
              f"of {len(files)} images done so far", file=sys.stderr)
        return 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)
    except BaseException:
        if ctx.world == 1:  # an error: what was done is not lost either (if it can be written)
            try:
                write_json(records)
            except OutputError:
                pass  # the error being raised says what went wrong first
        raise
    finally:
        if bar is not None:
            bar.close()
    shares = ctx.gather((records, pred.times, pred.seen))
    if not ctx.main:
        return 0
    all_records = [r for share, _, _ in shares for r in share]
    write_json(all_records)
    seen = max(sum(n for *_, n in shares), 1)
    sp = {k: 1000.0 * sum(t[k] for _, t, _ in shares) / seen for k in ("pre", "infer", "nms")}
    failed = sum("error" in r for _, r in all_records)
    threads = torch.get_num_threads()
    print(f"Speed: {sp['pre']:.1f}ms pre-process, {sp['infer']:.1f}ms inference, "
          f"{sp['nms']:.1f}ms NMS per image (batch {args.batch}, long side {pred.imgsz}, "
          f"{pred.runs_on}, {threads} thread{'s' if threads > 1 else ''}"
          + (f", {ctx.world} processes" if ctx.world > 1 else "") + ")")
    print(f"Results: {len(files) - failed} images -> {out_dir}/, boxes in "
          f"{out_dir / 'predictions.json'}")
    if failed:
        print(f"predict: {failed} of {len(files)} images could not be read (listed in "
              "predictions.json with an 'error')", file=sys.stderr)
        return 1
    return 0
