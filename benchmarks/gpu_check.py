"""The whole GPU check in one command, sized for one 10-minute call on a bare GPU machine, the
figures that matter most first, nothing lost when the call is cut.

    python -m benchmarks.gpu_check --out DIR [--archive FILE.tar.gz] [--steps env,smoke,...]
                                   [--limit STEP=SECONDS] [--total-s SECONDS] [--workers N]
    python -m benchmarks.gpu_check --dry-run      # the plan: steps, limits, variants to compile

The steps run in this order (by value: what every issue waits for first), each as one or more
subprocesses in a process group of their own, with the step's own time limit and its logs under
DIR/logs. A step that fails or runs out of time is recorded and the next one runs. ``GRACE_S``
before its limit (a quarter of it for short limits) a step's processes get SIGINT (pytest still
writes what it has), and SIGKILL at the limit.

| step      | limit | what                                                                 |
|-----------|-------|----------------------------------------------------------------------|
| env       | 15 s  | versions, C compiler, Python.h, libcuda (ldconfig -p), pip freeze,   |
|           |       | GPU clocks and power: env.json, pip-freeze.txt                       |
| compile   | 35 s  | every Triton variant smoke and headline launch, compiled in parallel |
|           |       | (yolov12.precompile, all cores): compile.json; skipped without it    |
| smoke     | 70 s  | benchmarks.smoke: the default user path (optimize() built and called |
|           |       | under inference_mode) vs the float64 model, n and s, fp16 and fp32,  |
|           |       | b1 and b32, every layer's error, the first wrong layer: smoke.json   |
| headline  | 60 s  | benchmarks.headline: n b1, n b32, x b32, fp16: fast(x), fast-graph,  |
|           |       | eager-graph, speed-ups vs the goals: headline.json, records/e2e.jsonl|
| tests     | 100 s | the GPU-only tests, then the rest (benchmarks.gpu_tests: CPU-verified|
|           |       | compile/build/packaging tests left out), a line per test as it ends  |
| kbench    | 25 s  | attention kernels at P4 n fp16 b1/b32 (fused core, drop-in op; no    |
|           |       | flex: it compiles with inductor per case): records/kernel.jsonl      |
| tune      | 65 s  | benchmarks.tune, n and x, b1/b32: tune/<arch>.json, written per      |
|           |       | shape class as it goes; every later step runs with it                |
| e2e       | 35 s  | the headline rows again with the tuned table: headline-tuned.json    |
| aot       | 75 s  | AOT build for this GPU (and the compute_75 JIT build alongside), the |
|           |       | CUDA backend's tests, its kernels benchmarked: build.json            |
| sanitizer | 25 s  | compute-sanitizer memcheck, racecheck on benchmarks/sanitizer_case.py|
|           |       | filtered to this project's CUDA kernels                              |
| profile   | 15 s  | torch.profiler of the fp16 fast path, n b1: profile.txt/.json        |
| ptx75     | 20 s  | the compute_75 PTX build running the GPU tests of test_cuda_backend  |

The limits add up to 540 s; smoke and headline end by 180 s whatever happens before them. Until
the aot step the CUDA extension is not JIT-built (``YOLOV12_CUDA_JIT=0``): its first use would
build it for a minute or more inside whichever step touched it first.

Nothing lost: ``summary.json``, ``summary.md`` and the archive (``--archive``) are rewritten after
every step, and while one runs the summary every ``--refresh-s`` seconds and the archive every
``ARCHIVE_EVERY``-th time, each written whole under a temporary name and renamed, so a kill at any
moment leaves the last complete version: every finished step and the running step's logs up to
a few seconds before. The summary table (step, status, seconds,
limit, key figures) is printed last. Exit status 0 if no step failed or ran out of time, 1 if one
did, 130 if the run was stopped (SIGTERM, Ctrl-C). See docs/benchmarks.md, "GPU check".
"""
from __future__ import annotations

import argparse
import ctypes
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
GRACE_S = 10.0  # SIGINT this long before the step's limit, SIGKILL at it
STOP_GRACE_S = 3.0  # when the whole run is stopped: SIGINT to the running step, SIGKILL this later
REFRESH_S = 5.0  # summary rewritten at least this often while a step runs
ARCHIVE_EVERY = 3  # ... and the archive every this many refreshes (15 s), and after every step
PER_TEST_TIMEOUT_S = 90  # pytest-timeout per test: a safety net, not a budget
STATUSES = ("ok", "fail", "timeout", "skipped", "interrupted", "running")

# What smoke and headline run, and so what the compile step compiles before them.
IMGSZ = 640
SMOKE = {"scales": ("n", "s"), "dtypes": ("float16", "float32"), "batches": (1, 32)}
HEADLINE_ROWS = (("n", 1), ("n", 32), ("x", 32))
HEADLINE_DTYPE = "float16"
HEADLINE_BY_S = 180  # smoke and headline end by then (the limits before them included)
# The dry run's compile estimate: one Triton variant compiled alone for sm_90 under Triton 3.6.0
# (the GPU machine's) took ~0.57 s on the CPU machine (the 2026-12-06 GPU review, issue 27); the
# GPU machine has 16 cores.
COMPILE_S_PER_VARIANT, GPU_MACHINE_CORES, DRY_RUN_ARCH = 0.57, 16, "sm_90"
PRECOMPILE = ROOT / "yolov12" / "precompile.py"  # issue 27 (branch coldstart)
# Before the aot step: no JIT build of the CUDA extension (see the module docstring).
NO_CUDA_JIT = {"YOLOV12_CUDA_JIT": "0"}


class Skip(Exception):
    """A step that cannot run here; the message says why."""


@dataclass
class Context:
    out: Path
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
    env: dict = field(default_factory=dict)  # added to base_env() and the step's env


