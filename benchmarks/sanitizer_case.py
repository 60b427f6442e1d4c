"""A small case of every CUDA kernel, to run under NVIDIA's compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 1 \
        --kernel-name kns=area_attention_fwd_kernel --kernel-name kns=depthwise_conv \
        python -m benchmarks.sanitizer_case

The one place that defines the case and the command: ``tests/test_cuda_backend.py``
(``test_compute_sanitizer``) and ``python -m benchmarks.gpu_check`` (step ``sanitizer``) both run
``command(tool)`` with ``environment()``. The kernels are reached through the public ops with
``backend="cuda"`` under ``torch.no_grad()`` (so the case does not depend on how the extension is
bound), on shapes that reach every load path of the kernels (16-byte tile copies and element loads, ragged
last tiles, double-buffered areas, multi-tile, strided and channels-last pe), in float16 and, from
sm_80, bfloat16.

The tools check only this project's kernels (``KERNELS``, compute-sanitizer's ``--kernel-name
kns=SUBSTRING`` filter, repeated: a kernel whose name contains any of them): PyTorch's own kernels
(the random inputs, copies) are neither instrumented nor reported, which also keeps the run short.
A compute-sanitizer without the option (``supports_kernel_filter``) checks every kernel.
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
# the __global__ functions of csrc/*.cu (templated: their mangled names contain these)
KERNELS = ("area_attention_fwd_kernel", "depthwise_conv")


def find_sanitizer() -> str | None:
    """compute-sanitizer on PATH, else in $CUDA_HOME/bin or /usr/local/cuda/bin, else None."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(os.path.join(home, "bin", "compute-sanitizer"), os.X_OK):
            return os.path.join(home, "bin", "compute-sanitizer")
    return None


def supports_kernel_filter(sanitizer: str) -> bool:
    """Whether this compute-sanitizer has ``--kernel-name`` (its --help lists it)."""
    import subprocess
    try:
        p = subprocess.run([sanitizer, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--kernel-name" in p.stdout + p.stderr


def command(tool: str, sanitizer: str | None = None, python: str = sys.executable,
            kernel_filter: bool | None = None) -> list[str]:
    """The compute-sanitizer command line for ``tool`` ("memcheck" or "racecheck"), checking only
    ``KERNELS`` if ``kernel_filter`` (None: if this compute-sanitizer has the option); run it
    with ``cwd=ROOT`` and ``env=environment()``. Exit status 1 on any error the tool reports."""
    if tool not in TOOLS:
        raise ValueError(f"tool: expected one of {TOOLS}, got {tool!r}")
    sanitizer = sanitizer or find_sanitizer()
    if sanitizer is None:
        raise FileNotFoundError("compute-sanitizer not found (PATH, $CUDA_HOME/bin, "
                                "/usr/local/cuda/bin)")
    if kernel_filter is None:
        kernel_filter = supports_kernel_filter(sanitizer)
    filters = [a for k in KERNELS for a in ("--kernel-name", f"kns={k}")] if kernel_filter else []
    return [sanitizer, "--tool", tool, "--error-exitcode", "1", *filters, python, "-m",
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
    dev = "cuda"
    # bfloat16 kernels exist from sm_80 on
    dtypes = (torch.float16, torch.bfloat16) if torch.cuda.get_device_capability() >= (8, 0) \
        else (torch.float16,)

    def rnd(*shape, dtype=torch.float32):
        return torch.randn(*shape, device=dev, dtype=dtype)
    with torch.no_grad():
        w7 = rnd(64, 1, 7, 7)
        for dt in dtypes:
            # [key][d] tiles: 16-byte copies (340 tokens in 2 areas: 3 tiles, the last ragged),
            # element loads (a view one element off alignment, head_dim 64)
            q, k, v = (rnd(1, 340, 2, 32, dtype=dt) for _ in range(3))
            yk.area_attention(q, k, v, 2, scale=0.17, backend="cuda")
            q, k, v = (rnd(130 * 2 * 64 + 1, dtype=dt)[1:].view(1, 130, 2, 64) for _ in range(3))
            yk.area_attention(q, k, v, 2, scale=0.125, backend="cuda")
            # [d][key] tiles: a P4 area of 400 tokens (5 tiles, double-buffered), and a 5x13 map
            # in 5 areas (13 tokens each: element loads)
            yk.fused_area_attention(rnd(1, 192, 40, 40, dtype=dt), 2, 4, w7, None, scale=0.17,
                                    backend="cuda")
            yk.fused_area_attention(rnd(1, 192, 5, 13, dtype=dt), 2, 5, w7, rnd(64), scale=0.17,
                                    backend="cuda")
            # channels-last qkv (the fused path's): a channels-last output, and pe(v) through the
            # channels-last depthwise kernel (8 channels at a time; a 13-wide row ends mid-strip)
            cl = torch.channels_last
            yk.fused_area_attention(rnd(1, 192, 5, 13, dtype=dt).to(memory_format=cl), 2, 5,
                                    w7.to(dt), rnd(64, dtype=dt), scale=0.17, backend="cuda")
            yk.position_perceiver(rnd(2, 24, 9, 13, dtype=dt).to(memory_format=cl),
                                  rnd(24, 1, 3, 3), rnd(24), backend="cuda")
            # pe: 2 planes per CTA (40 x 40), several tiles (70 x 65)
            yk.position_perceiver(rnd(1, 3, 40, 40, dtype=dt), w7[:3], None, backend="cuda")
            yk.position_perceiver(rnd(1, 2, 70, 65, dtype=dt), rnd(2, 1, 3, 3), None,
                                  backend="cuda")
        # fp32 pe: a 5x5 kernel on a ragged map, and a strided input
        yk.position_perceiver(rnd(1, 3, 37, 35), rnd(3, 1, 5, 5), None, backend="cuda")
        yk.position_perceiver(rnd(1, 3, 9, 26)[..., ::2], w7[:3], rnd(3), backend="cuda")
    torch.cuda.synchronize()
    print("sanitizer_case: every CUDA kernel ran once")


if __name__ == "__main__":
    run_case()
