"""Prediction pieces: NMS against a brute-force reference, letterbox round trips, postprocess, and
the predict CLI end to end on generated images."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from _lively import detecting, lively
from yolov12 import YOLOv12
from yolov12.__main__ import main
from yolov12.coco import NAMES
from yolov12.predict import (
    Letterbox,
    Predictor,
    batched_nms,
    letterbox,
    nms,
    postprocess,
    scale_boxes,
)

Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")


def _random_boxes(n, size=100.0):
    xy = torch.rand(n, 2) * size
    wh = torch.rand(n, 2) * size / 3 + 1
    return torch.cat((xy, xy + wh), 1)


def _iou_py(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _brute_force_nms(boxes, scores, labels, thr):
    """Textbook greedy NMS, one box at a time in Python floats."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(labels[i] != labels[j] or _iou_py(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("n,classes", [(1, 1), (60, 1), (300, 5)])
def test_batched_nms_matches_brute_force(n, classes, thr):
    boxes = _random_boxes(n)
    scores = torch.rand(n)
    labels = torch.randint(0, classes, (n,))
    want = _brute_force_nms(boxes.double().tolist(), scores.tolist(), labels.tolist(), thr)
    got = batched_nms(boxes, scores, labels, thr, use_torchvision=False)
    assert got.tolist() == want
    try:
        import torchvision  # noqa: F401
    except Exception:
        return
    assert batched_nms(boxes, scores, labels, thr, use_torchvision=True).tolist() == want


def test_nms_stopping_at_max_det_keeps_exactly_the_full_runs_first_boxes():
    # many overlapping candidates in few classes, ties in score included: the early stop must not
    # change which boxes are kept or their order
    n = 400
    boxes = _random_boxes(n, size=150.0)
    scores = torch.rand(n).mul(50).round().div(50)  # ties
    labels = torch.randint(0, 3, (n,))
    full = batched_nms(boxes, scores, labels, 0.5, use_torchvision=False)
    plain = nms(boxes, scores, 0.5)
    assert len(full) > 40 and len(plain) > 40
    for max_det in (1, 7, 40, 10_000):
        got = batched_nms(boxes, scores, labels, 0.5, use_torchvision=False, max_det=max_det)
        assert got.tolist() == full[:max_det].tolist(), max_det
        assert nms(boxes, scores, 0.5, max_det).tolist() == plain[:max_det].tolist(), max_det