@dataclass
class Step:
    name: str
    limit_s: float
    commands: Callable[[Context], list[Command]]  # may raise Skip
    figures: Callable[[Context], str] = lambda ctx: ""  # key figures, read from the step's files
    what: str = ""  # one line for the plan (--dry-run)
    env: dict = field(default_factory=dict)  # added to every command of the step


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
    """The environment of every command: the repository importable whether or not the aot step
    installed it, unbuffered output, a Python traceback on a native crash, and once the tune step
    has written a table, that table."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if tune_tables(ctx):  # steps after tune run its configurations
        env["YOLOV12_CONFIG_TABLES"] = str(ctx.out / "tune")
    env.update(PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", MPLBACKEND="Agg")
    return env


_atomic_module = None


def atomic():
    """yolov12/atomic.py (``atomic_path``, ``write_text``), loaded on its own: it needs only the
    standard library, while importing the yolov12 package would load torch into this process
    (seconds, before the first step) just to write files."""
    global _atomic_module
    if _atomic_module is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("_yolov12_atomic",
                                                      ROOT / "yolov12" / "atomic.py")
        _atomic_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_atomic_module)
    return _atomic_module


def tune_tables(ctx: Context) -> list[Path]:
    """The tables the tune step wrote (not the temporary files of one being written)."""
    return sorted(p for p in (ctx.out / "tune").glob("*.json") if not p.name.startswith("."))


_libc = None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when this process dies (PR_SET_PDEATHSIG), so a kill
    of the whole run leaves no step running on. Linux only; elsewhere nothing."""
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _load_libc() -> None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:  # loaded here, in the parent: a child between fork and exec should import nothing
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the command leads its own process group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(proc: subprocess.Popen, seconds: float, tick: Callable[[], object]) -> int | None:
    """proc's exit status, or None if it still runs after ``seconds``; ``tick()`` about every
    second meanwhile."""
    end = time.monotonic() + seconds
    while True:
        try:
            return proc.wait(timeout=max(0.01, min(1.0, end - time.monotonic())))
        except subprocess.TimeoutExpired:
            tick()
            if time.monotonic() >= end:
                return None


def run_command(cmd: Command, ctx: Context, seconds: float, step_env: dict | None = None,
                tick: Callable[[], object] = lambda: None) -> int | None:
    """Run ``cmd`` with its output appended to its log; its exit status, or None if it was still
    running after ``seconds`` (interrupted, then killed). Nothing it started outlives it, not even
    when this process is killed (``_die_with_parent``) or interrupted (``finally``)."""
    ctx.logs.mkdir(parents=True, exist_ok=True)
    env = {**base_env(ctx), **(step_env or {}), **cmd.env}
    _load_libc()
    with open(ctx.logs / cmd.log, "ab") as log:
        log.write(f"$ {shlex.join(cmd.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
        grace = min(GRACE_S, seconds / 4)
        try:
            rc = _wait(proc, max(seconds - grace, 0.05), tick)
            if rc is None:
                _signal_group(proc, signal.SIGINT)
                _wait(proc, grace, tick)
            return rc
        except KeyboardInterrupt:  # the run is stopped: a moment to write what it has
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=min(grace, STOP_GRACE_S))
            except subprocess.TimeoutExpired:
                pass
            raise
        finally:
            _signal_group(proc, signal.SIGKILL)  # stragglers (workers, compilers) included
            proc.wait()


def run_step(step: Step, ctx: Context, limit_s: float,
             tick: Callable[[], object] = lambda: None) -> Result:
    """Run every command of ``step`` within ``limit_s`` seconds in all; raises nothing but
    KeyboardInterrupt (the run being stopped)."""
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
        rc = run_command(cmd, ctx, left, step.env, tick)
        if rc is None:
            status = "timeout"
            detail.append(f"{cmd.log}: stopped at the step's {limit_s:g} s limit")
            break
        if rc != 0:
            status = "fail"
            detail.append(f"{cmd.log}: exit status {rc}")
    return Result(step.name, status, time.monotonic() - t0, limit_s, step_figures(step, ctx),
                  "; ".join(detail))


def step_figures(step: Step, ctx: Context) -> str:
    try:
        return step.figures(ctx)
    except Exception as e:  # missing or partial files after a failure
        return f"(no figures: {type(e).__name__}: {e})"


class Recorder:
    """The run as it stands, on disk: ``summary.json``, ``summary.md`` and the archive, rewritten
    whole (temporary name, then rename) after every step, and while one runs (``tick``) the
    summary at least every ``refresh_s`` seconds and the archive every ``ARCHIVE_EVERY``-th time.
    A kill at any moment leaves the previous complete version."""

    def __init__(self, ctx: Context, argv: list[str], plan: list[tuple[str, float]],
                 archive_path: Path | None = None, refresh_s: float = REFRESH_S,
                 steps: dict | None = None):
        self.ctx, self.argv, self.plan = ctx, argv, plan
        self.archive_path, self.refresh_s = archive_path, refresh_s
        self.steps = steps or {}  # name -> Step (its figures, read while it runs)
        self.results: list[Result] = []
        self.running: tuple[str, float, float] | None = None  # (step, started, limit)
        self.started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.complete = False
        self._saved = self._archived = 0.0

    def begin(self, name: str, limit_s: float) -> None:
        self.running = (name, time.monotonic(), limit_s)
        self.save()

    def end(self, result: Result) -> None:
        self.results.append(result)
        self.running = None
        self.save()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._saved >= self.refresh_s:
            # the summary every refresh_s; the archive (a gzip of all of DIR, logs included)
            # every ARCHIVE_EVERY refreshes: packing it is CPU beside the timed steps
            self.save(archive=now - self._archived >= ARCHIVE_EVERY * self.refresh_s)

    def running_result(self) -> Result | None:
        if self.running is None:
            return None
        name, t0, limit = self.running
        step = self.steps.get(name)
        return Result(name, "running", time.monotonic() - t0, limit,
                      step_figures(step, self.ctx) if step else "",
                      "logs so far in DIR/logs; the run was cut here if this is the last word")

    def save(self, archive: bool = True) -> None:
        """Write the summary and (``archive``) the archive; a failure to write (full disk) is
        reported, never raised: the run goes on."""
        self._saved = time.monotonic()
        try:
            write_summary(self.results, self.ctx, self.argv, self.plan, self.running_result(),
                          self.started, self.complete)
            if archive and self.archive_path is not None:
                self._archived = self._saved
                pack(self.ctx.out, self.archive_path)
        except OSError as e:
            print(f"[gpu_check] could not write the summary/archive: {e}", flush=True)


