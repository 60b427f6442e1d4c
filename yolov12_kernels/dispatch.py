"""Backend selection: a small, explicit table instead of scattered if/else.

A backend is a module exposing:

* ``unavailable() -> str | None`` — why it cannot run on this machine at all (not installed, no
  extension built, ...), or None;
* ``unsupported(op, device, dtype, head_dim, needs_grad) -> str | None`` — why it cannot take this
  particular call, or None;
* one function per op it implements, named like the op, taking **validated** arguments (the public
  op checks them once) and a resolved float ``scale``:
  ``area_attention(q, k, v, area, scale)``,
  ``fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale)``,
  ``position_perceiver(v, weight, bias)``; a backend without an op's function is no candidate.

``select`` returns a ``Backend``: the backend's name and its functions.

Choosing: an explicit ``backend=`` argument wins; else the environment variable
``YOLOV12_BACKEND`` (same values); else "auto", which walks ``auto_order`` and takes the first
backend that supports the call. An explicitly requested backend that cannot take the call raises a
``RuntimeError`` saying why (asking for a backend and silently getting another is a trap); "auto"
skips it and logs the reason once.

"auto"'s order on a GPU comes from measurements where there are some (``dispatch_table``: the
fastest backend per GPU architecture, op, pass, problem size and memory format of the input,
derived from the CUDA-graph-replayed kernel records in ``benchmarks/results``), and from a fixed
order everywhere else (``FALLBACK_ORDER``). A backend ranked for the channels-last fused core was
measured on channels-last inputs; every backend's fused core returns qkv's memory format.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Callable, NamedTuple

import torch

from . import dispatch_table
from .target import target

log = logging.getLogger("yolov12_kernels")

BACKENDS = ("cuda", "triton", "flash", "sdpa", "reference")
OPS = ("area_attention", "fused_area_attention", "position_perceiver")
ENV_VAR = "YOLOV12_BACKEND"

# Where each backend lives; imported lazily so a missing optional dependency never breaks import.
_MODULES = {
    "cuda": "yolov12_kernels.cuda_backend",
    "triton": "yolov12_kernels.triton.backend",
    "flash": "yolov12_kernels.flash_backend",
    "sdpa": "yolov12_kernels.sdpa_backend",
    "reference": "yolov12_kernels.reference_backend",
}

# "auto" where nothing was measured, best first. sm_80+: the Triton kernels (tensor cores, every
# dtype, a backward), then the CUDA kernels (forward only, fp16/bf16), then SDPA. Turing (sm_75):
# Triton emits no tensor-core code there and FlashAttention-2 does not run, so the CUDA kernels
# lead. CPU: SDPA (PyTorch's fused CPU attention), then the reference. flash-attn is used only
# when asked for (``backend="flash"``): it needs a copy per area and never wins at our sizes.
FALLBACK_ORDER = {
    "sm80+": ("triton", "cuda", "sdpa", "reference"),
    "sm75": ("cuda", "sdpa", "reference"),
    "cpu": ("sdpa", "reference"),
}

_logged: set = set()

# The two backends with no optional dependency are imported up front: they are what "auto" picks
# on a CPU, and a first import inside a torch.compile'd region would break its graph (see load).
from . import reference_backend, sdpa_backend  # noqa: E402,F401


class Backend(NamedTuple):
    """A backend as ``select`` hands it out: its name and its op functions (None where absent)."""
    name: str
    area_attention: Callable | None
    fused_area_attention: Callable | None
    position_perceiver: Callable | None


def _handle(name: str, mod: ModuleType) -> Backend:
    return Backend(name, *(getattr(mod, op, None) for op in OPS))


def _log_once(msg: str) -> None:
    if msg not in _logged:
        _logged.add(msg)
        log.warning(msg)


def auto_order(device: torch.device, op: str | None = None, needs_grad: bool = False,
               size: int | None = None, channels_last: bool = False) -> tuple[str, ...]:
    """Backends "auto" tries for a call, best first.

    The fixed ``FALLBACK_ORDER`` of the device, with the backends measured on this GPU
    architecture for ``op`` (forward, or forward+backward when ``needs_grad``) at this problem
    ``size`` (batch x channels x tokens) on inputs of this memory format (``channels_last``: the
    fused NHWC path's qkv) put in their measured order, in the places the fixed order gives them;
    backends never measured keep their fixed place. The device's kind and capability are
    ``target.target(device)``'s: a GPU's for a CPU device inside ``target.rehearse_gpu()``.
    """
    chosen_for = target(device)  # a CPU stands for a GPU inside target.rehearse_gpu()
    if chosen_for.type != "cuda":
        return FALLBACK_ORDER["cpu"]
    cap = chosen_for.capability
    order = list(FALLBACK_ORDER["sm80+" if cap >= (8, 0) else "sm75"])
    measured = [b for b in dispatch_table.ranking(cap, op, needs_grad, size, channels_last)
                if b in order]
    slots = sorted(order.index(b) for b in measured)
    for slot, name in zip(slots, measured):
        order[slot] = name
    return tuple(order)


def load(name: str) -> tuple[ModuleType | None, str | None]:
    """(module, None) if backend ``name`` can run here, else (None, reason)."""
    if name not in _MODULES:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of "
                         f"{('auto',) + BACKENDS}")
    # sys.modules first: torch.compile (dynamo) traces a dict lookup but not import_module, so
    # once a backend is imported, select() adds no graph break in front of the op it picks
    mod = sys.modules.get(_MODULES[name])
    if mod is None:
        try:
            mod = importlib.import_module(_MODULES[name])
        except ImportError as e:  # an optional dependency is missing
            return None, f"cannot import {_MODULES[name]}: {e}"
    reason = mod.unavailable()
    return (None, reason) if reason else (mod, None)


def available_backends() -> dict[str, str | None]:
    """{backend: None if usable here, else the reason it is not} — for users and bug reports."""
    return {name: load(name)[1] for name in BACKENDS}


def select(op: str, backend: str | None, device: torch.device, dtype: torch.dtype,
           head_dim: int | None, needs_grad: bool, size: int | None = None,
           channels_last: bool = False) -> Backend:
    """The backend that will run ``op`` for this call (see the module docstring)."""
    asked_by = "backend"  # who chose it, named in the errors: the argument or the variable
    if backend is None or backend == "auto":
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        if backend != "auto":
            asked_by = ENV_VAR
            if backend not in _MODULES:
                raise ValueError(f"{ENV_VAR}={backend!r} is not a backend; set it to one of "
                                 f"{('auto',) + BACKENDS}, or unset it")
    if backend != "auto":
        mod, reason = load(backend)
        if mod is not None and getattr(mod, op, None) is None:
            reason = f"{backend} has no {op}"
        elif mod is not None:
            reason = mod.unsupported(op, device, dtype, head_dim, needs_grad)
        if reason:
            raise RuntimeError(f"{asked_by}={backend!r} cannot run {op} here: {reason}")
        return _handle(backend, mod)
    first = None
    for name in auto_order(device, op, needs_grad, size, channels_last):
        mod, reason = load(name)
        if mod is not None and getattr(mod, op, None) is None:
            continue  # a backend without this op at all is no fall-back worth a log line
        if mod is not None:
            reason = mod.unsupported(op, device, dtype, head_dim, needs_grad)
        if not reason:
            if first is not None:
                _log_once(f"yolov12_kernels: {op}: backend {first[0]!r} skipped ({first[1]}); "
                          f"using {name!r}")
            return _handle(name, mod)
        if first is None:
            first = (name, reason)
    raise RuntimeError(f"no backend can run {op} on {device} with {dtype}")
