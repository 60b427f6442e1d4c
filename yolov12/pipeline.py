"""The streaming pipeline behind ``predict``, ``val`` and ``Predictor.stream``.

::

    source ─► feeder thread ─► worker threads ─────────► caller's thread
    (files,    (lists files,     decode (Pillow: EXIF,    batch of uint8 inputs ─► device
     folders,   decodes video     16-bit, bomb checks)    (pinned memory on CUDA), normalise
     videos,    frames in order)  + letterbox in uint8    there, model, postprocess there with
     images)                      (one resize, one pad)   one host sync ─► results, in order

* The feeder runs ahead of the caller by at most ``depth`` pictures (a bounded queue of
  futures): memory stays flat over any number of pictures, and while the caller's thread runs
  one batch through the model the workers decode and letterbox the next ones.
* Results come out in source order, one ``Frame`` per picture; a picture that cannot be read is
  a ``Frame`` with ``error`` set (the run goes on), never an exception from a worker thread.
* The workers run PyTorch's resize with one intra-op thread each, so they add ``workers``
  threads beside the model's own ``torch.get_num_threads()`` instead of multiplying them.
* ``workers=0`` reads in the caller's thread, in turn with the model: what ``auto_workers``
  picks on a CPU whose cores the model's own threads already fill. There, decoding beside the
  forward only takes cores from it, and an OpenMP team with one thread pre-empted waits at every
  barrier: measured on 2 cores with 2 model threads, the forward went from 46.8 ms to 65.4 ms
  with two workers beside it (benchmarks/results/predict_stages.jsonl).
* Closing the generator early (``close()``, an exception, Ctrl-C) stops the feeder and the
  workers, joins them and closes the jobs iterator (a video's container) before it returns.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .images import Letterbox, letterbox_u8, load_image, rgb8_array

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_END = object()


@dataclass
class Job:
    """One picture to read: ``load()`` returns it (PIL image or array) or raises ValueError."""
    index: int
    source: str
    load: Callable[[], object]
    frame: int | None = None   # frame number, for a video
    key: object = None         # the caller's own tag (val: the image id)


@dataclass
class Frame:
    """One picture on its way through the pipeline."""
    job: Job
    image: object = None               # the decoded picture, when kept (to draw on, say)
    pixels: np.ndarray | None = None   # (3, H, W) uint8 network input
    letterbox: Letterbox | None = None
    error: str | None = None
    decode_s: float = 0.0              # seconds in the worker: reading, then letterbox
    letterbox_s: float = 0.0
    infer_s: float = 0.0               # its share of its batch's forward


@dataclass
class Stats:
    """Where the time went (seconds, summed over pictures): the workers' decode and letterbox,
    and on the caller's thread the wait for a picture (decode not hidden), upload + normalise,
    model, postprocess; ``wall`` from the first request to the last result."""
    pictures: int = 0
    decode: float = 0.0
    letterbox: float = 0.0
    wait: float = 0.0
    upload: float = 0.0
    infer: float = 0.0
    post: float = 0.0
    wall: float = 0.0
    batches: int = 0
    extra: dict = field(default_factory=dict)

    def taken(self, frame, waited_s: float) -> None:
        """A picture handed to the caller after ``waited_s`` of waiting for it."""
        self.wait += waited_s
        self.decode += frame.decode_s
        self.letterbox += frame.letterbox_s

    def hidden(self) -> float:
        """Fraction of the workers' decode + letterbox time that the caller did not wait for."""
        work = self.decode + self.letterbox
        return max(0.0, 1.0 - self.wait / work) if work > 0 else 1.0

    def per_picture_ms(self) -> dict[str, float]:
        n = max(self.pictures, 1)
        return {k: 1000.0 * getattr(self, k) / n
                for k in ("decode", "letterbox", "wait", "upload", "infer", "post", "wall")}


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------
def expand(paths, name: str = "source", skipped=None) -> list[Path]:
    """Files named, folders expanded to their images and videos (sorted); ValueError naming
    what is missing or not a picture, prefixed by the argument's ``name``. ``skipped(folder,
    entries, known)``, when given, hears of each folder's entries that are not read (other
    suffixes, links that point nowhere; ``known``: the suffixes read)."""
    from .video import VIDEO_SUFFIXES
    known = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            entries = sorted(p.iterdir())
            media = [f for f in entries if f.is_file() and f.suffix.lower() in known]
            files.extend(media)
            if skipped is not None:
                taken = set(media)
                skipped(p, [f for f in entries if not f.is_dir() and f not in taken], known)
        elif p.is_file():
            if p.suffix.lower() not in known:
                raise ValueError(f"{name}: {str(p)!r} is not an image or video file (expected "
                                 f"one of {' '.join(sorted(known))})")
            files.append(p)
        else:
            raise ValueError(f"{name}: no such file or directory {str(p)!r}")
    return files


