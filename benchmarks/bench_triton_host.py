"""Host (Python) time per call of the Triton attention ops, measured on a CPU with the launch stubbed.

    python -m benchmarks.bench_triton_host [--calls 20000] [--rounds 7] [--out FILE.jsonl]

What a GPU call costs above its kernel is host work: argument handling, allocation, picking the
compiled kernel, the launcher. This script runs the real code path of a GPU call, on CPU tensors,
up to Triton's launcher, which is replaced by a no-op (the stand-in for ``CompiledKernel.run``):
plans use the GPU configuration table and the direct launch, exactly as on a GPU. Not included, so
add them for a GPU estimate: the C launcher itself (cuLaunchKernelEx, a few us), the CUDA caching
allocator instead of the CPU one for the outputs, the current-stream query.

Rows (median over ``--rounds`` of the mean over ``--calls`` calls, warm-up excluded; process CPU
time, not wall time, so that other processes on a shared machine do not count):
the backend functions (what the dispatcher calls: validation already done) and the public ops with
``backend="triton"`` (validation and dispatch included), inference (no gradient), YOLOv12-N's P4
shape at batch 1 — the drop-in op on (1, 1600, 2, 32) with 4 areas, and the fused op on qkv
(1, 192, 40, 40) with the 7x7 pe — and an eager forward+backward of the drop-in op.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from unittest import mock

os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors are accepted only interpreted

import torch  # noqa: E402

import yolov12_kernels  # noqa: E402
from yolov12_kernels.shapes import attention_shape  # noqa: E402
from yolov12_kernels.triton import area_attention  # noqa: E402,F401  (before the patch below)
from yolov12_kernels.triton import backend as T  # noqa: E402
from yolov12_kernels.triton import launch as L  # noqa: E402


class StubKernel:
    """Stands for Triton's CompiledKernel: its launcher does nothing."""
    function, packed_metadata = 0, None

    @staticmethod
    def run(*args):
        return None

    @staticmethod
    def launch_metadata(*args):
        return None


def per_call_us(fn, calls: int, rounds: int) -> float:
    for _ in range(min(calls, 1000)):  # warm-up: plans built, caches filled
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.process_time_ns()
        for _ in range(calls):
            fn()
        times.append((time.process_time_ns() - t0) / calls / 1e3)
    return statistics.median(times)


def cases():
    shape = attention_shape("n", "P4")
    B, N, heads, d, area = 1, shape.tokens, shape.heads, shape.head_dim, shape.area
    q, k, v = (torch.randn(B, N, heads, d) for _ in range(3))
    scale = d ** -0.5
    qkv = torch.randn(B, 3 * shape.channels, shape.side, shape.side)
    w, b = torch.randn(shape.channels, 1, 7, 7), torch.randn(shape.channels)
    qg = q.clone().requires_grad_()
    g = torch.randn_like(q)

    def fwd_bwd():  # autograd.grad: no accumulation into .grad (not the op's cost)
        torch.autograd.grad(T.area_attention(qg, k, v, area, scale), (qg,), g)

    stub = StubKernel.run
    return [
        ("launch stub alone (floor)", lambda: stub(1, 1, 1, 0, 0, None, None, None, None)),
        ("backend drop-in, no grad", lambda: T.area_attention(q, k, v, area, scale)),
        ("public drop-in, no grad", lambda: yolov12_kernels.area_attention(
            q, k, v, area, backend="triton")),
        ("backend fused (qkv+pe), no grad", lambda: T.fused_area_attention(
            qkv, heads, area, w, b, scale)),
        ("public fused (qkv+pe), no grad", lambda: yolov12_kernels.fused_area_attention(
            qkv, heads, area, w, b, backend="triton")),
        ("backend drop-in, fwd+bwd eager", fwd_bwd),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", help="append one JSON record per row to this .jsonl file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    # GPU-path plans (configuration table, direct launch) with the stand-in kernel
    with mock.patch.object(L, "INTERPRET", False), \
            mock.patch.object(L.Plan, "_jit", lambda self, ptrs, scale: StubKernel()), \
            torch.no_grad():
        L._plans.clear()
        for name, fn in cases():
            if "fwd+bwd" in name:
                with torch.enable_grad():
                    us = per_call_us(fn, args.calls // 4, args.rounds)
            else:
                us = per_call_us(fn, args.calls, args.rounds)
            rows.append((name, us))
            print(f"{name:36s} {us:8.2f} us/call (CPU, launch stubbed)", flush=True)
    if args.out:
        from yolov12.bench.records import append_lines
        append_lines(args.out, [  # whole or not at all
            {"suite": "host", "name": "area_attention/P4/n", "row": name,
             "host_us": round(us, 3), "device": platform.processor() or platform.machine(),
             "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
            for name, us in rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
