"""Cold start: the wall time to compile a model's kernel variants, on one process and on every
core, and the warm start (every variant cached) — measurable on a CPU, for a GPU.

    python -m benchmarks.bench_cold_start [--sets n:1 n:32 x:32] [--dtype float16]
        [--arch sm_90] [--tritons 3.6 newest] [--workers 1 0] [--repeat 1] [--warm-runs 5]
        [--no-launchers] [--out benchmarks/results/cold_start.jsonl]

Compile (``--sets`` SCALE:BATCH at 640, ``--dtype``, for ``--arch`` without its GPU): per Triton
version — 3.6.0 from ``.triton36/`` (or ``YOLOV12_TRITON36``; the GPU machine's), first on
PYTHONPATH of a subprocess, and the newest, the one installed — and per worker count
(``--workers``: 1 = this process alone, 0 = every core: this process and worker processes), one
subprocess with an empty Triton cache enumerates the set's variants (``precompile.variants``;
timed apart) and compiles them (``precompile.compile_variants``: the code ``optimize()``'s first
call and ``yolov12 compile`` run). Each row has the wall time and each compiling process's CPU
seconds (compiler subprocesses included, a worker's start-up too). On a shared machine the wall
time follows the load (other sessions' processes take the cores), so the summary also gives the
busiest process's CPU seconds over the serial CPU seconds / W: the wall-time ratio of the target
(issue 27: W-process wall <= 1.25 x serial / W) on cores left free. Under Triton 3.6 the C
launchers of the first set's signatures are built too, in runs of their own (``launchers`` rows):
gcc links them against a stub ``libcuda.so.1`` made here, the real one not being on a CPU
machine (the build is the same; a GPU machine links the driver's).

Start-up: a worker process started and handed one variant already cached, timed until it answers
(Python, torch, Triton, the kernel modules, Triton's first cache lookup): what every worker pays
once, and with the serial CPU seconds what a machine of more cores would take (arithmetic).

Warm start (``--warm-runs`` fresh processes, median; YOLOv12-N, batch 1, 640, every variant
cached by the runs above): ``optimize()`` + what the first call does on the host — the variants
enumerated and looked up in Triton's cache (``for_first_call``, for ``--arch``), then the launch
plan recorded — with every Triton launch stubbed at Triton's own entry (``JITFunction.run``
returns a stand-in kernel, as ``bench_host`` stubs the interpreter's) and the kernels' choices
an sm_90 GPU's on CPU tensors. Not included, so add them on a GPU: loading the cached kernels
onto the GPU at their first launch, the launchers' first load, the warm-up and the graph capture.

Every record names the machine, the versions, the date, the commit and the load average (the CI
machine is shared: a busy machine stretches every wall time).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRITON36_ENV = "YOLOV12_TRITON36"


def triton36_dir() -> Path | None:
    for d in (os.environ.get(TRITON36_ENV), ROOT / ".triton36"):
        if d and (Path(d) / "triton-3.6.0.dist-info").is_dir():
            return Path(d)
    return None


# ------------------------------------------------------------------------------------------------
# children (each a fresh process: its own imports, its own Triton)
# ------------------------------------------------------------------------------------------------
def _child_compile(a) -> dict:
    import torch

    from yolov12 import precompile as P
    dtype = getattr(torch, a.dtype)
    t0 = time.perf_counter()
    vs = P.variants(a.scale, 640, a.batch, dtype, a.arch)
    enum_s = time.perf_counter() - t0
    workers = P.compile_workers(a.workers or None)
    if a.launchers_only:  # the variants first (not timed), then their launchers alone
        P.compile_variants(vs, workers, a.arch, progress=False, launchers=False)
        t0 = time.perf_counter()
        r = P.compile_variants(vs, workers, a.arch, progress=False)
        return {"variants": r.variants, "launchers": r.launchers, "workers": max(r.workers, 1),
                "compile_s": time.perf_counter() - t0, "busy_cpu_s": list(r.busy),
                "enumerate_s": enum_s}
    t0 = time.perf_counter()
    r = P.compile_variants(vs, workers, a.arch, progress=False, launchers=False)
    return {"variants": r.variants, "compiled": r.compiled, "failed": r.failed,
            "workers": max(r.workers, 1), "compile_s": time.perf_counter() - t0,
            "busy_cpu_s": list(r.busy), "enumerate_s": enum_s}


def _child_startup(a) -> dict:
    """One worker process started and handed one variant that is already in the cache: the
    wall and CPU time until it is ready to compile (Python, torch, Triton, the kernel modules,
    Triton's first cache lookup)."""
    import torch

    from yolov12 import precompile as P
    v = P.variants("n", 640, 1, torch.float16, a.arch)[0]
    P.compile_variants([v], 1, a.arch, progress=False)  # in this process: now cached
    t0 = time.perf_counter()
    (_, compiled, err, _, job_cpu, before), = P._run_jobs([("kernel", v)], 1, here=False)
    assert not compiled and err is None, err
    return {"startup_s": time.perf_counter() - t0, "startup_cpu_s": before + job_cpu}


@contextlib.contextmanager
def gpu_host_path():
    """This process (kernels compiled, not interpreted) runs the fast path's GPU host code on CPU
    tensors: the kernels' device checks accept the CPU, the configurations are an sm_90 GPU's, and
    every Triton launch returns at Triton's JIT entry with a stand-in kernel (nothing computes but
    the PyTorch steps between launches)."""
    from unittest import mock

    from triton.runtime.jit import JITFunction

    from yolov12_kernels.triton import area_attention, conv, dwconv, launch
    interpret = os.environ.get("TRITON_INTERPRET")
    from benchmarks.bench_triton_host import StubKernel  # (it sets TRITON_INTERPRET: unset)
    if interpret is None:
        os.environ.pop("TRITON_INTERPRET", None)
    sm90 = lambda device: "sm90"  # noqa: E731
    with mock.patch.object(conv, "INTERPRET", True), \
            mock.patch.object(area_attention, "INTERPRET", True), \
            mock.patch.object(conv, "interpreter_config", lambda *a: None), \
            mock.patch.object(conv, "arch_class", sm90), \
            mock.patch.object(dwconv, "arch_class", sm90), \
            mock.patch.object(JITFunction, "run", lambda self, *a, **k: StubKernel()):
        launch._plans.clear()
        try:
            yield
        finally:
            launch._plans.clear()


def _child_warm(a) -> dict:
    import torch

    from yolov12 import precompile as P
    from yolov12.fast import optimize
    from yolov12.model import YOLOv12
    model = YOLOv12("n")
    x = torch.rand(1, 3, 640, 640)
    with gpu_host_path():
        t = [(time.perf_counter(), time.process_time())]
        fast = optimize(model, "cpu", getattr(torch, a.dtype), backend="triton",
                        fused_convs=True, graphs=False)
        t.append((time.perf_counter(), time.process_time()))
        r = P.for_first_call(fast, x, arch=a.arch)
        t.append((time.perf_counter(), time.process_time()))
        fast(x)
        t.append((time.perf_counter(), time.process_time()))
    assert r is not None and r.compiled == 0 and r.cached == r.variants, r
    out = {"variants": r.variants}
    for i, part in enumerate(("optimize", "compile_check", "first_call")):
        out[f"{part}_s"] = t[i + 1][0] - t[i][0]
        out[f"{part}_cpu_s"] = t[i + 1][1] - t[i][1]
    out["warm_s"], out["warm_cpu_s"] = t[-1][0] - t[0][0], t[-1][1] - t[0][1]
    return out


CHILDREN = {"compile": _child_compile, "startup": _child_startup, "warm": _child_warm}


# ------------------------------------------------------------------------------------------------
# the parent
# ------------------------------------------------------------------------------------------------
def _stub_libcuda(tmp: Path) -> Path | None:
    """A directory holding an empty ``libcuda.so.1`` (gcc), for Triton 3.6's launcher builds on a
    machine without the driver; None without gcc."""
    src = tmp / "stub.c"
    src.write_text("int yolov12_stub_libcuda;\n")
    out = tmp / "libcuda.so.1"
    r = subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(out),
                        str(src)], capture_output=True)
    return tmp if r.returncode == 0 else None


