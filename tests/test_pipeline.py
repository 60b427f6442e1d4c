"""The streaming pipeline (yolov12/pipeline.py), the batched postprocess (yolov12/batched_nms.py)
and the uint8 letterbox: the pipeline gives the one-image-at-a-time path's detections, in order,
with unreadable files in their place; memory stays bounded however long the source; the batched
postprocess equals the reference, ties included, also the GPU's fixed-shape way."""
from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
import torch

from _lively import detecting
from yolov12 import YOLOv12
from yolov12.batched_nms import postprocess_batch
from yolov12.images import letterbox_u8, load_image
from yolov12.pipeline import Frame, Job, Stats, prefetch
from yolov12.predict import Predictor, postprocess

Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")


def _preds(b, nc, a, ties, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, 2, a, generator=g) * 100
    wh = torch.rand(b, 2, a, generator=g) * 40 + 1
    cls = torch.rand(b, nc, a, generator=g)
    if ties:  # many equal scores: the order among them must still be the reference's
        cls = (cls * 4).round() / 4
    return torch.cat([xy, wh, cls], 1)


@pytest.mark.parametrize("fixed", [False, True])
def test_batched_postprocess_equals_the_reference(fixed):
    cases = itertools.product([(2, 5, 120), (1, 1, 60)], [False, True], [0.0, 0.3],
                              [False, True], [300, 4])
    for k, ((b, nc, a), ties, conf, multi, max_det) in enumerate(cases):
        p = _preds(b, nc, a, ties, k)
        want = postprocess(p, conf, 0.5, max_det, multi)
        got = postprocess_batch(p, conf, 0.5, max_det, multi, fixed=fixed, cap=256)
        for (wb, ws, wl), (gb, gs, gl) in zip(want, got):
            assert torch.equal(wb, gb) and torch.equal(ws, gs) and torch.equal(wl, gl), \
                (b, nc, a, ties, conf, multi, max_det)


def test_uint8_letterbox_is_pillows_resize_to_within_one_level():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)  # 320 -> 160: one exact halving
    x, lb = letterbox_u8(a, 160)  # (3, H, W) planes
    want = np.asarray(Image.fromarray(a).resize((160, 90), Image.BILINEAR)).transpose(2, 0, 1)
    top = lb.pad[1]
    assert x.shape == (3, 96, 160) and np.array_equal(x[:, top:top + 90], want)  # exact ratio
    assert (x[:, :top] == 114).all() and (x[:, top + 90:] == 114).all()
    b = rng.integers(0, 256, (77, 130, 3), dtype=np.uint8)  # 130 -> 64: an awkward ratio
    x, lb = letterbox_u8(b, 64)
    nw, nh = 64, round(77 * 64 / 130)
    want = np.asarray(Image.fromarray(b).resize((nw, nh), Image.BILINEAR)).astype(int)
    diff = np.abs(x[:, lb.pad[1]:lb.pad[1] + nh].astype(int) - want.transpose(2, 0, 1))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05  # 16- vs 22-bit filter weights


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return Predictor(detecting(YOLOv12("n")), imgsz=64, conf=0.3)


