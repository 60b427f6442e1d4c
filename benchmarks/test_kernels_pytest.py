"""Kernel micro-benchmarks through pytest-benchmark (GPU only; skipped cleanly elsewhere).

    pytest benchmarks/test_kernels_pytest.py --benchmark-group-by=group --benchmark-sort=median

Each case is one op at the model's shapes (640x640 input, batch 1) on one backend, named like the
kernel suite's records (``area_attention/P4/n``, ``aattn/P5/x``, ``pe7x7/P4/s``), so the groups
line up with ``benchmarks/bench_attention.py``. The project's own test run (``testpaths = tests``)
never collects this file; the JSON records of the kernel suite come from bench_attention.py, this
is the pytest-benchmark view of the same calls (``--benchmark-json`` to save it).
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")
if not torch.cuda.is_available():
    pytest.skip("kernel micro-benchmarks need a CUDA GPU", allow_module_level=True)

from yolov12_kernels import (  # noqa: E402  (after the skip: nothing to import without a GPU)
    BACKENDS,
    area_attention,
    available_backends,
    fused_area_attention,
    position_perceiver,
    shapes,
)

from yolov12_kernels.shapes import HEAD_DIM, HEADS  # noqa: E402

LEVELS = {lvl: (side, area, i) for i, (lvl, (side, area)) in enumerate(shapes.LEVELS.items())}
DTYPE = torch.float16
CASES = [(lvl, s) for lvl in LEVELS for s in HEADS]


def _timed(benchmark, fn, name, backend):
    """Benchmark ``fn`` with the GPU synchronised after each call (wall-clock timer)."""
    def call():
        fn()
        torch.cuda.synchronize()

    for _ in range(10):  # warm-up: JIT compiles, autotuning, cuDNN plans
        call()
    benchmark.group = name
    benchmark.extra_info.update(provider=backend, dtype=str(DTYPE).replace("torch.", ""),
                                device=torch.cuda.get_device_name())
    benchmark.pedantic(call, rounds=50, iterations=5, warmup_rounds=2)


def _backend_or_skip(backend, op):
    reason = available_backends().get(backend)
    if reason:
        pytest.skip(f"{backend}: {reason}")
    from yolov12_kernels import dispatch
    mod, _ = dispatch.load(backend)
    why = mod.unsupported(op, torch.device("cuda"), DTYPE, HEAD_DIM, False)
    if why:
        pytest.skip(f"{backend}: {why}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level,scale", CASES)
def test_area_attention(benchmark, level, scale, backend):
    _backend_or_skip(backend, "area_attention")
    side, area, hi = LEVELS[level]
    heads = HEADS[scale][hi]
    q, k, v = (torch.randn(1, side * side, heads, HEAD_DIM, device="cuda", dtype=DTYPE)
               for _ in range(3))
    _timed(benchmark, lambda: area_attention(q, k, v, area, backend=backend),
           f"area_attention/{level}/{scale}", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level,scale", CASES)
def test_fused_area_attention(benchmark, level, scale, backend):
    _backend_or_skip(backend, "fused_area_attention")
    side, area, hi = LEVELS[level]
    c = HEADS[scale][hi] * HEAD_DIM
    qkv = torch.randn(1, 3 * c, side, side, device="cuda", dtype=DTYPE)
    w = torch.randn(c, 1, 7, 7, device="cuda", dtype=DTYPE) * 0.1
    b = torch.randn(c, device="cuda", dtype=DTYPE)
    _timed(benchmark, lambda: fused_area_attention(qkv, c // HEAD_DIM, area, w, b,
                                                   backend=backend),
           f"aattn/{level}/{scale}", backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", list(HEADS))
def test_position_perceiver(benchmark, scale, backend):
    _backend_or_skip(backend, "position_perceiver")
    c = HEADS[scale][0] * HEAD_DIM
    v = torch.randn(1, c, 40, 40, device="cuda", dtype=DTYPE)
    w = torch.randn(c, 1, 7, 7, device="cuda", dtype=DTYPE) * 0.1
    b = torch.randn(c, device="cuda", dtype=DTYPE)
    _timed(benchmark, lambda: position_perceiver(v, w, b, backend=backend),
           f"pe7x7/P4/{scale}", backend)
