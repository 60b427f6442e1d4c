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

import contextlib
import functools
import json
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
from .images import (  # noqa: F401 — load_image, upright_size, PAD_VALUE: this module's API too
    PAD_VALUE,
    Letterbox,
    letterbox_geometry,
    letterbox_u8,
    load_image,
    normalize,
    upright_size,
)
from .model import STRIDE, YOLOv12
from .onnx_model import OnnxModel
from .outputs import OutputError, check_dir, writing
from .pipeline import IMAGE_SUFFIXES, expand  # noqa: F401 — IMAGE_SUFFIXES: importable here too


# ---------------------------------------------------------------------------------------------
# images and letterbox (yolov12.images; kept importable from here)
# ---------------------------------------------------------------------------------------------
def letterbox(image, imgsz: int = 640, stride: int = STRIDE,
              shape: tuple[int, int] | None = None) -> tuple[torch.Tensor, Letterbox]:
    """Resize ``image`` (a PIL image or an array, see ``images.to_rgb8``) so its long side is
    ``imgsz``, keeping the aspect ratio, and pad it (grey, centred) to the next multiple of
    ``stride`` on each side — or, with ``shape`` (H, W), fit it inside and pad to exactly that.

    Returns a (3, H, W) float32 tensor in [0, 1] and the ``Letterbox`` to map boxes back: the
    uint8 letterbox (``images.letterbox_u8``) normalised as the predictor does it.
    """
    pixels, lb = letterbox_u8(image, imgsz, stride, shape)
    return normalize(torch.from_numpy(pixels)[None])[0], lb


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
    # from Predictor.stream: where the picture came from, and what went wrong with it
    source: str | None = None   # its file (or "imageN" for an in-memory picture)
    frame: int | None = None    # its frame number, in a video
    image: object = None        # the decoded picture, with stream(..., keep_images=True)
    error: str | None = None    # why it could not be read (boxes are then empty)


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
    (pre-process: letterbox, batching, upload and normalisation; inference: the forward passes;
    nms: post-processing), ``seen`` the images. val.py takes any callable with this signature, so
    tests can substitute a stub.

    ``stream(source)`` runs the same steps as a pipeline (``yolov12.pipeline``): pictures are
    read and letterboxed in worker threads while the model runs, and each picture's
    ``Detections`` are yielded as they are ready. Both paths letterbox in uint8, upload the
    uint8 pixels (from pinned memory on CUDA), normalise on the device and postprocess there
    (``batched_nms.postprocess_batch``: one host synchronisation per forward).
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
        self._pinned = None  # page-locked upload buffers, made on the first CUDA batch
        # CUDA runs the work queued: uploads from page-locked memory, stages timed by events, and
        # one wait for the device per batch, when its results are copied back
        self._queued = self.device.type == "cuda"

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
        """Wait for the device (the suite's model-only timing; the predictor's own batches do
        not: they wait once, for their results)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, images) -> list[Detections]:
        if not images:
            return []
        t0 = time.perf_counter()
        boxed = [letterbox_u8(im, self.imgsz, shape=self.fixed_shape) for im in images]
        self.times["pre"] += time.perf_counter() - t0
        return self.run_inputs([p for p, _ in boxed], [lb for _, lb in boxed])

    @torch.inference_mode()
    def run_inputs(self, pixels: list, boxes_map: list[Letterbox]) -> list[Detections]:
        """Detections for letterboxed uint8 inputs ((3, H, W) arrays, ``images.letterbox_u8``)
        with the ``Letterbox`` of each: one forward per distinct input shape (padding an image to
        a larger batch-mate would change its detections: more grey border, more anchors)."""
        from .batched_nms import postprocess_batch
        by_shape: dict = {}
        for k, p in enumerate(pixels):
            by_shape.setdefault(p.shape, []).append(k)
        out: list = [None] * len(pixels)
        for ks in by_shape.values():
            clock = _StageClock(self.device if self._queued else None)
            clock.mark("start")
            x = self._upload([pixels[k] for k in ks])
            clock.mark("pre")
            preds = self.model(x)
            clock.mark("infer")
            # the batch's one wait for the device: its results' copy to the host
            found = postprocess_batch(preds, self.conf, self.iou, self.max_det, self.multi_label,
                                      fixed=self._queued or None,
                                      before_transfer=lambda: clock.mark("nms"))
            t0 = time.perf_counter()
            for k, (boxes, scores, labels) in zip(ks, found):
                lb = boxes_map[k]
                out[k] = Detections(scale_boxes(boxes, lb), scores, labels, lb.shape)
            spans = clock.spans()
            spans["nms"] += time.perf_counter() - t0
            for key, dt in spans.items():
                self.times[key] += dt
        self.seen += len(pixels)
        return out

    def _upload(self, pixels: list) -> torch.Tensor:
        """uint8 inputs -> the model's input on its device: the uint8 pixels travel (from
        page-locked memory on CUDA, without blocking), the conversion to [0, 1] in the model's
        dtype runs there (``images.normalize``)."""
        if self._queued:
            if self._pinned is None:
                from .pipeline import PinnedBuffers
                self._pinned = PinnedBuffers(self.device)
            x = self._pinned.upload(pixels)
        else:
            x = torch.from_numpy(np.stack(pixels))
        return normalize(x, self.dtype)

    def stream(self, source, batch: int = 1, workers: int | None = None, vid_stride: int = 1,
               keep_images: bool = False, stats=None):
        """Detections for each picture of ``source`` as they are ready, in order: ``source`` is
        an image or video file, a folder of them, a PIL image or array, or a list of these.
        Pictures are read (video frames every ``vid_stride``-th) and letterboxed by ``workers``
        threads while the model runs ``batch`` of them at a time (default
        ``pipeline.auto_workers``: 2 on a GPU; on a CPU the cores the model's threads leave
        free, at most 2, 0 — in turn with the model — when they fill them). Each ``Detections``
        says its
        ``source`` and ``frame``, holds the decoded picture in ``image`` with
        ``keep_images=True``, and for a picture that could not be read has ``error`` set and no
        boxes (the stream goes on). ``stats``: a ``pipeline.Stats`` to fill with stage times.
        """
        from .pipeline import jobs_for
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: expected an int >= 1, got {batch!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 0):
            raise ValueError(f"workers: expected an int >= 0, got {workers!r}")
        jobs = jobs_for(source, vid_stride)
        for frame, det in self.run_jobs(jobs, batch, workers, keep_images, stats):
            det.source, det.frame = frame.job.source, frame.job.frame
            det.image = frame.image if keep_images else None
            yield det

    def run_jobs(self, jobs, batch: int = 1, workers: int | None = None,
                 keep_images: bool = False, stats=None):
        """(``pipeline.Frame``, ``Detections``) for each ``pipeline.Job``, in order: the
        pipeline's loop (``stream``, the predict command and val use it)."""
        from functools import partial

        from .pipeline import Stats, auto_workers, batches, prefetch, prepare
        stats = stats if stats is not None else Stats()
        workers = auto_workers(self.device) if workers is None else workers
        work = partial(prepare, imgsz=self.imgsz, shape=self.fixed_shape,
                       keep_image=keep_images)
        t_start = time.perf_counter()
        for group in batches(prefetch(jobs, work, workers, stats=stats), batch):
            if group[0].error is not None:
                empty = Detections(torch.empty(0, 4), torch.empty(0),
                                   torch.empty(0, dtype=torch.long), error=group[0].error)
                yield group[0], empty
                continue
            before = dict(self.times)
            dets = self.run_inputs([f.pixels for f in group], [f.letterbox for f in group])
            stats.upload += self.times["pre"] - before["pre"]
            stats.infer += self.times["infer"] - before["infer"]
            stats.post += self.times["nms"] - before["nms"]
            stats.batches += 1
            stats.pictures += len(group)
            for f, det in zip(group, dets):
                f.infer_s = (self.times["infer"] - before["infer"]) / len(group)
                f.pixels = None  # the input is done with: memory goes back as soon as it can
                yield f, det
            stats.wall = time.perf_counter() - t_start

    def speed(self) -> dict[str, float]:
        """Milliseconds per image for each stage so far: {"pre", "infer", "nms"}."""
        n = max(self.seen, 1)
        return {k: 1000.0 * v / n for k, v in self.times.items()}