def _pictures(folder, sizes=((90, 60), (60, 90), (100, 70), (64, 64), (80, 50))):
    rng = np.random.default_rng(1)
    folder.mkdir()
    files = []
    for k, (w, h) in enumerate(sizes):
        files.append(folder / f"{k}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(files[-1])
    (folder / "2b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return sorted(folder.iterdir())


def test_stream_gives_the_one_image_path_detections_in_order(predictor, tmp_path):
    files = _pictures(tmp_path / "imgs")
    alone = {}
    for f in files:
        try:
            alone[f.name] = predictor([load_image(f)])[0]
        except ValueError:
            alone[f.name] = None
    stats = Stats()
    for batch in (1, 3):
        got = list(predictor.stream(tmp_path / "imgs", batch=batch, workers=2, stats=stats))
        assert [d.source.rsplit("/", 1)[-1] for d in got] == [f.name for f in files]
        for det in got:
            want = alone[det.source.rsplit("/", 1)[-1]]
            if want is None:
                assert "2b_broken.jpg" in det.error and det.boxes.shape == (0, 4)
                continue
            assert det.error is None and len(det.labels) > 0 and det.input_shape == \
                want.input_shape
            if batch == 1:  # the same computation: the same bits
                assert torch.equal(det.boxes, want.boxes) and torch.equal(det.scores, want.scores)
            else:  # batched GEMMs round differently, by ~1e-5 px
                torch.testing.assert_close(det.boxes, want.boxes, atol=1e-3, rtol=0)
                torch.testing.assert_close(det.scores, want.scores, atol=1e-5, rtol=0)
            assert torch.equal(det.labels, want.labels)
    assert stats.pictures == 2 * (len(files) - 1) and stats.infer > 0 and stats.decode > 0
    # in-memory pictures, kept for the caller to draw on
    im = load_image(files[0])
    dets = list(predictor.stream([im, np.asarray(im)], keep_images=True))
    assert [d.source for d in dets] == ["image0", "image1"] and dets[0].image is im
    assert torch.equal(dets[0].boxes, dets[1].boxes)


def _pipeline_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("yolov12-")]


def test_the_queue_is_bounded_and_stopping_early_ends_the_threads():
    """1000 pictures: the workers never get more than the queue's depth ahead of the caller, so
    memory does not grow with the source's length; a caller that stops early while the workers
    are busy reads no further, and once the stream is closed no thread of it is left and its
    jobs generator (which the caller still holds, as predict does) is closed."""
    started, taken, closed = [], [], []
    lock = threading.Lock()

    def work(job):  # a picture "read": how far ahead of the caller the workers are now
        with lock:
            started.append(job.index)
            ahead = len(started) - len(taken)
        if job.index >= 500:  # busy when the caller stops
            time.sleep(0.2)
        return Frame(job, image=ahead)

    def jobs():
        try:
            yield from (Job(k, f"p{k}", lambda: None) for k in range(1000))
        finally:
            closed.append(True)

    assert _pipeline_threads() == []
    most = 0
    for frame in prefetch(jobs(), work, workers=2, depth=6):
        most = max(most, frame.image)
        with lock:
            taken.append(frame.job.index)
    assert taken == list(range(1000)) and _pipeline_threads() == []
    assert most <= 6 + 2 + 1, most  # the queue's depth, the workers' hands, the one handed out
    started.clear()
    taken.clear()
    closed.clear()
    source = jobs()
    stream = prefetch(source, work, workers=2, depth=6)
    for frame in stream:
        with lock:
            taken.append(frame.job.index)
        if len(taken) == 500:
            break
    stream.close()
    assert len(started) <= 500 + 6 + 2 + 1
    assert _pipeline_threads() == [] and closed == [True]


def test_stream_memory_does_not_grow_with_the_number_of_pictures():
    """The decoded pictures and inputs of a long stream are let go as it goes: the traced peak
    over 400 pictures is that over 50 (the letterboxed inputs are numpy arrays, traced). The
    model is a stand-in of the right output shape: the pipeline is what is measured."""
    import tracemalloc
    pred = Predictor(YOLOv12("n"), imgsz=64, fast=False)
    g = torch.Generator().manual_seed(0)
    pred.model = lambda x: torch.rand(x.shape[0], 84, 32, generator=g)
    rng = np.random.default_rng(2)
    pics = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(4)]

    def peak(n):
        tracemalloc.start()
        try:
            count = sum(1 for _ in pred.stream([pics[k % 4] for k in range(n)], batch=2,
                                               workers=2))
            assert count == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    peak(8)  # warm-up: lazy imports, caches
    short, long = peak(50), peak(400)
    assert long < 1.3 * short + 64 * 1024, (short, long)


class _FakeCuda:
    """CUDA as the predictor uses it, on the CPU (no GPU here), with the same contract: an event
    completes only once the host has waited for the device after recording it (its elapsed time
    cannot be read before, as on CUDA); ``waits`` counts the host's waits for the device:
    ``torch.cuda.synchronize``, an event waited for before it completed, and every read on the
    host of a tensor "on the device" (``_OnDevice``)."""

    def __init__(self, monkeypatch):
        self.waits = 0
        self.events: list = []
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                self.timing, self.at, self.done, self.waited = enable_timing, None, False, False
                fake.events.append(self)

            def record(self, stream=None):
                self.at, self.done = time.perf_counter(), False

            def synchronize(self):
                assert self.at is not None, "an event waited for before it was recorded"
                self.waited = True
                if not self.done:  # waits for this event and the work queued before it only
                    fake.wait(upto=self.at)

            def elapsed_time(self, end):
                if not (self.done and end.done):
                    raise RuntimeError("elapsed_time: an event has not completed")
                assert self.timing and end.timing
                return 1000.0 * (end.at - self.at)

        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: fake.wait())
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
        self.pinned: list = []
        monkeypatch.setattr(torch.Tensor, "pin_memory",
                            lambda t: fake.pinned.append(t) or t)
        _OnDevice.cuda = self

    def wait(self, upto=None):
        """The host waits for the device: every event recorded (up to time ``upto``) is done."""
        self.waits += 1
        for e in self.events:
            if e.at is not None and (upto is None or e.at <= upto):
                e.done = True


