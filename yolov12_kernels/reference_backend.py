"""The reference ops as a backend: runs anywhere, any dtype, autograd through plain PyTorch.

The backend runs the reference's unchecked twins: the public op has validated the arguments.
"""
from __future__ import annotations

from .reference import _area_attention as area_attention  # noqa: F401
from .reference import _fused_area_attention as fused_area_attention  # noqa: F401
from .reference import _position_perceiver as position_perceiver  # noqa: F401


def unavailable():
    return None


def unsupported(op, device, dtype, head_dim, needs_grad):
    return None
