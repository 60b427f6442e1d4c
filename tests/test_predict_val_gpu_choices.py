"""predict and val with the GPU's choices, on the CPU (issue 25, item 1).

Under ``yolov12_kernels.target.rehearse_gpu`` a ``Predictor`` builds the fast path as it does on
an sm_90 GPU: fused convs, Triton attention, a (recorded) CUDA graph per input shape, float16
offered. Its detections are exactly what the GPU path's direct forward and the post-processing
give, its raw output is the CPU path's within float32 rounding, and val scores both the same.
The small network of ``_tiny`` at 64x64, two images (one shape, one batch): a run costs a few
interpreted forwards. (tests/test_predict.py and tests/test_val.py cover the CPU's choices.)
"""
from __future__ import annotations

import json

import pytest
import torch

from _tiny import tiny_yolo
from test_fused_forward import interpreted
from yolov12.fast import CapturedForward
from yolov12.predict import Predictor, letterbox, postprocess, scale_boxes

Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")


def _pictures(seed: int, n: int = 2, side: int = 64):
    g = torch.Generator().manual_seed(seed)
    return [Image.fromarray((torch.rand(side, side, 3, generator=g) * 255).byte().numpy())
            for _ in range(n)]


@interpreted
def test_predictor_with_the_gpus_choices():
    from yolov12_kernels.target import rehearse_gpu
    model = tiny_yolo(2)
    pics = _pictures(0)
    settings = dict(imgsz=64, conf=0.3, max_det=20)
    cpu = Predictor(model, **settings)
    assert not cpu.model.fused_convs and cpu.model.attention_backend == "sdpa"
    with pytest.raises(ValueError, match="half"):
        Predictor(model, imgsz=64, half=True)
    with rehearse_gpu():
        gpu = Predictor(model, **settings)
        half = Predictor(model, imgsz=64, half=True)  # offered on a GPU
    fast = gpu.model
    assert fast.fused_convs and fast.attention_backend == "triton" and fast._gpu
    assert half.model.dtype == torch.float16 and half.model.fused_convs
    got = gpu(pics)
    assert isinstance(fast._replays[(2, 3, 64, 64)], CapturedForward)
    boxed = [letterbox(p, 64) for p in pics]
    x = torch.stack([b[0] for b in boxed])
    with torch.inference_mode():
        raw = fast.direct(x)
        torch.testing.assert_close(raw, cpu.model(x), rtol=1e-4, atol=1e-3)
    want = postprocess(raw, 0.3, 0.7, 20)
    assert sum(len(d.scores) for d in got) > 0
    for d, (boxes, scores, labels), (_, lb) in zip(got, want, boxed):
        assert torch.equal(d.boxes, scale_boxes(boxes, lb)) and torch.equal(d.scores, scores)
        assert torch.equal(d.labels, labels)


@interpreted
def test_val_with_the_gpus_choices_scores_what_the_cpus_do(tmp_path):
    """The ground truth is the CPU path's own detections (so the scores are high, and a
    difference in the GPU path's boxes or scores would show)."""
    pytest.importorskip("pycocotools", reason="pycocotools not installed")
    from yolov12.val import METRICS, evaluate
    from yolov12_kernels.target import rehearse_gpu
    model = tiny_yolo(2)
    images = tmp_path / "images"
    images.mkdir()
    pics = _pictures(1)
    settings = dict(imgsz=64, conf=0.3, max_det=20, multi_label=True)
    cpu = Predictor(model, **settings)
    entries, anns = [], []
    for i, (pic, det) in enumerate(zip(pics, cpu(pics))):
        pic.save(images / f"{i}.png")
        entries.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64})
        for box, label in zip(det.boxes[:3].tolist(), det.labels[:3].tolist()):
            x0, y0, x1, y1 = box
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": label + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": 0})
    assert anns
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({"images": entries, "annotations": anns, "categories": [
        {"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    quiet = dict(batch=2, progress=False, print_fn=lambda *_: None)
    on_cpu = evaluate(images, annotations, cpu, **quiet)
    with rehearse_gpu():
        gpu = Predictor(model, **settings)
    on_gpu = evaluate(images, annotations, gpu, **quiet)
    assert isinstance(gpu.model._replays[(2, 3, 64, 64)], CapturedForward)
    assert on_cpu["AP50"] > 0.5 and on_gpu["detections"] == on_cpu["detections"]
    for k in METRICS:
        assert on_gpu[k] == pytest.approx(on_cpu[k], abs=1e-6), k