def run_steps(steps: list[Step], ctx: Context, limits: dict[str, float],
              recorder: Recorder | None = None, progress: Callable[[str], object] = print,
              total_s: float | None = None) -> list[Result]:
    """Every step in order; the results so far when the run is stopped (KeyboardInterrupt:
    Ctrl-C, or SIGTERM through ``main``), the running step recorded as interrupted."""
    recorder = recorder or Recorder(ctx, [], [(s.name, limits[s.name]) for s in steps])
    t_start = time.monotonic()
    for i, step in enumerate(steps, 1):
        limit = limits[step.name]
        if total_s is not None:
            left = total_s - (time.monotonic() - t_start)
            if left < 2:
                recorder.end(Result(step.name, "skipped", 0.0, limit,
                                    detail=f"no time left in --total-s {total_s:g}"))
                continue
            limit = min(limit, left)
        progress(f"[gpu_check] {i}/{len(steps)} {step.name} (limit {limit:g} s) ...")
        recorder.begin(step.name, limit)
        t0 = time.monotonic()
        try:
            r = run_step(step, ctx, limit, recorder.tick)
        except KeyboardInterrupt as e:
            r = Result(step.name, "interrupted", time.monotonic() - t0, limit,
                       step_figures(step, ctx), f"the run was stopped ({e or 'Ctrl-C'})")
            recorder.end(r)
            progress(f"[gpu_check] {step.name}: interrupted after {r.seconds:.1f} s")
            break
        recorder.end(r)
        progress(f"[gpu_check] {step.name}: {r.status} in {r.seconds:.1f} s"
                 + (f" ({r.detail})" if r.detail else ""))
    return recorder.results


# ------------------------------------------------------------------------------------------------
# summary and archive
# ------------------------------------------------------------------------------------------------
def _cell(text: str, width: int = 240) -> str:
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


def write_summary(results: list[Result], ctx: Context, argv: list[str],
                  plan: list[tuple[str, float]] = (), running: Result | None = None,
                  started: str = "", complete: bool = False) -> None:
    """DIR/summary.md and DIR/summary.json, each written whole (atomically)."""
    write_text = atomic().write_text
    shown = results + ([running] if running else [])
    done = {r.step for r in shown}
    pending = [name for name, _ in plan if name not in done]
    failures = failed_tests(ctx)
    state = ("complete" if complete else f"running {running.step}" if running
             else "stopped" if pending else "steps done")
    body = (f"# GPU check\n\n`python -m benchmarks.gpu_check {shlex.join(argv)}`, started "
            f"{started}, updated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {state}\n\n"
            + summary_table(shown))
    if pending:
        body += "\n\nNot run (yet): " + ", ".join(pending)
    if failures:
        body += "\n\nFailed tests:\n" + "\n".join(f"- {f}" for f in failures)
    ctx.out.mkdir(parents=True, exist_ok=True)
    write_text(ctx.out / "summary.md", body + "\n")
    write_text(ctx.out / "summary.json", json.dumps(
        {"argv": argv, "started": started, "complete": complete,
         "status": overall_status(results), "plan": [{"step": n, "limit_s": s} for n, s in plan],
         "steps": [asdict(r) for r in results],
         "running": asdict(running) if running else None, "pending": pending,
         "failed_tests": failures}, indent=1) + "\n")


def pack(out: Path, path: Path) -> Path:
    """``out`` packed as ``path`` (.tar.gz), under one top folder named like ``out``, written
    whole (a temporary file beside ``path``, renamed): a kill while packing leaves the previous
    archive as it was. The archive and its temporary files are not packed into themselves."""
    atomic_path = atomic().atomic_path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    final = path.resolve()

    def keep(info):
        p = (out.parent / info.name).resolve()
        if p == final or (p.parent == final.parent and p.name.startswith(f".{final.name}.")):
            return None
        return info
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:  # fast: it runs beside steps
            tar.add(out, arcname=out.name, filter=keep)
    return path


# ------------------------------------------------------------------------------------------------
# parsing what the steps wrote (plain functions: tested on CPU with made-up files)
# ------------------------------------------------------------------------------------------------
TEST_LOGS = ("tests-gpu-only", "tests-rest", "tests-cuda-backend", "tests-ptx75")


def tests_line(path: Path) -> str:
    from benchmarks.gpu_tests import read_log
    c = read_log(path)
    # pytest's exit codes: 2 interrupted (SIGINT at the step's limit), 3 and 4 its own errors
    state = {None: "cut short", 2: "interrupted", 3: "pytest internal error",
             4: "pytest usage error"}.get(c["exitstatus"], "finished")
    return (f"{c['passed']} passed, {c['failed']} failed, {c['errors']} errors, "
            f"{c['skipped']} skipped ({state})")


def failed_tests(ctx: Context) -> list[str]:
    from benchmarks.gpu_tests import read_log
    out = []
    for name in TEST_LOGS:
        path = ctx.out / f"{name}.jsonl"
        if path.is_file():
            out += [f"{name}: {t}" for t in read_log(path)["failed_ids"]]
    return out


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            pass
    return out


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


