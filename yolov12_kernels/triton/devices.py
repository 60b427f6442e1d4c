"""Where the Triton kernels can run, and launching on the right device. Needs only torch (the
dispatcher asks before Triton is imported)."""
from __future__ import annotations

import contextlib

import torch

_NO_GUARD = contextlib.nullcontext()


def unsupported_device(device: torch.device, dtype: torch.dtype, interpret: bool, what: str,
                       below_sm80: str = "") -> str | None:
    """Why ``what`` (e.g. "the Triton kernels") cannot run on ``device`` in ``dtype``, or None.
    ``interpret``: whether TRITON_INTERPRET=1 was set when the kernels were imported;
    ``below_sm80``: appended to the reason on a GPU without tensor-core support in Triton."""
    if device.type == "cpu":
        if not interpret:
            return ("CPU tensors run only in Triton's interpreter: set TRITON_INTERPRET=1 before "
                    "importing yolov12_kernels")
        if dtype == torch.bfloat16:
            return "bfloat16 tl.dot is not exact in Triton's interpreter (bfloat16 needs a GPU)"
        return None
    if device.type != "cuda":
        return f"{what} need a CUDA tensor (or a CPU one, interpreted), got {device}"
    if not interpret and torch.cuda.get_device_capability(device) < (8, 0):
        return "Triton emits no tensor-core code below sm_80" + below_sm80
    return None


def device_guard(t: torch.Tensor):
    """Triton launches on the current CUDA device (its compiled kernels are loaded per device):
    make it the tensor's one, when it is not already (the guard itself costs microseconds)."""
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return _NO_GUARD
