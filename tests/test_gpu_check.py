"""``python -m benchmarks.gpu_check``: its CPU-side machinery with fake steps (no GPU needed), and
the modules its steps run, on the CPU at tiny sizes.

The orchestration: the order of the steps (by value) and their limits, a step past its limit
interrupted then killed with whatever it started, failures isolated, the summary and the archive
rewritten after every step and while one runs, each written whole, so that a SIGKILL of the whole
run keeps every finished step and the running step's log; a SIGTERM stops it cleanly (exit 130).
The dry run's plan, the compile step against a fake of ``yolov12.precompile`` (issue 27's
interface), the test selection of ``benchmarks.gpu_tests``, the parsers of what the steps write.
``benchmarks.smoke`` and ``benchmarks.headline`` run for real on the CPU (64x64, YOLOv12-N).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check as gc
from benchmarks import gpu_tests, headline, sanitizer_case, smoke
from benchmarks.gpu_check import Command, Context, Skip, Step

PY = sys.executable
ORDER = ["env", "compile", "smoke", "headline", "tests", "kbench", "tune", "e2e", "aot",
         "sanitizer", "profile", "ptx75"]


def py(code: str, log: str) -> Command:
    return Command([PY, "-c", code], log)


def stub(name: str, *codes: str, limit: float = 30, figures=lambda ctx: "") -> Step:
    return Step(name, limit, lambda ctx: [py(c, f"{name}-{i}.log")
                                          for i, c in enumerate(codes)], figures)


def quiet(*_):
    pass


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


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------
# running steps
# ------------------------------------------------------------------------------------------------
def test_a_step_past_its_limit_is_killed_with_its_children_and_the_next_runs(ctx, tmp_path):
    pidfile = tmp_path / "child.pid"
    sleeper = (f"import subprocess, time, pathlib\n"
               f"p = subprocess.Popen(['sleep', '60'])\n"
               f"pathlib.Path({str(pidfile)!r}).write_text(str(p.pid))\n"
               f"time.sleep(60)\n")
    steps = [stub("slow", sleeper, limit=3), stub("next", "print('next ran')")]
    t0 = time.monotonic()
    slow, nxt = gc.run_steps(steps, ctx, {"slow": 3, "next": 30}, progress=quiet)
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
                        progress=quiet)
    assert r.status == "timeout" and done.read_text() == "partial"


def test_failures_are_isolated_and_recorded(ctx):
    def bad_setup(ctx):
        raise KeyError("oops")

    def skipped(ctx):
        raise Skip("no such tool here")

    def broken_figures(ctx):
        raise FileNotFoundError("result.json")
    steps = [stub("fails", "import sys; sys.exit(3)"), Step("bug", 5, bad_setup),
             Step("skip", 5, skipped), stub("both", "import sys; sys.exit(1)", "print('2nd')"),
             stub("ok", "print('fine')", figures=lambda ctx: "42 widgets"),
             stub("nofig", "pass", figures=broken_figures)]
    res = {r.step: r for r in gc.run_steps(steps, ctx, {s.name: 30 for s in steps},
                                           progress=quiet)}
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


def test_main_runs_the_chosen_steps_in_order_summary_last_and_archive(tmp_path, capsys):
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
    assert summary["complete"] and summary["running"] is None and summary["pending"] == []
    with tarfile.open(tgz) as tar:
        names = set(tar.getnames())
    assert {"gc/summary.md", "gc/summary.json", "gc/logs/a-0.log", "gc/logs/c-0.log"} <= names
    # all ok: exit status 0; an archive inside DIR does not pack itself
    assert gc.main(["--out", str(out), "--steps", "a", "--archive", str(out / "x.tar.gz")],
                   steps=steps) == 0
    with tarfile.open(out / "x.tar.gz") as tar:
        assert "gc/x.tar.gz" not in tar.getnames()


def test_total_time_leaves_out_the_steps_it_cannot_fit(ctx):
    steps = [stub("a", "import time; time.sleep(1.5)", limit=10), stub("b", "pass", limit=10)]
    a, b = gc.run_steps(steps, ctx, {"a": 10, "b": 10}, progress=quiet, total_s=2.5)
    assert a.status == "ok" and b.status == "skipped" and "--total-s" in b.detail


RUNNER = """
import sys
sys.path.insert(0, {root!r})
from benchmarks import gpu_check as gc

def step(name, code, limit=30):
    return gc.Step(name, limit, lambda ctx: [gc.Command([sys.executable, "-c", code],
                                                        name + ".log")])

steps = [step("a", "print('a done')"), step("b", "import sys; sys.exit(4)"),
         step("c", "import time; time.sleep(60)", limit=2), step("d", "print('d done')"),
         step("e", {last!r}), step("f", "print('f done')")]
