"""The memory format the model-layout ops give their output: the one their input has.

The fused NHWC path (yolov12.fused) runs channels-last end to end: an attention core that
returned NCHW there would make the proj conv read one channel at a time. So every backend's
``fused_area_attention`` returns a (B, C, H, W) output in qkv's memory format, decided by one rule
that the Triton backend, the CUDA fake kernel and its C++ kernel (csrc/bindings.cpp) share.
"""
from __future__ import annotations

import torch


def is_channels_last(t: torch.Tensor) -> bool:
    """True when the channels of a (B, C, H, W) tensor vary fastest (channels-last, or a channel
    slice of a channels-last tensor, like the qkv conv's output in the fused path)."""
    return t.stride(1) < t.stride(3)


def empty_like_qkv(qkv: torch.Tensor, shape) -> torch.Tensor:
    """An uninitialised (B, C, H, W) output of ``shape`` in qkv's memory format."""
    fmt = torch.channels_last if is_channels_last(qkv) else torch.contiguous_format
    return torch.empty(shape, dtype=qkv.dtype, device=qkv.device, memory_format=fmt)
