"""The whole GPU check in one command, sized for one 10-minute call on a bare GPU machine.

    python -m benchmarks.gpu_check --out DIR [--quick] [--steps env,build,tests,...]
                                   [--archive FILE.tar.gz] [--workers N] [--limit STEP=SECONDS]

Runs the steps below in order. Each is one or more subprocesses in a process group of their own,
with the step's time limit and a log under DIR/logs; a step that fails or runs out of time is
recorded and the next one runs. At its limit a step's processes get SIGINT (pytest still writes
its failures and junit XML), and SIGKILL ``GRACE_S`` seconds later. The default limits add up to
9 minutes; ``--quick`` uses shorter runs and limits. Once the tune step has written a table, the
steps after it run with it (``YOLOV12_CONFIG_TABLES=DIR/tune``).

| step      | what                                                                     | under DIR |
|-----------|--------------------------------------------------------------------------|-----------|
| env       | nvidia-smi, Python/torch/Triton/CUDA/driver versions, device properties  | env.json |
| build     | AOT editable install for this GPU's arch (``YOLOV12_CUDA_ARCHS=<cc>      | build.json |
|           | pip install --no-build-isolation --no-deps -e .``), the JIT build if it  | |
|           | fails; the compute_75 PTX JIT build (for ``ptx75``) alongside            | |
| tests     | the test suite, ``pytest -n <workers> -rf --tb=short --timeout ...``     | junit.xml, logs/pytest.log |
| sanitizer | compute-sanitizer memcheck and racecheck on benchmarks/sanitizer_case.py | logs/sanitizer-*.log |
| kbench    | bench_attention at P4 (eager calls; the fused core also in CUDA graphs),  | records/kernel.jsonl |
|           | bench_pe                                                                 | |
| tune      | benchmarks.tune: conv/MLP/depthwise configs of n and x at b1/b32, timed   | tune/<arch>.json, |
|           | from graph replays (<= 6 candidates a class, 95 s); later steps use it    | tune/candidates.jsonl |
| e2e       | ``python -m yolov12 bench`` baselines of n and s, fp16, batch 1 and 32   | records/e2e.jsonl |
| profile   | torch.profiler of the fp16 fast path (n, batch 1, 640): GPU-busy time    | profile.txt, profile.json |
|           | per forward, kernels by total time and by launch count                   | |
| ptx75     | the compute_75 PTX build (JIT, fresh cache) running tests/test_cuda_backend.py | junit-ptx75.xml |

The summary table (step, status, seconds, key figures) is printed last, and written to
DIR/summary.md and DIR/summary.json. ``--archive FILE.tar.gz`` packs DIR into one file.
See README.md, "GPU check".
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
GRACE_S = 10.0  # SIGINT, then SIGKILL this much later (inside the step's limit)
PER_TEST_TIMEOUT_S = {False: 90, True: 60}  # pytest-timeout per test: a safety net, not a budget
STATUSES = ("ok", "fail", "timeout", "skipped")


class Skip(Exception):
    """A step that cannot run here; the message says why."""


@dataclass
class Context:
    out: Path
    quick: bool = False
    workers: int = 8
    python: str = sys.executable
    work: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))  # scratch, not in DIR

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def records(self) -> Path:
        return self.out / "records"


@dataclass
class Command:
    argv: list[str]
    log: str  # file name under DIR/logs
    env: dict = field(default_factory=dict)  # added to base_env()


@dataclass
class Step:
    name: str
    limit_s: float
    quick_limit_s: float
    commands: Callable[[Context], list[Command]]  # may raise Skip
    figures: Callable[[Context], str] = lambda ctx: ""  # key figures, read from the step's files


@dataclass
class Result:
    step: str
    status: str
    seconds: float
    limit_s: float
    figures: str = ""
    detail: str = ""


# ------------------------------------------------------------------------------------------------
# running steps
# ------------------------------------------------------------------------------------------------
def base_env(ctx: Context) -> dict:
    """The environment of every command: the repository importable whether or not the build step
    installed it, unbuffered output, and a Python traceback on a native crash."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if any((ctx.out / "tune").glob("*.json")):  # steps after tune run its configurations
        env["YOLOV12_CONFIG_TABLES"] = str(ctx.out / "tune")
    env.update(PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", MPLBACKEND="Agg")
    return env


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the command leads its own process group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def run_command(cmd: Command, ctx: Context, seconds: float) -> int | None:
    """Run ``cmd`` with its output appended to its log; its exit status, or None if it was still
    running after ``seconds`` (interrupted, then killed). Nothing it started outlives it."""
    ctx.logs.mkdir(parents=True, exist_ok=True)
    env = {**base_env(ctx), **cmd.env}
    with open(ctx.logs / cmd.log, "ab") as log:
        log.write(f"$ {shlex.join(cmd.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        grace = min(GRACE_S, seconds / 4)
        try:
            return proc.wait(timeout=max(seconds - grace, 0.05))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            return None
        finally:
            _signal_group(proc, signal.SIGKILL)  # stragglers (workers, compilers) included
            proc.wait()


def run_step(step: Step, ctx: Context, limit_s: float) -> Result:
    """Run every command of ``step`` within ``limit_s`` seconds in all; never raises."""
    t0 = time.monotonic()
    status, detail = "ok", []
    try:
        commands = step.commands(ctx)
    except Skip as e:
        return Result(step.name, "skipped", 0.0, limit_s, detail=str(e))
    except Exception as e:  # a bug in the step's set-up must not stop the other steps
        return Result(step.name, "fail", time.monotonic() - t0, limit_s,
                      detail=f"set-up failed: {type(e).__name__}: {e}")
    for cmd in commands:
        left = limit_s - (time.monotonic() - t0)
        if left < 1:
            status = "timeout"
            detail.append(f"{cmd.log}: not started, no time left")
            break
        rc = run_command(cmd, ctx, left)
        if rc is None:
            status = "timeout"
            detail.append(f"{cmd.log}: stopped at the step's {limit_s:g} s limit")
            break
        if rc != 0:
            status = "fail"
            detail.append(f"{cmd.log}: exit status {rc}")
    seconds = time.monotonic() - t0
    try:
        figures = step.figures(ctx)
    except Exception as e:  # missing or partial files after a failure
        figures = f"(no figures: {type(e).__name__}: {e})"
    return Result(step.name, status, seconds, limit_s, figures, "; ".join(detail))


def run_steps(steps: list[Step], ctx: Context, limits: dict[str, float],
              progress: Callable[[str], object] = print) -> list[Result]:
    results = []
    for i, step in enumerate(steps, 1):
        progress(f"[gpu_check] {i}/{len(steps)} {step.name} (limit {limits[step.name]:g} s) ...")
        r = run_step(step, ctx, limits[step.name])
        progress(f"[gpu_check] {step.name}: {r.status} in {r.seconds:.1f} s"
                 + (f" ({r.detail})" if r.detail else ""))
        results.append(r)
    return results


# ------------------------------------------------------------------------------------------------
# summary and archive
# ------------------------------------------------------------------------------------------------
def _cell(text: str, width: int = 110) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= width else text[:width - 1] + "…"


def summary_table(results: list[Result]) -> str:
    lines = ["| step | status | seconds | limit | key figures |", "|---|---|---|---|---|"]
    for r in results:
        figures = r.figures if r.status == "ok" or not r.detail else (
            f"{r.detail}; {r.figures}" if r.figures else r.detail)
        lines.append(f"| {r.step} | {r.status} | {r.seconds:.1f} | {r.limit_s:g} | "
                     f"{_cell(figures)} |")
    total = sum(r.seconds for r in results)
    lines.append(f"| total | {overall_status(results)} | {total:.1f} | "
                 f"{sum(r.limit_s for r in results):g} | |")
    return "\n".join(lines)


def overall_status(results: list[Result]) -> str:
    return "ok" if all(r.status in ("ok", "skipped") for r in results) else "fail"


def write_summary(results: list[Result], ctx: Context, argv: list[str]) -> None:
    header = (f"# GPU check\n\n`python -m benchmarks.gpu_check {shlex.join(argv)}`, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n\n")
    failures = _failed_tests(ctx)
    body = summary_table(results)
    if failures:
        body += "\n\nFailed tests:\n" + "\n".join(f"- {f}" for f in failures)
    (ctx.out / "summary.md").write_text(header + body + "\n")
    (ctx.out / "summary.json").write_text(json.dumps(
        {"argv": argv, "status": overall_status(results),
         "steps": [asdict(r) for r in results], "failed_tests": failures}, indent=1) + "\n")


def archive(out: Path, path: Path) -> Path:
    """``out`` packed as ``path`` (.tar.gz), under one top folder named like ``out``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    skip = path.resolve()
    with tarfile.open(path, "w:gz") as tar:
        tar.add(out, arcname=out.name,
                filter=lambda info: None if (out.parent / info.name).resolve() == skip else info)
    return path


# ------------------------------------------------------------------------------------------------
# parsing what the steps wrote (plain functions: tested on CPU with made-up files)
# ------------------------------------------------------------------------------------------------
def junit_counts(path: Path) -> dict:
    """{"tests", "failures", "errors", "skipped", "passed", "time", "failed": [ids]} of a junit
    XML file (one or several test suites)."""
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    c = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors",
                                                           "skipped")}
    c["time"] = sum(float(s.get("time", 0)) for s in suites)
    c["passed"] = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    c["failed"] = [f"{tc.get('classname', '')}::{tc.get('name', '')}"
                   for s in suites for tc in s.iter("testcase")
                   if tc.find("failure") is not None or tc.find("error") is not None]
    return c


def _junit_figures(path: Path) -> str:
    c = junit_counts(path)
    return (f"{c['passed']} passed, {c['failures']} failed, {c['errors']} errors, "
            f"{c['skipped']} skipped in {c['time']:.0f} s")


def _failed_tests(ctx: Context) -> list[str]:
    out = []
    for name in ("junit.xml", "junit-ptx75.xml"):
        if (ctx.out / name).is_file():
            try:
                out += [f"{name}: {t}" for t in junit_counts(ctx.out / name)["failed"]]
            except Exception:  # a junit file cut short by a kill
                out.append(f"{name}: unreadable")
    return out


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kernel_summary(records: list[dict]) -> str:
    """The fused core (aattn, P4, n, fp16 forward, eager calls) per batch and memory format of
    qkv ("[cl]": channels-last, the fused path's): each provider's median."""
    rows = {}
    for r in records:
        if (r.get("name") == "aattn/P4/n" and r.get("dtype") == "float16"
                and r.get("pass") == "fwd" and not r.get("cuda_graph")):
            cl = " [cl]" if r.get("layout") == "channels_last" else ""
            rows.setdefault((r["batch"], cl), {})[r["provider"]] = r["median_ms"]
    parts = [f"aattn P4 n b{b}{cl}: " + ", ".join(f"{p} {ms:.3g}" for p, ms in sorted(
        rows[b, cl].items(), key=lambda kv: kv[1])) + " ms" for b, cl in sorted(rows)]
    return f"{len(records)} records; " + "; ".join(parts) if parts else f"{len(records)} records"


def e2e_summary(records: list[dict]) -> str:
    """Per scale and batch: fast-graph, fast and eager medians (ms)."""
    rows: dict = {}
    for r in records:
        rows.setdefault((r["name"], r["batch"]), {})[r["provider"]] = r["median_ms"]
    parts = []
    for (name, batch), t in sorted(rows.items()):
        parts.append(f"{name} b{batch} " + "/".join(
            f"{t[p]:.3g}" if p in t else "-" for p in ("fast-graph", "eager-graph", "fast", "eager")))
    return "ms fast-graph/eager-graph/fast/eager: " + ", ".join(parts) if parts else "no records"


def kernel_table(events: list[dict], forwards: int) -> dict:
    """GPU activity of a torch.profiler Chrome trace, per forward: busy time (the union of kernel,
    memcpy and memset intervals), kernel launches, and kernels by total time and by count."""
    gpu = [e for e in events if e.get("ph") == "X"
           and str(e.get("cat", "")).lower() in ("kernel", "gpu_memcpy", "gpu_memset")]
    busy, end = 0.0, float("-inf")
    for e in sorted(gpu, key=lambda e: e["ts"]):
        start, stop = float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    per_name: dict[str, list] = {}
    for e in gpu:
        if str(e.get("cat", "")).lower() == "kernel":
            t = per_name.setdefault(e.get("name", "?"), [0.0, 0])
            t[0] += float(e.get("dur", 0))
            t[1] += 1
    total = sum(t for t, _ in per_name.values()) or 1.0
    rows = [{"kernel": k, "ms_per_forward": t / 1e3 / forwards, "launches_per_forward":
             n / forwards, "share": t / total} for k, (t, n) in per_name.items()]
    return {"forwards": forwards, "gpu_busy_ms_per_forward": busy / 1e3 / forwards,
            "kernels_per_forward": sum(n for _, n in per_name.values()) / forwards,
            "by_time": sorted(rows, key=lambda r: -r["ms_per_forward"]),
            "by_count": sorted(rows, key=lambda r: (-r["launches_per_forward"],
                                                    -r["ms_per_forward"]))}


def format_kernel_table(table: dict, top: int = 25) -> str:
    def rows(key):
        lines = [f"{'ms/fwd':>8} {'launches/fwd':>12} {'share':>6}  kernel"]
        for r in table[key][:top]:
            name = r["kernel"] if len(r["kernel"]) <= 100 else r["kernel"][:99] + "…"
            lines.append(f"{r['ms_per_forward']:>8.4f} {r['launches_per_forward']:>12.1f} "
                         f"{100 * r['share']:>5.1f}%  {name}")
        return "\n".join(lines)
    return (f"GPU busy {table['gpu_busy_ms_per_forward']:.3f} ms per forward, "
            f"{table['kernels_per_forward']:.0f} kernels per forward "
            f"(over {table['forwards']} forwards)\n\n"
            f"Kernels by total time:\n{rows('by_time')}\n\n"
            f"Kernels by launch count:\n{rows('by_count')}\n")


# ------------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------------
def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def _inner(ctx: Context, name: str, log: str) -> Command:
    """A step body that is a function of this module (``BODIES``), run as its own process."""
    return Command([ctx.python, "-m", "benchmarks.gpu_check", "--run-step", name, "--out",
                    str(ctx.out), "--work", str(ctx.work)] + (["--quick"] if ctx.quick else []),
                   log)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# Loads the CUDA extension the way the backend does and prints one JSON line: where it came from
# ("aot"/"jit"), why it is unavailable, and whether bf16 attention is refused (it is for
# compute_75 code: the sign that the PTX path is the one running).
JIT_PROBE = """
import json, torch
from yolov12_kernels import cuda_backend as c
reason = c.unavailable()
bf16 = None if reason else c.unsupported("area_attention", torch.device("cuda"), torch.bfloat16,
                                         32, False)
print(json.dumps({"source": c.source(), "unavailable": reason, "bf16_refused": bf16}))
raise SystemExit(1 if reason else 0)
""".strip()
PTX75_ENV = {"YOLOV12_CUDA_ARCHS": "compute_75", "YOLOV12_CUDA_JIT": "force"}


def _ptx75_env(ctx: Context) -> dict:
    return {**PTX75_ENV, "YOLOV12_CUDA_CACHE": str(ctx.work / "ptx75-cache")}


def env_commands(ctx):
    return [_inner(ctx, "env", "env.log")]


def env_figures(ctx):
    e = _json(ctx.out / "env.json")
    gpus = ", ".join(f"{d['name']} sm_{d['capability'].replace('.', '')}" for d in e["devices"])
    return (f"{gpus or 'no GPU'}; Python {e['python']}, torch {e['torch']}, "
            f"triton {e['packages'].get('triton')}, CUDA {e['torch_cuda']}, "
            f"driver {e.get('driver')}")


def build_commands(ctx):
    return [_inner(ctx, "build", "build.log")]


def build_figures(ctx):
    b = _json(ctx.out / "build.json")
    aot = (f"AOT for {b['arch']} {'ok' if b['aot_ok'] else 'FAILED'} in {b['aot_s']:.0f} s")
    use = f"extension in use: {b['source'] or 'none (' + str(b['unavailable']) + ')'}"
    ptx = f"compute_75 JIT {'ok' if b['ptx75_ok'] else 'FAILED'} in {b['ptx75_s']:.0f} s"
    return f"{aot}; {use}; {ptx}"


def tests_command(ctx: Context, paths: list[str], junit: Path, workers: int) -> list[str]:
    argv = [ctx.python, "-m", "pytest", *paths, "-p", "no:cacheprovider", "-rf", "--tb=short",
            "--durations=15", f"--junitxml={junit}",
            # the sanitizer has its own step (it takes long under the suite's load)
            "-k", "not compute_sanitizer"]
    if workers > 1 and _has_module("xdist"):
        argv += ["-n", str(workers)]
    if _has_module("pytest_timeout"):
        argv += ["--timeout", str(PER_TEST_TIMEOUT_S[ctx.quick])]
    if ctx.quick:
        argv += ["-m", "not slow"]
    return argv


def tests_commands(ctx):
    return [Command(tests_command(ctx, [], ctx.out / "junit.xml", ctx.workers), "pytest.log")]


def tests_figures(ctx):
    return _junit_figures(ctx.out / "junit.xml")


def sanitizer_commands(ctx):
    from benchmarks import sanitizer_case
    exe = sanitizer_case.find_sanitizer()
    if exe is None:
        raise Skip("compute-sanitizer not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    return [Command(sanitizer_case.command(tool, exe, ctx.python), f"sanitizer-{tool}.log",
                    sanitizer_case.ENV) for tool in sanitizer_case.TOOLS]


def sanitizer_figures(ctx):
    from benchmarks import sanitizer_case
    return "; ".join(f"{tool}: " + sanitizer_case.summary(
        (ctx.logs / f"sanitizer-{tool}.log").read_text(errors="replace"))
        for tool in sanitizer_case.TOOLS if (ctx.logs / f"sanitizer-{tool}.log").is_file())


def kbench_commands(ctx):
    out = ["--out", str(ctx.records)]
    attention = [ctx.python, "-m", "benchmarks.bench_attention", "--quick", "--levels", "P4"]
    if ctx.quick:  # the fused core only, forward, eager calls
        return [Command(attention + ["--families", "aattn", "--passes", "fwd"] + out,
                        "bench_attention.log"),
                Command([ctx.python, "-m", "benchmarks.bench_pe", "--scales", "n", "--batches",
                         "1", "32", "--dtypes", "float16", "--rep", "30"] + out, "bench_pe.log")]
    # CUDA-graph replay: the fused core only (the drop-in op's flex provider compiles per case)
    return [Command(attention + out, "bench_attention.log"),
            Command(attention + ["--families", "aattn", "--passes", "fwd", "--graph"] + out,
                    "bench_attention-graph.log"),
            Command([ctx.python, "-m", "benchmarks.bench_pe", "--scales", "n", "x", "--batches",
                     "1", "32", "--dtypes", "float16", "--rep", "50"] + out, "bench_pe.log")]


def kbench_figures(ctx):
    return kernel_summary(_records(ctx.records / "kernel.jsonl"))


TUNE_ARGS = {False: ["--scales", "n", "x", "--limit", "6", "--budget-s", "95"],
             True: ["--scales", "n", "--limit", "4", "--budget-s", "50"]}


def tune_commands(ctx):
    """The config sweep (benchmarks/tune.py), biggest shape classes first, cut to this step's
    budget: at most 6 candidates per class of n and x (the full sweep of n..x, about 3 minutes,
    is its own call). Its table (DIR/tune/<arch>.json) is what later steps run with."""
    return [Command([ctx.python, "-m", "benchmarks.tune", "--out", str(ctx.out / "tune"),
                     *TUNE_ARGS[ctx.quick]], "tune.log")]


def tune_figures(ctx):
    tables = sorted((ctx.out / "tune").glob("*.json"))
    if not tables:
        return "no table written"
    t = _json(tables[-1])
    m, entries = t["meta"], t["entries"]
    gain = sum(e["count"] * (e["heuristic_us"] - e["us"]) for e in entries.values()
               if e.get("heuristic_us") is not None)
    return (f"{tables[-1].name}: {m['classes_tuned']}/{m['classes']} shape classes in "
            f"{m['seconds']:.0f} s; heuristic - best summed over the layers: {gain:.0f} µs")


def e2e_commands(ctx):
    # eager and fast, each also replayed from a CUDA graph (the fair end-to-end comparison), and
    # the fast path without the fused conv kernels replayed (their own gain): the
    # torch.compile baselines (inductor, max-autotune) take minutes to compile per scale and
    # batch, more than this check has (docs/benchmarks.md)
    runs = ("30", "5") if ctx.quick else ("100", "20")
    base = [ctx.python, "-m", "yolov12", "bench", "--model", "n" if ctx.quick else "n,s",
            "--suite", "baselines", "--dtype", "float16",
            "--providers", "eager,eager-graph,fast,fast-graph,fast-noconv-graph",
            "--runs", runs[0], "--warmup", runs[1], "--out", str(ctx.records), "--no-progress",
            "--label", "gpu_check"]
    return [Command(base + ["--batch", str(b)], f"e2e-b{b}.log") for b in (1, 32)]


def e2e_figures(ctx):
    return e2e_summary(_records(ctx.records / "e2e.jsonl"))


def profile_commands(ctx):
    return [_inner(ctx, "profile", "profile.log")]


def profile_figures(ctx):
    p = _json(ctx.out / "profile.json")
    return (f"YOLOv12-{p['scale']} b{p['batch']} {p['size']} {p['dtype']} (attention: "
            f"{p['attention_backend']}): {p['gpu_busy_ms_per_forward']:.3f} ms GPU-busy and "
            f"{p['kernels_per_forward']:.0f} kernels per forward")


def ptx75_commands(ctx):
    env = _ptx75_env(ctx)
    return [Command([ctx.python, "-c", JIT_PROBE], "ptx75.log", env),
            Command(tests_command(ctx, ["tests/test_cuda_backend.py"],
                                  ctx.out / "junit-ptx75.xml", min(ctx.workers, 4)),
                    "ptx75.log", env)]


def ptx75_figures(ctx):
    log = (ctx.logs / "ptx75.log").read_text(errors="replace")
    probe = next((json.loads(line) for line in log.splitlines() if line.startswith('{"source"')),
                 None)
    runs = ("compute_75 code runs" if probe and probe["source"] == "jit" and probe["bf16_refused"]
            else f"compute_75 code NOT confirmed ({probe})")
    junit = ctx.out / "junit-ptx75.xml"
    return f"{runs}; " + (_junit_figures(junit) if junit.is_file() else "no junit XML")


# 540 s in all (9 minutes of a 10-minute call); the tune step's 110 s came from tests (-60),
# kbench (-15), sanitizer, ptx75, e2e (-10, -5, -5), env and profile (-5 each)
STEPS = [
    Step("env", 15, 15, env_commands, env_figures),
    Step("build", 120, 120, build_commands, build_figures),
    Step("tests", 120, 90, tests_commands, tests_figures),
    Step("sanitizer", 30, 30, sanitizer_commands, sanitizer_figures),
    Step("kbench", 45, 30, kbench_commands, kbench_figures),
    Step("tune", 110, 65, tune_commands, tune_figures),
    Step("e2e", 50, 30, e2e_commands, e2e_figures),
    Step("profile", 20, 20, profile_commands, profile_figures),
    Step("ptx75", 30, 30, ptx75_commands, ptx75_figures),
]


# ------------------------------------------------------------------------------------------------
# step bodies run as their own process (``--run-step NAME``)
# ------------------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    import importlib.metadata
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run_text(argv: list[str], timeout: float = 30) -> str | None:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return p.stdout if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def body_env(ctx: Context) -> int:
    import platform

    import torch
    smi = _run_text(["nvidia-smi"])
    (ctx.logs / "nvidia-smi.txt").write_text(smi or "nvidia-smi: not available\n")
    driver = _run_text(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    nvcc = _run_text(["nvcc", "--version"]) or ""
    devices = []
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        p = torch.cuda.get_device_properties(i)
        devices.append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                        "memory_gib": round(p.total_memory / 2**30, 1),
                        "sms": p.multi_processor_count,
                        "l2_mib": round(getattr(p, "L2_cache_size", 0) / 2**20, 1) or None})
    from benchmarks import sanitizer_case
    info = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
        "executable": sys.executable, "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "driver": driver.strip().splitlines()[0] if driver else None,
        "nvcc": next((line.strip() for line in nvcc.splitlines() if "release" in line), None),
        "compute_sanitizer": sanitizer_case.find_sanitizer(), "ncu": shutil.which("ncu"),
        "devices": devices,
        "packages": {d: _version(d) for d in ("triton", "numpy", "pytest", "pytest-xdist",
                                              "pytest-timeout", "onnx", "onnxruntime", "ninja",
                                              "setuptools", "pip", "yolov12-kernels")},
        "git": (_run_text(["git", "-C", str(ROOT), "rev-parse", "HEAD"]) or "").strip() or None,
    }
    (ctx.out / "env.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    return 0 if devices else 1


def _probe(ctx: Context, env: dict, log) -> dict:
    p = subprocess.run([ctx.python, "-c", JIT_PROBE], cwd=ROOT, env={**base_env(ctx), **env},
                       stdout=subprocess.PIPE, stderr=log, text=True)
    log.write(f"probe: {p.stdout}".encode())
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"source": None, "unavailable":
                                                f"probe exit status {p.returncode}"}


def body_build(ctx: Context) -> int:
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("build: torch sees no CUDA device")
    arch = "{}.{}".format(*torch.cuda.get_device_capability())
    jobs = str(os.cpu_count() or 4)
    env = base_env(ctx)
    aot_env = {**env, "YOLOV12_CUDA_ARCHS": arch, "MAX_JOBS": jobs, "PIP_NO_INDEX": "1",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    ptx_env = {**env, **_ptx75_env(ctx), "MAX_JOBS": jobs}
    t0 = time.monotonic()
    with open(ctx.logs / "build-aot.log", "wb") as aot_log, \
            open(ctx.logs / "build-ptx75.log", "wb") as ptx_log:
        # the compute_75 build only compiles here (CPU): it runs alongside the AOT build
        ptx = subprocess.Popen([ctx.python, "-c", JIT_PROBE], cwd=ROOT, env=ptx_env,
                               stdout=ptx_log, stderr=subprocess.STDOUT)
        aot = subprocess.run([ctx.python, "-m", "pip", "install", "--no-build-isolation",
                              "--no-deps", "-e", str(ROOT)], cwd=ROOT, env=aot_env,
                             stdout=aot_log, stderr=subprocess.STDOUT)
        aot_s = time.monotonic() - t0
        # what the backend loads now: the AOT module, else (YOLOV12_CUDA_JIT=auto) a JIT build
        probe = _probe(ctx, {}, aot_log)
        ptx_rc = ptx.wait()
    info = {"arch": arch, "aot_ok": aot.returncode == 0, "aot_s": aot_s,
            "source": probe.get("source"), "unavailable": probe.get("unavailable"),
            "ptx75_ok": ptx_rc == 0, "ptx75_s": time.monotonic() - t0}
    (ctx.out / "build.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    return 0 if info["aot_ok"] and info["source"] == "aot" and info["ptx75_ok"] else 1


def body_profile(ctx: Context, scale="n", batch=1, size=640, warmup=20, forwards=20) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from yolov12 import YOLOv12
    fast = YOLOv12(scale).optimize("cuda")  # the fast path's defaults: fp16, its backend choice
    x = torch.randn(batch, 3, size, size, device="cuda", dtype=fast.dtype)
    with torch.inference_mode():
        for _ in range(warmup):
            fast(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(forwards):
                fast(x)
            torch.cuda.synchronize()
    trace = ctx.work / "profile-trace.json"
    prof.export_chrome_trace(str(trace))
    table = kernel_table(json.loads(trace.read_text())["traceEvents"], forwards)
    trace.unlink()
    meta = {"scale": scale, "batch": batch, "size": size, "dtype": str(fast.dtype).split(".")[-1],
            "attention_backend": fast.attention_backend, "device": torch.cuda.get_device_name()}
    (ctx.out / "profile.json").write_text(json.dumps({**meta, **table}, indent=1) + "\n")
    text = f"YOLOv12 fast path {meta}\n\n" + format_kernel_table(table)
    (ctx.out / "profile.txt").write_text(text)
    print(text)
    return 0


BODIES = {"env": body_env, "build": body_build, "profile": body_profile}


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def parse_limits(items: list[str], steps: list[Step]) -> dict[str, float]:
    names = {s.name for s in steps}
    limits = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if name not in names or seconds <= 0:
            raise SystemExit(f"--limit: expected STEP=SECONDS with STEP in {','.join(names)} and "
                             f"SECONDS > 0, got {item!r}")
        limits[name] = seconds
    return limits


def select_steps(spec: str | None, steps: list[Step]) -> list[Step]:
    if not spec:
        return list(steps)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in {s.name for s in steps}]
    if unknown or not wanted:
        raise SystemExit(f"--steps: unknown {unknown or spec!r}; choose from "
                         f"{','.join(s.name for s in steps)}")
    return [s for s in steps if s.name in wanted]  # always in the table's order


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                 description=__doc__.split("\n\n")[0],
                                 epilog="Steps: " + ", ".join(s.name for s in STEPS))
    ap.add_argument("--out", required=True, help="directory for every log, record and summary")
    ap.add_argument("--steps", default=None, help="comma-separated subset of the steps")
    ap.add_argument("--quick", action="store_true",
                    help="shorter runs and limits: tests without those marked slow, smaller "
                         "benchmarks")
    ap.add_argument("--archive", default=None, help="also pack DIR into this .tar.gz file")
    ap.add_argument("--workers", type=int, default=None,
                    help="pytest-xdist workers for the tests step (default: half the cores, "
                         "at most 8)")
    ap.add_argument("--limit", action="append", default=[], metavar="STEP=SECONDS",
                    help="override a step's time limit (repeatable)")
    ap.add_argument("--run-step", choices=sorted(BODIES), help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None, steps: list[Step] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    steps = STEPS if steps is None else steps
    out = Path(args.out).resolve()
    if args.run_step:  # a step body, in its own process
        ctx = Context(out, args.quick, work=Path(args.work or tempfile.gettempdir()))
        ctx.logs.mkdir(parents=True, exist_ok=True)
        return BODIES[args.run_step](ctx)
    selected = select_steps(args.steps, steps)
    overrides = parse_limits(args.limit, steps)
    if args.archive and not str(args.archive).endswith((".tar.gz", ".tgz")):
        raise SystemExit(f"--archive: expected a .tar.gz or .tgz file name, got {args.archive!r}")
    if args.workers is not None and args.workers < 1:
        raise SystemExit(f"--workers: must be >= 1, got {args.workers}")
    workers = args.workers or max(1, min(8, (os.cpu_count() or 2) // 2))
    limits = {s.name: overrides.get(s.name, s.quick_limit_s if args.quick else s.limit_s)
              for s in selected}
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="yolov12-gpu-check-"))
    ctx = Context(out, args.quick, workers, work=work)
    print(f"[gpu_check] {len(selected)} steps, limits add up to {sum(limits.values()):g} s; "
          f"output in {out}")
    try:
        results = run_steps(selected, ctx, limits)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_summary(results, ctx, argv)
    if args.archive:
        path = archive(out, Path(args.archive))
        print(f"[gpu_check] archive: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print()
    print(summary_table(results))  # last on stdout
    return 0 if overall_status(results) == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
