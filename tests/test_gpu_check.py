"""``python -m benchmarks.gpu_check``: its CPU-side machinery with stub steps (no GPU needed).

Scheduling, per-step time limits (a step past its limit is interrupted, then killed with whatever
it started, and the next step still runs), failure isolation, the summary table (printed last),
the archive, argument errors, the parsers of what the steps write, and that the real steps'
command lines use options the tools have.
"""
from __future__ import annotations

import json
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check as gc
from benchmarks import sanitizer_case
from benchmarks.gpu_check import Command, Context, Skip, Step

PY = sys.executable


def py(code: str, log: str) -> Command:
    return Command([PY, "-c", code], log)


def stub(name: str, *codes: str, limit: float = 30, figures=lambda ctx: "") -> Step:
    return Step(name, limit, limit, lambda ctx: [py(c, f"{name}-{i}.log")
                                                 for i, c in enumerate(codes)], figures)


@pytest.fixture
def ctx(tmp_path):
    return Context(tmp_path / "out", workers=2, work=tmp_path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_a_step_past_its_limit_is_killed_with_its_children_and_the_next_runs(ctx, tmp_path):
    pidfile = tmp_path / "child.pid"
    sleeper = (f"import subprocess, time, pathlib\n"
               f"p = subprocess.Popen(['sleep', '60'])\n"
               f"pathlib.Path({str(pidfile)!r}).write_text(str(p.pid))\n"
               f"time.sleep(60)\n")
    steps = [stub("slow", sleeper, limit=3), stub("next", "print('next ran')")]
    t0 = time.monotonic()
    slow, nxt = gc.run_steps(steps, ctx, {"slow": 3, "next": 30}, progress=lambda *_: None)
    assert slow.status == "timeout" and "limit" in slow.detail
    assert 2 <= slow.seconds < 6 and time.monotonic() - t0 < 20
    assert not _alive(int(pidfile.read_text())), "the step's child outlived it"
    assert nxt.status == "ok" and "next ran" in (ctx.logs / "next-0.log").read_text()


def test_a_step_is_interrupted_first_so_it_can_write_what_it_has(ctx, tmp_path):
    """SIGINT before SIGKILL: pytest, for one, then still writes its summary and junit XML."""
    done = tmp_path / "partial.txt"
    code = (f"import time, pathlib\n"
            f"try:\n    time.sleep(60)\n"
            f"except KeyboardInterrupt:\n    pathlib.Path({str(done)!r}).write_text('partial')\n")
    (r,) = gc.run_steps([stub("interrupted", code, limit=4)], ctx, {"interrupted": 4},
                        progress=lambda *_: None)
    assert r.status == "timeout" and done.read_text() == "partial"


def test_failures_are_isolated_and_recorded(ctx):
    def bad_setup(ctx):
        raise KeyError("oops")

    def skipped(ctx):
        raise Skip("no such tool here")

    def broken_figures(ctx):
        raise FileNotFoundError("result.json")
    steps = [stub("fails", "import sys; sys.exit(3)"), Step("bug", 5, 5, bad_setup),
             Step("skip", 5, 5, skipped), stub("both", "import sys; sys.exit(1)", "print('2nd')"),
             stub("ok", "print('fine')", figures=lambda ctx: "42 widgets"),
             stub("nofig", "pass", figures=broken_figures)]
    res = {r.step: r for r in gc.run_steps(steps, ctx, {s.name: 30 for s in steps},
                                           progress=lambda *_: None)}
    assert res["fails"].status == "fail" and res["fails"].detail == "fails-0.log: exit status 3"
    assert res["bug"].status == "fail" and "set-up failed: KeyError" in res["bug"].detail
    assert res["skip"].status == "skipped" and res["skip"].detail == "no such tool here"
    assert res["both"].status == "fail" and "2nd" in (ctx.logs / "both-1.log").read_text()
    assert res["ok"].status == "ok" and res["ok"].figures == "42 widgets"
    assert res["nofig"].status == "ok" and "no figures: FileNotFoundError" in res["nofig"].figures
    table = gc.summary_table(list(res.values()))
    assert "| fails | fail |" in table and "| skip | skipped |" in table
    assert table.splitlines()[-1].startswith("| total | fail |")
    assert gc.overall_status([res["ok"], res["skip"]]) == "ok"


def test_main_runs_the_chosen_steps_in_table_order_summary_last_and_archive(tmp_path, capsys):
    steps = [stub("a", "print('A')", figures=lambda ctx: "fig A"), stub("b", "print('B')"),
             stub("c", "import sys; sys.exit(2)")]
    out, tgz = tmp_path / "gc", tmp_path / "gc.tgz"
    rc = gc.main(["--out", str(out), "--steps", "c,a", "--limit", "a=7", "--archive", str(tgz)],
                 steps=steps)
    assert rc == 1  # c failed
    stdout = capsys.readouterr().out
    table = stdout.rstrip().splitlines()[-5:]
    assert table[0] == "| step | status | seconds | limit | key figures |"
    assert table[2].startswith("| a | ok |") and "| 7 | fig A |" in table[2]
    assert table[3].startswith("| c | fail |") and table[4].startswith("| total | fail |")
    assert not (out / "logs" / "b-0.log").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["a", "c"] and summary["status"] == "fail"
    with tarfile.open(tgz) as tar:
        names = set(tar.getnames())
    assert {"gc/summary.md", "gc/summary.json", "gc/logs/a-0.log", "gc/logs/c-0.log"} <= names
    # all ok: exit status 0; an archive inside DIR does not pack itself
    assert gc.main(["--out", str(out), "--steps", "a", "--archive", str(out / "x.tar.gz")],
                   steps=steps) == 0
    with tarfile.open(out / "x.tar.gz") as tar:
        assert "gc/x.tar.gz" not in tar.getnames()


@pytest.mark.parametrize("args,message", [
    (["--steps", "tests,bogus"], "--steps: unknown"), (["--steps", ","], "--steps"),
    (["--limit", "tests"], "--limit"), (["--limit", "tests=0"], "--limit"),
    (["--limit", "nope=5"], "--limit"), (["--archive", "out.zip"], "--archive"),
    (["--workers", "0"], "--workers"),
])
def test_argument_errors_name_the_option(tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        gc.main(["--out", str(tmp_path / "o"), *args])


def test_out_is_required(capsys):
    with pytest.raises(SystemExit):
        gc.main([])
    assert "--out" in capsys.readouterr().err


def test_default_limits_fit_one_ten_minute_call():
    names = [s.name for s in gc.STEPS]
    assert names == ["env", "build", "tests", "sanitizer", "kbench", "tune", "e2e", "profile",
                     "ptx75"]
    assert sum(s.limit_s for s in gc.STEPS) <= 540
    assert sum(s.quick_limit_s for s in gc.STEPS) <= sum(s.limit_s for s in gc.STEPS)
    readme = " ".join((gc.ROOT / "README.md").read_text().split())
    assert "python -m benchmarks.gpu_check --out" in readme and "-n 8" in readme
    assert f"add up to {sum(s.limit_s for s in gc.STEPS):g} s" in readme  # the README is current


def test_tests_command(ctx, monkeypatch):
    monkeypatch.setattr(gc, "_has_module", lambda name: True)
    argv = gc.tests_command(ctx, [], ctx.out / "junit.xml", 8)
    assert argv[:3] == [ctx.python, "-m", "pytest"]
    for opt in ("-rf", "--tb=short", f"--junitxml={ctx.out / 'junit.xml'}"):
        assert opt in argv
    assert argv[argv.index("-n") + 1] == "8" and argv[argv.index("--timeout") + 1] == "90"
    assert "not compute_sanitizer" in argv and "-m" not in argv[3:]
    quick = Context(ctx.out, quick=True)
    assert gc.tests_command(quick, [], ctx.out / "j.xml", 1)[-2:] == ["-m", "not slow"]
    monkeypatch.setattr(gc, "_has_module", lambda name: False)  # no xdist, no pytest-timeout
    argv = gc.tests_command(ctx, ["tests/test_cuda_backend.py"], ctx.out / "j.xml", 8)
    assert "-n" not in argv and "--timeout" not in argv and "tests/test_cuda_backend.py" in argv


def test_real_steps_use_options_the_tools_have(ctx, monkeypatch):
    """Each benchmark command line parses with its tool's own parser (no GPU needed)."""
    from benchmarks import bench_attention, bench_pe, tune
    from yolov12.__main__ import build_parser
    for quick in (False, True):
        c = Context(ctx.out, quick=quick, work=ctx.work)
        for cmd in gc.kbench_commands(c) + gc.tune_commands(c) + gc.e2e_commands(c):
            module, args = cmd.argv[2], cmd.argv[3:]
            if module == "yolov12":
                build_parser().parse_args(args)
            elif torch.cuda.is_available() and module == "benchmarks.tune":
                tune.main(args + ["--dry-run"])  # parses, estimates; no GPU time spent
            else:  # without a GPU main() parses the arguments, then says so and returns 0
                assert {"benchmarks.bench_attention": bench_attention,
                        "benchmarks.bench_pe": bench_pe,
                        "benchmarks.tune": tune}[module].main(args) == 0
        assert all(str(c.records) in cmd.argv for cmd in gc.kbench_commands(c))
    ptx = gc.ptx75_commands(ctx)
    assert all(cmd.env["YOLOV12_CUDA_ARCHS"] == "compute_75" and cmd.env["YOLOV12_CUDA_JIT"] ==
               "force" and cmd.env["YOLOV12_CUDA_CACHE"].startswith(str(ctx.work)) for cmd in ptx)
    monkeypatch.setattr(sanitizer_case, "find_sanitizer", lambda: None)
    with pytest.raises(Skip, match="compute-sanitizer"):
        gc.sanitizer_commands(ctx)


def test_env_body_writes_what_the_summary_reads(ctx):
    rc = gc.main(["--run-step", "env", "--out", str(ctx.out)])
    assert rc == (0 if torch.cuda.is_available() else 1)
    env = json.loads((ctx.out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and "triton" in env["packages"]
    assert f"torch {torch.__version__}" in gc.env_figures(ctx)


def test_figures_from_made_up_files(ctx):
    ctx.out.mkdir(parents=True)
    ctx.logs.mkdir()
    (ctx.out / "build.json").write_text(json.dumps(
        {"arch": "9.0", "aot_ok": False, "aot_s": 3.2, "source": "jit", "unavailable": None,
         "ptx75_ok": True, "ptx75_s": 61.0}))
    assert gc.build_figures(ctx) == ("AOT for 9.0 FAILED in 3 s; extension in use: jit; "
                                     "compute_75 JIT ok in 61 s")
    (ctx.out / "profile.json").write_text(json.dumps(
        {"scale": "n", "batch": 1, "size": 640, "dtype": "float16", "attention_backend": "cuda",
         "gpu_busy_ms_per_forward": 1.3842, "kernels_per_forward": 470.0}))
    assert "1.384 ms GPU-busy and 470 kernels per forward" in gc.profile_figures(ctx)
    probe = {"source": "jit", "unavailable": None, "bf16_refused": "runs compute_75 code"}
    (ctx.logs / "ptx75.log").write_text("$ python -c ...\n" + json.dumps(probe) + "\n")
    assert gc.ptx75_figures(ctx).startswith("compute_75 code runs; no junit XML")


def test_tune_step_table_feeds_the_later_steps(ctx):
    """The tune step's figures come from its table; once it exists, every later command runs
    with it (YOLOV12_CONFIG_TABLES), and the sweep of the step fits its limit by the estimate."""
    assert gc.tune_figures(ctx) == "no table written"
    assert gc.base_env(ctx).get("YOLOV12_CONFIG_TABLES") == os.environ.get(
        "YOLOV12_CONFIG_TABLES")  # no table yet: the environment's own setting, if any
    (ctx.out / "tune").mkdir(parents=True)
    entry = {"config": [64, 64, 32, 4, 3, 1], "us": 10.0, "heuristic_us": 12.5, "count": 4}
    (ctx.out / "tune" / "sm90.json").write_text(json.dumps(
        {"meta": {"classes_tuned": 1, "classes": 3, "seconds": 91.2, "format": 1},
         "entries": {"conv/float16/k3s1/64x64/m512": entry}}))
    assert gc.tune_figures(ctx) == ("sm90.json: 1/3 shape classes in 91 s; heuristic - best "
                                    "summed over the layers: 10 µs")
    assert gc.base_env(ctx)["YOLOV12_CONFIG_TABLES"] == str(ctx.out / "tune")
    for quick in (False, True):
        args = gc.TUNE_ARGS[quick]
        budget = float(args[args.index("--budget-s") + 1])
        step = next(s for s in gc.STEPS if s.name == "tune")
        assert budget + 15 <= (step.quick_limit_s if quick else step.limit_s)


def test_junit_counts(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" failures="1" '
        'skipped="2" tests="7" time="12.5">'
        '<testcase classname="tests.test_a" name="test_x"><failure message="boom"/></testcase>'
        '<testcase classname="tests.test_b" name="test_y"><error message="E"/></testcase>'
        '<testcase classname="tests.test_b" name="test_z"/></testsuite></testsuites>')
    c = gc.junit_counts(path)
    assert (c["passed"], c["failures"], c["errors"], c["skipped"]) == (3, 1, 1, 2)
    assert c["failed"] == ["tests.test_a::test_x", "tests.test_b::test_y"]
    assert gc._junit_figures(path) == "3 passed, 1 failed, 1 errors, 2 skipped in 12 s"


def test_kernel_table_from_a_chrome_trace():
    def ev(cat, name, ts, dur):
        return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur}
    events = [ev("kernel", "conv", 0, 10), ev("kernel", "silu", 5, 10),  # overlap: busy 0..15
              ev("gpu_memcpy", "Memcpy DtoD", 20, 5),                   # busy, not a kernel
              ev("kernel", "silu", 100, 2), ev("cpu_op", "aten::conv2d", 0, 500),
              {"ph": "i", "cat": "kernel", "name": "instant", "ts": 0}]
    t = gc.kernel_table(events, forwards=2)
    assert t["gpu_busy_ms_per_forward"] == pytest.approx((15 + 5 + 2) / 1e3 / 2)
    assert t["kernels_per_forward"] == 1.5
    assert [r["kernel"] for r in t["by_time"]] == ["silu", "conv"]
    assert t["by_count"][0]["kernel"] == "silu" and t["by_count"][0]["launches_per_forward"] == 1
    text = gc.format_kernel_table(t)
    assert "GPU busy 0.011 ms per forward, 2 kernels per forward" in text
    assert "Kernels by launch count" in text


def test_record_summaries():
    recs = [{"name": "aattn/P4/n", "dtype": "float16", "pass": "fwd", "cuda_graph": False,
             "batch": 1, "provider": p, "median_ms": ms}
            for p, ms in (("triton", 0.328), ("cuda", 0.079), ("eager", 0.369))]
    recs.append(dict(recs[0], cuda_graph=True, median_ms=0.01))  # graph rows are not eager calls
    assert gc.kernel_summary(recs) == ("4 records; aattn P4 n b1: cuda 0.079, triton 0.328, "
                                       "eager 0.369 ms")
    cl = dict(recs[0], layout="channels_last", median_ms=0.07)
    assert gc.kernel_summary(recs + [cl]).endswith("eager 0.369 ms; aattn P4 n b1 [cl]: "
                                                   f"{cl['provider']} 0.07 ms")
    e2e = [{"name": "n", "batch": 1, "provider": p, "median_ms": ms}
           for p, ms in (("fast-graph", 1.458), ("fast", 13.7), ("eager", 12.1))]
    e2e.append({"name": "s", "batch": 32, "provider": "fast", "median_ms": 20.0})
    assert gc.e2e_summary(e2e) == "ms fast-graph/eager-graph/fast/eager: n b1 1.46/-/13.7/12.1, s b32 -/-/20/-"
    assert gc.e2e_summary([]) == "no records"


def test_sanitizer_case_command_and_summary():
    argv = sanitizer_case.command("racecheck", "/opt/cuda/bin/compute-sanitizer", "python3")
    assert argv == ["/opt/cuda/bin/compute-sanitizer", "--tool", "racecheck", "--error-exitcode",
                    "1", "python3", "-m", "benchmarks.sanitizer_case"]
    with pytest.raises(ValueError, match="tool"):
        sanitizer_case.command("leakcheck", "cs")
    env = sanitizer_case.environment({"PYTHONPATH": "/x"})
    assert env["PYTORCH_NO_CUDA_MEMORY_CACHING"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(sanitizer_case.ROOT), "/x"]
    out = ("========= COMPUTE-SANITIZER\nsanitizer_case: every CUDA kernel ran once\n"
           "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\n")
    assert sanitizer_case.summary(out) == "RACECHECK SUMMARY: 0 hazards displayed (0 errors, " \
                                          "0 warnings)"
    assert "no sanitizer summary" in sanitizer_case.summary("Segmentation fault")


def test_xdist_workers_share_the_cores(monkeypatch):
    """tests/conftest.py: with -n 8 on 16 cores each worker runs PyTorch (and its subprocesses'
    OpenMP) on 2 threads instead of 16 (the oversubscription that timed tests out on the GPU)."""
    import conftest
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "8")
    conftest._share_cores_between_xdist_workers()
    assert threads == [2] and os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's setting wins
    conftest._share_cores_between_xdist_workers()
    assert threads == [2]
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")  # no xdist: PyTorch's default stays
    conftest._share_cores_between_xdist_workers()
    assert threads == [2]
