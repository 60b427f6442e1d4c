"""A small case of every CUDA kernel, to run under NVIDIA's compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 1 python -m benchmarks.sanitizer_case

The one place that defines the case and the command: ``tests/test_cuda_backend.py``
(``test_compute_sanitizer``) and ``python -m benchmarks.gpu_check`` (step ``sanitizer``) both run
``command(tool)`` with ``environment()``. The kernels are reached through the public ops with
``backend="cuda"`` under ``torch.no_grad()`` (so the case does not depend on how the extension is
bound), on shapes with ragged edges: 130 tokens in 2 areas (a partial key/value tile), a 5x13 map in
5 areas (13 tokens each), a 37x35 depthwise conv with a 5x5 kernel, and the 7x7 pe of the fused op.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("memcheck", "racecheck")
# PyTorch's caching allocator off: each tensor is then its own cudaMalloc, so memcheck sees an
# access past a tensor's end instead of landing silently in the rest of a cached block
ENV = {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}


def find_sanitizer() -> str | None:
    """compute-sanitizer on PATH, else in $CUDA_HOME/bin or /usr/local/cuda/bin, else None."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(os.path.join(home, "bin", "compute-sanitizer"), os.X_OK):
            return os.path.join(home, "bin", "compute-sanitizer")
    return None


def command(tool: str, sanitizer: str | None = None, python: str = sys.executable) -> list[str]:
    """The compute-sanitizer command line for ``tool`` ("memcheck" or "racecheck"); run it with
    ``cwd=ROOT`` and ``env=environment()``. Exit status 1 on any error the tool reports."""
    if tool not in TOOLS:
        raise ValueError(f"tool: expected one of {TOOLS}, got {tool!r}")
    sanitizer = sanitizer or find_sanitizer()
    if sanitizer is None:
        raise FileNotFoundError("compute-sanitizer not found (PATH, $CUDA_HOME/bin, "
                                "/usr/local/cuda/bin)")
    return [sanitizer, "--tool", tool, "--error-exitcode", "1", python, "-m",
            "benchmarks.sanitizer_case"]


def environment(base: dict | None = None) -> dict:
    """``base`` (default os.environ) with the repository importable, plus ``ENV``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(ENV)
    return env


def summary(output: str) -> str:
    """The tool's own summary line(s), e.g. "ERROR SUMMARY: 0 errors", from its output."""
    lines = re.findall(r"^=+ ((?:ERROR|RACECHECK) SUMMARY: .*)$", output, flags=re.MULTILINE)
    return "; ".join(lines) or "no sanitizer summary in the output"


def run_case() -> None:
    import torch

    import yolov12_kernels as yk
    dev, dt = "cuda", torch.float16

    def rnd(*shape, dtype=dt):
        return torch.randn(*shape, device=dev, dtype=dtype)
    with torch.no_grad():
        q, k, v = rnd(1, 130, 2, 64), rnd(1, 130, 2, 64), rnd(1, 130, 2, 64)
        yk.area_attention(q, k, v, 2, scale=0.125, backend="cuda")
        yk.fused_area_attention(rnd(1, 192, 5, 13), 2, 5, rnd(64, 1, 7, 7), rnd(64), scale=0.17,
                                backend="cuda")
        yk.position_perceiver(rnd(1, 3, 37, 35, dtype=torch.float32),
                              rnd(3, 1, 5, 5, dtype=torch.float32), None, backend="cuda")
    torch.cuda.synchronize()
    print("sanitizer_case: every CUDA kernel ran once")


if __name__ == "__main__":
    run_case()
