"""Timing and result records shared by every benchmark (format: docs/benchmarks.md).

One JSON object per measurement, appended to ``<out>/<suite>.jsonl``, so runs on different days and
devices line up by ``name``/``provider``. A run writes into a fresh directory of its own
(``new_run_dir``) unless told otherwise; the records committed with the repository live in
``benchmarks/results`` and change only when a run is pointed there (``--out benchmarks/results``).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

# the committed records, found from this file (yolov12/bench/ -> the checkout's root), not from
# the current folder: `yolov12 bench --report` run elsewhere reads the same records. Absent when
# the package is installed without its repository.
TRACKED_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

REQUIRED_FIELDS = ("suite", "name", "provider", "device", "dtype", "batch", "shape", "median_ms",
                   "p20_ms", "p80_ms", "torch", "triton", "cuda", "date", "git")


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(device: torch.device | str) -> dict:
    """The fields that say where and with what a measurement was taken."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    env = {
        "device": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": _git_commit(),
    }
    if torch.device(device).type == "cuda":
        env["driver"] = _driver_version()
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def cuda_graph_replay(fn: Callable[[], object], calls: int = 1) -> Callable[[], None]:
    """Capture ``calls`` calls of ``fn`` (already warmed up: compiles and plans done) in one CUDA
    graph and return its replay: kernel time without the host's launch overhead. Three calls on a
    side stream first, as CUDA-graph capture requires."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return graph.replay


def time_ms(fn: Callable[[], object], device: torch.device | str, warmup: int = 10,
            rep: int = 50, progress: Callable[[], object] | None = None) -> dict:
    """Median / 20th / 80th percentile of ``rep`` timed calls of ``fn`` in milliseconds.

    ``warmup`` calls run first and are not timed. On CUDA every call is timed with its own pair of
    CUDA events (no host overhead counted, clocks untouched); on CPU with ``perf_counter``.
    ``progress`` (e.g. a progress bar's update) is called after each timed call.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(rep)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(rep)]
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
            if progress:
                progress()
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    else:
        for _ in range(rep):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
            if progress:
                progress()
    return summarize(times)


def summarize(times_ms: list[float]) -> dict:
    if not times_ms:
        raise ValueError("times_ms: no timings to summarize")
    qs = statistics.quantiles(times_ms, n=10, method="inclusive") if len(times_ms) > 1 \
        else [times_ms[0]] * 9
    return {"median_ms": statistics.median(times_ms), "p20_ms": qs[1], "p80_ms": qs[7],
            "runs": len(times_ms)}


def make_record(*, suite: str, name: str, provider: str, device, dtype, batch: int, shape,
                timing: dict, **extra) -> dict:
    """A result record with every field docs/design.md requires (and any ``extra`` ones)."""
    if suite not in ("kernel", "e2e", "predict"):
        raise ValueError(f"suite: expected 'kernel', 'e2e' or 'predict', got {suite!r}")
    rec = {"suite": suite, "name": name, "provider": provider,
           "dtype": str(dtype).replace("torch.", ""), "batch": int(batch),
           "shape": list(shape) if not isinstance(shape, str) else shape}
    rec.update({k: timing[k] for k in ("median_ms", "p20_ms", "p80_ms")})
    rec.update(environment(device))
    rec.update(extra)
    return rec


def validate_record(rec: dict) -> None:
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise ValueError(f"record: missing fields {missing}")


def new_run_dir(kind: str, root: str | os.PathLike = "runs") -> Path:
    """``<root>/<kind>/<UTC date-time>``: a directory no earlier run wrote to (not created here)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / kind
    path, n = base / stamp, 1
    while path.exists():
        n += 1
        path = base / f"{stamp}-{n}"
    return path


def append_records(records: list[dict], suite: str, out_dir: str | os.PathLike,
                   stem: str | None = None) -> Path:
    """Append records as JSON lines to ``<out_dir>/<stem or suite>.jsonl``; returns the path.

    The file is rewritten whole under a temporary name and renamed (``outputs.writing``): a full
    disk leaves the previous records as they were, never a half-written line that would make the
    file unreadable; the failure is one ``OutputError`` line."""
    for rec in records:
        validate_record(rec)
    path = Path(out_dir) / f"{stem or suite}.jsonl"
    append_lines(path, records)
    return path


def append_lines(path, objects: list[dict]) -> None:
    """``objects`` added as JSON lines to ``path``, the file rewritten whole (``outputs.writing``):
    a failure leaves the previous lines as they were. One writer at a time: two processes
    appending at once would each rewrite what they read, and one's lines would be lost."""
    from ..outputs import write_text
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    write_text(path, old + "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects))


def load_records(paths) -> list[dict]:
    """All records from the given .jsonl files or directories (every *.jsonl in them).
    ``ValueError`` naming the file and line of anything that is not a JSON object per line."""
    recs = []
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
        for f in files:
            try:
                with open(f) as fh:
                    lines = list(fh)
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"{f}: cannot read records ({getattr(e, 'strerror', None) or e})"
                                 ) from None
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{f}, line {n}: not a JSON record ({e.msg}); records are "
                                     "one JSON object per line (.jsonl)") from None
                if not isinstance(rec, dict):
                    raise ValueError(f"{f}, line {n}: a JSON {type(rec).__name__}, not a record "
                                     "(an object)")
                recs.append(rec)
    return recs
