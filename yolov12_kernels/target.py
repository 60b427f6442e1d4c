"""The device the library makes its choices for, and a rehearsal of a GPU's choices on the CPU.

Every choice that depends on the kind of device asks ``target(device)``: "auto"'s backend order
(``dispatch.auto_order``), and in the fast path (``yolov12.fast``) the fused conv kernels, the
memory format, the default dtype, CUDA graphs, and whether float16 inference is offered
(``yolov12.predict``). It answers the device's own kind and compute capability.

``rehearse_gpu(capability)`` (a context manager; the tests' ``gpu_choices`` fixture) makes the
answer for CPU devices a GPU's, so that on a machine without one the CPU takes the GPU's choices
— Triton attention, fused NHWC convs, CUDA graphs on — while the kernels run in Triton's
interpreter on CPU tensors. What a CPU cannot do is replaced by a stand-in with the same contract:
``RecordedGraphs`` for CUDA graph capture (docs/testing.md says what it does not cover). A model
built inside the block keeps the choices it made after the block ends, as one built on a GPU.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class Target(NamedTuple):
    """What choices are made for: ``type`` "cuda" or "cpu" (or another torch device type),
    ``capability`` the GPU's (major, minor), None elsewhere; ``rehearsal`` True when a CPU
    device stands for a GPU (``rehearse_gpu``)."""
    type: str
    capability: tuple[int, int] | None = None
    rehearsal: bool = False


_rehearsed: Target | None = None  # the GPU a CPU device stands for, inside rehearse_gpu()


def target(device: torch.device) -> Target:
    """The device choices for ``device`` (a ``torch.device``) are made for."""
    if device.type == "cuda":
        return Target("cuda", torch.cuda.get_device_capability(device))
    if device.type == "cpu" and _rehearsed is not None:
        return _rehearsed
    return Target(device.type)


@contextlib.contextmanager
def rehearse_gpu(capability: tuple[int, int] = (9, 0)):
    """Inside the block, CPU devices get the choices of a GPU of compute ``capability`` (sm_80
    and up: the GPUs where the Triton kernels run), the kernels running in Triton's interpreter
    (``TRITON_INTERPRET=1`` must be set before the kernels are imported). Process-wide, not
    per thread (tests set it around a test). Yields the Target."""
    global _rehearsed
    capability = tuple(capability)
    if len(capability) != 2 or capability < (8, 0):
        raise ValueError(f"capability: expected (major, minor) of sm_80 or later, got "
                         f"{capability!r} (below sm_80 the Triton kernels do not run)")
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise RuntimeError("rehearse_gpu: the kernels run on CPU tensors only in Triton's "
                           "interpreter; set TRITON_INTERPRET=1 before importing yolov12_kernels")
    saved, _rehearsed = _rehearsed, Target("cuda", capability, True)
    try:
        yield _rehearsed
    finally:
        _rehearsed = saved


# ------------------------------------------------------------------------------------------------
# CUDA graphs, rehearsed
# ------------------------------------------------------------------------------------------------
class CaptureRefused(RuntimeError):
    """What a CUDA graph capture would refuse, seen by the rehearsal's capture."""


# Ops that wait for the device (a host sync): a CUDA graph capture fails on them.
_SYNCING = {"_local_scalar_dense", "nonzero", "equal", "is_nonzero", "item"}


class _NoSync(TorchDispatchMode):
    """Refuses, as a capture does, an op that would synchronise with the device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in _SYNCING:
            raise CaptureRefused(f"{func} synchronises with the device: a CUDA graph capture "
                                 "fails on it (operation not permitted when stream is capturing)")
        return func(*args, **(kwargs or {}))


class RecordedGraph:
    """Stands for a captured CUDA graph: ``replay()`` calls the recorded ``fn`` again on the same
    ``static_input`` and writes its result into the same ``static_output``, in place."""

    def __init__(self, fn, static_input: torch.Tensor, static_output: torch.Tensor):
        self.fn, self.static_input, self.static_output = fn, static_input, static_output
        self.replays = 0

    def replay(self) -> None:
        with torch.inference_mode():  # the output is an inference tensor, as the capture made it
            self.static_output.copy_(self.fn(self.static_input))
        self.replays += 1


class RecordedGraphs:
    """The rehearsal's CUDA graphs, with the contract of ``yolov12.fast``'s CUDA capture:
    ``capture(fn, static_input, warmup)`` returns (graph, static_output) — ``fn(static_input)``
    run once under inference mode, refusing a host sync as a capture would — and
    ``is_capturing()`` is True inside that call in this thread. No warm-up runs: it only sets up
    lazy state on a GPU's side stream."""

    _state = threading.local()

    @classmethod
    def is_capturing(cls) -> bool:
        return getattr(cls._state, "capturing", False)

    @classmethod
    def capture(cls, fn, static_input: torch.Tensor, warmup: int = 3):
        cls._state.capturing = True
        try:
            with torch.inference_mode(), _NoSync():
                static_output = fn(static_input)
        finally:
            cls._state.capturing = False
        return RecordedGraph(fn, static_input, static_output), static_output
