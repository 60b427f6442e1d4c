"""An exported .onnx file as the model: predict, val and bench run it in onnxruntime with the same
pre- and post-processing as the PyTorch model, and say so in one line when they cannot."""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")

from _lively import detecting  # noqa: E402
from yolov12 import YOLOv12  # noqa: E402
from yolov12.export import export_onnx  # noqa: E402
from yolov12.onnx_model import OnnxModel  # noqa: E402
from yolov12.predict import Predictor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = {0: "gadget", 1: "gizmo", 2: "widget"}  # the categories of test_val's tiny COCO set
# (w, h): at imgsz 96 the first two letterbox to 64x96 (the static file's shape), the others not
SIZES = [(120, 80), (150, 100), (80, 120), (100, 100), (60, 90)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(3-class PyTorch model, its .pt, a static 64x96 export, a dynamic one): exported once (a
    few seconds each). Seeded here: a module fixture runs after whatever test came before."""
    root = tmp_path_factory.mktemp("onnx_model")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = detecting(YOLOv12("n", nc=3))
    model.names = dict(NAMES)
    torch.save(model.state_dict(), root / "w.pt")
    static = export_onnx(copy.deepcopy(model), root / "static.onnx", imgsz=(64, 96))
    dynamic = export_onnx(copy.deepcopy(model), root / "dynamic.onnx", imgsz=(64, 96),
                          dynamic=True)
    return model, root / "w.pt", static, dynamic


def _images():
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


def _assert_same_detections(got, want):
    """Same boxes as PyTorch. The file computes the same float32 function with other kernels
    (BN folded, reference attention as MatMul/Softmax): measured differences ~6e-5 px in boxes and
    ~1e-6 in scores at this size, the same as between PyTorch's own fast and reference paths
    (~5e-5 px, test_predictor_fast_path_matches_the_reference_model allows 1e-2 px). 1e-3 px and
    1e-5 leave a 15x margin and still catch any box-mapping or letterbox slip (>= 0.5 px)."""
    for g, w in zip(got, want):
        assert g.input_shape == w.input_shape
        assert len(g.labels) == len(w.labels) > 0
        assert torch.equal(g.labels, w.labels)
        torch.testing.assert_close(g.boxes, w.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(g.scores, w.scores, atol=1e-5, rtol=0)


def test_onnx_predictions_equal_pytorch(exported):
    model, _, static, dynamic = exported
    ims = _images()
    want = Predictor(model, imgsz=96, conf=0.5)(ims)
    # a dynamic file runs every image at its own letterboxed shape, as PyTorch does
    pred = Predictor(OnnxModel(dynamic), imgsz=96, conf=0.5)
    _assert_same_detections(pred(ims), want)
    assert pred.names == NAMES  # from the file's metadata
    # a static file takes one shape: images of that shape give PyTorch's boxes; others are
    # letterboxed into it (imgsz defaults to the file's size)
    pred = Predictor(OnnxModel(static), conf=0.5)
    assert pred.imgsz == 96
    got = pred(ims)
    _assert_same_detections(got[:2], want[:2])
    for det, (w, h) in zip(got[2:], SIZES[2:]):
        assert det.input_shape == (64, 96) and len(det.labels) > 0
        assert det.boxes[:, [0, 2]].max() <= w and det.boxes[:, [1, 3]].max() <= h


def test_static_file_takes_its_shape_only_and_any_batch(exported):
    model, _, static, _ = exported
    engine = OnnxModel(static)
    assert (engine.fixed_shape, engine.fixed_batch, engine.nc) == ((64, 96), 1, 3)
    with pytest.raises(ValueError, match=r"^imgsz: static.onnx takes exactly 64x96 inputs"):
        Predictor(engine, imgsz=320)
    with pytest.raises(ValueError, match=r"^x: static.onnx takes exactly 64x96 inputs"):
        engine(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"^half: static.onnx is an exported ONNX file"):
        Predictor(engine, half=True)
    # a file of batch 1 runs a batch of 3 in three calls: the same as PyTorch
    x = torch.rand(3, 3, 64, 96)
    with torch.no_grad():
        want = copy.deepcopy(model).eval()(x)
    torch.testing.assert_close(engine(x), want, atol=1e-3, rtol=1e-4)


def _strip_metadata(src: Path, dst: Path) -> Path:
    import onnx
    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    onnx.save(proto, str(dst))
    return dst


def test_class_count_and_names_come_from_the_file(exported, tmp_path):
    _, _, static, dynamic = exported
    meta = OnnxModel(static).metadata
    assert meta["nc"] == "3" and meta["scale"] == "n" and meta["imgsz"] == "[64, 96]"
    assert meta["task"] == "detect" and meta["names"] == repr(NAMES)  # ultralytics' format
    assert OnnxModel(dynamic).names == NAMES
    # files exported before the metadata was written: nc from the output (one probe run for a
    # dynamic file, whose class axis is symbolic), names the class indices
    for src in (static, dynamic):
        old = OnnxModel(_strip_metadata(src, tmp_path / src.name))
        assert old.nc == 3 and old.names == {0: "0", 1: "1", 2: "2"}, src.name
        assert old.metadata == {}


def test_files_that_are_not_detection_exports_are_refused(exported, tmp_path):
    _, _, static, _ = exported
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match=r"^model: onnxruntime cannot load .*junk.onnx"):
        OnnxModel(tmp_path / "junk.onnx")
    from yolov12.export import write_metadata
    seg = tmp_path / "seg.onnx"
    seg.write_bytes(static.read_bytes())
    write_metadata(seg, {"task": "segment"})
    with pytest.raises(ValueError, match="is a 'segment' model"):
        OnnxModel(seg)


def test_missing_onnxruntime_is_one_line(exported):
    """In this process: the library's ImportError and the command line's one line (the whole
    command, in a subprocess, is in test_predict_cli_runs_an_onnx_file). Everything is imported
    before the patch: patch.dict drops modules first imported inside it, and re-importing some
    of torch's registers their operators twice."""
    from yolov12.__main__ import build_parser, translate
    from yolov12.cli_args import model_from_args
    _, _, static, _ = exported
    args = build_parser().parse_args(translate(["predict", f"model={static}", "source=a.png"]))
    with mock.patch.dict(sys.modules, {"onnxruntime": None}):
        with pytest.raises(ImportError, match=r"needs onnxruntime \(pip install onnxruntime"):
            OnnxModel(static)
        with pytest.raises(SystemExit) as e:
            model_from_args(args, "predict")
    msg = str(e.value)
    assert "pip install onnxruntime" in msg and "\n" not in msg and msg.startswith("--weights:")


def _cli(*args, hide_onnxruntime=False, cwd=None):
    """The real command in a subprocess; no traceback, whatever the outcome."""
    code = ("import sys; sys.modules['onnxruntime'] = None; " if hide_onnxruntime else
            "import sys; ") + "from yolov12.__main__ import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       timeout=300, env=env, cwd=cwd)
    assert "Traceback" not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    return r


def test_predict_cli_runs_an_onnx_file(exported, tmp_path):
    _, _, static, dynamic = exported
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(_images()):
        im.save(folder / f"{i}.png")
    r = _cli("predict", f"model={dynamic}", f"source={folder}", "imgsz=96", "conf=0.5",
             "batch=4", "device=cpu", f"project={tmp_path}", "name=p", "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "onnxruntime" in r.stdout and "CPUExecutionProvider" in r.stdout
    assert re.search(r"image 3/5 \S+/2\.png: 96x64 ", r.stdout), r.stdout
    records = json.loads((tmp_path / "p" / "predictions.json").read_text())
    names = {d["class_name"] for rec in records for d in rec["detections"]}
    assert names and names <= set(NAMES.values())
    # one line each: the missing runtime, and a size the static file does not take
    r = _cli("predict", f"model={static}", f"source={folder}", "device=cpu",
             f"project={tmp_path}", "name=q", hide_onnxruntime=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "pip install onnxruntime" in r.stderr
    r = _cli("predict", f"model={static}", f"source={folder}", "imgsz=320", "device=cpu",
             f"project={tmp_path}", "name=q", "--no-progress")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(
        "--imgsz: static.onnx takes exactly 64x96 inputs")


def _coco(tmp_path, model):
    """A tiny COCO-format set: the images above, ground truth from the model's own confident
    boxes, some shifted (so that the metrics are neither 0 nor 1)."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    pred = Predictor(model, imgsz=96, conf=0.6, max_det=3)
    images, anns = [], []
    for i, im in enumerate(_images()):
        im.save(img_dir / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": im.size[0],
                       "height": im.size[1]})
        det = pred([im])[0]
        for (x1, y1, x2, y2), c in zip(det.boxes.tolist(), det.labels.tolist()):
            dx = 0.2 * (x2 - x1) * (i % 2)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 10 + int(c),
                         "bbox": [x1 + dx, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": 0})
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 10 + k, "name": n} for k, n in NAMES.items()]}))
    return img_dir, ann


def test_val_runs_an_onnx_file(exported, tmp_path):
    """The file scores what its PyTorch model scores, in the library and on the command line."""
    pytest.importorskip("pycocotools", reason="pycocotools not installed")
    from yolov12.val import evaluate
    model, _, _, dynamic = exported
    img_dir, ann = _coco(tmp_path, model)
    quiet = dict(batch=2, progress=False, print_fn=lambda *_: None)
    want = evaluate(img_dir, ann, Predictor(model, imgsz=96, conf=0.001, multi_label=True),
                    **quiet)
    got = evaluate(img_dir, ann, Predictor(OnnxModel(dynamic), imgsz=96, conf=0.001,
                                           multi_label=True), **quiet)
    assert got["detections"] == want["detections"] > 0 and 0 < want["AP"] < 1
    for k in ("AP", "AP50", "AR100"):
        assert got[k] == pytest.approx(want[k], abs=1e-4), k
    r = _cli("val", f"model={dynamic}", f"images={img_dir}", f"annotations={ann}", "imgsz=96",
             "batch=2", "workers=0", "device=cpu", f"out={tmp_path / 'r.json'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mAP50-95" in r.stdout and json.loads((tmp_path / "r.json").read_text())


# ----------------------------------------------------------------------------------------------
# bench: the onnxruntime provider

def test_bench_onnxruntime_provider_times_the_exported_model(exported):
    from yolov12.bench import e2e
    model = exported[0]
    cfg = e2e.Config(device=torch.device("cpu"), dtype=torch.float32, size=(64, 64))
    torch.manual_seed(0)  # build's input is its first draw: randn(1, 3, 64, 64)
    fn, extra = e2e.build("onnxruntime", model, cfg)
    assert extra["execution_provider"] == "CPUExecutionProvider" and extra["export_s"] >= 0
    out = torch.from_numpy(fn()[0]).double()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    # what it times is this model: within the export check's rule (export.check_onnx), twice the
    # largest error of PyTorch's equally valid float32 runs against float64 (a fixed atol does
    # not hold on randn inputs, where PyTorch's own float32 boxes err by ~0.2 px)
    from yolov12.export import fp32_runs
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x.double())
        envelope = max((o.double() - ref).abs().max().item() for _, o in fp32_runs(model, x))
    assert (out - ref).abs().max().item() <= max(1e-3, 2 * envelope)
    with mock.patch.dict(sys.modules, {"onnxruntime": None}):
        with pytest.raises(e2e.Skip, match="pip install onnxruntime"):
            e2e.build("onnxruntime", model, cfg)
    cfg.dtype = torch.float16
    with pytest.raises(e2e.Skip, match="float32"):
        e2e.build("onnxruntime", model, cfg)


def test_bench_cli_shows_onnxruntime_beside_fast(tmp_path):
    r = _cli("bench", "--model", "n", "--device", "cpu", "--imgsz", "64", "--runs", "1",
             "--warmup", "0", "--rounds", "1", "--providers", "fast,onnxruntime", "--out",
             str(tmp_path), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    from yolov12.bench.records import load_records, validate_record
    recs = {rec["provider"]: rec for rec in load_records([tmp_path / "e2e.jsonl"])}
    assert set(recs) == {"fast", "onnxruntime"}
    for rec in recs.values():
        validate_record(rec)
    ort = recs["onnxruntime"]
    assert ort["shape"] == [1, 3, 64, 64] and ort["threads"] == recs["fast"]["threads"]
    assert ort["execution_provider"] == "CPUExecutionProvider" and ort["onnxruntime"]
    assert "the exported .onnx in onnxruntime" in r.stdout  # the summary's first lines
    # without onnxruntime the provider is skipped with the reason, the others still run
    r = _cli("bench", "--model", "n", "--device", "cpu", "--imgsz", "64", "--runs", "1",
             "--warmup", "0", "--rounds", "1", "--providers", "fast,onnxruntime", "--out",
             "none", "--no-progress", hide_onnxruntime=True, cwd=tmp_path)
    assert r.returncode == 0 and "skipped n onnxruntime" in r.stdout
    assert "pip install onnxruntime" in r.stdout


def test_bench_cli_times_an_onnx_file_beside_fast(exported, tmp_path):
    """``bench model=FILE.onnx``: the file in onnxruntime at its own input shape, beside our fast
    path of the scale (and class count) its metadata names; bad use is one line, exit 1. The
    real command once, the rest through ``main`` in this process (each subprocess costs seconds
    of imports)."""
    from yolov12.__main__ import main
    from yolov12.bench.records import load_records, validate_record
    _, _, static, dynamic = exported
    quick = ("--device", "cpu", "--runs", "1", "--warmup", "0", "--rounds", "1", "--no-progress")
    r = _cli("bench", f"model={static}", *quick, "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = {rec["provider"]: rec for rec in load_records([tmp_path / "s" / "e2e.jsonl"])}
    assert set(recs) == {"fast", "onnxruntime"}
    for rec in recs.values():
        validate_record(rec)
        assert rec["shape"] == [1, 3, 64, 96] and rec["name"] == "n"  # the file's shape
    assert recs["onnxruntime"]["model_file"] == str(static)
    assert recs["fast"]["params"] == sum(p.numel() for p in YOLOv12("n", nc=3).parameters())
    assert "the exported .onnx in onnxruntime" in r.stdout
    # a dynamic file runs at --imgsz and --batch
    assert main(["bench", f"model={dynamic}", "--imgsz", "64", "--batch", "2", *quick, "--out",
                 str(tmp_path / "d")]) == 0
    assert {rec["shape"][0] for rec in load_records([tmp_path / "d" / "e2e.jsonl"])} == {2}
    for args, start in (((f"model={tmp_path / 'none.onnx'}",), "--model: no such file"),
                        ((f"model={static}", "--batch", "3"), "--batch: static.onnx takes"),
                        ((f"model={static}", "--suite", "batch"), "--model static.onnx: an ONNX")):
        with pytest.raises(SystemExit) as e:
            main(["bench", *args, *quick, "--out", "none"])
        assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)
    with mock.patch.dict(sys.modules, {"onnxruntime": None}):
        with pytest.raises(SystemExit) as e:
            main(["bench", f"model={static}", *quick, "--out", "none"])
    assert "pip install onnxruntime" in str(e.value) and "\n" not in str(e.value)
