"""Public fused box decode: the Detect head's eval-mode decode (DFL, anchors, strides, sigmoid)
in one Triton kernel.

``box_decode(feats, level_shapes, strides, reg_max=16)`` computes ``reference.box_decode`` in
float32: feats (B, 4 * reg_max + nc, anchors) — the levels' head outputs concatenated along the
anchors, any strides (fastest when each anchor's channels are contiguous: the view
``buf.permute(0, 2, 1)`` of a (B, anchors, channels) buffer the head convs write into) — gives
(B, 4 + nc, anchors) float32. reg_max must be a power of two (16 in YOLOv12). One
``torch.library`` op with a fake kernel (``yolov12::box_decode``); inference only.

This module has no ``from __future__ import annotations``: ``custom_op`` reads the annotations.
"""
import torch
from torch import Tensor

from ._conv_checks import (
    KERNEL_DTYPES,
    check_box_decode_args,
    check_no_grad,
    check_offsets_int32,
    check_supported,
    device_guard,
)
from ._tracing import untraced


def _new_out(feats, nc):
    return feats.new_empty((feats.shape[0], 4 + nc, feats.shape[2]), dtype=torch.float32)


def _decode(feats, level_hw, strides, reg_max):
    from .triton import box_decode as K  # imported on first use: registering needs no Triton
    out = _new_out(feats, feats.shape[1] - 4 * reg_max)
    shapes = list(zip(level_hw[0::2], level_hw[1::2]))
    with device_guard(feats):
        K.launch(feats, out, shapes, strides, reg_max)
    return out


@torch.library.custom_op("yolov12::box_decode", mutates_args=())
def _decode_op(feats: Tensor, level_hw: list[int], strides: list[float], reg_max: int) -> Tensor:
    return _decode(feats, level_hw, strides, reg_max)


@_decode_op.register_fake
def _(feats, level_hw, strides, reg_max):
    return _new_out(feats, feats.shape[1] - 4 * reg_max)


def box_decode(feats: Tensor, level_shapes, strides, reg_max: int = 16) -> Tensor:
    """xywh boxes in input pixels and class scores, (B, 4 + nc, anchors) float32; see module."""
    check_box_decode_args(feats, level_shapes, strides, reg_max, KERNEL_DTYPES)
    if reg_max & (reg_max - 1):
        raise ValueError(f"reg_max: the kernel takes a power of two, got {reg_max}")
    check_no_grad({"feats": feats})
    check_supported(feats, "box_decode")
    check_offsets_int32(feats[..., None], "feats")
    level_hw = [int(v) for hw in level_shapes for v in hw]
    # nothing traces the call: past the custom-op layers (yolov12_kernels._tracing)
    return (_decode if untraced(feats) else _decode_op)(feats, level_hw,
                                                        [float(s) for s in strides], reg_max)
