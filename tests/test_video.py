"""Video through the real `yolov12 predict` command (PyAV): the annotated video and the per-frame
JSON, vid_stride, progress lines in frames, and a truncated video that gives one line and keeps
the frames read before the cut. The videos are made here, with PyAV."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV not installed (pip install av)")

from yolov12 import YOLOv12  # noqa: E402

FRAMES, H, W = 12, 64, 96


def _video(path: Path) -> Path:
    """FRAMES frames of noise with a bright box moving across, H.264 with the index up front
    (faststart) so that a cut-off copy still opens and decodes up to the cut."""
    rng = np.random.default_rng(0)
    out = av.open(str(path), "w", options={"movflags": "faststart"})
    s = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
    s.width, s.height, s.pix_fmt = W, H, "yuv420p"
    for k in range(FRAMES):
        a = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        a[10:40, 5 + 4 * k:35 + 4 * k] = 250
        for packet in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
            out.mux(packet)
    for packet in s.encode():
        out.mux(packet)
    out.close()
    return path


def test_predict_video_end_to_end_and_a_truncated_one(tmp_path):
    clip = _video(tmp_path / "clip.mp4")
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    weights = tmp_path / "w.pt"
    torch.save(YOLOv12("n").state_dict(), weights)
    out = tmp_path / "out"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "yolov12", "predict", f"source={clip}",
                        f"source={tmp_path / 'cut.mp4'}", f"model={weights}", "imgsz=64",
                        "conf=0.0", "max_det=3", "vid_stride=2", "device=cpu", f"out={out}",
                        "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 1, r.stderr[-3000:]  # done, but one video was cut short
    # progress in frames: a line per frame run, every second frame of 12
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("video 1/2")]
    assert [ln.split("(frame ")[1].split(")")[0] for ln in lines] == \
        [f"{k + 1}/{FRAMES}" for k in range(0, FRAMES, 2)]
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "cut.mp4" in warned[0] and "frames before it are kept" in warned[0]
    # the annotated video: every second frame, at half the frame rate, the input's size
    with av.open(str(out / "clip.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (W, H) and float(s.average_rate) == 5.0
        assert sum(1 for _ in c.decode(s)) == FRAMES // 2
    boxes = json.loads((out / "clip.frames.json").read_text())
    assert [f["frame"] for f in boxes["frames"]] == list(range(0, FRAMES, 2))
    assert all(len(f["detections"]) == 3 for f in boxes["frames"])
    # the cut video: what was read before the cut is written, and says so
    records = {Path(rec["video"]).name: rec for rec in
               json.loads((out / "predictions.json").read_text())}
    assert "error" not in records["clip.mp4"] and records["clip.mp4"]["frames"] == FRAMES // 2
    cut = records["cut.mp4"]
    assert "truncated" in cut["error"] and 0 < cut["frames"] < FRAMES // 2
    with av.open(cut["output"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == cut["frames"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_video_stream_stopped_early_closes_its_container(tmp_path, monkeypatch):
    """predict holds its jobs generator while it runs (and while it handles Ctrl-C): when the
    pipeline is stopped after two frames, the video's container is closed then — not whenever
    the generator is collected — and no thread of the pipeline is left."""
    import threading

    from yolov12.pipeline import file_jobs
    from yolov12.predict import Predictor
    clip = _video(tmp_path / "clip.mp4")
    opened = []
    real_open = av.open

    class Tracked:  # av.open as read_frames uses it (a context manager), noting its exit
        def __init__(self, *a, **k):
            self.container, self.closed = real_open(*a, **k), False
            opened.append(self)

        def __enter__(self):
            return self.container.__enter__()

        def __exit__(self, *exc):
            self.closed = True
            return self.container.__exit__(*exc)

    monkeypatch.setattr(av, "open", Tracked)
    pred = Predictor(YOLOv12("n"), imgsz=64, fast=False)
    pred.model = lambda x: torch.rand(x.shape[0], 84, 8)
    jobs = file_jobs([clip])
    frames = pred.run_jobs(jobs, workers=2)  # the feeder thread decodes the frames
    assert [next(frames)[0].job.frame for _ in range(2)] == [0, 1]
    assert len(opened) == 1 and not opened[0].closed
    frames.close()
    assert opened[0].closed
    assert [t.name for t in threading.enumerate() if t.name.startswith("yolov12-")] == []


def test_ctrl_c_after_a_failed_write_is_still_130_and_keeps_the_json(tmp_path, monkeypatch,
                                                                     capsys):
    """An image whose file could not be written, then Ctrl-C while a video runs: the handler
    closes the video without raising the earlier failure — exit 130, one line (which says what
    could not be written), no traceback — and predictions.json holds what was written: the
    video's frames so far, not the image whose file is not there."""
    import yolov12.predict as P
    from PIL import Image

    from yolov12.__main__ import main
    from yolov12.outputs import OutputError
    clip = _video(tmp_path / "clip.mp4")
    Image.new("RGB", (64, 48), (40, 90, 160)).save(tmp_path / "a.png")

    def full_disk(image, path):
        raise OutputError(path, "No space left on device")

    drawn = []

    def draw_then_ctrl_c(*a):  # the image, frames 0 and 1, then Ctrl-C at frame 2
        drawn.append(1)
        if len(drawn) == 4:
            raise KeyboardInterrupt
        return Image.new("RGB", (W, H))
    monkeypatch.setattr(P, "_save_image", full_disk)
    monkeypatch.setattr(P, "draw", draw_then_ctrl_c)
    out = tmp_path / "out"
    rc = main(["predict", str(tmp_path / "a.png"), str(clip), "--model", "n", "--imgsz", "64",
               "--device", "cpu", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert len(said) == 1 and "1 output(s) could not be written" in said[0], err
    assert "a.png: No space left on device" in said[0]
    records = json.loads((out / "predictions.json").read_text())
    assert [(Path(r["video"]).name, r["frames"]) for r in records] == [("clip.mp4", 2)]
    with av.open(records[0]["output"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == 2