def _run_child(mode: str, triton_path: Path | None, cache: Path, extra: list[str],
               env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([*([str(triton_path)] if triton_path else []),
                                         str(ROOT)])
    env.update(TRITON_CACHE_DIR=str(cache), PYTHONWARNINGS="ignore", **(env_extra or {}))
    load = os.getloadavg()[0]
    r = subprocess.run([sys.executable, "-m", "benchmarks.bench_cold_start", "--child", mode,
                        *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{r.stderr[-3000:]}")
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    rec["load_before"], rec["load_after"] = round(load, 2), round(os.getloadavg()[0], 2)
    return rec


def _version(triton_path: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(triton_path) if triton_path else ""
    return subprocess.run([sys.executable, "-c", "import triton; print(triton.__version__)"],
                          env=env, capture_output=True, text=True).stdout.strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["n:1", "n:32", "x:32"])
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--tritons", nargs="+", default=["3.6", "newest"], choices=["3.6", "newest"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 0],
                    help="compiling processes: 1 = serial, 0 = every core")
    ap.add_argument("--repeat", type=int, default=1,
                    help="compile runs per row (the median by the busiest process's CPU time)")
    ap.add_argument("--warm-runs", type=int, default=5)
    ap.add_argument("--no-launchers", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cold_start.jsonl"))
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--scale", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-workers", dest="child_workers", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--launchers-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        os.environ.pop("TRITON_INTERPRET", None)
        a.workers = a.child_workers
        print(json.dumps(CHILDREN[a.child](a)))
        return 0

    from yolov12.bench.records import environment
    from yolov12.cores import usable_cores
    env = {**environment("cpu"), "cores": usable_cores(), "python": sys.version.split()[0]}
    tritons = []
    for t in a.tritons:
        path = triton36_dir() if t == "3.6" else None
        if t == "3.6" and path is None:
            print(f"no Triton 3.6.0 in {ROOT / '.triton36'} or ${TRITON36_ENV}: skipped")
            continue
        tritons.append((_version(path), path))
    records = []

    def record(rec):
        rec = {"suite": "cold_start", "arch": a.arch, "dtype": a.dtype, **env, **rec}
        records.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if k not in env}), flush=True)

    with tempfile.TemporaryDirectory(prefix="yolov12-cold-") as tmp:
        tmp = Path(tmp)
        stub = None if a.no_launchers else _stub_libcuda(tmp)
        for version, path in tritons:
            record({"name": "startup", "triton": version, **_run_child(
                "startup", path, tmp / f"c-startup-{version}", [])})
            for spec in a.sets:
                scale, batch = spec.split(":")
                for w in a.workers:
                    runs = []
                    for i in range(a.repeat):
                        cache = tmp / f"c-{version}-{scale}{batch}-w{w}-{i}"
                        runs.append(_run_child("compile", path, cache, [
                            "--scale", scale, "--batch", batch, "--dtype", a.dtype, "--arch",
                            a.arch, "--child-workers", str(w)]))
                    # the median run by its busiest process's CPU time (wall times follow
                    # the shared machine's load; every run's are kept)
                    best = sorted(runs, key=lambda r: r["busy_cpu_s"][0])[len(runs) // 2]
                    record({"name": f"compile {scale} b{batch}", "triton": version,
                            "scale": scale, "batch": int(batch), "runs": len(runs),
                            "compile_runs_s": [round(r["compile_s"], 2) for r in runs],
                            "busiest_cpu_runs_s": [r["busy_cpu_s"][0] for r in runs],
                            **best})
                if version.startswith("3.6") and stub is not None and spec == a.sets[0]:
                    for w in a.workers:
                        cache = tmp / f"c-{version}-launchers-w{w}"
                        rec = _run_child("compile", path, cache, [
                            "--scale", scale, "--batch", batch, "--dtype", a.dtype, "--arch",
                            a.arch, "--child-workers", str(w), "--launchers-only"],
                            {"TRITON_LIBCUDA_PATH": str(stub)})
                        record({"name": f"launchers {scale} b{batch}", "triton": version,
                                **rec})
            warm_cache = tmp / f"c-{version}-{a.sets[0].replace(':', '')}-w{a.workers[0]}-0"
            warm = [_run_child("warm", path, warm_cache, ["--dtype", a.dtype, "--arch", a.arch])
                    for _ in range(a.warm_runs)]
            best = sorted(warm, key=lambda r: r["warm_s"])[len(warm) // 2]
            record({"name": "warm start n b1", "triton": version, "runs": len(warm),
                    "warm_runs_s": [round(r["warm_s"], 3) for r in warm], **best})
    summary = _summary(records, a)
    print("\n" + summary)
    if a.out:
        from yolov12.bench.records import append_lines
        out = Path(a.out)
        append_lines(out, records)  # whole or not at all
        print(f"\n{len(records)} records appended to {out}")
    return 0


def _summary(records: list[dict], a) -> str:
    """The table: per Triton version and set, serial vs every core. Wall times are measured;
    on a shared machine they stretch with its load, so beside them the busiest compiling
    process's CPU seconds (compilers included): the wall time with a free core per process."""
    lines = ["| Triton | set | variants | serial: wall s (CPU s) | W | wall s | busiest process "
             "CPU s | busiest / (serial CPU / W) | wall / (serial wall / W) | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in records:
        if r["name"].startswith(("compile", "launchers")):
            by.setdefault((r["triton"], r["name"]), {})[r["workers"]] = r
    for (version, name), rows in by.items():
        serial = rows.get(1)
        for w, r in sorted(rows.items()):
            if w == 1 or serial is None:
                continue
            cpu1 = sum(serial["busy_cpu_s"])
            lines.append(
                f"| {version} | {name} | {r['variants']} | {serial['compile_s']:.1f} "
                f"({cpu1:.1f}) | {w} | {r['compile_s']:.1f} | {r['busy_cpu_s'][0]:.1f} | "
                f"{r['busy_cpu_s'][0] / (cpu1 / w):.2f} | "
                f"{r['compile_s'] / (serial['compile_s'] / w):.2f} | "
                f"{serial['load_before']:.1f}/{r['load_before']:.1f} |")
    for r in records:
        if r["name"] == "startup":
            lines.append(f"\nTriton {r['triton']}: a worker process is ready to compile "
                         f"after {r['startup_s']:.1f} s ({r['startup_cpu_s']:.1f} CPU s)")
        if r["name"].startswith("warm"):
            lines.append(f"Triton {r['triton']}: warm start (median of {r['runs']} processes) "
                         f"{r['warm_s']:.2f} s ({r['warm_cpu_s']:.2f} CPU s) = optimize "
                         f"{r['optimize_s']:.2f} ({r['optimize_cpu_s']:.2f}) + compile check "
                         f"{r['compile_check_s']:.2f} ({r['compile_check_cpu_s']:.2f}) + first "
                         f"call {r['first_call_s']:.2f} ({r['first_call_cpu_s']:.2f})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