sys.exit(gc.main(sys.argv[1:], steps=steps))
"""
LAST = ("import os, pathlib, time\n"
        "pathlib.Path({pid!r}).write_text(str(os.getpid()))\n"
        "print('e started', flush=True)\n"
        "try:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('e interrupted', flush=True)\n")


def _archived(tgz: Path) -> dict:
    """{name: text} of the archive's files (only complete archives open)."""
    with tarfile.open(tgz) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()
                if m.isfile()}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_run_killed_in_the_middle_keeps_every_finished_step(tmp_path, sig):
    """Steps that pass, fail and hang past their limit, then the whole run killed while step e
    runs: summary.json and the archive (both always complete) hold a..d in order, e as running
    (SIGKILL) or interrupted (SIGTERM) with its log so far, f never started; the step's process
    died with the run. SIGTERM also ends the run with exit status 130."""
    pid = tmp_path / "e.pid"
    script = tmp_path / "run.py"
    script.write_text(RUNNER.format(root=str(gc.ROOT), last=LAST.format(pid=str(pid))))
    out, tgz = tmp_path / "out", tmp_path / "gc.tgz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.Popen([PY, str(script), "--out", str(out), "--archive", str(tgz),
                            "--refresh-s", "0.2"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        def e_archived():
            if not tgz.is_file():
                return False
            files = _archived(tgz)
            return "e started" in files.get("out/logs/e.log", "")
        _wait_for(e_archived)
        os.kill(run.pid, sig)
        stdout, _ = run.communicate(timeout=30)
    finally:
        run.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["step"], s["status"]) for s in summary["steps"]][:4] == [
        ("a", "ok"), ("b", "fail"), ("c", "timeout"), ("d", "ok")]
    assert not summary["complete"]
    files = _archived(tgz)
    assert "a done" in files["out/logs/a.log"] and "d done" in files["out/logs/d.log"]
    assert "e started" in files["out/logs/e.log"] and "out/logs/f.log" not in files
    archived = json.loads(files["out/summary.json"])
    if sig == signal.SIGKILL:
        assert summary["running"]["step"] == "e" and summary["pending"] == ["f"]
        assert archived["running"]["step"] == "e"
        assert [s["step"] for s in archived["steps"]] == ["a", "b", "c", "d"]
    else:
        assert run.returncode == 130, stdout
        assert summary["steps"][4]["step"] == "e" and summary["steps"][4]["status"] == \
            "interrupted" and summary["running"] is None and summary["pending"] == ["f"]
        assert [s["step"] for s in archived["steps"]] == ["a", "b", "c", "d", "e"]
        assert "e interrupted" in (out / "logs" / "e.log").read_text()
    _wait_for(lambda: not _alive(int(pid.read_text())), timeout=10)  # died with the run
    if sig == signal.SIGTERM:  # a clean stop leaves no temporary file beside the archive
        assert sorted(p.name for p in tmp_path.glob(".gc.tgz*")) == []


def test_the_archive_is_written_whole(tmp_path, monkeypatch):
    """A packing that breaks off (a kill, a full disk) leaves the previous archive as it was and
    no temporary file; the summary is written the same way."""
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "a.log").write_text("first")
    tgz = tmp_path / "gc.tgz"
    gc.pack(out, tgz)
    (out / "logs" / "a.log").write_text("changed")
    (out / "logs" / "b.log").write_text("second")
    real_add = tarfile.TarFile.addfile

    def addfile(self, info, fileobj=None, *a, **k):
        if info.name.endswith("b.log"):
            raise OSError("No space left on device")
        return real_add(self, info, fileobj, *a, **k)
    monkeypatch.setattr(tarfile.TarFile, "addfile", addfile)
    with pytest.raises(OSError, match="No space"):
        gc.pack(out, tgz)
    assert _archived(tgz) == {"out/logs/a.log": "first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gc.tgz", "out"]


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------
def test_the_default_order_and_limits():
    """By value: the headline figures first; 540 s in all, smoke and headline done by 180 s;
    no JIT build of the CUDA extension before the aot step; the compile step compiles what smoke
    and headline run."""
    assert [s.name for s in gc.STEPS] == ORDER
    limits = [s.limit_s for s in gc.STEPS]
    assert sum(limits) <= 540
    assert sum(limits[:ORDER.index("headline") + 1]) <= gc.HEADLINE_BY_S == 180
    before_aot = ORDER[ORDER.index("smoke"):ORDER.index("aot")]
    assert all(s.env == gc.NO_CUDA_JIT for s in gc.STEPS if s.name in before_aot)
    assert all(s.env == {} for s in gc.STEPS if s.name not in before_aot)
    sets = {(s, d): b for s, d, b in gc.compile_sets()}
    for scale in gc.SMOKE["scales"]:
        for dtype in gc.SMOKE["dtypes"]:
            assert set(gc.SMOKE["batches"]) <= set(sets[scale, dtype])
    for scale, batch in gc.HEADLINE_ROWS:
        assert batch in sets[scale, gc.HEADLINE_DTYPE]
    assert list(sets)[0] == ("n", "float16")  # the first smoke case's variants first
    docs = " ".join((gc.ROOT / "docs" / "benchmarks.md").read_text().split())
    readme = " ".join((gc.ROOT / "README.md").read_text().split())
    for text in (docs, readme):
        assert "python -m benchmarks.gpu_check --out" in text and "--dry-run" in text
        assert ", ".join(f"**{n}**" for n in ORDER) in text  # the docs list the order
    assert f"add up to {sum(limits):g} s" in docs