def file_jobs(files: Iterable, vid_stride: int = 1, start: int = 0) -> Iterator[Job]:
    """Jobs for image and video files (``key``: the file's position in ``files``): an image is
    read by a worker; a video's frames are decoded here, in order, by the thread that iterates
    (the feeder), every ``vid_stride``-th."""
    from .video import is_video, read_frames
    index = start
    for pos, f in enumerate(files):
        f = Path(f)
        if is_video(f):
            frames = read_frames(f, vid_stride)
            try:
                for k, frame in frames:
                    if isinstance(frame, Exception):  # unreadable from here on: one error frame
                        yield Job(index, str(f), _raiser(frame), frame=k, key=pos)
                    else:
                        yield Job(index, str(f), _const(frame), frame=k, key=pos)
                    index += 1
            finally:  # closed early (the caller stopped): the video's container now, not at GC
                frames.close()
        else:
            yield Job(index, str(f), _loader(f), key=pos)
            index += 1


def _loader(path):
    return lambda: load_image(path)


def _const(x):
    return lambda: x


def _raiser(e):
    def load():
        raise e
    return load


def jobs_for(source, vid_stride: int = 1) -> Iterator[Job]:
    """Jobs for what ``Predictor.stream`` takes: a path (image, video, folder), a PIL image, an
    array, or a list of these."""
    from PIL import Image
    items = source if isinstance(source, (list, tuple)) else [source]
    index = 0
    for item in items:
        if isinstance(item, (str, Path)):
            for job in file_jobs(expand([item]), vid_stride, start=index):
                index = job.index + 1
                yield job
        elif isinstance(item, (Image.Image, np.ndarray)):
            yield Job(index, f"image{index}", _const(item))
            index += 1
        else:
            raise TypeError(f"source: expected a path, a PIL image, an array or a list of them, "
                            f"got {type(item).__name__}")


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------
class _Workers:
    """``n`` threads running submitted functions, each with one PyTorch intra-op thread.

    ``torch.set_num_threads`` also sets the default that threads started later pick up, so the
    workers set theirs first, all of them, then the creating thread puts its own count back."""

    def __init__(self, n: int):
        self._tasks: queue.Queue = queue.Queue()
        ready = threading.Barrier(n + 1)
        main_threads = torch.get_num_threads()
        self._threads = [threading.Thread(target=self._loop, args=(ready,), daemon=True,
                                          name=f"yolov12-decode-{i}") for i in range(n)]
        for t in self._threads:
            t.start()
        ready.wait()
        torch.set_num_threads(main_threads)

    def _loop(self, ready):
        torch.get_num_threads()  # settle this thread's count now, then pin it to one
        torch.set_num_threads(1)
        ready.wait()
        while True:
            task = self._tasks.get()
            if task is None:
                return
            fut, fn, args = task
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 — handed to whoever waits on it
                fut.set_exception(e)

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        self._tasks.put((fut, fn, args))
        return fut

    def close(self):
        """Drop what has not started, let each thread finish what it holds, and join them."""
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join()


def auto_workers(device) -> int:
    """Decode threads for a model on ``device``: 2 on a GPU (the CPU cores are free while it
    runs); on a CPU, the cores the model's threads leave free, at most 2 — 0 (in turn with the
    model) when they fill the cores. Measured on 2 cores, 1080p JPEGs, ms per image (medians,
    benchmarks/results/predict_stages.jsonl): 1 model thread, 74.4 with one worker (the decode
    hidden), 79.0 with two (three busy threads on two cores), 86.1 with none; 2 model threads,
    65.9 with none, 70.7 with two (the forward stalled from 46.8 to 65.4)."""
    from .cores import usable_cores
    if torch.device(device).type != "cpu":
        return 2
    return max(0, min(2, usable_cores() - torch.get_num_threads()))


