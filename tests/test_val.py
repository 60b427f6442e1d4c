"""COCO evaluation end to end on a tiny synthetic COCO-format dataset made here: non-contiguous
category ids, images of different sizes, one image without annotations."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("pycocotools", reason="pycocotools not installed")
Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")

from yolov12.__main__ import main  # noqa: E402
from yolov12.coco import COCO80_TO_91, category_map  # noqa: E402
from yolov12.predict import Detections  # noqa: E402
from yolov12.val import METRICS, evaluate  # noqa: E402

CATEGORIES = [{"id": 42, "name": "widget"}, {"id": 3, "name": "gadget"},
              {"id": 7, "name": "gizmo"}]  # listed out of order on purpose
# (file, width, height, [(x, y, w, h, category id)]); unique sizes let the stub tell them apart
IMAGES = [
    ("a.jpg", 160, 120, [(10, 20, 40, 30, 3), (90, 50, 60, 60, 42)]),
    ("b.png", 96, 128, [(5, 5, 80, 100, 7)]),
    ("c.jpg", 200, 90, [(0, 0, 20, 20, 3), (150, 30, 45, 55, 7), (60, 10, 30, 70, 42)]),
    ("d.png", 70, 70, []),  # no annotations: any detection here is a false positive
]


@pytest.fixture
def dataset(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images, anns = [], []
    for i, (name, w, h, boxes) in enumerate(IMAGES):
        image_id = 1000 + 7 * i  # non-contiguous image ids too
        Image.new("RGB", (w, h), (40 * i, 100, 200)).save(img_dir / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for x, y, bw, bh, cat in boxes:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns,
                                    "categories": CATEGORIES}))
    return img_dir, ann_file


class StubPredictor:
    """Returns each image's ground-truth boxes (optionally shifted, plus optional extra boxes)."""

    def __init__(self, shift=0.0, extra=None):
        self.ids = category_map(CATEGORIES)  # class index -> category id
        self.by_size = {(w, h): boxes for _, w, h, boxes in IMAGES}
        self.shift, self.extra = shift, extra or {}
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        out = []
        for im in images:
            boxes = [(x + self.shift * bw, y, x + self.shift * bw + bw, y + bh,
                      self.ids.index(c)) for x, y, bw, bh, c in self.by_size[im.size]]
            boxes += self.extra.get(im.size, [])
            t = torch.tensor([b[:4] for b in boxes], dtype=torch.float32).reshape(-1, 4)
            out.append(Detections(t, torch.full((len(boxes),), 0.9),
                                  torch.tensor([b[4] for b in boxes], dtype=torch.long)))
        return out


def test_category_map_is_sorted_ids_and_coco_for_coco():
    assert category_map(CATEGORIES) == [3, 7, 42]
    coco_cats = [{"id": i, "name": str(i)} for i in reversed(COCO80_TO_91)]
    assert tuple(category_map(coco_cats)) == COCO80_TO_91


def test_val_ground_truth_gives_map_1(dataset, tmp_path):
    img_dir, ann = dataset
    stub = StubPredictor()
    out = tmp_path / "results.json"
    m = evaluate(img_dir, ann, stub, batch=3, out=out, progress=False, print_fn=lambda *_: None)
    assert stub.calls == 2  # 4 images in batches of 3
    assert m["images"] == 4 and m["detections"] == 6
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    assert m["AR100"] == pytest.approx(1.0)
    results = json.loads(out.read_text())
    assert {r["category_id"] for r in results} == {3, 7, 42}
    first = next(r for r in results if r["image_id"] == 1000 and r["category_id"] == 42)
    assert first["bbox"] == [90, 50, 60, 60]  # xywh in original pixels


def test_val_perturbed_boxes_score_lower(dataset):
    img_dir, ann = dataset
    quiet = dict(progress=False, print_fn=lambda *_: None)
    shifted = evaluate(img_dir, ann, StubPredictor(shift=0.3), **quiet)
    assert 0.0 < shifted["AP"] < 0.9  # IoU 0.54: counts at 0.5 but not at 0.75
    assert shifted["AP50"] == pytest.approx(1.0) and shifted["AP75"] < 0.01
    # a confident false positive on the image without annotations lowers precision
    fp = StubPredictor(extra={(70, 70): [(5, 5, 60, 60, 0)]})
    worse = evaluate(img_dir, ann, _Boosted(fp), **quiet)
    assert worse["AP"] < 1.0


