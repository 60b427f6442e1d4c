"""``yolov12 bench suite=predict [source=DIR]``: what a user of ``predict`` gets, end to end.

On a folder of images (default: synthetic 1920x1080 JPEG "photographs" made once, ``synthetic``),
in rounds, interleaved:

* ``decode`` and ``letterbox``: each stage alone on the caller's thread, one PyTorch thread (as
  a worker runs it), per image: reading the file into uint8 pixels, then ``letterbox_u8``; beside
  them ``letterbox-pillow``, the same resize by Pillow's own ``Image.BILINEAR`` (the measurement
  that chose PyTorch's kernel);
* ``model``: the model alone (the fast path, input already on the device at the first image's
  input shape) — the bound the pipeline chases;
* ``api-serial``: the one-image-at-a-time loop (``load_image`` then ``Predictor([image])``, every
  stage after the previous one on the caller's thread: what ``predict`` did before the pipeline);
* ``api-stream``: ``Predictor.stream(files)``: decode and letterbox in worker threads while the
  model runs, results as they come; with each stage's time per image and how much of the
  workers' decode + letterbox the caller did not wait for (``hidden``);
* ``cli-save``: the real ``yolov12 predict`` in this process, on the suite's thread count,
  annotated images saved; start-up (model build, first image) excluded: the time from its first
  "image k/n" line to its last, over the images between (a line is printed once its image's
  file is written).

Records (suite ``predict``, per image: ``median_ms`` of the rounds, ``images_per_s``) go to
``<out>/predict.jsonl`` like the other suites'. Throughput depends on the images, not on the
weights: a randomly initialised model of the scale stands in (``--weights`` is not needed).
"""
from __future__ import annotations

import contextlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..images import letterbox_geometry, letterbox_u8, load_image, rgb8_array
from ..model import YOLOv12
from ..pipeline import IMAGE_SUFFIXES, Stats
from ..predict import Predictor
from .records import environment, summarize

SYNTHETIC_SIZE = (1080, 1920)  # (h, w): a 1080p photograph
SYNTHETIC_COUNT = 24
STAGES = ("decode", "letterbox", "letterbox-pillow")


