"""Smoke test of ``python -m benchmarks.bench_host`` (the host-time benchmark of issue 18): it runs
with tiny counts, prints every row and writes its records. Timings are not checked (speed claims
live in benchmarks, not in tests)."""
import json

import pytest

from test_fused_forward import interpreted


@interpreted
def test_bench_host_runs_and_writes_records(tmp_path, capsys):
    pytest.importorskip("triton.runtime.interpreter")
    from benchmarks import bench_host
    out = tmp_path / "host.jsonl"
    assert bench_host.main(["--scales", "n", "--size", "64", "--calls", "2", "--rounds", "1",
                            "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [r["row"] for r in recs]
    assert rows == ["direct (op by op)", "plan replay", "fast(x), plan",
                    "fast(x), graph path (no-op graph)", "copies alone (CPU)"]
    assert all(r["name"] == "n" and r["host_us"] > 0 for r in recs)
    assert recs[1]["launches"] == 114  # the plan's steps (tests/test_plan.py counts them)
    assert all(row in printed for row in rows)