class FakeReport(namedtuple("FakeReport", "variants compiled cached seconds workers arch")):
    pass


@pytest.fixture
def fake_precompile(monkeypatch, tmp_path):
    """A stand-in for yolov12/precompile.py (issue 27's interface): variants are (kernel, batch)
    tuples, the batch-32 ones of n and s shared between dtypes to check the union."""
    import types

    import yolov12
    calls = []

    def variants(scale, imgsz, batch, dtype, arch=None, *, nc=80):
        calls.append(("variants", scale, imgsz, batch, dtype, arch))
        shared = [("shared", scale, batch)] if batch == 32 else []
        return [(f"k{i}", scale, batch, str(dtype)) for i in range(3)] + shared

    def precompile(scale, imgsz, batches, dtype, arch=None, workers=None, progress=True):
        calls.append(("precompile", scale, imgsz, tuple(batches), dtype))
        return FakeReport(4 * len(batches), 3 * len(batches), len(batches), 1.5, 16, "sm_90")
    fake = types.ModuleType("yolov12.precompile")
    fake.variants, fake.precompile = variants, precompile
    monkeypatch.setitem(sys.modules, "yolov12.precompile", fake)
    monkeypatch.setattr(yolov12, "precompile", fake, raising=False)
    monkeypatch.setattr(gc, "PRECOMPILE", Path(__file__))  # "the file is there"
    return calls


