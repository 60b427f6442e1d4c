"""The latency suite (``python -m yolov12 bench``): end to end on CPU, records, tables, plot.

No speed is asserted here (timings in unit tests are noise); the suite's figures come from running
it, see benchmarks/README.md. The CPU runs pin ``--device cpu``: on a GPU machine the defaults are
CUDA, float16 and the torch.compile baselines (inductor, max-autotune: minutes of compiling), which
is what the GPU test below checks, with dynamo's "eager" compile backend (tracing only).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolov12.bench import tables
from yolov12.bench.ablations import build_variant, variant_names
from yolov12.bench.e2e import interleaved, model_info
from yolov12.bench.plot import plot_latency_vs_params
from yolov12.bench.records import REQUIRED_FIELDS, load_records, validate_record

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str) -> subprocess.CompletedProcess:
    # A subprocess: the CLI sets torch's thread count, which must not leak into this process.
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "yolov12", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
    out = tmp_path / "results"
    proc = bench("--quick", "--device", "cpu", "--imgsz", "64", "--runs", "2", "--warmup", "1",
                 "--rounds", "2", "--threads", "1", "--out", str(out), "--no-progress")
    text = proc.stdout
    for heading in ("Table 1 layout", "Baselines", "Ablations, YOLOv12-N", "Batch sweep",
                    "Table 4 layout"):
        assert heading in text, heading
    # the answer first: how fast each scale is here, against the reference model
    assert text.index("How fast on this machine") < text.index("Table 1 layout")
    assert "YOLOv12-n:" in text and "images/s" in text and "the reference model" in text
    recs = load_records([out / "e2e.jsonl"])
    for r in recs:
        validate_record(r)
        json.dumps(r)  # plain JSON types only
        assert r["suite"] == "e2e" and r["dtype"] == "float32" and r["threads"] == 1
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
    names = {(r["name"], r["provider"], r["experiment"]) for r in recs}
    assert ("n", "eager", "baseline") in names and ("n", "fast", "baseline") in names
    for v in variant_names("n"):
        assert (f"n/{v}", "fast", "ablation") in names, v
    assert ("n/p4-global", "eager", "ablation") in names
    assert ("n/attn-reference", "fast", "ablation") in names
    assert {r["batch"] for r in recs if r["experiment"] == "batch"} == {1, 2, 4}
    assert all(r["provider"] != "fast-graph" for r in recs)  # CPU: skipped, not faked
    assert len({r["run_id"] for r in recs}) == 1
    plot = out / "latency_vs_params.png"
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"

    # --report: the same tables from the records alone
    plot.unlink()
    rep = bench("--report", "--out", str(out))
    assert "Table 1 layout" in rep.stdout and "Ablations, YOLOv12-N" in rep.stdout
    assert plot.exists()


@pytest.mark.slow
def test_original_options_still_work(tmp_path):
    bench("--model", "n", "--device", "cpu", "--imgsz", "64", "--runs", "2", "--warmup", "1",
          "--out", str(tmp_path), "--no-progress")
    recs = load_records([tmp_path / "e2e.jsonl"])
    import importlib.util
    onnx_ok = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
    # the CPU defaults: eager, fast and the exported model in onnxruntime (skipped without it)
    assert {r["provider"] for r in recs} == {"eager", "fast"} | ({"onnxruntime"} if onnx_ok
                                                                else set())
    assert all(r["name"] == "n" and r["shape"] == [1, 3, 64, 64] for r in recs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_baselines_end_to_end(tmp_path):
    """Every baseline provider on the GPU, the CUDA graph replay included; the compile baselines
    traced by dynamo's "eager" backend (inductor's code generation is the benchmark's job)."""
    bench("--model", "n", "--imgsz", "64", "--runs", "2", "--warmup", "1", "--rounds", "1",
          "--compile-backend", "eager", "--out", str(tmp_path), "--no-progress")
    recs = load_records([tmp_path / "e2e.jsonl"])
    for r in recs:
        validate_record(r)
    assert {r["provider"] for r in recs} == {"eager", "eager-graph", "compile",
                                              "compile-max-autotune", "fast-noconv",
                                              "fast-noconv-graph", "fast", "fast-graph"}
    fused = {r["provider"]: r["fused_convs"] for r in recs if "fused_convs" in r}
    assert fused == {"fast-noconv": False, "fast-noconv-graph": False, "fast": True,
                     "fast-graph": True}
    assert all(r["dtype"] == "float16" and r["shape"] == [1, 3, 64, 64] and "driver" in r
               for r in recs)
    assert all(r["compile_backend"] == "eager" for r in recs if r["provider"].startswith("compile"))


