"""Public fused depthwise conv op: DWConv (BN folded) + bias + optional SiLU in one Triton kernel.

``fused_depthwise_conv2d(x, weight, bias, stride=1, silu=False, out=None)`` computes
``reference.depthwise_conv_bn_act``: weight (C, 1, k, k), k in (3, 5, 7), 'same' padding. Like
``fused_conv2d``: any input strides (fastest channels-last), ``out=`` any view such as a concat
slice, two ``torch.library`` ops with fake kernels (``yolov12::dwconv2d_fused`` returning a new
channels-last tensor, ``yolov12::dwconv2d_fused_out`` writing ``out``), inference only.

This module has no ``from __future__ import annotations``: ``custom_op`` reads the annotations.
"""
from typing import Optional

import torch
from torch import Tensor

from ._conv_checks import (
    KERNEL_DTYPES,
    check_dwconv_args,
    check_no_grad,
    check_offsets_int32,
    check_out,
    check_supported,
    conv_out_hw,
    device_guard,
    empty_nhwc,
)
from ._tracing import untraced


def _out_shape(x, weight, stride):
    return (*x.shape[:2], *conv_out_hw(x.shape[2], x.shape[3], weight.shape[-1], stride))


def _run(x, weight, bias, stride, silu, out):
    from .triton import dwconv  # imported on first use: registering the ops needs no Triton
    with device_guard(x):
        dwconv.launch(x, weight, bias, out, stride, silu)


def _new(x, weight, bias, stride, silu):
    out = empty_nhwc(_out_shape(x, weight, stride), x)
    _run(x, weight, bias, stride, silu, out)
    return out


@torch.library.custom_op("yolov12::dwconv2d_fused", mutates_args=())
def _dw_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, silu: bool) -> Tensor:
    return _new(x, weight, bias, stride, silu)


@_dw_op.register_fake
def _(x, weight, bias, stride, silu):
    return empty_nhwc(_out_shape(x, weight, stride), x)


@torch.library.custom_op("yolov12::dwconv2d_fused_out", mutates_args=("out",))
def _dw_out_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, silu: bool,
               out: Tensor) -> None:
    _run(x, weight, bias, stride, silu, out)


@_dw_out_op.register_fake
def _(x, weight, bias, stride, silu, out):
    return None


def fused_depthwise_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                           stride: int = 1, *, silu: bool = False,
                           out: Optional[Tensor] = None) -> Tensor:
    """``act(depthwise_conv2d(x, weight, bias, stride, padding=k//2))`` into ``out`` (or a new
    channels-last tensor). x (B, C, H, W) float16/bfloat16/float32; weight (C, 1, k, k) in x's
    dtype; bias (C,) in x's dtype or float32. Products and sums in float32, one rounding."""
    shape = check_dwconv_args(x, weight, bias, stride, silu, KERNEL_DTYPES)
    check_no_grad({"x": x, "weight": weight, "bias": bias})
    check_supported(x, "fused_depthwise_conv2d")
    check_offsets_int32(x, "x")
    direct = untraced(x, weight, bias, out)  # nothing traces it: past the custom-op layers
    if out is None:
        return (_new if direct else _dw_op)(x, weight, bias, stride, silu)
    check_out(out, "out", shape, x, {"x": x, "weight": weight})
    check_offsets_int32(out, "out")
    (_run if direct else _dw_out_op)(x, weight, bias, stride, silu, out)
    return out