def test_dry_run_prints_the_plan(capsys, monkeypatch, fake_precompile):
    assert gc.main(["--dry-run"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split("|")[2].strip() for r in rows] == ORDER
    assert "| 4 | headline | 60 | 180 |" in text and "| | total | 540 |" in text
    # 3 per (scale, dtype, batch) + 1 per (scale, batch 32), shared between the dtypes
    n = 4 * 6 + 2 + 4  # n, s x fp16, fp32: 6 each + n, s shared b32; x b32: 3 + shared
    assert f"{n} distinct variants; estimate {n} x 0.57 s / 16 cores = " \
           f"{n * 0.57 / 16:.0f} s" in text
    assert "n float16 b1/32: 7 variants, 7 not listed above" in text
    assert "n float32 b1/32: 7 variants, 6 not listed above" in text
    assert "smoke and headline end by 180 s at the latest" in text
    assert all(c[5] == "sm_90" and c[2] == 640 for c in fake_precompile)
    # without the module: unknown, and the step says why it is skipped
    monkeypatch.setattr(gc, "PRECOMPILE", Path("/nonexistent/precompile.py"))
    assert gc.main(["--dry-run", "--limit", "smoke=60"]) == 0
    text = capsys.readouterr().out
    assert "variants: unknown (yolov12/precompile.py is not in this tree" in text
    assert "| 3 | smoke | 60 | 110 |" in text
    with pytest.raises(Skip, match="precompile.py is not in this tree"):
        gc.compile_commands(Context(Path("/tmp")))


def test_compile_step_runs_what_smoke_and_headline_need(ctx, fake_precompile):
    ctx.out.mkdir(parents=True)
    assert gc.body_compile(ctx) == 0
    calls = [c for c in fake_precompile if c[0] == "precompile"]
    assert [(c[1], c[3], c[4]) for c in calls] == [
        ("n", (1, 32), torch.float16), ("n", (1, 32), torch.float32),
        ("s", (1, 32), torch.float16), ("s", (1, 32), torch.float32), ("x", (32,), torch.float16)]
    assert gc.compile_figures(ctx).startswith(
        "36 variants (27 compiled, 9 cached) in 7.5 s on 16 workers (sm_90); n float16 b1/32: 8")
    assert gc.compile_commands(ctx)[0].argv[3:5] == ["--run-step", "compile"]


# ------------------------------------------------------------------------------------------------
# command lines and test selection
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--steps", "tests,bogus"], "--steps: unknown"), (["--steps", ","], "--steps"),
    (["--limit", "tests"], "--limit"), (["--limit", "tests=0"], "--limit"),
    (["--limit", "nope=5"], "--limit"), (["--archive", "out.zip"], "--archive"),
    (["--workers", "0"], "--workers"), (["--total-s", "0"], "--total-s"),
    (["--refresh-s", "0"], "--refresh-s"),
])
def test_argument_errors_name_the_option(tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        gc.main(["--out", str(tmp_path / "o"), *args])


def test_out_is_required_except_for_the_dry_run():
    with pytest.raises(SystemExit, match="--out: required"):
        gc.main([])


def test_pytest_commands(ctx, monkeypatch):
    monkeypatch.setattr(gc, "_has_module", lambda name: True)
    gpu_only, rest = gc.tests_commands(ctx)
    for cmd, name in ((gpu_only, "gpu-only"), (rest, "rest")):
        argv = cmd.argv
        assert argv[:3] == [ctx.python, "-m", "pytest"]
        for opt in ("-v", "-rfE", "--tb=short", f"--junitxml={ctx.out / f'junit-{name}.xml'}",
                    f"--report-log={ctx.out / f'report-{name}.jsonl'}"):
            assert opt in argv
        assert argv[argv.index("-p", 4) + 1] == "benchmarks.gpu_tests"
        assert "no:cacheprovider" in argv and argv[argv.index("-n") + 1] == "2"
        assert cmd.env == {gpu_tests.MODE_ENV: name,
                           gpu_tests.LOG_ENV: str(ctx.out / f"tests-{name}.jsonl")}
    monkeypatch.setattr(gc, "_has_module", lambda name: False)  # no xdist, timeout, reportlog
    (ptx,) = [c for c in gc.ptx75_commands(ctx) if "pytest" in c.argv]
    assert "-n" not in ptx.argv and "--timeout" not in ptx.argv
    assert "tests/test_cuda_backend.py" in ptx.argv and ptx.env[gpu_tests.MODE_ENV] == "ptx75"
    assert ptx.env["YOLOV12_CUDA_ARCHS"] == "compute_75" and ptx.env["YOLOV12_CUDA_JIT"] == \
        "force" and ptx.env["YOLOV12_CUDA_CACHE"].startswith(str(ctx.work))


@pytest.mark.parametrize("mode,nodeid,name,gpu,runs", [
    ("gpu-only", "tests/test_fast_path.py::test_cuda_fp32_matches_reference", "x", True, True),
    ("gpu-only", "tests/test_fast_path.py::test_fp32_cpu", "test_fp32_cpu", False, False),
    ("rest", "tests/test_fast_path.py::test_fp32_cpu", "test_fp32_cpu", False, True),
    ("rest", "tests/test_fast_path.py::test_cuda_fp32", "test_cuda_fp32", True, False),
    ("rest", "tests/test_compile_checks.py::test_x[a]", "test_x", False, False),
    ("gpu-only", "tests/test_cuda_build.py::test_y", "test_y", True, False),
    ("rest", "tests/test_cuda_backend.py::test_ok", "test_ok", False, False),
    ("cuda-backend", "tests/test_cuda_backend.py::test_ok", "test_ok", False, True),
    ("cuda-backend", "tests/test_cuda_backend.py::test_jit_build", "test_jit_build", True, False),
    ("cuda-backend", "tests/test_fast_path.py::test_a", "test_a", True, False),
    ("ptx75", "tests/test_cuda_backend.py::test_ok", "test_ok", False, False),
    ("ptx75", "tests/test_cuda_backend.py::test_model[1x2]", "test_model", True, True),
    ("ptx75", "tests/test_cuda_backend.py::test_compute_sanitizer[memcheck]",
     "test_compute_sanitizer", True, False),
])
def test_test_selection(mode, nodeid, name, gpu, runs):
    assert (gpu_tests.deselected(mode, nodeid, name, gpu) is None) == runs
    assert gpu_tests.deselected(None, nodeid, name, gpu) is None


def test_gpu_only_is_read_from_the_skip_reasons():
    assert gpu_tests.needs_gpu("test_x", ["needs a CUDA GPU (bf16, the full layer table)"])
    assert gpu_tests.needs_gpu("test_x", ["needs a CUDA GPU where the fused conv kernels run"])
    assert gpu_tests.needs_gpu("test_gpu_random_shapes", [])
    assert not gpu_tests.needs_gpu("test_x", ["checks the no-GPU exit", ""])
    assert not gpu_tests.needs_gpu("test_backend_cuda_mentioned_later", [])


def test_a_real_pytest_run_streams_one_line_per_test(tmp_path):
    """The plugin in a real pytest session: the selection by mode (a GPU-only test by its skip
    reason, deselected from "rest"; a file that never mentions the GPU last), a line per test,
    the exit status last."""
    (tmp_path / "test_a_plain.py").write_text("def test_plain(): pass\n")
    (tmp_path / "test_demo.py").write_text(textwrap.dedent("""
        import pytest
        gpu = pytest.mark.skipif(True, reason="needs a CUDA GPU")
        def test_pass(): pass
        def test_fail(): assert 0, "boom"
        @gpu
        def test_on_gpu(): pass
    """))
    log = tmp_path / "t.jsonl"
    env = {**os.environ, gpu_tests.MODE_ENV: "rest", gpu_tests.LOG_ENV: str(log),
           "PYTHONPATH": str(gc.ROOT)}
    p = subprocess.run([PY, "-m", "pytest", "-p", "benchmarks.gpu_tests", "-p",
                        "no:cacheprovider", "-q", str(tmp_path)], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "1 failed, 2 passed, 1 deselected" in p.stdout, p.stdout + p.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [x.get("nodeid") for x in lines] == [
        "test_demo.py::test_pass", "test_demo.py::test_fail", "test_a_plain.py::test_plain", None]
    c = gpu_tests.read_log(log)
    assert (c["passed"], c["failed"], c["skipped"], c["exitstatus"]) == (2, 1, 0, 1)
    assert c["failed_ids"] == ["test_demo.py::test_fail"]
    assert "boom" in log.read_text()
    with open(log, "a") as f:  # a line cut by a kill is ignored
        f.write('{"nodeid": "x", "wh')
    assert gpu_tests.read_log(log)["passed"] == 2
    assert gc.tests_line(log) == "2 passed, 1 failed, 0 errors, 0 skipped (finished)"


def test_real_steps_use_options_the_tools_have(ctx):
    """Each command line parses with its tool's own parser (no GPU needed)."""
    from benchmarks import bench_pe, tune
    for cmd in gc.smoke_commands(ctx) + gc.headline_commands(ctx) + gc.tune_commands(ctx) + \
            gc.aot_commands(ctx):
        module, args = cmd.argv[2], cmd.argv[3:]
        if module == "benchmarks.smoke":
            smoke.build_parser().parse_args(args)
        elif module == "benchmarks.headline":
            headline.build_parser().parse_args(args)
        elif module == "benchmarks.gpu_check":
            gc.build_parser().parse_args(args)
        elif module in ("benchmarks.tune", "benchmarks.bench_pe"):
            # without a GPU main() parses the arguments, then says so and returns 0
            assert {"benchmarks.tune": tune, "benchmarks.bench_pe": bench_pe}[module].main(args) \
                == 0
    budget = int(gc.TUNE_ARGS[gc.TUNE_ARGS.index("--budget-s") + 1])
    assert budget + 15 <= next(s.limit_s for s in gc.STEPS if s.name == "tune")


# ------------------------------------------------------------------------------------------------
# what the steps write, and the figures read from it
# ------------------------------------------------------------------------------------------------
def test_env_body_writes_what_the_summary_reads(ctx):
    rc = gc.main(["--run-step", "env", "--out", str(ctx.out)])
    assert rc == (0 if torch.cuda.is_available() else 1)
    env = json.loads((ctx.out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and "triton" in env["packages"]
    build = env["triton_build"]
    assert set(build) >= {"cc", "cc_version", "python_h", "libcuda"}
    assert "torch==" in (ctx.out / "pip-freeze.txt").read_text().replace(" @ ", "==")
    figures = gc.env_figures(ctx)
    assert f"torch {torch.__version__}" in figures and "Python.h" in figures
    assert "libcuda" in figures


def test_figures_from_made_up_files(ctx):
    ctx.out.mkdir(parents=True)
    ctx.logs.mkdir()
    (ctx.out / "build.json").write_text(json.dumps(
        {"arch": "9.0", "aot_ok": False, "aot_s": 3.2, "source": "jit", "unavailable": None,
         "ptx75_ok": True, "ptx75_s": 61.0}))
    assert gc.aot_figures(ctx) == ("AOT for 9.0 FAILED in 3 s; extension in use: jit; "
                                   "compute_75 JIT ok in 61 s; tests: not run")
    (ctx.out / "profile.json").write_text(json.dumps(
        {"scale": "n", "batch": 1, "size": 640, "dtype": "float16", "attention_backend": "cuda",
         "gpu_busy_ms_per_forward": 1.3842, "kernels_per_forward": 470.0}))
    assert "1.384 ms GPU-busy and 470 kernels per forward" in gc.profile_figures(ctx)
    probe = {"source": "jit", "unavailable": None, "bf16_refused": "runs compute_75 code"}
    (ctx.logs / "ptx75.log").write_text("$ python -c ...\n" + json.dumps(probe) + "\n")
    assert gc.ptx75_figures(ctx) == "compute_75 code runs; no test ran"
    lines = [{"nodeid": "t::a", "when": "call", "outcome": "passed", "duration": 1},
             {"nodeid": "t::b", "when": "setup", "outcome": "skipped", "duration": 0},
             {"nodeid": "t::c", "when": "setup", "outcome": "failed", "duration": 0}]
    (ctx.out / "tests-gpu-only.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert gc.tests_figures(ctx) == "gpu-only: 1 passed, 0 failed, 1 errors, 1 skipped (cut short)"
    with open(ctx.out / "tests-gpu-only.jsonl", "a") as f:  # SIGINT at the limit: pytest's 2
        f.write('{"exitstatus": 2}\n')
    assert gc.tests_figures(ctx).endswith("1 skipped (interrupted)")
    assert gc.failed_tests(ctx) == ["tests-gpu-only: t::c"]
    (ctx.out / "smoke.json").write_text(json.dumps({"device": "H100", "imgsz": 640, "planned": 3,
                                                    "complete": False, "cases": [
        {"scale": "n", "dtype": "float16", "batch": 1, "status": "error", "stage": "optimize",
         "error": "RuntimeError: Inference tensors do not track version counter"},
        {"scale": "n", "dtype": "float16", "batch": 32, "status": "wrong",
         "first_wrong": "layer 7 (A2C2f): max error 0.3 > allowed 0.01"}]}))
    assert gc.smoke_figures(ctx) == (
        "0/2 cases right (H100, 640 px), 1 not reached; n float16 b1: ERROR in optimize: "
        "RuntimeError: Inference tensors do not track version counter; n float16 b32: WRONG at "
        "layer 7 (A2C2f): max error 0.3 > allowed 0.01 (fused convs off, attention None)")


def test_tune_step_table_feeds_the_later_steps(ctx):
    """The tune step's figures come from its table; once it exists (not while its first version
    is still a temporary file), every later command runs with it and the e2e step runs."""
    assert gc.tune_figures(ctx) == "no table written"
    with pytest.raises(Skip, match="no tuned table"):
        gc.e2e_commands(ctx)
    (ctx.out / "tune").mkdir(parents=True)
    (ctx.out / "tune" / ".sm90.json.x1.part.json").write_text("{")  # a write in progress
    assert gc.tune_figures(ctx) == "no table written"
    assert gc.base_env(ctx).get("YOLOV12_CONFIG_TABLES") == os.environ.get(
        "YOLOV12_CONFIG_TABLES")
    entry = {"config": [64, 64, 32, 4, 3, 1], "us": 10.0, "heuristic_us": 12.5, "count": 4}
    (ctx.out / "tune" / "sm90.json").write_text(json.dumps(
        {"meta": {"classes_tuned": 1, "classes": 3, "seconds": 41.2, "format": 1},
         "entries": {"conv/float16/k3s1/64x64/m512": entry}}))
    assert gc.tune_figures(ctx) == ("sm90.json: 1/3 shape classes in 41 s; heuristic - best "
                                    "summed over the layers: 10 µs")
    assert gc.base_env(ctx)["YOLOV12_CONFIG_TABLES"] == str(ctx.out / "tune")
    (cmd,) = gc.e2e_commands(ctx)
    assert cmd.argv[cmd.argv.index("--summary") + 1] == str(ctx.out / "headline-tuned.json")


def test_tune_writes_its_table_after_every_class(monkeypatch):
    """benchmarks.tune's sweep hands the table to ``on_entry`` after each class it tuned (main
    writes it there, whole), so a tune step cut at its limit leaves what it tuned."""
    from benchmarks import tune
    from yolov12_kernels.conv_shapes import ConvShape
    rows = [(ConvShape("t.conv3", 16, 24, 3, 1, 6, 5), None),
            (ConvShape("t.dw", 24, 24, 3, 1, 5, 6, depthwise=True), None)]
    classes = tune.shape_classes([(1, rows)], torch.float16, "sm90")
    monkeypatch.setattr(tune, "run_once", lambda runs: 0)  # bookkeeping only: nothing launched
    seen = []
    tune.sweep(classes, torch.float16, "sm90", torch.device("meta"), time_fn=lambda *a: 1.0,
               limit=2, progress=quiet, on_entry=lambda entries: seen.append(sorted(entries)))
    keys = [c.key for c in classes]
    assert seen == [[keys[0]], sorted(keys)]


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


def test_kernel_summary():
    recs = [{"name": "aattn/P4/n", "dtype": "float16", "pass": "fwd", "cuda_graph": False,
             "batch": 1, "provider": p, "median_ms": ms}
            for p, ms in (("triton", 0.328), ("cuda", 0.079), ("eager", 0.369))]
    recs.append(dict(recs[0], cuda_graph=True, median_ms=0.01))  # graph rows are not eager calls
    assert gc.kernel_summary(recs) == ("4 records; aattn P4 n b1: cuda 0.079, triton 0.328, "
                                       "eager 0.369 ms")
    cl = dict(recs[0], layout="channels_last", median_ms=0.07)
    assert gc.kernel_summary(recs + [cl]).endswith("eager 0.369 ms; aattn P4 n b1 [cl]: "
                                                   f"{cl['provider']} 0.07 ms")


def test_sanitizer_case_command_filters_to_the_projects_kernels(monkeypatch):
    argv = sanitizer_case.command("racecheck", "/opt/cuda/bin/compute-sanitizer", "python3",
                                  kernel_filter=True)
    assert argv == ["/opt/cuda/bin/compute-sanitizer", "--tool", "racecheck", "--error-exitcode",
                    "1", "--kernel-name", "kns=area_attention_fwd_kernel", "--kernel-name",
                    "kns=depthwise_conv", "python3", "-m", "benchmarks.sanitizer_case"]
    # every filter names kernels that exist: a stale name would silently check nothing
    cu = " ".join(p.read_text() for p in (gc.ROOT / "csrc").glob("*.cu"))
    globals_ = cu.split("__global__")[1:]
    for name in sanitizer_case.KERNELS:
        assert any(name in g.split("{")[0] for g in globals_), name  # the declaration
    # a compute-sanitizer without the option: every kernel
    monkeypatch.setattr(sanitizer_case, "supports_kernel_filter", lambda exe: False)
    assert "--kernel-name" not in sanitizer_case.command("memcheck", "cs")
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
    monkeypatch.setattr(sanitizer_case, "find_sanitizer", lambda: None)
    with pytest.raises(Skip, match="compute-sanitizer"):
        gc.sanitizer_commands(Context(Path("/tmp")))


# ------------------------------------------------------------------------------------------------
# smoke and headline, for real on the CPU
# ------------------------------------------------------------------------------------------------
def test_smoke_on_the_cpu_checks_every_layer_of_the_default_path(tmp_path, capsys):
    """The module as the smoke step runs it, at 64x64: one case of the default path (a CPU's:
    PyTorch's convs, SDPA), every layer within its bound, both calls' outputs, smoke.json."""
    rc = smoke.main(["--out", str(tmp_path), "--device", "cpu", "--scales", "n", "--dtypes",
                     "float32", "--batches", "1", "--imgsz", "64"])
    doc = json.loads((tmp_path / "smoke.json").read_text())
    (case,) = doc["cases"]
    assert rc == 0 and doc["complete"] and case["status"] == "ok", case
    assert case["fused_convs"] is False and case["attention_backend"] == "sdpa"
    layers = [c["layer"] for c in case["checks"]]
    assert layers == list(range(layers[-1] + 1)) + [layers[-1]]  # the head: boxes and scores
    assert [c["part"] for c in case["checks"][-2:]] == ["boxes/side", "scores"]
    assert all(c["err"] <= c["allowed"] and not c["nan"] for c in case["checks"])
    assert set(case["outputs"]) == {"first call", "second call"}
    assert 0 < case["worst"]["ratio"] <= 1 and case["first_wrong"] is None
    assert smoke.summary_line(doc) == "1/1 cases right (cpu, 64 px)"
    assert capsys.readouterr().out.startswith(f"n float32 b1: ok, {len(layers)} checks, worst")
    with pytest.raises(SystemExit, match="--imgsz"):
        smoke.main(["--out", str(tmp_path), "--imgsz", "65"])


def test_smoke_names_the_first_wrong_layer_and_records_an_error(monkeypatch):
    """A layer of the fast path off by a little (planted): the case is wrong, that layer named,
    the layers before it right. A fast path that cannot be built inside
    inference mode (the bug of the 2026-12-06 review, planted): an error at that stage, recorded,
    not raised. (The plain random-init model is enough here: the planted offset dwarfs the
    rounding at layer 7, though it fades before the output, which is why the smoke step itself
    spreads the features.)"""
    from yolov12 import YOLOv12
    _, structured_image, atol = smoke._import_layer_tools()
    model, x = YOLOv12("n").eval(), structured_image(1, 64, 64).double()
    optimize = YOLOv12.optimize

    def planted(self, *a, **k):
        fast = optimize(self, *a, **k)
        fast.net.model[7].register_forward_hook(lambda mod, inp, out: out + 0.05)
        return fast
    monkeypatch.setattr(YOLOv12, "optimize", planted)
    case = smoke.run_case(model, torch.float32, x, atol)
    name = type(model.model[7]).__name__
    assert case["status"] == "wrong"
    assert case["first_wrong"].startswith(f"layer 7 ({name}): max error 0.05")
    assert all(c["ok"] for c in case["checks"] if c["layer"] < 7)
    assert set(case["outputs"]) == {"first call", "second call"}
    assert smoke.case_line(dict(case, scale="n", dtype="float32", batch=1)).startswith(
        f"n float32 b1: WRONG at layer 7 ({name})")

    def broken(self, *a, **k):
        raise RuntimeError("Inference tensors do not track version counter")
    monkeypatch.setattr(YOLOv12, "optimize", broken)
    case = smoke.run_case(model, torch.float32, x, atol)
    assert case["status"] == "error" and case["stage"] == "optimize"
    assert case["error"] == "RuntimeError: Inference tensors do not track version counter"


def test_headline_on_the_cpu_and_its_goals(tmp_path):
    """The module as the headline step runs it, on the CPU at 64x64 (the graph providers need
    CUDA: skipped, their speed-ups and the goal's verdict null), records and summary written;
    the goals' verdicts from made-up medians."""
    rc = headline.main(["--out", str(tmp_path), "--rows", "n:1", "--providers",
                        "fast,fast-graph,eager-graph,eager", "--baseline", "eager", "--dtype",
                        "float32", "--imgsz", "64", "--runs", "1", "--warmup", "0", "--rounds", "1",
                        "--device", "cpu", "--label", "test"])
    assert rc == 0
    doc = json.loads((tmp_path / "headline.json").read_text())
    (row,) = doc["rows"]
    assert doc["complete"] and set(row["ms"]) == {"fast", "eager"}
    assert row["speedup"]["fast"] == pytest.approx(row["ms"]["eager"] / row["ms"]["fast"],
                                                   rel=1e-3)
    assert row["meets_goal"] is None and row["goal"] == "fast-graph >= 3x eager-graph"
    recs = [json.loads(line) for line in (tmp_path / "e2e.jsonl").read_text().splitlines()]
    assert sorted(r["provider"] for r in recs) == ["eager", "fast"]
    assert all(r["label"] == "test" and r["imgsz"] == [64, 64] for r in recs)

    def made_up(scale, batch, **ms):
        return [{"provider": p.replace("_", "-"), "median_ms": t} for p, t in ms.items()]
    n1 = headline.row_summary("n", 1, made_up("n", 1, fast=0.5, fast_graph=0.45,
                                              eager_graph=1.5), "eager-graph",
                              "NVIDIA H100 80GB HBM3")
    assert n1["meets_goal"] is True and n1["speedup"]["fast-graph"] == pytest.approx(3.333, 1e-3)
    assert n1["meets_goal_ms"] is True  # 0.45 <= 0.52 ms on an H100
    assert n1["default_over_graph"] == pytest.approx(1.111, 1e-3)
    assert n1["meets_goal_default"] is False  # fast(x) 11% over the bare replay: over 5%
    assert "fast within 5% of fast-graph (1.111x): NOT met" in headline.row_line(n1)
    n1_h200 = headline.row_summary("n", 1, made_up("n", 1, fast_graph=0.45, eager_graph=1.5),
                                   "eager-graph", "NVIDIA H200")
    assert n1_h200["meets_goal_ms"] is None  # the ms goal was set for an H100
    # speed-ups over another baseline: the goal is still over eager-graph
    mixed = headline.row_summary("n", 1, made_up("n", 1, fast_graph=0.5, eager_graph=1.0,
                                                 eager=10.0), "eager")
    assert mixed["speedup"]["fast-graph"] == 20.0 and mixed["meets_goal"] is False
    x32 = headline.row_summary("x", 32, made_up("x", 32, fast_graph=40.0, eager_graph=118.0),
                               "eager-graph")
    assert x32["goal_speedup"] == 3.0 and x32["meets_goal"] is False  # 2.95x < 3x
    assert headline.row_line(x32) == ("x b32: fast-graph 40 ms (2.95x), eager-graph 118 ms; goal "
                                      "fast-graph >= 3x eager-graph: NOT met")
    with pytest.raises(SystemExit, match="--rows"):
        headline.parse_rows("n:1,q:2")


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