@pytest.mark.parametrize("args,message", [
    (["--imgsz", "50"], "--imgsz"), (["--suite", "bogus"], "--suite"),
    (["--providers", "tensorrt"], "--providers"), (["--dtype", "int8"], "--dtype"),
    (["--batches", "0"], "--batches"), (["--model", "z"], "--model"),
])
def test_bad_options_name_themselves(args, message):
    from yolov12.__main__ import build_parser
    from yolov12.bench.cli import resolve
    with pytest.raises(SystemExit, match=message):
        resolve(build_parser().parse_args(["bench", *args]))


# ----------------------------------------------------------------------------------------------
# tables and plot from hand-made records

def record(device, name, provider, dtype, median, batch=1, size=640, date="2026-01-01T00:00:00",
           experiment="baseline", **extra):
    r = {"suite": "e2e", "name": name, "provider": provider, "device": device, "dtype": dtype,
         "batch": batch, "shape": [batch, 3, size, size], "median_ms": median,
         "p20_ms": median * 0.9, "p80_ms": median * 1.1, "torch": "2.x", "triton": None,
         "cuda": None, "date": date, "git": "abc", "experiment": experiment,
         "params": 2_600_000, "gflops": 7.5, "gflops_conv": 6.5, "gflops_attention": 1.0}
    r.update(extra)
    assert set(REQUIRED_FIELDS) <= set(r)
    return r


def test_table4_merges_devices_and_latest_wins():
    recs = [record("NVIDIA H100", "n", "fast", "float16", 1.5),
            record("NVIDIA H100", "n", "fast-graph", "float16", 0.9),
            record("NVIDIA H100", "n", "fast", "float32", 2.0),
            record("Tesla T4", "n", "fast", "float16", 3.0),
            record("Tesla T4", "n", "fast", "float16", 2.5, date="2026-02-01T00:00:00"),  # newer
            record("Tesla T4", "s", "fast", "float32", 7.25),
            record("Tesla T4", "s", "eager", "float32", 70.0)]  # eager is not Table 4
    t4 = tables.table4(recs)
    header = next(line for line in t4.splitlines() if line.startswith("| model"))
    assert header.split(" | ")[1:5] == ["NVIDIA H100 FP32", "NVIDIA H100 FP16", "Tesla T4 FP32",
                                        "Tesla T4 FP16"]
    row_n = next(line for line in t4.splitlines() if line.startswith("| YOLOv12-N"))
    assert row_n.split(" | ")[1:5] == ["2", "0.9†", "–", "2.5"]  # graph preferred, newest kept
    row_s = next(line for line in t4.splitlines() if line.startswith("| YOLOv12-S"))
    assert row_s.split(" | ")[1:5] == ["–", "–", "7.25", "–"]
    assert "YOLOv12-M" not in t4