def synthetic(folder, n: int = SYNTHETIC_COUNT, size=SYNTHETIC_SIZE, seed: int = 0) -> Path:
    """``n`` JPEG pictures of ``size`` in ``folder`` (made once: existing ones are kept): smooth
    shading, grain and a few dozen flat objects, so that they compress and decode like photos
    (about 0.5 MB each at 1080p), not like noise or flat colour."""
    from PIL import Image, ImageDraw
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        path = folder / f"synthetic_{i:03d}.jpg"
        if path.exists():
            continue
        base = np.stack([xx / w * 255 * (0.5 + 0.5 * np.sin(yy / 97 + i)), yy / h * 255,
                         128 + 100 * np.sin((xx + yy) / 150 + i)], -1)
        base += rng.normal(0, 12, base.shape).astype(np.float32)
        im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(im)
        for _ in range(30):  # objects of 1% to 15% of the width, anywhere
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            side = lambda: int(rng.integers(w // 100 + 1, w // 6 + 2))  # noqa: E731
            d.rectangle([x, y, x + side(), y + side()],
                        fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        im.save(path, quality=90)
    return folder


def images_in(folder) -> list[Path]:
    files = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"source: {folder} holds {len(files)} image(s); the suite needs at "
                         "least 2 (start-up is excluded by timing one against the rest)")
    return files


def _stage_times(files, imgsz: int) -> dict[str, list[float]]:
    """ms per image of decode, letterbox and Pillow's resize + pad, on one PyTorch thread."""
    from PIL import Image
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict = {"decode": [], "letterbox": [], "letterbox-pillow": []}
    try:
        for f in files:
            t0 = time.perf_counter()
            image = load_image(f)
            pixels = rgb8_array(image)
            t1 = time.perf_counter()
            letterbox_u8(pixels, imgsz)
            t2 = time.perf_counter()
            h, w = pixels.shape[:2]
            nw, nh, H, W = letterbox_geometry(h, w, imgsz)
            canvas = np.full((H, W, 3), 114, np.uint8)
            top, left = (H - nh) // 2, (W - nw) // 2
            canvas[top:top + nh, left:left + nw] = np.asarray(image.resize((nw, nh),
                                                                           Image.BILINEAR))
            t3 = time.perf_counter()
            for k, dt in (("decode", t1 - t0), ("letterbox", t2 - t1),
                          ("letterbox-pillow", t3 - t2)):
                out[k].append(1000 * dt)
    finally:
        torch.set_num_threads(threads)
    return out


def _serial(pred: Predictor, files) -> float:
    t0 = time.perf_counter()
    for f in files:
        pred([load_image(f)])
    return time.perf_counter() - t0


def _stream(pred: Predictor, files, batch: int, workers: int) -> tuple[float, Stats]:
    stats = Stats()
    t0 = time.perf_counter()
    for _ in pred.stream(files, batch=batch, workers=workers, stats=stats):
        pass
    return time.perf_counter() - t0, stats


class _LineStamps(io.StringIO):
    """stdout that notes when each "image k/n ..." line is printed."""

    def __init__(self):
        super().__init__()
        self.stamps: list[float] = []

    def write(self, text):
        if text.startswith("image "):
            self.stamps.append(time.perf_counter())
        return super().write(text)


def _command(folder: Path, out: Path, scale: str, imgsz: int, device, batch: int,
             workers: int, n: int) -> float:
    """Steady-state seconds per image of ``yolov12 predict`` on ``folder`` (saving on): from its
    first per-image line to its last, over the n - 1 images between — start-up excluded. The
    command runs on this process's thread count (its own default would be cores - 1)."""
    import warnings

    from ..__main__ import main
    lines = _LineStamps()
    with contextlib.redirect_stdout(lines), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no weights: outputs are noise" — known here
        rc = main(["predict", str(folder), "--model", scale, "--imgsz", str(imgsz),
                   "--device", str(device), "--batch", str(batch), "--workers", str(workers),
                   "--threads", str(torch.get_num_threads()), "--out", str(out), "--exist-ok",
                   "--no-progress"])
    if rc != 0 or len(lines.stamps) != n:
        raise RuntimeError(f"yolov12 predict exited {rc} with {len(lines.stamps)} of {n} image "
                           f"lines on {folder}")
    return (lines.stamps[-1] - lines.stamps[0]) / (n - 1)


def run_predict_suite(scale: str, device, source=None, imgsz: int = 640, batch: int = 1,
                      workers: int | None = None, rounds: int = 3, warmup: int = 3, command: bool = True,
                      log=print, label: str = "") -> list[dict]:
    """The suite's records (see the module docstring)."""
    from ..pipeline import auto_workers
    device = torch.device(device)
    workers = auto_workers(device) if workers is None else workers
    tmp = Path(tempfile.mkdtemp(prefix="yolov12-bench-predict-"))
    try:
        folder = Path(source) if source else synthetic(tmp / "images")
        files = images_in(folder)
        pred = Predictor(YOLOv12(scale).eval(), imgsz=imgsz, device=device)
        h, w = pred.input_shape(*load_image(files[0]).size[::-1])
        x = torch.rand(batch, 3, h, w, device=device, dtype=pred.dtype)
        model_ms, serial_s, stream_s, command_s, stage = [], [], [], [], []
        alone: dict = {}
        with torch.inference_mode():
            for _ in range(warmup):
                pred.model(x)
            _serial(pred, files[:1])
        for r in range(rounds):
            log(f"predict suite: round {r + 1}/{rounds} ({len(files)} images, "
                f"{torch.get_num_threads()} threads)")
            with torch.inference_mode():
                for _ in range(max(3, len(files) // 4)):
                    t0 = time.perf_counter()
                    pred.model(x)
                    pred._sync()
                    model_ms.append(1000 * (time.perf_counter() - t0) / batch)
            for k, v in _stage_times(files, imgsz).items():
                alone.setdefault(k, []).extend(v)
            serial_s.append(_serial(pred, files) / len(files))
            wall, stats = _stream(pred, files, batch, workers)
            stream_s.append(wall / len(files))
            stage.append(stats)
            if command:
                command_s.append(_command(folder, tmp / "out", scale, imgsz, device, batch,
                                          workers, len(files)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    env = {"suite": "predict", "name": scale, "device": environment(device)["device"],
           "dtype": str(pred.dtype).replace("torch.", ""), "batch": batch, "shape": [h, w],
           "imgsz": imgsz, "images": len(files), "source": str(source) if source else
           f"synthetic {len(files)} x {SYNTHETIC_SIZE[1]}x{SYNTHETIC_SIZE[0]} JPEG",
           "threads": torch.get_num_threads(), "workers": workers, "rounds": rounds,
           "label": label}
    env.update({k: v for k, v in environment(device).items() if k != "device"})

    def rec(provider, per_image_ms, **extra):
        t = summarize(per_image_ms)
        return {**env, "provider": provider, **{k: t[k] for k in ("median_ms", "p20_ms",
                                                                   "p80_ms")},
                "images_per_s": 1000.0 / t["median_ms"], **extra}

    stages = {k: statistics.median(s.per_picture_ms()[k] for s in stage)
              for k in ("decode", "letterbox", "wait", "upload", "infer", "post")}
    records = [rec(k, v) for k, v in alone.items()] + [
               rec("model", model_ms),
               rec("api-serial", [1000 * s for s in serial_s]),
               rec("api-stream", [1000 * s for s in stream_s],
                   stages_ms={k: round(v, 2) for k, v in stages.items()},
                   hidden=round(statistics.median(s.hidden() for s in stage), 3))]
    if command_s:
        records.append(rec("cli-save", [1000 * s for s in command_s]))
    return records


def render(records: list[dict]) -> str:
    """The suite's table: images/s and ms per image per provider, the stream's stages."""
    lines = ["| provider | ms / image (median) | images/s | vs model-only |", "|---|---|---|---|"]
    model = next((r["median_ms"] for r in records if r["provider"] == "model"), None)
    stages = [r for r in records if r["provider"] in STAGES]
    for r in records:
        if r in stages:
            continue
        ratio = f"{model / r['median_ms']:.2f}" if model else "-"
        lines.append(f"| {r['provider']} | {r['median_ms']:.1f} | {r['images_per_s']:.1f} | "
                     f"{ratio} |")
    if stages:
        lines.append("")
        lines.append("stages alone, one thread, ms per image (median): " + ", ".join(
            f"{r['provider']} {r['median_ms']:.2f}" for r in stages))
    stream = next((r for r in records if r["provider"] == "api-stream"), None)
    if stream:
        s = stream["stages_ms"]
        lines.append("")
        lines.append(f"api-stream stages, ms per image: decode {s['decode']:.1f} and letterbox "
                     f"{s['letterbox']:.1f} in {stream['workers'] or 'no'} worker threads (waited "
                     f"{s['wait']:.1f}: {100 * stream['hidden']:.0f}% of it hidden behind "
                     f"inference), upload + normalise {s['upload']:.1f}, inference "
                     f"{s['infer']:.1f}, postprocess {s['post']:.1f}; {stream['threads']} "
                     f"PyTorch threads, {stream['shape'][0]}x{stream['shape'][1]} input")
    return "\n".join(lines)
