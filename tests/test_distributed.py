"""torchrun with 2 CPU (gloo) processes: val gives exactly the single-process results and metrics,
predict over a folder the same detections, gathered on rank 0."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from _lively import lively
from yolov12 import YOLOv12
from yolov12.predict import Predictor, load_image

pytest.importorskip("pycocotools", reason="pycocotools not installed")
Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

SIZES = [(160, 120), (96, 128), (200, 90), (70, 70), (120, 160), (64, 100), (150, 150)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """7 images of different sizes, weights of a 3-class model, and ground truth made from that
    model's own confident detections (so that the metrics are not all zero)."""
    root = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    model = lively(YOLOv12("n", nc=3))
    torch.save(model.state_dict(), root / "w.pt")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png")
    pred = Predictor(model, imgsz=64, conf=0.001, max_det=3, device="cpu")
    images, anns = [], []
    for i, (w, h) in enumerate(SIZES):
        det = pred([load_image(root / "images" / f"{i}.png")])[0]
        images.append({"id": 100 + i, "file_name": f"{i}.png", "width": w, "height": h})
        for (x1, y1, x2, y2), c in zip(det.boxes.tolist(), det.labels.tolist()):
            dx = 0.1 * (x2 - x1) * (i % 2)  # some ground truth a little off the detection
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": int(c) + 1,
                         "bbox": [x1 + dx, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    (root / "ann.json").write_text(json.dumps({
        "images": images, "annotations": anns,
        "categories": [{"id": k, "name": n} for k, n in ((1, "a"), (2, "b"), (3, "c"))]}))
    return root


def _run(root, argv, nproc=1):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "1"}  # same numerics
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={nproc}"] if nproc > 1 else [sys.executable])
    r = subprocess.run(launcher + ["-m", "yolov12"] + argv, cwd=root, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_val_on_two_processes_gives_exactly_the_single_process_metrics(dataset):
    common = ["val", "--images", "images", "--annotations", "ann.json", "--weights", "w.pt",
              "--imgsz", "64", "--batch", "2", "--workers", "0", "--device", "cpu"]
    one = _run(dataset, common + ["--out", "one.json"])
    two = _run(dataset, common + ["--out", "two.json"], nproc=2)
    assert json.loads((dataset / "one.json").read_text()) == \
        json.loads((dataset / "two.json").read_text())
    metrics = [line for line in one.splitlines() if "Average" in line]
    assert len(metrics) == 12 and metrics == [ln for ln in two.splitlines() if "Average" in ln]
    ap = float(re.search(r"mAP50-95 ([\d.]+)", one).group(1))
    assert ap > 0.1, one  # a real score, not the all-zero case
    assert "2 processes" in two and "2 processes" not in one


def test_predict_folder_on_two_processes_gathers_every_image(dataset):
    common = ["predict", "images", "--weights", "w.pt", "--imgsz", "64", "--conf", "0.001",
              "--max-det", "5", "--device", "cpu", "--batch", "2", "--no-progress"]
    _run(dataset, common + ["--out", "pred1"])
    _run(dataset, common + ["--out", "pred2"], nproc=2)
    one, two = (json.loads((dataset / d / "predictions.json").read_text())
                for d in ("pred1", "pred2"))
    assert [r["image"] for r in two] == [f"images/{i}.png" for i in range(len(SIZES))]
    assert sum(len(r["detections"]) for r in two) > 0
    for r in one + two:
        r.pop("output")  # pred1/... vs pred2/...
    assert one == two
    assert sorted(p.name for p in (dataset / "pred2").glob("*.png")) == sorted(
        f"{i}.png" for i in range(len(SIZES)))