class _StageClock:
    """Times between named marks of one batch, in seconds: on the host clock where the work runs
    as it is called (the CPU; ``cuda=None``), from events on the ``cuda`` device's current stream
    where it is only queued, read after the batch's results have come back, so that timing adds
    no wait for the device of its own. A mark made again replaces the earlier one."""

    def __init__(self, cuda: torch.device | None):
        self.cuda = cuda
        self.marks: dict = {}

    def mark(self, name: str) -> None:
        if self.cuda is not None:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.cuda))
            self.marks[name] = event
        else:
            self.marks[name] = time.perf_counter()

    def spans(self) -> dict[str, float]:
        """{name: time since the mark before it}, for every mark but the first."""
        names = list(self.marks)
        marks = [self.marks[n] for n in names]
        if self.cuda is not None:
            marks[-1].synchronize()  # complete already once the results came back: no wait
            return {n: a.elapsed_time(b) / 1000.0
                    for n, a, b in zip(names[1:], marks, marks[1:])}
        return {n: b - a for n, a, b in zip(names[1:], marks, marks[1:])}


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
    """Image and video files named on the command line, folders expanded (their image and video
    files, sorted: ``pipeline.expand``), a note for what a folder holds that is not read; a
    mistake is one line (``SystemExit``)."""
    try:
        files = expand(paths, "IMAGE", skipped=_note_skipped)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if not files:
        raise SystemExit(f"IMAGE: no images or videos found in {[str(p) for p in paths]}")
    return files