def test_table1_and_baseline_ratios():
    recs = [record("gpu", "n", p, "float16", t) for p, t in
            (("eager", 10.0), ("eager-graph", 6.0), ("compile", 6.0), ("fast", 2.5),
             ("fast-graph", 2.0))]
    recs.append(record("gpu", "n", "compile-max-autotune", "float16", 4.0, compile_s=61.2))
    t1 = tables.table1(recs)
    assert "| n | 2.60 M | 2.6 M | 6.5 | 6.5 | 1.00 | 2 | 1.8–2.2 | fast-graph | 1.64 | 40.6 |" in t1
    assert "T4 TensorRT FP16 (another device)" in t1
    base = tables.baselines(recs)
    row = next(line for line in base.splitlines() if line.startswith("| n |"))
    # best fast path vs eager, fast-graph vs eager-graph (graphs on both sides), vs max-autotune
    assert row.endswith("| 5.00× | 3.00× | 2.00× | – |")  # no fast-noconv row measured
    assert "compiled in 61 s" in row
    recs.append(record("gpu", "n", "fast-noconv-graph", "float16", 3.0))
    row = next(line for line in tables.baselines(recs).splitlines() if line.startswith("| n |"))
    assert row.endswith("| 5.00× | 3.00× | 2.00× | 1.50× |")  # fast-noconv-graph / fast-graph
    summary = tables.summary(recs)
    assert "YOLOv12-n: 2 ms per batch, 500.0 images/s (fast-graph), 3.00x the reference model " \
           "(eager-graph, 6 ms)" in summary


def test_ablation_and_batch_tables():
    a = dict(experiment="ablation")
    recs = [record("cpu", "n", "fast", "float32", 100.0, attention_backend="sdpa", **a),
            record("cpu", "n/p4-global", "fast", "float32", 200.0, **a),
            record("cpu", "n/attn-reference", "fast", "float32", 125.0, **a),
            record("cpu", "n/pe3", "fast", "float32", 90.0, **a),
            record("cpu", "n/mlp1.5", "fast", "float32", 95.0, **a)]
    text = tables.ablations(recs)
    assert "| P4 attention | area (4 areas) | fast | 100 |" in text and "2.00× faster" in text
    assert "fused (sdpa)" in text and "1.25× faster" in text
    assert "| pe kernel | 3×3 | fast | 90.0 |" in text and "mAP 40.2" in text
    assert "| MLP ratio | 1.5 | fast | 95.0 |" in text and "mAP 40.4" in text
    b = dict(experiment="batch")
    recs = [record("cpu", "n", "eager", "float32", 40.0, batch=4, peak_mem_mb=None, **b),
            record("cpu", "n", "fast", "float32", 20.0, batch=4, peak_mem_mb=None, **b)]
    text = tables.batch_sweep(recs)
    assert "| 4 | 40.0 | 100.0 | n/m | 20.0 | 200.0 | n/m | 2.00× |" in text


