"""The launch plan on paper (``yolov12_kernels.triton.plan_report``) and the targets issue 21 set
for it: tensor-core work issued within 1.05x of the needed at x b32 and 1.10x at n b1, no batch-1
launch under one wave without a reason beside it, the C = 384 MLP's weight reads cut >= 4x.

The report runs in a subprocess without TRITON_INTERPRET (the attention backend picks its GPU
configurations only when the kernels were imported compiled, as the CLI does)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]

FIGURES = """
import json, sys
from yolov12_kernels.triton import plan_report as P
out = {}
for scale, batch in (("n", 1), ("n", 32), ("x", 1), ("x", 32)):
    for arch in ("sm90", "sm80"):
        rows = P.plan_rows(scale, batch, arch)
        t = P.totals(rows, arch)
        t["unreasoned"] = [r.layer for r in rows if r.programs and P.waves(r, arch) < 1
                           and not r.note]
        t["kernels"] = sorted({r.kernel for r in rows})
        out[f"{scale}{batch}{arch}"] = t
print(json.dumps(out))
"""


def _run(args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def figures():
    return json.loads(_run(["-c", FIGURES]).strip().splitlines()[-1])


def _fused_mlp_weight_reads_mb(scale, batch):
    """What the fused kernel's 32-pixel tiles read of the weights at C = 384 (before issue 21):
    every program both weights, fp16."""
    from yolov12_kernels.conv_shapes import model_convs
    return sum(math.ceil(batch * r.h * r.w / 32) * 2 * r.cin * r.cout * 2
               for r in model_convs(scale) if r.role == "mlp1") / 1e6


@pytest.mark.parametrize("arch", ["sm90", "sm80"])
def test_issue_21_targets(figures, arch):
    x32, n1 = figures[f"x32{arch}"], figures[f"n1{arch}"]
    assert x32["padding"] <= 1.05, x32
    assert n1["padding"] <= 1.10, n1
    for key in ("n1", "x1"):
        assert figures[key + arch]["unreasoned"] == [], figures[key + arch]["unreasoned"]
    before = _fused_mlp_weight_reads_mb("x", 32)
    assert x32["mlp_w_reads_mb"] * 4 <= before * 1.0001, (x32["mlp_w_reads_mb"], before)
    # the pair runs as two GEMMs there; n keeps the fused kernel
    assert any(k.startswith("mlp GEMM") for k in x32["kernels"])
    assert "mlp pair (fused)" in figures[f"n32{arch}"]["kernels"]


def test_totals_add_up(figures):
    t = figures["n1sm90"]
    assert t["tc_issued_gflop"] >= t["tc_needed_gflop"] > 0
    assert t["roofline_us"] > 0 and t["hbm_mb"] > 0
    # batch 32 moves more and issues more than batch 1, by about the batch
    t32 = figures["n32sm90"]
    assert 20 < t32["tc_needed_gflop"] / t["tc_needed_gflop"] < 40


def test_occupancy_and_roofline_arithmetic():
    from yolov12_kernels.triton import plan_report as P
    # 96 KB of shared memory and 128 registers x 256 threads: 2 CTAs on an H100/H200 SM
    assert P.ctas_per_sm("sm90", 128, 8, 96 * 1024) == 2
    assert P.ctas_per_sm("sm90", 168, 8, 96 * 1024) == 1       # registers decide
    assert P.ctas_per_sm("sm90", 64, 4, 128 * 1024) == 1       # shared memory decides
    assert P.ctas_per_sm("sm80", 32, 4, 0) == 16               # warps: 64 per SM
    row = P.Row("l", "conv", "", 132, tc_issued=989.4e12 * 1e-6, tc_needed=1.0,
                hbm=4.8e12 * 0.5e-6)
    assert P.roofline_us(row, "sm90") == pytest.approx(1.0)       # compute-bound: 1 µs
    assert P.roofline_us(row._replace(hbm=4.8e12 * 3e-6), "sm90") == pytest.approx(3.0)
    assert P.waves(row, "sm90") == 1.0


def test_cli_table_and_compile_cache(tmp_path):
    """The CLI prints one row per launch with its totals and peaks; --compile adds registers,
    shared memory and CTAs per SM, cached in --cache so a second run compiles nothing."""
    out = _run(["-m", "yolov12_kernels.triton.plan_report", "--scale", "n", "--batch", "1",
                "--arch", "sm90"])
    assert "| # | layer | kernel | config | programs | waves |" in out
    assert "not measurements" in out and "989.4 TFLOP/s" in out
    assert out.count("| split-K reduce + epilogue |") >= 1
    # compile data for the two kernels of one split-K layer (the whole table takes minutes)
    code = f"""
import json
from pathlib import Path
from yolov12_kernels.conv_shapes import model_convs
from yolov12_kernels.triton import plan_report as P, conv_check
f16 = __import__("torch").float16
r = next(r for r in model_convs("n") if conv_check.row_kind(r) == "conv"
         and len(conv_check.row_launches(r, 1, f16, "sm90")) == 2)
rows = P.launch_rows(r.name, conv_check.row_launches(r, 1, f16, "sm90"), False)
cache = P.CompileCache(Path({str(tmp_path / "c.json")!r}))
first = [cache.get(x.variant, 90) for x in rows]
def boom(*a, **k):
    raise AssertionError("compiled again")
conv_check.jit_compile = boom
again = P.CompileCache(Path({str(tmp_path / "c.json")!r}))
assert [again.get(x.variant, 90) for x in rows] == first
print(json.dumps([len(rows), first, P.table(rows, "sm90", again)]))
"""
    n, data, table = json.loads(_run(["-c", code]).strip().splitlines()[-1])
    assert n == 2 and all(d["regs"] > 0 and d["spill"] == 0 for d in data)
    assert "| regs | spill B | smem KB | CTA/SM | MMA |" in table