def test_nms_negative_coordinates_and_empty():
    # class offsets must keep classes apart even for boxes left of / above the origin
    boxes = torch.tensor([[-50.0, -50, -10, -10], [-49, -49, -11, -11], [-50, -50, -10, -10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    assert batched_nms(boxes, scores, labels, 0.5, use_torchvision=False).tolist() == [0, 2]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                       0.5).numel() == 0


@pytest.mark.parametrize("hw", [(37, 101), (480, 640), (640, 480), (1000, 50), (64, 64)])
@pytest.mark.parametrize("imgsz", [64, 160])
def test_letterbox_round_trip(hw, imgsz):
    h, w = hw
    x, lb = letterbox(np.zeros((h, w, 3), np.uint8), imgsz)
    H, W = x.shape[1:]
    assert H % 32 == 0 and W % 32 == 0 and max(H, W) <= imgsz + 31
    assert lb.orig_shape == (h, w) and lb.shape == (H, W)
    # boxes in the original -> input pixels (the forward map) -> back with scale_boxes
    b = torch.tensor([[0.0, 0.0, w, h], [w * 0.25, h * 0.1, w * 0.5, h * 0.9]])
    fwd = b.clone()
    fwd[:, [0, 2]] = b[:, [0, 2]] * lb.ratio[0] + lb.pad[0]
    fwd[:, [1, 3]] = b[:, [1, 3]] * lb.ratio[1] + lb.pad[1]
    assert fwd[:, [0, 2]].max() <= W + 1e-3 and fwd[:, [1, 3]].max() <= H + 1e-3
    torch.testing.assert_close(scale_boxes(fwd, lb), b, atol=1e-3, rtol=0)


def test_letterbox_places_the_image_where_the_box_map_says():
    """A red square in the original shows up where the forward map puts its box."""
    img = np.zeros((310, 500, 3), np.uint8)  # 160 wide -> 99 high, padded to 128
    img[100:200, 300:400] = (255, 0, 0)
    x, lb = letterbox(img, 160)
    x0, y0 = 300 * lb.ratio[0] + lb.pad[0], 100 * lb.ratio[1] + lb.pad[1]
    x1, y1 = 400 * lb.ratio[0] + lb.pad[0], 200 * lb.ratio[1] + lb.pad[1]
    inside = x[:, int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2]
    assert torch.allclose(inside[0], torch.ones(())) and inside[1:].abs().max() < 1e-6
    assert lb.pad[1] > 0 and abs(x[0, 0, 0].item() - 114 / 255) < 1e-6  # grey padding above


def test_scale_boxes_clips_to_the_image():
    lb = Letterbox((0.5, 0.5), (0, 16), (100, 200), (96, 128))
    out = scale_boxes(torch.tensor([[-10.0, 0.0, 200.0, 200.0]]), lb)
    assert out.tolist() == [[0.0, 0.0, 200.0, 100.0]]


def test_postprocess_decodes_and_suppresses():
    nc = 3
    preds = torch.zeros(1, 4 + nc, 4)
    preds[0, :4, 0] = torch.tensor([50.0, 50, 20, 20])   # class 1, 0.9
    preds[0, :4, 1] = torch.tensor([51.0, 50, 20, 20])   # same place, class 1, 0.8: suppressed
    preds[0, :4, 2] = torch.tensor([51.0, 50, 20, 20])   # same place, class 2: kept
    preds[0, :4, 3] = torch.tensor([10.0, 10, 4, 4])     # below conf
    preds[0, 4 + 1, 0], preds[0, 4 + 1, 1], preds[0, 4 + 2, 2], preds[0, 4, 3] = 0.9, 0.8, 0.6, 0.1
    (boxes, scores, labels), = postprocess(preds, conf=0.25, iou=0.7)
    assert labels.tolist() == [1, 2]
    torch.testing.assert_close(boxes[0], torch.tensor([40.0, 40, 60, 60]))
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.6]))
    with pytest.raises(ValueError, match="conf"):
        postprocess(preds, conf=2.0)


def test_predictor_batches_images_of_different_sizes():
    model = YOLOv12("n").eval()
    pred = Predictor(model, imgsz=64, conf=0.0, max_det=5)
    ims = [Image.new("RGB", (90, 40), (10, 200, 30)), Image.new("RGB", (40, 70), (200, 10, 30))]
    dets = pred(ims)
    assert len(dets) == 2
    for det, im in zip(dets, ims):
        assert det.boxes.shape == (5, 4)
        assert det.boxes[:, [0, 2]].max() <= im.size[0] and det.boxes[:, [1, 3]].max() <= im.size[1]
    # batching must not change an image's detections (padding goes after the image)
    alone = pred([ims[1]])[0]
    torch.testing.assert_close(alone.boxes, dets[1].boxes, atol=1e-3, rtol=1e-4)