def test_plot_is_written(tmp_path):
    recs = [record("cpu", s, "fast", "float32", t, params=p) for s, t, p in
            (("n", 50.0, 2.6e6), ("s", 120.0, 9.3e6))]
    path = plot_latency_vs_params(recs, tmp_path / "plot.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    assert plot_latency_vs_params([], tmp_path / "none.png") is None


# ----------------------------------------------------------------------------------------------
# pieces

def test_interleaved_rounds_and_counts():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    res = interleaved(fns, "cpu", warmup=1, runs=5, rounds=2)
    assert calls[:2] == ["a", "b"]  # warm-up of each
    assert calls[2:] == list("aaabbbaabb")  # 3 + 2 runs, alternating rounds
    assert res["a"]["runs"] == res["b"]["runs"] == 5
    with pytest.raises(ValueError, match="runs"):
        interleaved(fns, "cpu", warmup=0, runs=0)


def test_peak_memory_leaves_out_first_call_autotuning(monkeypatch):
    """The batch sweep's GPU peak memory, on a CPU with torch.cuda's allocator stats faked: the
    first call of a provider may run Triton's autotuner, whose 256 MiB benchmark buffer is not the
    model's memory; building (weights, a CUDA graph's pool) and a call's activations are."""
    from yolov12.bench import e2e
    mib = 2**20
    st = {"alloc": 100 * mib, "peak": 100 * mib}

    def alloc(n):
        st["alloc"] += n
        st["peak"] = max(st["peak"], st["alloc"])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: st["alloc"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: st["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: st.update(peak=st["alloc"]))
    calls = []

    def fn():
        if not calls:  # autotuning: a big temporary buffer, freed again
            alloc(256 * mib)
            alloc(-256 * mib)
        alloc(10 * mib)  # activations
        alloc(-10 * mib)
        calls.append(1)

    def make():
        alloc(50 * mib)  # weights
        return fn, {}
    (built, _), mb = e2e._peak_memory(torch.device("cuda"), make)
    assert built is fn and mb == 60 and len(calls) == 2


@pytest.mark.slow
def test_compile_baseline_is_the_reference_in_one_graph():
    """The torch.compile baselines compile the reference computation (BN unfolded, reference
    attention, decode in the model's dtype) as ONE graph: no break at the attention or the decode.
    A counting backend stands in for inductor (whose C++ build is too slow for a unit test)."""
    from yolov12.bench.e2e import Config, build
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = build_variant("n").eval()
    cfg = Config(device=torch.device("cpu"), dtype=torch.float32, size=(64, 64),
                 compile_backend=counting_backend)
    torch._dynamo.reset()
    fn, extra = build("compile-max-autotune", model, cfg)
    assert extra["attention_backend"] == "reference" and extra["compile_s"] >= 0
    assert len(graphs) == 1, f"{len(graphs)} graphs: the compiled baseline has a graph break"
    with torch.inference_mode():
        out = fn()
    assert out.shape == (1, 84, 84) and torch.isfinite(out).all()


def test_eager_baseline_runs_the_reference_attention(monkeypatch):
    """The "eager" row is recorded as attention_backend="reference": it must not take "auto"'s
    pick (SDPA on a CPU, the Triton kernel on a GPU), which the model's AAttn default would."""
    import yolov12_kernels.reference_backend as R
    import yolov12_kernels.sdpa_backend as S
    from yolov12.bench.e2e import Config, build
    calls = []
    for mod, name in ((R, "reference"), (S, "sdpa")):
        orig = mod.fused_area_attention
        monkeypatch.setattr(mod, "fused_area_attention",
                            lambda *a, _o=orig, _n=name, **k: calls.append(_n) or _o(*a, **k))
    model = build_variant("n").eval()
    fn, extra = build("eager", model, Config(device=torch.device("cpu"), dtype=torch.float32,
                                             size=(64, 64)))
    with torch.inference_mode():
        fn()
    assert extra["attention_backend"] == "reference"
    assert calls and set(calls) == {"reference"}, calls
    assert {m.backend for m in model.modules() if hasattr(m, "backend")} == {"auto"}  # untouched


def test_flops_scaling_is_exact():
    """model_info counts at 64 and scales to 640: check the rule against a count at 128."""
    model = YOLOv12n = build_variant("n")
    info = model_info(model, ("test", "n"))
    at128 = YOLOv12n.gflops(128)
    assert info["gflops_conv"] == pytest.approx(at128["conv"] * 25, rel=1e-9)
    assert info["gflops_attention"] == pytest.approx(at128["attention"] * 625, rel=1e-9)
    assert info["params"] == model.num_params()


def test_variants():
    from yolov12.modules import AAttn, ABlock
    pe5 = build_variant("n", "pe5")
    assert {m.pe.conv.kernel_size for m in pe5.modules() if isinstance(m, AAttn)} == {(5, 5)}
    g = build_variant("n", "p4-global")
    assert {m.area for m in g.model[6].modules() if isinstance(m, AAttn)} == {1}
    mlp = build_variant("n", "mlp4")
    blk = next(m for m in mlp.modules() if isinstance(m, ABlock))
    assert blk.mlp[0].conv.out_channels == 4 * blk.mlp[0].conv.in_channels
    with torch.inference_mode():
        assert mlp.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 84, 84)
    with pytest.raises(ValueError, match="variant"):
        build_variant("n", "pe")


def test_default_output_is_a_new_run_directory(tmp_path, monkeypatch, capsys):
    """Without --out a run writes to runs/bench/<date-time> under the working directory, never
    into the committed benchmarks/results; two runs get two directories."""
    from yolov12.__main__ import main
    from yolov12.bench.records import new_run_dir
    monkeypatch.chdir(tmp_path)
    args = ["bench", "--model", "n", "--imgsz", "64", "--runs", "1", "--warmup", "0",
            "--no-progress", "--threads", "1"]
    assert main(args) == 0
    first = sorted((tmp_path / "runs" / "bench").glob("*/e2e.jsonl"))
    assert len(first) == 1 and not (tmp_path / "benchmarks").exists()
    assert f"records written to {first[0].relative_to(tmp_path)}" in capsys.readouterr().out
    d1 = new_run_dir("bench")
    d1.mkdir(parents=True)
    d2 = new_run_dir("bench")
    assert d1 != d2 and d1.parent == d2.parent == tmp_path.relative_to(tmp_path) / "runs/bench"


def test_progress_total_counts_only_what_runs(monkeypatch):
    """On a CPU without --compile the default providers are the ones that run (no fast-graph,
    no compile rows), so the progress bar's total -- and its ETA -- is the real work."""
    from yolov12.__main__ import build_parser
    from yolov12.bench import e2e
    from yolov12.bench.cli import resolve
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    s = resolve(build_parser().parse_args(["bench", "--suite", "all", "--threads",
                                           str(torch.get_num_threads())]))
    assert s["providers"] == ["eager", "fast", "onnxruntime"]
    assert s["batch_providers"] == ["eager", "fast"]
    total = e2e.count_runs(["n"], 3, ["baselines", "batch"], s["providers"], [1, 2],
                           s["batch_providers"])
    assert total == 3 * (3 + 2 * 2)
    # on a GPU onnxruntime runs only when asked for (--providers): its default is float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    s = resolve(build_parser().parse_args(["bench", "--no-compile"]))
    assert "onnxruntime" not in s["providers"] and "fast-graph" in s["providers"]


def test_graph_providers_need_cuda_and_say_so():
    """eager-graph (the fair baseline for fast-graph) and fast-graph are CUDA-graph replays: on a
    CPU they are skipped with the reason, never timed as something else."""
    from yolov12.bench.e2e import Config, Skip, build
    cfg = Config(device=torch.device("cpu"), dtype=torch.float32, size=(64, 64), warmup=0, runs=1)
    for provider in ("eager-graph", "fast-noconv-graph", "fast-graph"):
        with pytest.raises(Skip, match=f"{provider} needs CUDA"):
            build(provider, build_variant("n").eval(), cfg)


def test_fast_noconv_is_the_fast_path_without_the_fused_conv_kernels(monkeypatch):
    """The ablation row: skipped (with the reason) where the fast path runs no fused conv kernels
    anyway, so it never times fast again under another name; where they run, the same fast path
    built with fused_convs=False (recorded)."""
    from yolov12.bench import e2e
    cfg = e2e.Config(device=torch.device("cpu"), dtype=torch.float32, size=(64, 64), warmup=0,
                     runs=1)
    model = build_variant("n").eval()
    with pytest.raises(e2e.Skip, match="fast-noconv: the fast path runs no fused conv kernels"):
        e2e.build("fast-noconv", model, cfg)
    monkeypatch.setattr(e2e, "fused_convs_absent", lambda device, dtype: None)
    fn, extra = e2e.build("fast-noconv", model, cfg)
    assert extra["fused_convs"] is False
    with torch.inference_mode():
        assert fn().shape == (1, 84, 84)
