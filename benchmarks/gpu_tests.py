"""A pytest plugin for the GPU check's test runs: which tests run, and one line per test written as
it finishes (so a run cut short still says which tests ran and how).

    YOLOV12_GPU_TESTS=gpu-only YOLOV12_TEST_LOG=tests.jsonl python -m pytest -p benchmarks.gpu_tests

``YOLOV12_GPU_TESTS`` picks the tests (unset: every test, this plugin only logs):

* ``gpu-only``: the tests that run only on a GPU: a skip marker whose reason says it needs a CUDA
  GPU, or a name that starts with ``test_gpu_`` / ``test_cuda_`` (CI on the CPU skips them, so
  this is the first and only time they run);
* ``rest``: every other test, which CI on the CPU ran already but which may take another path on
  a GPU (``auto`` picks the Triton kernels there, CUDA graphs replace launch plans, ...): those
  of files that mention CUDA or the GPU first (``touches_gpu``), the others (plain CPU code, where
  a GPU changes nothing that is known) last, where the step's limit is likely to cut them;
* ``cuda-backend``: ``tests/test_cuda_backend.py`` (the GPU check runs it after its AOT build);
* ``ptx75``: the GPU-only tests of that file (run on the compute_75 PTX build).

``gpu-only`` and ``rest`` leave out ``DESELECTED``: compile, build and packaging checks that need
no GPU and that CI verifies on the CPU (on the GPU machine they would spend minutes of nvcc, gcc
and pip), and the files with a step of their own. ``cuda-backend`` and ``ptx75`` leave out
``CUDA_BACKEND_DESELECTED``. Deselected tests are reported by pytest as such.

``YOLOV12_TEST_LOG=FILE``: one JSON object per line, flushed as each test finishes: ``nodeid``,
``when`` (setup/call/teardown), ``outcome`` (passed/failed/skipped), ``duration`` (s), and for a
failure ``longrepr`` (its report, cut to 4,000 characters). Under pytest-xdist the controller
writes it (the workers' reports reach it as they finish). A last line ``{"exitstatus": N}`` when
the session ends normally.
"""
from __future__ import annotations

import json
import os
import re

MODES = ("gpu-only", "rest", "cuda-backend", "ptx75")
MODE_ENV, LOG_ENV = "YOLOV12_GPU_TESTS", "YOLOV12_TEST_LOG"
CUDA_BACKEND_FILE = "tests/test_cuda_backend.py"

# file or node id prefix -> why the GPU run leaves it out
DESELECTED = {
    "tests/test_compile_checks.py": "Triton compile checks for every arch: CPU-verified (CI)",
    "tests/test_cuda_build.py": "nvcc and CMake builds: CPU-verified (CI)",
    "tests/test_packaging.py": "offline editable install: CPU-verified (CI)",
    "tests/test_cuda_kernel_model.py": "host models of the CUDA index math (g++): CPU-verified",
    "tests/test_distributed.py": "torchrun with CPU (gloo) processes: CPU-verified (CI)",
    "tests/test_mutants.py": "the mutant list (text checks): CPU-verified (CI)",
    "tests/test_launcher_abi.py": "Triton's launchers against a stub libcuda, ~2 min of compiles "
                                  "for sm_90: CPU-verified (CI)",
    "tests/test_gpu_check.py": "this check's own orchestration, with fake steps: CPU (CI)",
    CUDA_BACKEND_FILE: "runs in the aot step, after the CUDA extension is built",
}
# test function name -> why (within tests/test_cuda_backend.py)
CUDA_BACKEND_DESELECTED = {
    "test_jit_build": "a JIT build of the extension: the aot step built it ahead of time",
    "test_host_build_of_the_binding": "a g++ build of the binding: CPU-verified (CI)",
    "test_compute_sanitizer": "the sanitizer step runs it, filtered to this project's kernels",
}
GPU_REASON = re.compile(r"needs a (CUDA )?GPU|CUDA GPU where", re.IGNORECASE)
GPU_WORDS = re.compile(r"cuda|gpu", re.IGNORECASE)
_touches: dict = {}


def touches_gpu(path) -> bool:
    """Whether a test file mentions CUDA or the GPU at all (its tests may run differently there)."""
    path = str(path)
    if path not in _touches:
        try:
            with open(path, encoding="utf-8") as f:
                _touches[path] = bool(GPU_WORDS.search(f.read()))
        except OSError:
            _touches[path] = True
    return _touches[path]