def prepare(job: Job, imgsz: int, shape, keep_image: bool, letterbox: bool = True) -> Frame:
    """A worker's part: read the picture into uint8 (H, W, 3) pixels, letterbox them."""
    t0 = time.perf_counter()
    try:
        image = job.load()
    except ValueError as e:  # corrupt, truncated, not an image, a bomb, a broken video
        return Frame(job, error=str(e), decode_s=time.perf_counter() - t0)
    frame = Frame(job, image=image if keep_image or not letterbox else None)
    if not letterbox:
        frame.decode_s = time.perf_counter() - t0
        return frame
    try:
        pixels = rgb8_array(image, repr(job.source))  # decoded into uint8 (H, W, 3)
        t1 = time.perf_counter()
        frame.decode_s = t1 - t0
        frame.pixels, frame.letterbox = letterbox_u8(pixels, imgsz, shape=shape)
        frame.letterbox_s = time.perf_counter() - t1
    except ValueError as e:  # e.g. float pixels outside [0, 1]
        frame.error = str(e)
    return frame


def prefetch(jobs: Iterable[Job], work: Callable[[Job], Frame], workers: int = 2,
             depth: int | None = None, stats: Stats | None = None) -> Iterator[Frame]:
    """``work(job)`` for every job in worker threads, results in job order, at most ``depth``
    (default 4 per worker) done or in progress ahead of the caller. The jobs iterator itself
    runs in a feeder thread (a video's frames are decoded there, in order). ``workers=0``: all
    of it in the caller's thread, one job at a time.

    However it ends — all done, the caller stopping early (``close()``, ``break``), an
    exception — the jobs iterator is closed (a video's container with it) and every thread it
    started has ended when the generator is done."""
    jobs = iter(jobs)
    if workers == 0:
        try:
            for job in jobs:
                t0 = time.perf_counter()
                frame = work(job)
                if stats is not None:
                    stats.taken(frame, time.perf_counter() - t0)
                yield frame
        finally:
            _close(jobs)
        return
    workers = max(1, int(workers))
    depth = depth or 4 * workers
    pool = _Workers(workers)
    futures: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                futures.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed():
        try:
            for job in jobs:
                if not put(pool.submit(work, job)):
                    return
            put(_END)
        except BaseException as e:  # noqa: BLE001 — the caller's thread raises it
            fut: Future = Future()
            fut.set_exception(e)
            put(fut)
            put(_END)
        finally:  # the thread that iterates the jobs is the one that may close them
            _close(jobs)

    feeder = threading.Thread(target=feed, daemon=True, name="yolov12-feeder")
    feeder.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = futures.get()
            if item is _END:
                return
            frame = item.result()
            if stats is not None:
                stats.taken(frame, time.perf_counter() - t0)
            yield frame
    finally:
        # the feeder first (it sees the stop within one put's timeout, or when the job it is
        # reading comes), so that nothing is submitted to the workers after they are told to end
        stop.set()
        feeder.join()
        pool.close()
        while True:  # what was read ahead and not taken
            try:
                futures.get_nowait()
            except queue.Empty:
                break


def _close(jobs) -> None:
    close = getattr(jobs, "close", None)  # a generator; a list's iterator has nothing to close
    if close is not None:
        close()


def batches(frames: Iterable[Frame], batch: int) -> Iterator[list[Frame]]:
    """Consecutive frames, ``batch`` at a time; an unreadable frame travels alone, so that it
    comes out in its place without holding up the batch it would have joined."""
    pending: list[Frame] = []
    for frame in frames:
        if frame.error is not None:
            if pending:
                yield pending
                pending = []
            yield [frame]
            continue
        pending.append(frame)
        if len(pending) >= batch:
            yield pending
            pending = []
    if pending:
        yield pending


class PinnedBuffers:
    """Page-locked host buffers per input shape, two each in turn, so that a batch's upload
    (``non_blocking``) can run while the next one is filled; an event says when a buffer's last
    copy has left it."""

    def __init__(self, device: torch.device):
        self.device = device
        self._bufs: dict = {}

    def upload(self, pixels: list[np.ndarray]) -> torch.Tensor:
        shape = (len(pixels), *pixels[0].shape)
        ring = self._bufs.setdefault(shape, [])
        if len(ring) < 2:  # a new buffer, until there are two; then the older one, in turn
            entry = [torch.empty(shape, dtype=torch.uint8).pin_memory(), None]
        else:
            entry = ring.pop(0)
        ring.append(entry)
        buf, event = entry
        if event is not None:
            event.synchronize()  # its previous upload has finished reading it
        host = buf.numpy()
        for k, p in enumerate(pixels):
            host[k] = p
        x = buf.to(self.device, non_blocking=True)
        entry[1] = torch.cuda.Event()
        entry[1].record(torch.cuda.current_stream(self.device))  # the stream the copy went on
        return x