def _inner(ctx: Context, name: str, log: str, extra: list[str] = ()) -> Command:
    """A step body that is a function of this module (``BODIES``), run as its own process."""
    return Command([ctx.python, "-m", "benchmarks.gpu_check", "--run-step", name, "--out",
                    str(ctx.out), "--work", str(ctx.work), *extra], log)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _write_json(path: Path, obj) -> None:
    atomic().write_text(path, json.dumps(obj, indent=1) + "\n")


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


def pytest_command(ctx: Context, mode: str, name: str, paths: list[str] = (),
                   workers: int = 1, timeout_s: int = PER_TEST_TIMEOUT_S) -> Command:
    """pytest over ``paths`` with the tests ``mode`` selects (``benchmarks.gpu_tests``), each
    test's outcome streamed to DIR/tests-<name>.jsonl and to its log (``-v``), the failures'
    reports at the end, junit XML (written on SIGINT too)."""
    from benchmarks.gpu_tests import LOG_ENV, MODE_ENV
    argv = [ctx.python, "-m", "pytest", *paths, "-p", "no:cacheprovider",
            "-p", "benchmarks.gpu_tests", "-v", "-rfE", "--tb=short", "--durations=15",
            f"--junitxml={ctx.out / f'junit-{name}.xml'}"]
    if _has_module("pytest_reportlog"):
        argv.append(f"--report-log={ctx.out / f'report-{name}.jsonl'}")
    if workers > 1 and _has_module("xdist"):
        argv += ["-n", str(workers)]
    if _has_module("pytest_timeout"):
        argv += ["--timeout", str(timeout_s)]
    return Command(argv, f"pytest-{name}.log",
                   {MODE_ENV: mode, LOG_ENV: str(ctx.out / f"tests-{name}.jsonl")})


# --- env ----------------------------------------------------------------------------------------
def env_commands(ctx):
    return [_inner(ctx, "env", "env.log")]


def env_figures(ctx):
    e = _json(ctx.out / "env.json")
    gpus = ", ".join(f"{d['name']} sm_{d['capability'].replace('.', '')}" for d in e["devices"])
    t = e.get("triton_build", {})
    clocks = e.get("gpu_clocks") or {}
    cc = (f"{Path(t['cc']).name} {t['cc_version'].split()[-1]}" if t.get("cc_version")
          else "NOT FOUND")
    return (f"{gpus or 'no GPU'}; Triton's launcher build: cc {cc}, Python.h "
            f"{'yes' if t.get('python_h') else 'NO'}, libcuda "
            f"{'yes' if t.get('libcuda') else 'NO'}; Python {e['python']}, torch {e['torch']}, "
            f"triton {e['packages'].get('triton')}, CUDA {e['torch_cuda']}, driver "
            f"{e.get('driver')}"
            + (f"; SM {clocks.get('clocks.sm [MHz]')}, {clocks.get('power.draw [W]')}"
               if clocks else ""))


# --- compile ------------------------------------------------------------------------------------
def compile_sets() -> list[tuple[str, str, tuple[int, ...]]]:
    """(scale, dtype, batches) that smoke and headline run, in the order they run them."""
    sets: dict = {}
    for scale in SMOKE["scales"]:
        for dtype in SMOKE["dtypes"]:
            sets.setdefault((scale, dtype), []).extend(SMOKE["batches"])
    for scale, batch in HEADLINE_ROWS:
        sets.setdefault((scale, HEADLINE_DTYPE), []).append(batch)
    return [(s, d, tuple(sorted(set(b)))) for (s, d), b in sets.items()]


def compile_commands(ctx):
    if not PRECOMPILE.is_file():
        raise Skip("yolov12/precompile.py is not in this tree (issue 27): smoke and headline "
                   "compile each Triton variant on first use, one after another")
    return [_inner(ctx, "compile", "compile.log")]


def compile_figures(ctx):
    sets = _json(ctx.out / "compile.json")["sets"]
    n = sum(s["variants"] for s in sets)
    return (f"{n} variants ({sum(s['compiled'] for s in sets)} compiled, "
            f"{sum(s['cached'] for s in sets)} cached) in {sum(s['seconds'] for s in sets):.1f} s "
            f"on {max(s['workers'] for s in sets)} workers ({sets[0]['arch']}); "
            + ", ".join(f"{s['scale']} {s['dtype']} b{'/'.join(map(str, s['batches']))}: "
                        f"{s['variants']}" for s in sets))


# --- smoke and headline -------------------------------------------------------------------------
def smoke_commands(ctx):
    return [Command([ctx.python, "-m", "benchmarks.smoke", "--out", str(ctx.out), "--imgsz",
                     str(IMGSZ), "--scales", *SMOKE["scales"], "--dtypes", *SMOKE["dtypes"],
                     "--batches", *map(str, SMOKE["batches"])], "smoke.log")]


def smoke_figures(ctx):
    from benchmarks.smoke import summary_line
    return summary_line(_json(ctx.out / "smoke.json"))


def headline_command(ctx: Context, summary: str, label: str, log: str) -> Command:
    rows = ",".join(f"{s}:{b}" for s, b in HEADLINE_ROWS)
    return Command([ctx.python, "-m", "benchmarks.headline", "--out", str(ctx.records),
                    "--summary", str(ctx.out / summary), "--rows", rows, "--dtype",
                    HEADLINE_DTYPE, "--imgsz", str(IMGSZ), "--label", label], log)


def headline_commands(ctx):
    return [headline_command(ctx, "headline.json", "gpu_check headline", "headline.log")]


def headline_figures(ctx):
    from benchmarks.headline import summary_line
    return summary_line(_json(ctx.out / "headline.json"))


# --- tests --------------------------------------------------------------------------------------
def tests_commands(ctx):
    # the GPU-only tests first: CI never ran them; the rest after
    return [pytest_command(ctx, "gpu-only", "gpu-only", workers=ctx.workers),
            pytest_command(ctx, "rest", "rest", workers=ctx.workers)]