def needs_gpu(name: str, skip_reasons: list[str]) -> bool:
    """Whether a test runs only on a GPU: by its skip markers' reasons, else by its name."""
    if any(GPU_REASON.search(r or "") for r in skip_reasons):
        return True
    return name.startswith(("test_gpu_", "test_cuda_"))


def deselected(mode: str | None, nodeid: str, name: str, gpu: bool) -> str | None:
    """Why the test ``nodeid`` (function ``name``; ``gpu``: runs only on a GPU) is left out in
    ``mode``, or None if it runs."""
    if mode is None:
        return None
    if mode in ("cuda-backend", "ptx75"):
        if not nodeid.startswith(CUDA_BACKEND_FILE):
            return f"not in {CUDA_BACKEND_FILE}"
        if name in CUDA_BACKEND_DESELECTED:
            return CUDA_BACKEND_DESELECTED[name]
        return None if mode == "cuda-backend" or gpu else "runs on the CPU too (not a PTX test)"
    why = next((why for prefix, why in DESELECTED.items() if nodeid.startswith(prefix)), None)
    if why:
        return why
    if mode == "gpu-only" and not gpu:
        return "runs on the CPU too: the rest"
    if mode == "rest" and gpu:
        return "GPU-only: the gpu-only run"
    return None


def _mode(config) -> str | None:
    mode = os.environ.get(MODE_ENV) or None
    if mode is not None and mode not in MODES:
        import pytest
        raise pytest.UsageError(f"{MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def pytest_collection_modifyitems(session, config, items):
    mode = _mode(config)
    if mode is None:
        return
    keep, dropped = [], []
    for item in items:
        reasons = [m.kwargs.get("reason", "") for m in item.iter_markers("skipif")]
        name = getattr(item, "originalname", None) or item.name.split("[")[0]
        (dropped if deselected(mode, item.nodeid, name, needs_gpu(name, reasons)) else keep
         ).append(item)
    if mode == "rest":  # stable: the files' own order within each group
        keep.sort(key=lambda item: not touches_gpu(item.path))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


class _Log:
    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1)  # line-buffered: each line reaches the disk

    def write(self, obj: dict) -> None:
        self.file.write(json.dumps(obj) + "\n")
        self.file.flush()


_log: _Log | None = None


def pytest_configure(config):
    global _log
    path = os.environ.get(LOG_ENV)
    # under xdist the workers' reports reach the controller, which writes them; a worker has
    # ``workerinput`` and writes nothing (else every line would be there twice)
    if path and not hasattr(config, "workerinput"):
        _log = _Log(path)


def pytest_runtest_logreport(report):
    if _log is None:
        return
    # one line per test: its call, or the phase that decided it (a failed or skipped set-up, a
    # failed teardown)
    if report.when != "call" and report.outcome == "passed":
        return
    line = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
            "duration": round(report.duration, 3)}
    if report.failed:
        line["longrepr"] = str(report.longrepr)[-4000:]
    elif report.skipped and isinstance(report.longrepr, tuple):
        line["reason"] = str(report.longrepr[-1])[:300]
    _log.write(line)


def pytest_sessionfinish(session, exitstatus):
    if _log is not None:
        _log.write({"exitstatus": int(exitstatus)})


def pytest_unconfigure(config):
    global _log
    if _log is not None:
        _log.file.close()
        _log = None


def read_log(path) -> dict:
    """Counts of a log this plugin wrote (a cut one included): {"passed", "failed", "errors",
    "skipped", "failed_ids": [...], "exitstatus": N or None (not finished)}."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failed_ids": [],
              "exitstatus": None}
    with open(path) as f:
        for text in f:
            try:
                line = json.loads(text)
            except json.JSONDecodeError:  # the last line of a killed run may be cut
                continue
            if "exitstatus" in line:
                counts["exitstatus"] = line["exitstatus"]
                continue
            if line["outcome"] == "failed":
                counts["failed" if line["when"] == "call" else "errors"] += 1
                counts["failed_ids"].append(line["nodeid"])
            elif line["when"] == "call" or line["outcome"] == "skipped":
                counts[line["outcome"]] += 1
    return counts
