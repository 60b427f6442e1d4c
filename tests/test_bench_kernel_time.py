"""CPU test of bench_attention's --kernel-time columns: the CUDA-graph (kernel-only) median and its
roofline fraction recorded and printed beside the eager row (timings faked; no GPU)."""
import pytest
import torch

from benchmarks import bench_attention as BA
from yolov12.bench.records import validate_record


def test_kernel_time_recorded_and_printed_beside_each_row():
    case = BA.Case("area_attention", "P4", "n", 1, torch.float16, "fwd")
    timing = {"median_ms": 0.4, "p20_ms": 0.39, "p80_ms": 0.41}
    results = [BA.Result("triton", timing, extra={"graph_median_ms": 0.05}),
               BA.Result("sdpa-flash", dict(timing, median_ms=0.13))]
    recs = BA.build_records(case, results, "cpu", copy_bw=1e12)
    for r in recs:
        validate_record(r)
    tri = next(r for r in recs if r["provider"] == "triton")
    assert tri["graph_median_ms"] == 0.05
    assert tri["graph_roofline_fraction"] == pytest.approx(
        case.bytes_moved() / 1e12 / 0.05e-3, rel=1e-3)
    lines = dict(zip((r["provider"] for r in sorted(recs, key=lambda r: r["median_ms"])),
                     BA.format_rows(recs)))
    assert lines["triton"].split()[-2] == "0.0500" and lines["triton"].endswith("%")
    assert "0.0500" not in lines["sdpa-flash"]  # not measured: no columns
    assert len(BA.KERNEL_TIME_HEADER.split()) == 2
