"""Host (Python) time of one forward of the fast path, measured on a CPU with every launch stubbed.

    python -m benchmarks.bench_host [--scales n x] [--size 160] [--calls 200] [--rounds 7]
                                    [--out FILE.jsonl]

The model is ``optimize(device="cpu", dtype=torch.float32, backend="triton", fused_convs=True)``
at batch 1: the fused path, Triton attention. Every Triton launch is replaced by a no-op at
Triton's own level — the four fused conv ops' ``kernel[grid](...)`` returns a stand-in compiled
kernel, as does the attention plans' JIT call — and launches go through the GPU path's code
(the attention's configuration table and direct launcher; recorded launches bound to the stand-in's
launcher, exactly as on a GPU). What a forward then costs is its Python: argument checks,
configuration choices, allocations, binding, and the calls into the (no-op) launchers. The
PyTorch steps between launches (the two upsample copies) really run, on the CPU.

Rows, per scale (median over ``--rounds`` of the mean over ``--calls`` calls; process CPU time, so
other processes on a shared machine do not count; warm-up excluded):

* ``direct``: the fused forward op by op (``FastYOLOv12.direct``: the public ops, their checks,
  the custom ops, ``launch_args``, Triton's call) — what every call ran before launch plans;
* ``plan replay``: the launch plan of the shape replayed (``LaunchPlan.replay``: the steps only);
* ``fast(x), plan``: the default call on the CPU (input checks, the lock, the copy-in, the replay,
  the output's copy);
* ``fast(x), graph path``: the default call on CUDA around the graph replay, with a no-op graph
  (what the call costs above the replay itself; its copies are the CPU's here, kernels on a GPU);
* ``copies alone``: that call's two copies (the input into the static buffer, NCHW to
  channels-last, and the output's copy for the caller) on the CPU: subtract them from the row
  above for the call's Python, add two copy kernels' launches for a GPU.

Not included, so add them for a GPU estimate: the C launcher itself (cuLaunchKernelEx, a few us
per launch), the CUDA caching allocator instead of the CPU one, the current-stream query; the
conv configurations are the interpreter's (``conv_config``'s arithmetic costs the direct path a
little more on a GPU).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from unittest import mock

os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors are accepted only interpreted

import torch  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from benchmarks.bench_triton_host import StubKernel, per_call_us  # noqa: E402
from yolov12.fast import CapturedForward, optimize  # noqa: E402
from yolov12.model import YOLOv12  # noqa: E402
from yolov12.plan import LaunchPlan  # noqa: E402
from yolov12_kernels.triton import area_attention  # noqa: E402,F401  (before the patch below)
from yolov12_kernels.triton import launch as L  # noqa: E402


class _StubGraph:
    @staticmethod
    def replay():
        return None


def _graph_path(fast, x: torch.Tensor) -> None:
    """Make ``fast``'s prepared form of x's shape a CUDA-graph replay whose graph does nothing:
    ``fast(x)`` then runs the graph path's Python and copies, on the CPU."""
    with torch.inference_mode():
        out = fast.direct(x)
    replay = object.__new__(CapturedForward)
    replay.shape = tuple(x.shape)
    replay.static_input = torch.empty_like(x, memory_format=fast.memory_format)
    replay.static_output = out
    replay.graph = _StubGraph()
    with fast._lock:
        fast._replays[tuple(x.shape)] = replay


def measure(scale: str, size: int, calls: int, rounds: int) -> list[tuple[str, float, int]]:
    """(row, us per forward, launches per forward) of one scale."""
    fast = optimize(YOLOv12(scale), "cpu", torch.float32, backend="triton", fused_convs=True)
    x = torch.rand(1, 3, size, size)
    xc = x.contiguous(memory_format=fast.memory_format)
    fast(x)  # builds the plan of x's shape
    plan = fast._replays[tuple(x.shape)]
    assert isinstance(plan, LaunchPlan)
    launches, steps = plan.launches(), len(plan.steps)

    def direct():
        with torch.inference_mode():
            fast.direct(xc)
    rows = [("direct (op by op)", per_call_us(direct, calls, rounds), launches),
            ("plan replay", per_call_us(plan.replay, calls, rounds), steps),
            ("fast(x), plan", per_call_us(lambda: fast(x), calls, rounds), steps)]
    _graph_path(fast, x)
    rows.append(("fast(x), graph path (no-op graph)", per_call_us(lambda: fast(x), calls,
                                                                    rounds), 0))
    graphed = fast._replays[tuple(x.shape)]

    def copies():
        graphed.static_input.copy_(x)
        graphed.static_output.clone()
    rows.append(("copies alone (CPU)", per_call_us(copies, calls, rounds), 0))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", nargs="+", default=["n", "x"])
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", help="append one JSON record per row to this .jsonl file")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # host time: one thread, as the GPU machine's caller thread runs
    records = []
    stub = lambda *a, **k: StubKernel()  # noqa: E731 — Triton's JIT call, stubbed
    with mock.patch.object(L, "INTERPRET", False), \
            mock.patch.object(L.Plan, "_jit", lambda self, ptrs, scale: StubKernel()), \
            mock.patch.object(InterpretedFunction, "run", stub):
        L._plans.clear()  # plans built under the patch: the GPU configuration, direct launches
        try:
            for scale in args.scales:
                for row, us, launches in measure(scale, args.size, args.calls, args.rounds):
                    per = f"{us / launches:6.1f} us/launch ({launches})" if launches else ""
                    print(f"{scale} {row:36s} {us:9.1f} us/forward {per}", flush=True)
                    records.append({"suite": "host", "name": scale, "row": row,
                                    "host_us": round(us, 2), "launches": launches,
                                    "shape": [1, 3, args.size, args.size], "dtype": "float32"})
        finally:
            L._plans.clear()  # no stubbed plan outlives the patch
            torch.set_num_threads(threads)  # the caller's (a test's) count back
    if args.out:
        from yolov12.bench.records import append_lines
        for rec in records:
            rec.update(device=platform.processor() or platform.machine(),
                       torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
        append_lines(args.out, records)  # whole or not at all
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