def tests_figures(ctx):
    parts = [f"{name}: {tests_line(ctx.out / f'tests-{name}.jsonl')}" for name in
             ("gpu-only", "rest") if (ctx.out / f"tests-{name}.jsonl").is_file()]
    return "; ".join(parts) or "no test finished"


# --- kbench -------------------------------------------------------------------------------------
# flex compiles FlexAttention with inductor per case: minutes of cold compiles for four rows
KBENCH_LEFT_OUT = ("flex",)


def kbench_commands(ctx):
    return [_inner(ctx, "kbench", "kbench.log")]


def kbench_figures(ctx):
    return kernel_summary(_records(ctx.records / "kernel.jsonl"))


# --- tune and e2e -------------------------------------------------------------------------------
TUNE_BUDGET_S = 50
TUNE_ARGS = ["--scales", "n", "x", "--batches", "1", "32", "--limit", "6", "--budget-s",
             str(TUNE_BUDGET_S)]


def tune_commands(ctx):
    """The config sweep (benchmarks.tune), biggest shape classes first, cut to this step's
    budget: at most 6 candidates per class of n and x (the full sweep of n..x is its own call).
    Its table (DIR/tune/<arch>.json), rewritten after every class, is what later steps run with."""
    return [Command([ctx.python, "-m", "benchmarks.tune", "--out", str(ctx.out / "tune"),
                     *TUNE_ARGS], "tune.log")]


def tune_figures(ctx):
    tables = tune_tables(ctx)
    if not tables:
        return "no table written"
    t = _json(tables[-1])
    m, entries = t["meta"], t["entries"]
    gain = sum(e["count"] * (e["heuristic_us"] - e["us"]) for e in entries.values()
               if e.get("heuristic_us") is not None)
    return (f"{tables[-1].name}: {m['classes_tuned']}/{m['classes']} shape classes in "
            f"{m['seconds']:.0f} s; heuristic - best summed over the layers: {gain:.0f} µs")


def e2e_commands(ctx):
    if not tune_tables(ctx):
        raise Skip("no tuned table (the tune step wrote none): the headline figures stand")
    return [headline_command(ctx, "headline-tuned.json", "gpu_check tuned", "e2e.log")]


def e2e_figures(ctx):
    from benchmarks.headline import summary_line
    return "tuned table: " + summary_line(_json(ctx.out / "headline-tuned.json"))


# --- aot ----------------------------------------------------------------------------------------
def aot_commands(ctx):
    return [_inner(ctx, "build", "build.log"),
            pytest_command(ctx, "cuda-backend", "cuda-backend", ["tests/test_cuda_backend.py"],
                           workers=min(ctx.workers, 4), timeout_s=60),
            _inner(ctx, "kbench", "kbench-cuda.log", ["--providers", "cuda"]),
            Command([ctx.python, "-m", "benchmarks.bench_pe", "--scales", "n", "x", "--batches",
                     "1", "32", "--dtypes", "float16", "--rep", "50", "--out", str(ctx.records)],
                    "bench_pe.log")]


def aot_figures(ctx):
    b = _json(ctx.out / "build.json")
    aot = f"AOT for {b['arch']} {'ok' if b['aot_ok'] else 'FAILED'} in {b['aot_s']:.0f} s"
    use = f"extension in use: {b['source'] or 'none (' + str(b['unavailable']) + ')'}"
    ptx = f"compute_75 JIT {'ok' if b['ptx75_ok'] else 'FAILED'} in {b['ptx75_s']:.0f} s"
    log = ctx.out / "tests-cuda-backend.jsonl"
    tests = f"tests: {tests_line(log)}" if log.is_file() else "tests: not run"
    return f"{aot}; {use}; {ptx}; {tests}"