class _OnDevice(torch.Tensor):
    """A tensor standing for one in GPU memory: what is computed from it is on the device too;
    reading it on the host (``.cpu()``, ``.item()``, ``.tolist()``, ``.numpy()``, ``int()``,
    ``bool()``, ``torch.equal``, ``nonzero``, a boolean mask) waits for the device, counted by
    ``_FakeCuda``, and gives host tensors and values."""
    cuda: _FakeCuda | None = None
    READS = {torch.Tensor.cpu, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy,
             torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__bool__,
             torch.Tensor.__index__, torch.equal, torch.nonzero, torch.Tensor.nonzero}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        masked = func is torch.Tensor.__getitem__ and isinstance(args[1], torch.Tensor) \
            and args[1].dtype == torch.bool
        if func not in cls.READS and not masked:
            return super().__torch_function__(func, types, args, kwargs)
        cls.cuda.wait()
        with torch._C.DisableTorchFunctionSubclass():
            args = [a.clone() if isinstance(a, cls) else a for a in args]  # host copies
            return func(*args, **kwargs)


def test_a_batch_waits_for_the_device_once_on_a_fake_cuda(monkeypatch):
    """The CUDA path (pinned upload, forward, postprocess on the device) on fakes of the same
    contract: each batch waits for the device once — when its results come back — and its stage
    times come from events read after that wait; the detections are the CPU path's."""
    cuda = _FakeCuda(monkeypatch)
    pred = Predictor(YOLOv12("n"), imgsz=64, fast=False)
    g = torch.Generator().manual_seed(0)
    head = torch.cat([torch.rand(1, 2, 32, generator=g) * 64,
                      torch.rand(1, 2, 32, generator=g) * 20 + 1,
                      torch.rand(1, 80, 32, generator=g)], 1)

    def model(x):  # a stand-in whose output depends on each input, on the "device" when queued
        y = head + 1e-3 * x.float().mean((1, 2, 3))[:, None, None]
        return y.as_subclass(_OnDevice) if pred._queued else y
    pred.model = model
    rng = np.random.default_rng(4)
    pics = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    want = list(pred.stream(pics, batch=2, workers=0))  # the CPU's way
    assert cuda.waits == 0 and all(len(d.labels) for d in want)
    pred._queued = True  # what a CUDA device sets
    stats = Stats()
    got = list(pred.stream(pics, batch=2, workers=0, stats=stats))
    assert cuda.waits == 3, cuda.waits  # 3 batches, one wait each
    assert stats.batches == 3 and min(stats.upload, stats.infer, stats.post) > 0
    assert len(cuda.pinned) == 2  # the upload ring: two page-locked buffers, in turn
    for d, w in zip(got, want):
        assert torch.equal(d.boxes, w.boxes) and torch.equal(d.scores, w.scores)
        assert torch.equal(d.labels, w.labels) and type(d.boxes) is torch.Tensor


def test_pinned_upload_ring_on_a_fake_cuda(monkeypatch):
    """The CUDA upload path with fakes of the same contract (no GPU here): page-locked buffers per
    input shape, two in turn, each refilled only after its last upload's event has completed, and
    the pixels arrive unchanged."""
    from yolov12.pipeline import PinnedBuffers
    cuda = _FakeCuda(monkeypatch)
    events, pinned = cuda.events, cuda.pinned
    up = PinnedBuffers(torch.device("cpu"))
    rng = np.random.default_rng(3)
    batches = [[rng.integers(0, 255, (3, 32, 64), dtype=np.uint8) for _ in range(2)]
               for _ in range(4)]
    used = []
    for k, b in enumerate(batches):
        x = up.upload(b)  # the fake device is the CPU: x is the page-locked buffer itself
        assert torch.equal(x, torch.from_numpy(np.stack(b)))
        assert len(pinned) == min(k + 1, 2)  # two buffers for this shape, no more
        used.append(x.data_ptr())
    assert used[0] != used[1] and used[2:] == used[:2]  # in turn: never the one just sent
    # uploads 3 and 4 reused buffers 1 and 2, each after waiting for its previous upload
    assert [e.waited for e in events] == [True, True, False, False] and cuda.waits == 2
    up.upload([batches[0][0]])  # another shape: its own buffers
    assert len(pinned) == 3 and pinned[2].shape == (1, 3, 32, 64)


def test_decode_runs_in_turn_with_the_model_where_its_threads_fill_the_cpu(monkeypatch):
    """On a CPU whose cores the model's threads fill, decoding beside the forward only stalls it:
    the default is then to read in the caller's thread (no worker thread); where they leave
    cores free, a worker per free core, at most 2; on a GPU 2."""
    import yolov12.cores
    from yolov12.pipeline import auto_workers
    monkeypatch.setattr(yolov12.cores, "usable_cores", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert auto_workers("cpu") == 0
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert auto_workers("cpu") == 1  # one core free: one worker (two would crowd the model)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert auto_workers("cpu") == 2 and auto_workers(torch.device("cuda", 0)) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    pred = Predictor(YOLOv12("n"), imgsz=64, fast=False)
    pred.model = lambda x: torch.rand(x.shape[0], 84, 8)
    before = {t.name for t in threading.enumerate()}
    seen = []
    for _ in pred.stream([np.zeros((40, 60, 3), np.uint8)] * 3):
        seen += [t.name for t in threading.enumerate() if t.name not in before]
    assert seen == []  # everything in the caller's thread
