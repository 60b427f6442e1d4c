"""`yolov12 bench suite=predict` and the side-by-side script against ultralytics (which must skip
the comparison cleanly where ultralytics is not installed)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from yolov12.__main__ import main
from yolov12.bench.predict_suite import synthetic

Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")


def _folder(tmp_path, n=3):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(
            folder / f"{k}.jpg")
    return folder


def test_bench_predict_suite_records_every_provider(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["bench", "--suite", "predict", "--source", str(_folder(tmp_path)), "--imgsz", "64",
               "--rounds", "1", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| api-stream |" in printed and "hidden behind" in printed
    recs = [json.loads(line) for line in (out / "predict.jsonl").read_text().splitlines()]
    assert [r["provider"] for r in recs] == ["decode", "letterbox", "letterbox-pillow", "model",
                                            "api-serial", "api-stream", "cli-save"]
    for r in recs:
        assert r["suite"] == "predict" and r["name"] == "n" and r["shape"] == [64, 64]
        assert r["median_ms"] > 0 and r["images_per_s"] == pytest.approx(1000 / r["median_ms"])
        assert r["images"] == 3 and r["threads"] >= 1 and r["git"] is not None
    stages = recs[5]["stages_ms"]
    assert stages["infer"] > 0 and stages["decode"] > 0 and 0 <= recs[5]["hidden"] <= 1
    with pytest.raises(SystemExit, match="--source: not a folder"):
        main(["bench", "--suite", "predict", "--source", str(tmp_path / "nope")])


def test_synthetic_pictures_are_photo_like_jpegs(tmp_path):
    folder = synthetic(tmp_path / "s", n=2, size=(90, 160))
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["synthetic_000.jpg", "synthetic_001.jpg"]
    with Image.open(files[0]) as im:
        assert im.size == (160, 90) and im.format == "JPEG"
        assert np.asarray(im).std() > 20  # not a flat colour
    stamp = files[0].stat().st_mtime_ns
    synthetic(folder, n=2, size=(90, 160))  # made once: kept as they are
    assert files[0].stat().st_mtime_ns == stamp


def test_side_by_side_script_skips_ultralytics_when_missing(tmp_path, capsys):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_predict_vs_ultralytics as script
    finally:
        sys.path.pop(0)
    rc = script.main(["--ultralytics-python", str(tmp_path / "no-python"), "--source",
                      str(_folder(tmp_path, 2)), "--imgsz", "64", "--rounds", "1", "--modes",
                      "api", "--threads", "1", "--out", str(tmp_path / "res")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ultralytics: not importable" in out and "comparison is skipped" in out
    recs = [json.loads(line) for line in
            (tmp_path / "res" / "predict_vs_ultralytics.jsonl").read_text().splitlines()]
    assert [r["provider"] for r in recs] == ["yolov12-api"] and recs[0]["threads"] == 1