class _Boosted:
    """Gives the extra (false-positive) boxes the highest score, so they rank first."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, images):
        dets = self.inner(images)
        for im, d in zip(images, dets):
            n_extra = len(self.inner.extra.get(im.size, []))
            if n_extra:
                d.scores[-n_extra:] = 0.99
        return dets


def test_val_no_detections_and_bad_inputs(dataset, tmp_path):
    img_dir, ann = dataset
    quiet = dict(progress=False, print_fn=lambda *_: None)
    empty = evaluate(img_dir, ann, lambda ims: [Detections(torch.zeros(0, 4), torch.zeros(0),
                                                           torch.zeros(0, dtype=torch.long))
                                               for _ in ims], **quiet)
    assert empty["detections"] == 0 and all(empty[k] == 0.0 for k in METRICS)

    def too_many_classes(ims):
        return [Detections(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0.5]),
                           torch.tensor([3])) for _ in ims]
    with pytest.raises(ValueError, match="class indices"):
        evaluate(img_dir, ann, too_many_classes, **quiet)
    (img_dir / "b.png").unlink()
    with pytest.raises(ValueError, match="1 of 4 images"):
        evaluate(img_dir, ann, StubPredictor(), **quiet)
    with pytest.raises(ValueError, match="annotations"):
        evaluate(img_dir, tmp_path / "nope.json", StubPredictor(), **quiet)


def test_val_cli_end_to_end(dataset, tmp_path, capsys):
    img_dir, ann = dataset
    out = tmp_path / "res.json"
    with pytest.warns(UserWarning, match="noise"):
        rc = main(["val", "--images", str(img_dir), "--annotations", str(ann), "--model", "n",
                   "--nc", "3", "--imgsz", "64", "--batch", "2", "--workers", "0",
                   "--out", str(out), "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in text
    assert text.count("Average Recall") == 6 and text.count("Average Precision") == 6
    results = json.loads(out.read_text())
    assert results and {r["category_id"] for r in results} <= {3, 7, 42}


def _write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_malformed_annotation_files_name_the_file_and_field(dataset, tmp_path):
    img_dir, ann = dataset
    good = json.loads(ann.read_text())
    quiet = dict(progress=False, print_fn=lambda *_: None)

    def broken(mutate):
        d = json.loads(json.dumps(good))
        mutate(d)
        return d

    cases = [
        ([good["annotations"]], r"the top level is a JSON list"),
        (broken(lambda d: d.pop("annotations")), r"no 'annotations' list"),
        (broken(lambda d: d.update(annotations=[])), r"'annotations' is empty: nothing to score"),
        (broken(lambda d: d["annotations"][2].pop("category_id")),
         r"annotations\[2\] has no 'category_id'"),
        (broken(lambda d: d["annotations"][1].update(bbox=[1, 2, 3])), r"annotations\[1\]\.bbox"),
        (broken(lambda d: d["annotations"][0].update(category_id=99)),
         r"annotations\[0\]\.category_id 99 is not in 'categories'"),
        (broken(lambda d: d["annotations"][0].update(image_id=5)),
         r"annotations\[0\]\.image_id 5 is not in 'images'"),
        (broken(lambda d: d["images"][1].pop("file_name")), r"images\[1\] has no 'file_name'"),
        (broken(lambda d: d["annotations"][3].update(id=1)), r"annotations\[3\]\.id 1 is used twice"),
        (broken(lambda d: d.update(categories="widget")), r"'categories' is a str"),
    ]
    for obj, msg in cases:
        path = _write(tmp_path, "bad.json", obj)
        with pytest.raises(ValueError, match=rf"^annotations: .*bad\.json: {msg}"):
            evaluate(img_dir, path, StubPredictor(), **quiet)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        evaluate(img_dir, tmp_path / "bad.json", StubPredictor(), **quiet)


def test_missing_area_and_iscrowd_are_filled_with_a_note(dataset, tmp_path):
    img_dir, ann = dataset
    d = json.loads(ann.read_text())
    for a in d["annotations"]:
        del a["area"], a["iscrowd"]
    notes = []
    m = evaluate(img_dir, _write(tmp_path, "lean.json", d), StubPredictor(), progress=False,
                 print_fn=notes.append)
    assert m["AP"] == pytest.approx(1.0)
    assert any("'area' as the box area" in n and "'iscrowd' as 0" in n for n in notes)


@pytest.mark.parametrize("limit", [0, -2, 1.5, True])
def test_limit_must_be_a_positive_count(dataset, limit):
    img_dir, ann = dataset
    with pytest.raises(ValueError, match="^limit: expected a positive number"):
        evaluate(img_dir, ann, StubPredictor(), limit=limit, progress=False)


def test_limit_evaluates_that_many_images(dataset):
    img_dir, ann = dataset
    stub = StubPredictor()
    m = evaluate(img_dir, ann, stub, limit=2, progress=False, print_fn=lambda *_: None)
    assert m["images"] == 2


def test_val_cli_limit_zero_is_an_error(dataset):
    img_dir, ann = dataset
    for n in ("0", "-2"):
        with pytest.raises(SystemExit, match="--limit: expected a positive number"):
            main(["val", "--images", str(img_dir), "--annotations", str(ann), "--model", "n",
                  "--limit", n])


def _coco_layout(dataset, tmp_path, val_entry):
    """An ultralytics-style COCO folder: <root>/images/val2017, <root>/annotations/..., a YAML."""
    import shutil
    img_dir, ann = dataset
    root = tmp_path / "coco"
    shutil.copytree(img_dir, root / "images" / "val2017")
    (root / "annotations").mkdir()
    shutil.copy(ann, root / "annotations" / "instances_val2017.json")
    (root / "val2017.txt").write_text("".join(f"./images/val2017/{n}\n" for n, *_ in IMAGES))
    yaml = tmp_path / "coco.yaml"
    yaml.write_text(f"# COCO 2017\npath: {root}  # dataset root\ntrain: train2017.txt\n"
                    f"val: {val_entry}\nnames:\n  0: widget\n")
    return root, yaml


@pytest.mark.parametrize("val_entry", ["images/val2017", "val2017.txt"])
def test_data_yaml_finds_images_and_coco_json(dataset, tmp_path, val_entry):
    from yolov12.val import resolve_data
    root, yaml = _coco_layout(dataset, tmp_path, val_entry)
    images, ann = resolve_data(yaml)
    assert images == root / "images" / "val2017"
    assert ann == root / "annotations" / "instances_val2017.json"
    (root / "annotations" / "instances_val2017.json").unlink()
    with pytest.raises(ValueError, match=r"no COCO json at .*instances_val2017.json"):
        resolve_data(yaml)
    with pytest.raises(ValueError, match="data: no such file 'coco8.yaml'"):
        resolve_data("coco8.yaml")


def test_data_yaml_without_pyyaml_reads_flat_keys_and_one_line_lists(tmp_path, monkeypatch):
    """Where PyYAML is not installed, the fallback reads what locating the images needs, and a
    list left open is one error naming the line (it was read as a folder named '[images')."""
    import sys

    from yolov12.val import _read_yaml
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    data = tmp_path / "d.yaml"
    data.write_text("# a dataset\npath: '/data/coco'  # root\nval: [images/val2017, extra]\n"
                    "names:\n  0: person\n")
    assert _read_yaml(data) == {"path": "/data/coco", "val": ["images/val2017", "extra"]}
    data.write_text("path: .\nval: [images\n")
    with pytest.raises(ValueError, match=r"not valid YAML at line 2, column 6: '\[' not closed"):
        _read_yaml(data)


def test_val_cli_the_ultralytics_way(dataset, tmp_path, capsys):
    _, yaml = _coco_layout(dataset, tmp_path, "images/val2017")
    with pytest.warns(UserWarning, match="noise"):
        rc = main(["val", "model=n", "nc=3", f"data={yaml}", "imgsz=64", "batch=2",
                   "workers=0", f"out={tmp_path / 'r.json'}", "device=cpu"])
    assert rc == 0 and "mAP50-95" in capsys.readouterr().out


def _spoil(img_dir):
    """c.jpg truncated after its header (the header reads, the pixels do not: the failure happens
    while decoding, in a DataLoader worker) and d.png replaced by text (fails at the header)."""
    import numpy as np
    noise = np.random.default_rng(0).integers(0, 256, (90, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(img_dir / "c.jpg", quality=95)
    data = (img_dir / "c.jpg").read_bytes()
    (img_dir / "c.jpg").write_bytes(data[: len(data) * 2 // 3])
    (img_dir / "d.png").write_text("<html>not an image</html>")


@pytest.mark.parametrize("workers", [0, 2])
def test_val_skips_unreadable_images_and_scores_the_rest(dataset, tmp_path, workers):
    img_dir, ann = dataset
    _spoil(img_dir)
    lines = []
    out = tmp_path / "res.json"
    m = evaluate(img_dir, ann, StubPredictor(), batch=2, workers=workers, out=out,
                 progress=False, print_fn=lines.append)
    # the two readable images, scored on their own ground truth only: c.jpg's three boxes would
    # be misses if it were still counted
    assert m["AP"] == pytest.approx(1.0) and m["images"] == 2
    assert sorted(p.rsplit("/", 1)[-1] for p in m["skipped"]) == ["c.jpg", "d.png"]
    text = "\n".join(lines)
    assert "2 of 4 images could not be read and were skipped; the metrics cover the other 2" in text
    assert "c.jpg" in text and "d.png" in text
    assert {r["image_id"] for r in json.loads(out.read_text())} == {1000, 1007}


def test_val_cli_with_unreadable_images_default_workers(dataset, tmp_path):
    """The real command, default workers: no worker traceback, the metrics and results file."""
    from _utils import assert_clean_exit, run_cli
    img_dir, ann = dataset
    _spoil(img_dir)
    out = tmp_path / "res.json"
    r = run_cli("val", "--images", img_dir, "--annotations", ann, "--model", "n", "--nc", "3",
                "--imgsz", "32", "--batch", "2", "--device", "cpu", "--out", out)
    assert_clean_exit(r, 1, "2 of 4 images could not be read", "cover the other 2",
                      "on 2 images", "2 unreadable image(s) skipped")
    assert out.is_file()
    # the progress bar (stderr) ends at the number of images, not one short
    assert "4/4" in r.stderr and "0/1" not in r.stderr
