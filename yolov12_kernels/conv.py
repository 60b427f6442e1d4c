"""Public fused conv op: Conv (BN folded) + bias + SiLU + residual in one Triton kernel.

``fused_conv2d(x, weight, bias, stride=1, silu=False, residual=None, gamma=None, out=None)``
computes ``reference.conv_bn_act`` for the model's dense convs (1x1 and 3x3, stride 1 or 2). With
``out=`` a channel slice of a larger channels-last buffer (``buf[:, c0:c1]``), the result lands in
that slice and nothing else of the buffer is written: the concat that follows costs no copy.

Two ``torch.library`` ops in the ``yolov12`` namespace, each with a fake kernel, so that
``torch.compile`` sees one node and a CUDA graph captures one launch (no host sync, no allocation
but the output):

* ``yolov12::conv2d_fused(x, weight, bias, residual, gamma, stride, silu) -> Tensor`` (a new
  channels-last output);
* ``yolov12::conv2d_fused_out(x, weight, bias, residual, gamma, stride, silu, out) -> ()``
  (writes ``out``, which may be a strided view).

Inference only: arguments that require grad are refused (there is no backward). A call that
nothing traces launches the kernel directly, past the custom-op layers (``_tracing.untraced``).

This module has no ``from __future__ import annotations``: ``custom_op`` reads the annotations.
"""
from typing import Optional

import torch
from torch import Tensor

from ._conv_checks import (
    KERNEL_DTYPES,
    check_conv_args,
    check_no_grad,
    check_offsets_int32,
    check_out,
    check_supported,
    conv_out_hw,
    device_guard,
    empty_nhwc,
)
from ._tracing import untraced


def _kernels():
    from .triton import conv  # imported on first use: registering the ops needs no Triton
    return conv


def _out_shape(x, weight, stride):
    k = weight.shape[-1]
    return (x.shape[0], weight.shape[0], *conv_out_hw(x.shape[2], x.shape[3], k, stride))


def _run(x, weight, bias, residual, gamma, stride, silu, out):
    with device_guard(x):
        _kernels().launch(x, weight, bias, residual, gamma, out, stride, silu)


def _new(x, weight, bias, residual, gamma, stride, silu):
    out = empty_nhwc(_out_shape(x, weight, stride), x)
    _run(x, weight, bias, residual, gamma, stride, silu, out)
    return out


@torch.library.custom_op("yolov12::conv2d_fused", mutates_args=())
def _conv_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], residual: Optional[Tensor],
             gamma: Optional[Tensor], stride: int, silu: bool) -> Tensor:
    return _new(x, weight, bias, residual, gamma, stride, silu)


@_conv_op.register_fake
def _(x, weight, bias, residual, gamma, stride, silu):
    return empty_nhwc(_out_shape(x, weight, stride), x)


@torch.library.custom_op("yolov12::conv2d_fused_out", mutates_args=("out",))
def _conv_out_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], residual: Optional[Tensor],
                 gamma: Optional[Tensor], stride: int, silu: bool, out: Tensor) -> None:
    _run(x, weight, bias, residual, gamma, stride, silu, out)


@_conv_out_op.register_fake
def _(x, weight, bias, residual, gamma, stride, silu, out):
    return None


def fused_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: int = 1, *,
                 silu: bool = False, residual: Optional[Tensor] = None,
                 gamma: Optional[Tensor] = None, out: Optional[Tensor] = None) -> Tensor:
    """``act(conv2d(x, weight, bias, stride, padding=k//2))`` [``residual + gamma * that``].

    x (B, Cin, H, W) float16/bfloat16/float32, any strides (fastest channels-last); weight
    (Cout, Cin, k, k), k in (1, 3) (fastest channels-last too: ``w.contiguous(memory_format=
    torch.channels_last)``); bias and gamma (Cout,) in x's dtype or float32; residual like the
    output, (B, Cout, HO, WO). ``out``: where to write (any strides, e.g. a concat slice; it may be
    ``residual`` itself, for an in-place residual add, but must not overlap x). Returns ``out``, or
    a new channels-last tensor. float32 runs exact IEEE products; 16-bit inputs accumulate in
    float32; the epilogue rounds once.
    """
    shape = check_conv_args(x, weight, bias, stride, silu, residual, gamma, KERNEL_DTYPES)
    check_no_grad({"x": x, "weight": weight, "bias": bias, "residual": residual, "gamma": gamma})
    check_supported(x, "fused_conv2d")
    for t, name in ((x, "x"), (residual, "residual")):
        if t is not None:
            check_offsets_int32(t, name)
    direct = untraced(x, weight, bias, residual, gamma, out)  # past the custom-op layers
    if out is None:
        return (_new if direct else _conv_op)(x, weight, bias, residual, gamma, stride, silu)
    check_out(out, "out", shape, x, {"x": x, "weight": weight, "residual": residual},
              may_equal=("residual",))
    check_offsets_int32(out, "out")
    (_run if direct else _conv_out_op)(x, weight, bias, residual, gamma, stride, silu, out)
    return out
