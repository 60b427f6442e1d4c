"""Backend selection: a small, explicit table instead of scattered if/else.

A backend is a module exposing:

* ``unavailable() -> str | None`` — why it cannot run on this machine at all (not installed, no
  extension built, ...), or None;
* ``unsupported(op, device, dtype, head_dim, needs_grad) -> str | None`` — why it cannot take this
  particular call, or None;
* one function per op it implements, named like the op (``area_attention``,
  ``fused_area_attention``, ``position_perceiver``), with the signature of the public op minus
  ``backend``; a backend without an op's function is simply not a candidate for that op.

Choosing: an explicit ``backend=`` argument wins; else the environment variable
``YOLOV12_BACKEND`` (same values); else "auto", which walks ``auto_order(device)`` and takes the first
backend that supports the call. An explicitly requested backend that cannot take the call raises a
``RuntimeError`` saying why (asking for a backend and silently getting another is a trap); "auto"
skips it and logs the reason once.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from types import ModuleType

import torch

log = logging.getLogger("yolov12_kernels")

BACKENDS = ("cuda", "triton", "flash", "sdpa", "reference")
ENV_VAR = "YOLOV12_BACKEND"

# Where each backend lives; imported lazily so a missing optional dependency never breaks import.
_MODULES = {
    "cuda": "yolov12_kernels.cuda_backend",
    "triton": "yolov12_kernels.triton.backend",
    "flash": "yolov12_kernels.flash_backend",
    "sdpa": "yolov12_kernels.sdpa_backend",
    "reference": "yolov12_kernels.reference_backend",
}

_logged: set = set()

# The two backends with no optional dependency are imported up front: they are what "auto" picks
# on a CPU, and a first import inside a torch.compile'd region would break its graph (see load).
from . import reference_backend, sdpa_backend  # noqa: E402,F401


def _log_once(msg: str) -> None:
    if msg not in _logged:
        _logged.add(msg)
        log.warning(msg)


def auto_order(device: torch.device) -> tuple[str, ...]:
    """Backends "auto" tries, best first, for a device.

    CUDA, compute capability >= 8.0: the Triton kernels (tensor cores, tuned for our shapes), then the
    CUDA kernels, then SDPA. Below 8.0 (Turing): Triton emits no tensor-core code there, so the CUDA
    kernels come first. CPU: SDPA (PyTorch's fused CPU attention), then the reference. flash-attn is
    used only when asked for (``backend="flash"``): it needs a copy per area and never wins at our
    sizes. The order is what benchmarks/ measures; change it there first.
    """
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if major >= 8:
            return ("triton", "cuda", "sdpa", "reference")
        return ("cuda", "sdpa", "reference")
    return ("sdpa", "reference")


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
           head_dim: int | None, needs_grad: bool) -> ModuleType:
    """The backend module that will run ``op`` for this call (see the module docstring)."""
    if backend is None or backend == "auto":
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
    if backend != "auto":
        mod, reason = load(backend)
        if mod is not None and not hasattr(mod, op):
            reason = f"{backend} has no {op}"
        elif mod is not None:
            reason = mod.unsupported(op, device, dtype, head_dim, needs_grad)
        if reason:
            raise RuntimeError(f"backend={backend!r} cannot run {op} here: {reason}")
        return mod
    first = None
    for name in auto_order(device):
        mod, reason = load(name)
        if mod is not None and not hasattr(mod, op):
            continue  # a backend without this op at all is no fall-back worth a log line
        if mod is not None:
            reason = mod.unsupported(op, device, dtype, head_dim, needs_grad)
        if not reason:
            if first is not None:
                _log_once(f"yolov12_kernels: {op}: backend {first[0]!r} skipped ({first[1]}); "
                          f"using {name!r}")
            return mod
        if first is None:
            first = (name, reason)
    raise RuntimeError(f"no backend can run {op} on {device} with {dtype}")