def test_predict_cli_end_to_end(tmp_path, capsys):
    img = tmp_path / "scene.png"
    Image.new("RGB", (120, 80), (90, 120, 200)).save(img)
    weights = tmp_path / "w.pt"
    torch.save(YOLOv12("n").state_dict(), weights)
    out = tmp_path / "out"
    rc = main(["predict", str(img), "--weights", str(weights), "--imgsz", "64", "--conf", "0.0",
               "--max-det", "7", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    drawn = Image.open(out / "scene.png")
    assert drawn.size == (120, 80)
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 1 and records[0]["width"] == 120 and records[0]["height"] == 80
    dets = records[0]["detections"]
    assert len(dets) == 7
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 120 and 0 <= y1 <= y2 <= 80
        assert d["class_name"] == NAMES[d["class_id"]] and 0.0 <= d["score"] <= 1.0


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "w.pt"
    torch.save(YOLOv12("n").state_dict(), path)
    return path


def _folder(tmp_path, n_good=3, corrupt=("broken.jpg",)):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n_good):
        Image.new("RGB", (90 + 10 * i, 60), (30 * i, 120, 200)).save(folder / f"img{i}.png")
    for name in corrupt:
        (folder / name).write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def test_predict_skips_a_corrupt_file_keeps_going_and_lists_it(tmp_path, capsys, weights_file):
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    rc = main(["predict", str(folder), "--weights", str(weights_file), "--imgsz", "64",
               "--out", str(out), "--device", "cpu", "--batch", "2"])
    assert rc == 1  # finished, but not every image could be read
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0] and "skipped" in warnings[0]
    assert "1 of 4 images could not be read" in captured.err
    records = json.loads((out / "predictions.json").read_text())
    assert [r["image"].rsplit("/", 1)[-1] for r in records] == [
        "broken.jpg", "img0.png", "img1.png", "img2.png"]
    assert "error" in records[0] and all("detections" in r for r in records[1:])
    assert sorted(p.name for p in out.iterdir()) == [
        "img0.png", "img1.png", "img2.png", "predictions.json"]
    # one line per image, like ultralytics, and the per-stage speed
    assert "image 2/4 " in captured.out and "64x" in captured.out
    assert "ms pre-process" in captured.out and "ms inference" in captured.out
    assert "ms NMS per image" in captured.out
    assert "predict:" in captured.err  # the progress bar (stderr) on a folder


