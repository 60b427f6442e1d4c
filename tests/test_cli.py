"""The command line end to end on CPU (tiny sizes)."""
import json
import subprocess
import sys

import pytest

from yolov12.__main__ import main


def test_info_prints_params_and_paper_figures(capsys):
    assert main(["info", "--model", "n"]) == 0
    out = capsys.readouterr().out
    assert "| n | 2,602,288 | 2.6 M | 6.5 | 6.5 |" in out
    assert "multiply-add = 2 FLOPs" in out


def test_bench_runs_end_to_end_and_writes_records(tmp_path, capsys):
    # --device cpu: on a GPU machine the default would add the torch.compile baselines (minutes of
    # inductor and max-autotune compiling); tests/test_bench_suite.py runs the GPU defaults
    assert main(["bench", "--model", "n", "--device", "cpu", "--imgsz", "64", "--runs", "2",
                 "--warmup", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| n | 2.60 M | 2.6 M |" in out
    recs = [json.loads(line) for line in (tmp_path / "e2e.jsonl").read_text().splitlines()]
    assert len(recs) >= 1
    rec = next(r for r in recs if r["name"] == "n")
    assert rec["suite"] == "e2e" and rec["batch"] == 1 and rec["shape"][-2:] == [64, 64]
    assert rec["median_ms"] > 0 and rec["p20_ms"] <= rec["median_ms"] <= rec["p80_ms"]


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--imgsz", "100", "--model", "n"], "--imgsz: sides must be positive multiples of 32"),
    (["bench", "--model", "q"], "--model: unknown scale"),
])
def test_bad_options_give_clear_errors(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert msg in str(e.value)


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "yolov12", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "bench" in r.stdout and "info" in r.stdout
