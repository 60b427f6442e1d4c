"""The reference ops as a backend: runs anywhere, any dtype, autograd through plain PyTorch."""
from __future__ import annotations

from .reference import area_attention, fused_area_attention, position_perceiver  # noqa: F401


def unavailable():
    return None


def unsupported(op, device, dtype, head_dim, needs_grad):
    return None