# --- sanitizer, profile, ptx75 ------------------------------------------------------------------
def sanitizer_commands(ctx):
    from benchmarks import sanitizer_case
    exe = sanitizer_case.find_sanitizer()
    if exe is None:
        raise Skip("compute-sanitizer not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    filtered = sanitizer_case.supports_kernel_filter(exe)  # asked once for both tools
    return [Command(sanitizer_case.command(tool, exe, ctx.python, kernel_filter=filtered),
                    f"sanitizer-{tool}.log", sanitizer_case.ENV) for tool in sanitizer_case.TOOLS]


def sanitizer_figures(ctx):
    from benchmarks import sanitizer_case
    return "; ".join(f"{tool}: " + sanitizer_case.summary(
        (ctx.logs / f"sanitizer-{tool}.log").read_text(errors="replace"))
        for tool in sanitizer_case.TOOLS if (ctx.logs / f"sanitizer-{tool}.log").is_file())


def profile_commands(ctx):
    return [_inner(ctx, "profile", "profile.log")]


def profile_figures(ctx):
    p = _json(ctx.out / "profile.json")
    return (f"YOLOv12-{p['scale']} b{p['batch']} {p['size']} {p['dtype']} (attention: "
            f"{p['attention_backend']}): {p['gpu_busy_ms_per_forward']:.3f} ms GPU-busy and "
            f"{p['kernels_per_forward']:.0f} kernels per forward")


def ptx75_commands(ctx):
    env = _ptx75_env(ctx)
    tests = pytest_command(ctx, "ptx75", "ptx75", ["tests/test_cuda_backend.py"],
                           workers=min(ctx.workers, 4), timeout_s=60)
    tests.env.update(env)
    return [Command([ctx.python, "-c", JIT_PROBE], "ptx75.log", env), tests]


def ptx75_figures(ctx):
    log = (ctx.logs / "ptx75.log").read_text(errors="replace")
    probe = next((json.loads(line) for line in log.splitlines() if line.startswith('{"source"')),
                 None)
    runs = ("compute_75 code runs" if probe and probe["source"] == "jit" and probe["bf16_refused"]
            else f"compute_75 code NOT confirmed ({probe})")
    tests = ctx.out / "tests-ptx75.jsonl"
    return f"{runs}; " + (tests_line(tests) if tests.is_file() else "no test ran")


# The order is the check's point (by value, module docstring); limits add up to 540 s, and the
# ones up to headline to HEADLINE_BY_S.
STEPS = [
    Step("env", 15, env_commands, env_figures,
         "versions, C compiler, Python.h, libcuda, pip freeze, GPU clocks/power"),
    Step("compile", 35, compile_commands, compile_figures,
         "Triton variants of smoke and headline, compiled in parallel (yolov12.precompile)"),
    Step("smoke", 70, smoke_commands, smoke_figures,
         "default user path vs float64, n/s fp16/fp32 b1/b32, layer by layer", NO_CUDA_JIT),
    Step("headline", 60, headline_commands, headline_figures,
         "n b1, n b32, x b32 fp16: fast, fast-graph, eager-graph; speed-ups vs goals",
         NO_CUDA_JIT),
    Step("tests", 100, tests_commands, tests_figures,
         "GPU-only tests, then the rest (CPU-verified builds left out), per-test log",
         NO_CUDA_JIT),
    Step("kbench", 25, kbench_commands, kbench_figures,
         "attention kernels, P4 n fp16 b1/b32 (no flex)", NO_CUDA_JIT),
    Step("tune", 65, tune_commands, tune_figures,
         f"config sweep n, x b1/b32, {TUNE_BUDGET_S} s, table written per shape class",
         NO_CUDA_JIT),
    Step("e2e", 35, e2e_commands, e2e_figures, "the headline rows with the tuned table",
         NO_CUDA_JIT),
    Step("aot", 75, aot_commands, aot_figures,
         "AOT build (+ compute_75 JIT), CUDA backend tests, its kernels benchmarked"),
    Step("sanitizer", 25, sanitizer_commands, sanitizer_figures,
         "memcheck, racecheck on the CUDA kernels (filtered to them)"),
    Step("profile", 15, profile_commands, profile_figures, "torch.profiler, n b1 fp16 fast path"),
    Step("ptx75", 20, ptx75_commands, ptx75_figures, "compute_75 PTX build: the GPU tests of "
                                                     "test_cuda_backend.py"),
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


def triton_build_env() -> dict:
    """What Triton needs to build its C launchers at first use: a C compiler (``$CC``, else gcc,
    else clang, Triton's own order), ``Python.h`` and libcuda as ``ldconfig -p`` lists it."""
    import sysconfig
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    version = _run_text([cc, "--version"], timeout=10) if cc else None
    includes = {sysconfig.get_paths().get(k) for k in ("include", "platinclude")} - {None}
    python_h = next((str(Path(d) / "Python.h") for d in sorted(includes)
                     if (Path(d) / "Python.h").is_file()), None)
    ldconfig = (_run_text(["ldconfig", "-p"], timeout=10)
                or _run_text(["/sbin/ldconfig", "-p"], timeout=10) or "")
    libcuda = [line.strip() for line in ldconfig.splitlines() if "libcuda.so" in line]
    return {"cc": cc, "cc_version": version.splitlines()[0].strip() if version else None,
            "python_include": sorted(includes), "python_h": python_h, "libcuda": libcuda,
            "TRITON_LIBCUDA_PATH": os.environ.get("TRITON_LIBCUDA_PATH")}


GPU_QUERY = ("name,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.draw,"
             "power.limit,temperature.gpu,utilization.gpu,memory.used,memory.total")


def gpu_state() -> dict | None:
    """Clocks, power, temperature of GPU 0 as nvidia-smi reads them (read-only queries: the
    card's settings are left as they are)."""
    text = _run_text(["nvidia-smi", f"--query-gpu={GPU_QUERY}", "--format=csv"], timeout=10)
    if not text or len(text.strip().splitlines()) < 2:
        return None
    head, first = text.strip().splitlines()[:2]
    return {k.strip(): v.strip() for k, v in zip(head.split(","), first.split(","))}


def body_env(ctx: Context) -> int:
    import platform

    import torch
    write_text = atomic().write_text
    smi = _run_text(["nvidia-smi"], timeout=10)
    write_text(ctx.logs / "nvidia-smi.txt", smi or "nvidia-smi: not available\n")
    driver = _run_text(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                       timeout=10)
    nvcc = _run_text(["nvcc", "--version"], timeout=10) or ""
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
        "devices": devices, "gpu_clocks": gpu_state(), "triton_build": triton_build_env(),
        "packages": {d: _version(d) for d in ("triton", "numpy", "pytest", "pytest-xdist",
                                              "pytest-timeout", "pytest-reportlog", "onnx",
                                              "onnxruntime", "ninja", "setuptools", "pip",
                                              "yolov12-kernels")},
        "git": (_run_text(["git", "-C", str(ROOT), "rev-parse", "HEAD"]) or "").strip() or None,
    }
    _write_json(ctx.out / "env.json", info)
    print(json.dumps(info, indent=1), flush=True)
    # last: the slowest, and env.json is already written if the step's limit cuts it
    freeze = _run_text([sys.executable, "-m", "pip", "freeze"], timeout=10)
    write_text(ctx.out / "pip-freeze.txt", freeze or "pip freeze: failed\n")
    return 0 if devices else 1


def body_compile(ctx: Context) -> int:
    """Every (scale, dtype, batches) of ``compile_sets()`` through ``yolov12.precompile``, in the
    order smoke and headline use them; DIR/compile.json after each."""
    import torch

    from yolov12 import precompile
    sets = []
    for scale, dtype, batches in compile_sets():
        t0 = time.monotonic()
        rep = precompile.precompile(scale, IMGSZ, list(batches), getattr(torch, dtype),
                                    progress=True)
        sets.append({"scale": scale, "dtype": dtype, "batches": list(batches),
                     "variants": rep.variants, "compiled": rep.compiled, "cached": rep.cached,
                     "seconds": rep.seconds, "wall_s": round(time.monotonic() - t0, 2),
                     "workers": rep.workers, "arch": rep.arch})
        _write_json(ctx.out / "compile.json", {"imgsz": IMGSZ, "sets": sets})
        print(f"[compile] {scale} {dtype} b{'/'.join(map(str, batches))}: {rep.variants} "
              f"variants, {rep.compiled} compiled, {rep.cached} cached in {rep.seconds:.1f} s on "
              f"{rep.workers} workers ({rep.arch})", flush=True)
    return 0


def body_kbench(ctx: Context, providers: list[str] | None = None) -> int:
    """The attention kernels at P4 of YOLOv12-N, fp16, batch 1 and 32, forward: the fused core
    (qkv -> attention + pe, both memory formats of qkv) first, the drop-in op second; eager calls
    and, per row, the CUDA-graph (kernel-only) median. Every provider but ``KBENCH_LEFT_OUT``
    (``providers``: only these). Records appended after each case (a cut run keeps them)."""
    import torch
    if not torch.cuda.is_available():
        print("kbench: no CUDA GPU visible")
        return 1
    from benchmarks import bench_attention as B
    from benchmarks.bench_pe import gpu_memory_context
    from benchmarks.headline import add_records
    device = torch.device("cuda")
    l2, bw = gpu_memory_context(device)
    print(B.HEADER + B.KERNEL_TIME_HEADER, flush=True)
    for case in B.cases(["aattn", "area_attention"], ["P4"], ["n"], [1, 32], ["float16"], ["fwd"],
                        B.LAYOUTS):
        names = [p for p in B.providers_for(case.family)
                 if p not in KBENCH_LEFT_OUT and (providers is None or p in providers)]
        if not names:
            continue
        results = B.measure_case(case, device, 50, l2, False, providers=names, kernel_time=True)
        recs = B.build_records(case, results, device, bw, False)
        if recs:
            add_records(ctx.records / "kernel.jsonl", [dict(r, label="gpu_check") for r in recs])
        for line in B.format_rows(recs, [r for r in results if r.timing is None]):
            print(line, flush=True)
    return 0


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
        # the compute_75 build only compiles here (CPU): it runs alongside the AOT build, and
        # the ptx75 step finds it in its cache
        ptx = subprocess.Popen([ctx.python, "-c", JIT_PROBE], cwd=ROOT, env=ptx_env,
                               stdout=ptx_log, stderr=subprocess.STDOUT)
        aot = subprocess.run([ctx.python, "-m", "pip", "install", "--no-build-isolation",
                              "--no-deps", "-e", str(ROOT)], cwd=ROOT, env=aot_env,
                             stdout=aot_log, stderr=subprocess.STDOUT)
        aot_s = time.monotonic() - t0
        # what the backend loads now: the AOT module, else (YOLOV12_CUDA_JIT=auto) a JIT build
        probe = _probe(ctx, {"YOLOV12_CUDA_JIT": "auto"}, aot_log)
        ptx_rc = ptx.wait()
    info = {"arch": arch, "aot_ok": aot.returncode == 0, "aot_s": aot_s,
            "source": probe.get("source"), "unavailable": probe.get("unavailable"),
            "ptx75_ok": ptx_rc == 0, "ptx75_s": time.monotonic() - t0}
    _write_json(ctx.out / "build.json", info)
    print(json.dumps(info, indent=1))
    return 0 if info["aot_ok"] and info["source"] == "aot" and info["ptx75_ok"] else 1


def body_profile(ctx: Context, scale="n", batch=1, size=640, warmup=20, forwards=20) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from yolov12 import YOLOv12
    write_text = atomic().write_text
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
    _write_json(ctx.out / "profile.json", {**meta, **table})
    text = f"YOLOv12 fast path {meta}\n\n" + format_kernel_table(table)
    write_text(ctx.out / "profile.txt", text)
    print(text)
    return 0


BODIES = {"env": body_env, "compile": body_compile, "kbench": body_kbench, "build": body_build,
          "profile": body_profile}


# ------------------------------------------------------------------------------------------------
# the plan (--dry-run)
# ------------------------------------------------------------------------------------------------
def compile_plan(arch: str = DRY_RUN_ARCH) -> tuple[int | None, list[str]]:
    """(distinct variants the compile step compiles, or None if unknown; lines saying which),
    from ``yolov12.precompile.variants`` for ``arch``."""
    if not PRECOMPILE.is_file():
        return None, ["  variants: unknown (yolov12/precompile.py is not in this tree, issue 27): "
                      "the step is skipped, and smoke and headline compile each variant on first "
                      f"use, one after another (~{COMPILE_S_PER_VARIANT} s each)"]
    try:
        import torch

        from yolov12 import precompile
        seen: set = set()
        lines = []
        for scale, dtype, batches in compile_sets():
            keys = set()
            for b in batches:
                for v in precompile.variants(scale, IMGSZ, b, getattr(torch, dtype), arch):
                    try:
                        hash(v)
                    except TypeError:  # a variant that cannot be hashed: by its text
                        v = repr(v)
                    keys.add(v)
            lines.append(f"  {scale} {dtype} b{'/'.join(map(str, batches))}: {len(keys)} "
                         f"variants, {len(keys - seen)} not listed above")
            seen |= keys
        return len(seen), lines
    except Exception as e:  # noqa: BLE001 — the plan still prints
        return None, [f"  variants: unknown (yolov12.precompile.variants failed: "
                      f"{type(e).__name__}: {e})"]


def plan_text(steps: list[Step], limits: dict[str, float]) -> str:
    """The plan: each step's limit and the latest second it can end, what it does, the variants
    the compile step compiles and the estimate of its time."""
    lines = ["| # | step | limit s | ends by s | what |", "|---|---|---|---|---|"]
    t = 0.0
    ends = {}
    for i, s in enumerate(steps, 1):
        t += limits[s.name]
        ends[s.name] = t
        lines.append(f"| {i} | {s.name} | {limits[s.name]:g} | {t:g} | {s.what} |")
    lines.append(f"| | total | {t:g} | | |")
    names = [s.name for s in steps]
    text = "\n".join(lines) + "\n\n"
    count = None
    if "compile" in names:
        count, detail = compile_plan()
        text += (f"compile ({DRY_RUN_ARCH}, {IMGSZ} px, what smoke and headline launch):\n"
                 + "\n".join(detail) + "\n")
        if count is not None:
            est = count * COMPILE_S_PER_VARIANT / GPU_MACHINE_CORES
            text += (f"  {count} distinct variants; estimate {count} x {COMPILE_S_PER_VARIANT} s / "
                     f"{GPU_MACHINE_CORES} cores = {est:.0f} s (an estimate: "
                     f"{COMPILE_S_PER_VARIANT} s is one variant compiled alone for sm_90 under "
                     f"Triton 3.6.0 on the CPU machine; the launchers' gcc builds and the pool's "
                     f"start come on top) within the step's {limits['compile']:g} s\n")
        text += "  tune compiles its own candidates ahead, in its step (benchmarks.tune " \
                "--dry-run counts them)\n"
    last = max((ends[n] for n in ("smoke", "headline") if n in ends), default=None)
    if last is not None:
        text += (f"\nsmoke and headline end by {last:g} s at the latest (the limits up to them; "
                 f"goal: {HEADLINE_BY_S} s)")
        if "compile" in ends and count is not None:
            text += ", compiling nothing themselves on a cold cache once the compile step ran"
        elif "compile" in ends:
            text += ("; without the compile step they compile on first use, and on a cold cache "
                     "their limits may cut them")
        text += "\n"
    return text + ("\nOn the GPU machine, in one call: python -m benchmarks.gpu_check --out "
                   "/tmp/gpu_check --archive FILE.tgz (FILE where the call's files come back)\n")


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
                                 epilog="Steps, in order: " + ", ".join(s.name for s in STEPS))
    ap.add_argument("--out", default=None,
                    help="directory for every log, record and summary (required unless --dry-run)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan (steps, limits, variants to compile) and exit")
    ap.add_argument("--steps", default=None, help="comma-separated subset of the steps")
    ap.add_argument("--archive", default=None,
                    help="also pack DIR into this .tar.gz file, rewritten as the run goes")
    ap.add_argument("--workers", type=int, default=None,
                    help="pytest-xdist workers for the tests step (default: half the cores, "
                         "at most 8)")
    ap.add_argument("--limit", action="append", default=[], metavar="STEP=SECONDS",
                    help="override a step's time limit (repeatable)")
    ap.add_argument("--total-s", type=float, default=None,
                    help="the whole run's time: later steps get what is left, or are skipped")
    ap.add_argument("--refresh-s", type=float, default=REFRESH_S,
                    help=f"rewrite the summary this often while a step runs, the archive "
                         f"every {ARCHIVE_EVERY} times (default {REFRESH_S:g})")
    ap.add_argument("--run-step", choices=sorted(BODIES), help=argparse.SUPPRESS)
    ap.add_argument("--providers", nargs="+", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    return ap


class _Stopped(KeyboardInterrupt):
    """SIGTERM (a time limit around the whole run): stop like Ctrl-C, saving what was done."""


def _on_sigterm(signum, frame):
    raise _Stopped("SIGTERM")


def main(argv: list[str] | None = None, steps: list[Step] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    steps = STEPS if steps is None else steps
    if args.run_step:  # a step body, in its own process
        if not args.out:
            raise SystemExit("--out: required")
        ctx = Context(Path(args.out).resolve(), work=Path(args.work or tempfile.gettempdir()))
        ctx.logs.mkdir(parents=True, exist_ok=True)
        if args.run_step == "kbench":
            return body_kbench(ctx, args.providers)
        return BODIES[args.run_step](ctx)
    selected = select_steps(args.steps, steps)
    overrides = parse_limits(args.limit, steps)
    limits = {s.name: overrides.get(s.name, s.limit_s) for s in selected}
    if args.dry_run:
        print(plan_text(selected, limits), end="")
        return 0
    if not args.out:
        raise SystemExit("--out: required (a directory for the logs, records and summary)")
    if args.archive and not str(args.archive).endswith((".tar.gz", ".tgz")):
        raise SystemExit(f"--archive: expected a .tar.gz or .tgz file name, got {args.archive!r}")
    if args.workers is not None and args.workers < 1:
        raise SystemExit(f"--workers: must be >= 1, got {args.workers}")
    if args.total_s is not None and args.total_s <= 0:
        raise SystemExit(f"--total-s: must be > 0, got {args.total_s:g}")
    if args.refresh_s <= 0:
        raise SystemExit(f"--refresh-s: must be > 0, got {args.refresh_s:g}")
    workers = args.workers or max(1, min(8, (os.cpu_count() or 2) // 2))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="yolov12-gpu-check-"))
    ctx = Context(out, workers, work=work)
    recorder = Recorder(ctx, argv, [(s.name, limits[s.name]) for s in selected],
                        Path(args.archive).resolve() if args.archive else None, args.refresh_s,
                        {s.name: s for s in selected})
    print(f"[gpu_check] {len(selected)} steps, limits add up to {sum(limits.values()):g} s; "
          f"output in {out}", flush=True)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        results = run_steps(selected, ctx, limits, recorder, total_s=args.total_s)
        stopped = bool(results) and results[-1].status == "interrupted"
    except KeyboardInterrupt:  # between steps
        results, stopped = recorder.results, True
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
    recorder.complete = not stopped and len(results) == len(selected)
    recorder.save()
    if args.archive:
        path = Path(args.archive)
        if path.is_file():
            print(f"[gpu_check] archive: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print()
    print(summary_table(results))  # last on stdout
    if stopped:
        return 130
    return 0 if overall_status(results) == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