def _note_skipped(folder: Path, skipped: list[Path], known) -> None:
    """One line on stderr for a folder's entries that are not read as images or videos (suffixes
    ``known``): other suffixes (.gif, .txt, ...; counted by suffix) and links that point nowhere."""
    if not skipped:
        return
    kinds = Counter("link to nothing" if not f.exists() else (f.suffix.lower() or "no suffix")
                    for f in skipped)
    print(f"note: {folder}: {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} skipped, "
          f"not images of the kinds read here ({', '.join(f'{n} {k}' for k, n in kinds.items())};"
          f" read: {' '.join(sorted(known))})", file=sys.stderr)


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
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image or video files, or directories of them")
    p.add_argument("--source", action="append", default=None, metavar="PATH",
                   help="an image or video file or a directory, instead of IMAGE (may repeat; "
                        "ultralytics' source=PATH)")
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
    p.add_argument("--vid-stride", type=int, default=1,
                   help="videos: run every N-th frame (default 1: all)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads that read and letterbox pictures while the model runs "
                        "(default: 2 on a GPU; on a CPU the cores the model's threads leave "
                        "free, at most 2 — 0 when they fill the cores: reading then runs in turn "
                        "with the model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _record(f: Path, out: Path, im, det: Detections, names) -> dict:
    return {"image": str(f), "output": str(out), "width": im.size[0], "height": im.size[1],
            "detections": _detections_json(det, names)}


def run(args) -> int:
    args.imgsz = one_imgsz(args.imgsz, "predict")
    for name in ("conf", "iou"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SystemExit(f"--{name}: expected a value in [0, 1], got {getattr(args, name)}")
    for flag, v, lo in (("--imgsz", args.imgsz, STRIDE), ("--batch", args.batch, 1),
                        ("--max-det", args.max_det, 1), ("--vid-stride", args.vid_stride, 1),
                        ("--workers", args.workers, 0)):
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
    from .pipeline import Stats, file_jobs
    from .video import is_video, probe
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
    # an annotated video is an .mp4 whatever it came as (clip.mkv and clip.mp4: clip_2.mp4)
    names = output_names([f.with_suffix(".mp4") if is_video(f) else f for f in files])
    images = [i for i, f in enumerate(files) if not is_video(f)]
    videos = [i for i, f in enumerate(files) if is_video(f)]
    # images in batches of one input shape; this process's share: whole batches, as in
    # distributed.py (and whole videos)
    batches = [[images[k] for k in b]
               for b in plan_batches([files[i] for i in images], args.batch, pred.input_shape)]
    order = [i for b in ctx.my_batches(len(batches)) for i in batches[b]]
    order += [videos[v] for v in ctx.my_batches(len(videos))]
    probed = {i: probe(files[i]) for i in order if is_video(files[i])}
    frames_of = {i: (-(-n // args.vid_stride) if n else None) for i, (n, _) in probed.items()}
    unknown = any(n is None for n in frames_of.values())
    mine = sum(1 for i in order if i not in probed) + sum(n or 0 for n in frames_of.values())

    bar = None
    if (mine > 1 or probed) and ctx.main and not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=None if unknown else mine, unit="frame" if probed else "img",
                   desc="predict" if ctx.world == 1 else f"predict (rank 0 of {ctx.world})")
    say = bar.write if bar is not None else print

    def warn(msg):
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    records = []  # (index in files, record)
    from .pipeline import auto_workers
    workers = auto_workers(pred.device) if args.workers is None else args.workers
    # encoding and saving, in order, on a thread of its own (outside the GIL in Pillow and PyAV):
    # also where decoding runs in turn with the model, the writes overlap the next forward
    writes = _Writes()
    clips: dict = {}  # index in files -> _Clip, while its frames come

    def write_json(all_records):  # whole or not at all (outputs.writing)
        with writing(out_dir / "predictions.json") as tmp, open(tmp, "w") as fh:
            json.dump([r for _, r in sorted(all_records, key=lambda t: t[0])], fh, indent=1)

    def written(record, line):  # on the writer thread, once an image's file is complete
        records.append(record)
        say(line)

    def finish_clips(keep=True, raise_errors=True):
        for i, clip in list(clips.items()):
            records.append((i, clip.finish(writes, keep, raise_errors)))
            del clips[i]

    stats = Stats()
    jobs = file_jobs([files[i] for i in order], args.vid_stride)
    try:
        # however the loop ends, the pipeline is stopped (its threads joined, a video's container
        # closed) before what follows handles it
        with contextlib.closing(pred.run_jobs(jobs, args.batch, workers, keep_images=True,
                                              stats=stats)) as results:
            for frame, det in results:
                i = order[frame.job.key]
                f, name = files[i], names[i]
                for j in [j for j in clips if j != i]:  # the previous video has ended
                    records.append((j, clips.pop(j).finish(writes)))
                if frame.job.frame is None:  # an image
                    if frame.error is not None:  # corrupt / not an image: skip it, keep going
                        warn(f"warning: {frame.error}; skipped")
                        records.append((i, {"image": str(f), "error": frame.error}))
                    else:
                        # the record is kept and the line printed once the picture is written
                        # (by the writer thread, in order; it finishes what it holds before
                        # predictions.json is written): a line means its file is there, which
                        # is what the benchmarks time by
                        record = (i, _record(f, out_dir / name, frame.image, det, pred.names))
                        h, w = det.input_shape
                        line = (f"image {i + 1}/{len(files)} {f}: {h}x{w} "
                                f"{summarize(det, pred.names)}, {1000 * frame.infer_s:.1f}ms")
                        writes.save(draw(frame.image, det, pred.names), out_dir / name,
                                    then=functools.partial(written, record, line))
                else:  # a video's frame
                    clip = clips.get(i)
                    if clip is None:
                        clip = clips[i] = _Clip(f, out_dir / name,
                                                probed[i][1] / args.vid_stride, args.vid_stride)
                    k, total = frame.job.frame, probed[i][0]
                    if frame.error is not None:  # broken off: what was read so far is kept
                        warn(f"warning: {frame.error}; the frames before it are kept")
                        clip.error = frame.error
                    else:  # the line, as an image's, once the frame is encoded
                        h, w = det.input_shape
                        clip.add(frame, det, pred.names, writes, then=functools.partial(
                            say, f"video {videos.index(i) + 1}/{len(videos)} (frame {k + 1}/"
                            f"{total or '?'}) {f}: {h}x{w} {summarize(det, pred.names)}, "
                            f"{1000 * frame.infer_s:.1f}ms"))
                if bar is not None:
                    bar.update(1)
        finish_clips()
        writes.wait()
    except KeyboardInterrupt:
        if ctx.world > 1:
            raise
        # the frames written so far make a video; a write that failed before the Ctrl-C is
        # said in the line below, not raised: the run ends as interrupted, what was done kept
        finish_clips(keep=True, raise_errors=False)
        writes.wait(raise_errors=False)
        write_json(records)  # what was done is not lost
        lost = (f"; {len(writes.errors)} output(s) could not be written (first: "
                f"{writes.errors[0]})" if writes.errors else "")
        print(f"\npredict: interrupted; {out_dir / 'predictions.json'} holds the {len(records)} "
              f"of {len(files)} images done so far{lost}", file=sys.stderr)
        return 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)
    except BaseException:
        finish_clips(keep=False, raise_errors=False)
        writes.wait(raise_errors=False)
        if ctx.world == 1:  # an error: what was done is not lost either (if it can be written)
            try:
                write_json(records)
            except OutputError:
                pass  # the error being raised says what went wrong first
        raise
    finally:
        writes.close()
        if bar is not None:
            bar.close()
    times = {"decode": stats.decode, "pre": stats.letterbox + stats.upload,
             "infer": stats.infer, "nms": stats.post}
    shares = ctx.gather((records, times, stats.pictures))
    if not ctx.main:
        return 0
    all_records = [r for share, _, _ in shares for r in share]
    write_json(all_records)
    seen = max(sum(n for *_, n in shares), 1)
    sp = {k: 1000.0 * sum(t[k] for _, t, _ in shares) / seen for k in times}
    failed = sum("error" in r for _, r in all_records if "video" not in r)
    threads = torch.get_num_threads()
    print(f"Speed: {sp['decode']:.1f}ms decode, {sp['pre']:.1f}ms pre-process, "
          f"{sp['infer']:.1f}ms inference, {sp['nms']:.1f}ms NMS per image (batch {args.batch}, "
          f"long side {pred.imgsz}, {pred.runs_on}, {threads} thread{'s' if threads > 1 else ''}, "
          f"{f'{workers} decode threads' if workers else 'decoding in turn with the model'}"
          + (f", {ctx.world} processes" if ctx.world > 1 else "") + ")")
    n_videos = sum("video" in r for _, r in all_records)
    print(f"Results: {len(files) - failed - n_videos} images"
          + (f" and {n_videos} videos" if n_videos else "")
          + f" -> {out_dir}/, boxes in {out_dir / 'predictions.json'}")
    broken = sum("error" in r for _, r in all_records if "video" in r)
    if failed or broken:
        if failed:
            print(f"predict: {failed} of {len(files)} images could not be read (listed in "
                  "predictions.json with an 'error')", file=sys.stderr)
        if broken:
            print(f"predict: {broken} of {n_videos} videos could not be read to the end (listed "
                  "in predictions.json with an 'error'; the frames before it are kept)",
                  file=sys.stderr)
        return 1
    return 0


def _detections_json(det: Detections, names) -> list[dict]:
    return [{"box": [round(v, 2) for v in b], "score": round(s, 4), "class_id": int(c),
             "class_name": names.get(int(c), str(c))}
            for b, s, c in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist())]


class _Writes:
    """Annotated pictures encoded and saved on one thread of their own, in order (Pillow and
    PyAV encode outside the GIL, beside the model), at most ``limit`` waiting: memory stays
    flat. A failure to write surfaces at the next ``submit``/``wait`` — raised, or with
    ``raise_errors=False`` (on the way out of a run that is ending anyway) kept in ``errors``."""

    def __init__(self, limit: int = 8):
        from concurrent.futures import ThreadPoolExecutor
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="yolov12-write")
        self._pending: list = []
        self.limit = limit
        self.errors: list = []  # failures seen with raise_errors=False

    def submit(self, fn, *args, then=None, raise_errors: bool = True):
        """``fn(*args)`` on the writing thread, after what was submitted before, then ``then()``
        when it has returned; its future."""
        fut = self._pool.submit(_then, fn, args, then)
        self._pending.append(fut)
        while len(self._pending) > self.limit:
            self._settle(self._pending.pop(0), raise_errors)
        return fut

    def save(self, image, path, then=None):
        """Write ``image`` to ``path``, then call ``then()`` (when the file is complete)."""
        self.submit(_save_image, image, path, then=then)

    def wait(self, raise_errors: bool = True):
        """Until everything submitted is written; the first failure raised (or kept in
        ``errors``)."""
        pending, self._pending = self._pending, []
        for fut in pending:
            self._settle(fut, raise_errors)

    def _settle(self, fut, raise_errors: bool):
        try:
            fut.result()
        except Exception as e:
            if raise_errors:
                raise
            self.errors.append(e)

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


def _then(fn, args, then):
    fn(*args)
    if then is not None:
        then()


def _save_image(image, path):
    with writing(path) as tmp:  # whole or not at all; a failure is one line (OutputError)
        image.save(tmp)


class _Clip:
    """One video's outputs: the annotated video and the JSON of its frames' boxes."""

    def __init__(self, source: Path, path: Path, fps: float, stride: int):
        from .video import VideoWriter
        self.source, self.path, self.stride = source, path, stride
        self.writer = VideoWriter(path, fps or 25.0)
        self.frames: list = []
        self.error = None
        self.size = None

    def add(self, frame, det, names, writes: _Writes, then=None):
        """The frame drawn and encoded (on the writing thread), then its boxes counted among
        the video's frames (as an image's record, once written) and ``then()``."""
        from PIL import Image
        picture = Image.fromarray(frame.image)
        self.size = picture.size
        entry = {"frame": frame.job.frame, "detections": _detections_json(det, names)}

        def encoded():
            self.frames.append(entry)
            if then is not None:
                then()
        writes.submit(self.writer.write, draw(picture, det, names), then=encoded)

    def finish(self, writes: _Writes, keep: bool = True, raise_errors: bool | None = None
               ) -> dict:
        """Close the video (after its frames, on the writing thread) and write the JSON of its
        frames' boxes, or with ``keep=False`` remove it; the record for predictions.json.
        ``raise_errors`` (default: ``keep``): a failure to write — this video's, or a picture's
        before it — is raised; otherwise it is kept in ``writes.errors`` and the record names
        only the files that were written."""
        strict = keep if raise_errors is None else raise_errors
        closed = writes.submit(self.writer.close, keep, raise_errors=strict)
        writes.wait(raise_errors=strict)
        record = {"video": str(self.source), "frames": len(self.frames),
                  "vid_stride": self.stride}
        if self.size:
            record["width"], record["height"] = self.size
        if keep and self.frames and closed.exception() is None:
            record["output"] = str(self.path)
            boxes = self.path.with_name(f"{self.path.stem}.frames.json")  # not predictions.json
            try:
                with writing(boxes) as tmp, open(tmp, "w") as fh:
                    json.dump({"video": str(self.source), "vid_stride": self.stride,
                               "fps": self.writer.fps, "frames": self.frames}, fh)
                record["boxes"] = str(boxes)
            except OutputError as e:
                if strict:
                    raise
                writes.errors.append(e)
        if self.error:
            record["error"] = self.error
        return record