def test_predict_writes_predictions_json_even_when_interrupted(tmp_path, monkeypatch,
                                                               weights_file):
    import yolov12.predict as P
    folder = _folder(tmp_path, n_good=3, corrupt=())
    calls = []

    def draw_then_stop(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return Image.new("RGB", (8, 8))
    monkeypatch.setattr(P, "draw", draw_then_stop)
    out = tmp_path / "out"
    rc = main(["predict", str(folder), "--weights", str(weights_file), "--imgsz", "64",
               "--out", str(out), "--device", "cpu", "--no-progress"])
    assert rc == 130
    records = json.loads((out / "predictions.json").read_text())
    # an image's record is kept once its picture is written (its "output" names a file that
    # is there): the second one was being drawn
    assert [r["image"].rsplit("/", 1)[-1] for r in records] == ["img0.png"]


def test_an_image_line_is_printed_once_its_file_is_written(tmp_path, monkeypatch, weights_file):
    """The "image k/n" line says the image is done: printed after its annotated file is written
    (the suite and the benchmark against ultralytics time the command by these lines), also
    when the writer thread runs behind the model."""
    import time

    import yolov12.predict as P
    folder = _folder(tmp_path, n_good=3, corrupt=())
    out = tmp_path / "out"
    real_save = P._save_image

    def slow_save(image, path):  # a slow disk: the writer lags behind the loop
        time.sleep(0.1)
        real_save(image, path)
    there = []

    def noting_print(*a, **k):
        if a and str(a[0]).startswith("image "):
            name = str(a[0]).split(": ")[0].rsplit("/", 1)[-1]
            there.append((name, (out / name).is_file()))
    monkeypatch.setattr(P, "_save_image", slow_save)
    monkeypatch.setattr(P, "print", noting_print, raising=False)
    assert main(["predict", str(folder), "--weights", str(weights_file), "--imgsz", "32",
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert there == [("img0.png", True), ("img1.png", True), ("img2.png", True)]


def test_ctrl_c_in_the_real_command_is_one_line_and_keeps_the_json(tmp_path, weights_file):
    """SIGINT sent to a running `yolov12 predict`: no traceback, one line that says where the
    images done so far are, and predictions.json holds them."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(150):  # far more than run before the signal arrives
        Image.new("RGB", (40, 32), (i % 256, 90, 160)).save(folder / f"{i:03d}.png")
    out = tmp_path / "out"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "yolov12", "predict", str(folder), "--weights",
                             str(weights_file), "--imgsz", "32", "--device", "cpu", "--out",
                             str(out), "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("image 3/"):
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err + rest
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert len(said) == 1 and "predictions.json holds the" in said[0] and "of 150 images" in said[0]
    records = json.loads((out / "predictions.json").read_text())
    assert 3 <= len(records) < 150 and f"holds the {len(records)} of 150" in said[0]


def test_an_inverted_box_is_drawn_and_kept():
    from yolov12.predict import Detections, draw
    im = Image.new("RGB", (80, 60), (0, 0, 0))
    det = Detections(torch.tensor([[50.0, 40.0, 10.0, 12.0]]), torch.tensor([0.9]),
                     torch.tensor([0]))
    drawn = np.asarray(draw(im, det, {0: "person"}))
    assert drawn[12:41, 10].any() and drawn[12:41, 50].any()  # both vertical sides, in order
    assert not drawn[50:, 60:].any()  # nothing outside the box and its label


def test_predict_output_folder_is_not_overwritten(tmp_path, capsys, weights_file):
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(img)
    out = tmp_path / "runs" / "predict"
    base = ["predict", str(img), "--weights", str(weights_file), "--imgsz", "64", "--device",
            "cpu", "--out", str(out)]
    for _ in range(3):
        assert main(base) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["predict", "predict2", "predict3"]
    assert "predict3" in capsys.readouterr().out
    assert main(base + ["--exist-ok"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["predict", "predict2", "predict3"]


@pytest.mark.parametrize("argv,msg", [
    (["--device", "tpu"], "--device: unknown device 'tpu'"),
    (["--device", "cpu", "--half"], "--half: float16 inference needs a CUDA device"),
    (["--conf", "1.5"], "--conf: expected a value in [0, 1]"),
    (["--batch", "0"], "--batch: expected a value >= 1"),
])
def test_predict_bad_options_are_one_line(tmp_path, argv, msg):
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(img)
    with pytest.raises(SystemExit) as e:
        main(["predict", str(img), "--model", "n", "--out", str(tmp_path / "o")] + argv)
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)


def test_predict_non_image_on_the_command_line_and_backend_typo(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(SystemExit, match=r"IMAGE: .*notes.txt' is not an image or video file"):
        main(["predict", str(notes), "--model", "n"])
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(img)
    with pytest.raises(SystemExit) as e:  # argparse: exit code 2 and the list of choices
        main(["predict", str(img), "--model", "n", "--backend", "tritn"])
    assert e.value.code == 2
    assert "invalid choice: 'tritn'" in capsys.readouterr().err


def test_label_font_grows_with_the_image():
    from yolov12.predict import label_font
    small, big = label_font((300, 200)), label_font((4000, 3000))
    if not hasattr(big, "size"):
        pytest.skip("Pillow without a scalable default font (needs >= 10.1 and FreeType)")
    assert small.size == 12 and big.size == round(0.035 * 3500)


def test_predictor_fast_path_matches_the_reference_model():
    model = lively(YOLOv12("n"))
    ims = [Image.new("RGB", (90, 40), (10, 200, 30)), Image.new("RGB", (40, 70), (200, 10, 30))]
    fast = Predictor(model, imgsz=64, conf=0.0, max_det=20)
    ref = Predictor(model, imgsz=64, conf=0.0, max_det=20, fast=False, backend="reference")
    assert type(fast.model).__name__ == "FastYOLOv12"
    for a, b in zip(fast(ims), ref(ims)):
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-2, rtol=1e-4)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=1e-4)
        assert torch.equal(a.labels, b.labels)
    assert fast.seen == 2 and all(v > 0 for v in fast.speed().values())


def test_predict_cli_needs_weights(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(img)
    with pytest.raises(SystemExit, match="--weights FILE"):
        main(["predict", str(img), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"no such file '.*yolo12n.pt'; download it from https://"):
        main(["predict", str(img), "--model", str(tmp_path / "yolo12n.pt")])
    with pytest.warns(UserWarning, match="noise"):
        main(["predict", str(img), "--model", "n", "--imgsz", "64", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="no such file"):
        main(["predict", str(tmp_path / "missing.png"), "--model", "n"])


# ----------------------------------------------------------------------------------------------
# --batch is a speed knob: every image runs at the shape it would run at alone

# (w, h) -> input (H, W) at imgsz 96: three shapes, interleaved so that batches of 4 in input
# order would mix them
MIXED = [(120, 80), (80, 120), (100, 100), (130, 70), (60, 90), (150, 100)]
RUN_SHAPES = [(64, 96), (96, 64), (96, 96), (64, 96), (96, 64), (64, 96)]


def _mixed_images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in MIXED]


def test_predictor_runs_each_image_at_its_own_shape_whatever_the_batch():
    """A batch of mixed shapes used to be padded to its largest image: the model then saw more
    grey border and more anchors, and detections changed. Each image must run at exactly the
    shape it runs at alone, and say so (``input_shape``)."""
    pred = Predictor(detecting(YOLOv12("n")), imgsz=96, conf=0.3)
    ran = []
    pred.model.register_forward_pre_hook(lambda m, args: ran.append(tuple(args[0].shape)))
    ims = _mixed_images()
    together = pred(ims)
    assert sorted(ran) == [(1, 3, 96, 96), (2, 3, 96, 64), (3, 3, 64, 96)]  # one per shape
    ran.clear()
    alone = [pred([im])[0] for im in ims]
    assert [s[2:] for s in ran] == RUN_SHAPES
    for k, (a, b) in enumerate(zip(together, alone)):
        assert a.input_shape == b.input_shape == RUN_SHAPES[k]
        assert len(a.labels) == len(b.labels) > 0, k
        # float32 results of one image in a batch of 1 vs 3 (different GEMM blocking): ~1e-5 px
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
        assert torch.equal(a.labels, b.labels)


def test_plan_batches_groups_files_by_input_shape(tmp_path):
    from yolov12.predict import plan_batches
    files = []
    for i, im in enumerate(_mixed_images()):
        files.append(tmp_path / f"{i}.png")
        im.save(files[-1])
    (tmp_path / "bad.png").write_bytes(b"not a png")
    files.insert(2, tmp_path / "bad.png")
    pred = Predictor(YOLOv12("n"), imgsz=96, fast=False)
    plan = plan_batches(files, 2, pred.input_shape)
    # shapes in order of first appearance, input order within; the unreadable file on its own
    assert plan == [[0, 4], [6], [1, 5], [2], [3]]
    assert plan_batches(files, 1, pred.input_shape) == [[i] for i in range(len(files))]


def _predict_cli(*args):
    """The real command in a subprocess: its exit code, output, and no traceback."""
    import os
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "yolov12", "predict", *args], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    return r


def test_predict_batch_does_not_change_detections_cli(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(_mixed_images()):
        im.save(folder / f"{i}.png")
    weights = tmp_path / "w.pt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(detecting(YOLOv12("n")).state_dict(), weights)
    runs = {}
    for batch in (1, 4):
        out = tmp_path / f"b{batch}"
        r = _predict_cli(str(folder), "--weights", str(weights), "--imgsz", "96", "--conf", "0.3",
                         "--device", "cpu", "--batch", str(batch), "--out", str(out),
                         "--no-progress")
        assert r.returncode == 0, r.stderr[-3000:]
        # the line per image prints the shape it ran at
        printed = dict(re.findall(r"^image \d+/6 \S+/(\d)\.png: (\d+x\d+) ", r.stdout, re.M))
        assert printed == {str(k): f"{h}x{w}" for k, (h, w) in enumerate(RUN_SHAPES)}, r.stdout
        runs[batch] = json.loads((out / "predictions.json").read_text())
    one, four = runs[1], runs[4]
    assert [r["image"] for r in one] == [r["image"] for r in four]  # input order, both
    for a, b in zip(one, four):
        da, db = a["detections"], b["detections"]
        assert len(da) == len(db) > 0, a["image"]
        # the JSON rounds boxes to 0.01 px and scores to 1e-4: a float32 difference of ~1e-5 can
        # flip the last digit, never more
        for x, y in zip(da, db):
            assert x["class_id"] == y["class_id"]
            assert max(abs(p - q) for p, q in zip(x["box"], y["box"])) <= 0.011
            assert abs(x["score"] - y["score"]) <= 1.1e-4
