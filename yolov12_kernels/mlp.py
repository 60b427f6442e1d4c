"""Public fused MLP op: ABlock's two 1x1 convs (BN folded) + SiLU + residual in ONE kernel, the
hidden layer kept on chip (for C > 256 the op runs two conv launches through a hidden buffer:
``triton.mlp.mlp_config``).

``fused_mlp(x, w1, b1, w2, b2, residual=True, out=None)`` computes ``reference.mlp_residual``:
``x + conv1x1(silu(conv1x1(x, w1, b1)), w2, b2)``. x (B, C, H, W), C up to 512 (every YOLOv12
width: 64..384; hidden 1.2x or 2x C, any size); weights (hidden, C, 1, 1) and (C, hidden, 1, 1).
Like the conv ops: any strides (fastest channels-last), ``out=`` any view (also ``x`` itself: the
residual is then added in place), two ``torch.library`` ops with fake kernels
(``yolov12::mlp_fused``, ``yolov12::mlp_fused_out``), inference only.

This module has no ``from __future__ import annotations``: ``custom_op`` reads the annotations.
"""
from typing import Optional

import torch
from torch import Tensor

from ._conv_checks import (
    KERNEL_DTYPES,
    check_mlp_args,
    check_no_grad,
    check_offsets_int32,
    check_out,
    check_supported,
    device_guard,
    empty_nhwc,
)
from ._tracing import untraced

MAX_CHANNELS = 512  # the kernel keeps a (pixels x C) fp32 accumulator in registers


def _run(x, w1, b1, w2, b2, residual, out):
    from .triton import mlp  # imported on first use: registering the ops needs no Triton
    with device_guard(x):
        mlp.launch(x, w1, b1, w2, b2, out, residual)


def _new(x, w1, b1, w2, b2, residual):
    out = empty_nhwc(x.shape, x)
    _run(x, w1, b1, w2, b2, residual, out)
    return out


@torch.library.custom_op("yolov12::mlp_fused", mutates_args=())
def _mlp_op(x: Tensor, w1: Tensor, b1: Optional[Tensor], w2: Tensor, b2: Optional[Tensor],
            residual: bool) -> Tensor:
    return _new(x, w1, b1, w2, b2, residual)


@_mlp_op.register_fake
def _(x, w1, b1, w2, b2, residual):
    return empty_nhwc(x.shape, x)


@torch.library.custom_op("yolov12::mlp_fused_out", mutates_args=("out",))
def _mlp_out_op(x: Tensor, w1: Tensor, b1: Optional[Tensor], w2: Tensor, b2: Optional[Tensor],
                residual: bool, out: Tensor) -> None:
    _run(x, w1, b1, w2, b2, residual, out)


@_mlp_out_op.register_fake
def _(x, w1, b1, w2, b2, residual, out):
    return None


def fused_mlp(x: Tensor, w1: Tensor, b1: Optional[Tensor], w2: Tensor, b2: Optional[Tensor], *,
              residual: bool = True, out: Optional[Tensor] = None) -> Tensor:
    """``x + conv1x1(silu(conv1x1(x, w1, b1)), w2, b2)`` into ``out`` (or a new channels-last
    tensor); float16/bfloat16/float32, fp32 accumulation, hidden rounded to x's dtype."""
    check_mlp_args(x, w1, b1, w2, b2, residual, KERNEL_DTYPES)
    if x.shape[1] > MAX_CHANNELS:
        raise ValueError(f"x: {x.shape[1]} channels, over the {MAX_CHANNELS} the fused MLP keeps "
                         "on chip; run the two 1x1 convs with fused_conv2d instead")
    check_no_grad({"x": x, "w1": w1, "b1": b1, "w2": w2, "b2": b2})
    check_supported(x, "fused_mlp")
    check_offsets_int32(x, "x")
    direct = untraced(x, w1, b1, w2, b2, out)  # nothing traces it: past the custom-op layers
    if out is None:
        return (_new if direct else _mlp_op)(x, w1, b1, w2, b2, residual)
    check_out(out, "out", x.shape, x, {"x": x, "w1": w1, "w2": w2}, may_equal=("x",))
    check_offsets_int32(out, "out")
    (_run if direct else _mlp_out_op)(x, w1, b1, w2, b2, residual, out)
    return out
