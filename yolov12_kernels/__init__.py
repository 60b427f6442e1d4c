"""yolov12_kernels: fast area attention, position perceiver and conv/BN folding for YOLOv12.

Public ops (each validates its inputs and picks a backend; see ``dispatch``):

* ``area_attention(q, k, v, area, backend=...)`` — drop-in attention on (B, N, heads, head_dim);
* ``fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias)`` — AAttn's core on the
  model's (B, 3C, H, W) qkv layout, returning attention + pe(v) in (B, C, H, W);
* ``position_perceiver(v, weight, bias)`` — the 7x7 depthwise conv;
* ``fold_conv_bn(conv, bn)`` — Conv2d + eval-mode BatchNorm2d as one Conv2d with bias.

``reference`` holds the plain-PyTorch ground truth of each.
"""
from . import reference
from .attention import area_attention, fused_area_attention
from .dispatch import BACKENDS, available_backends
from .perceiver import position_perceiver
from .reference import fold_conv_bn
from .patch import patch, unpatch  # drop-in for models with the AAttn layout (ultralytics)

__version__ = "0.1.0"

__all__ = [
    "reference",
    "area_attention",
    "fused_area_attention",
    "position_perceiver",
    "fold_conv_bn",
    "patch",
    "unpatch",
    "available_backends",
    "BACKENDS",
]
