"""AAttn's forward, written once: the model's ``AAttn``, the fast path and ``patch`` all run it.

It works on any module with the public YOLO12 ``AAttn`` attribute layout: ``qkv``, ``proj`` and
``pe`` each a Conv wrapper (``.conv`` an ``nn.Conv2d``, ``.bn`` a BatchNorm2d, or absent / None once
folded), and integers ``num_heads`` and ``area``. Weights are the module's own: nothing is copied.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .attention import area_attention, fused_area_attention
from .reference import attention_plus_pe, conv_bn_params


def pe_weight_bias(pe: nn.Module):
    """The depthwise weight and bias of ``pe`` with an eval-mode BN folded in (differentiable:
    gradients reach the conv and the BN), or None while the BN is in training mode (batch
    statistics cannot be folded: the module itself must run)."""
    bn = getattr(pe, "bn", None)
    return conv_bn_params(pe.conv, bn if isinstance(bn, nn.BatchNorm2d) else None)


def aattn_forward(m: nn.Module, x: torch.Tensor, backend: str = "auto",
                  core: Callable | None = None) -> torch.Tensor:
    """``proj(attention(qkv(x)) + pe(v))`` for an AAttn-layout module ``m``.

    ``backend`` picks the attention backend per call through the public ops; ``core`` (the
    ``fused_area_attention`` function of a backend resolved once, e.g. by the fast path) is
    called directly instead, with validated shapes: it skips the per-call dispatch.
    """
    B, C, H, W = x.shape
    if (H * W) % m.area:
        raise ValueError(f"x: area={m.area} does not divide H*W={H * W} tokens (feature map "
                         f"{H}x{W}); use an input size whose feature maps split into equal "
                         "stripes")
    qkv = m.qkv(x)
    wb = pe_weight_bias(m.pe)
    if wb is None:  # training-mode BN in pe: attention from the op, pe through the module
        return m.proj(attention_plus_pe(
            qkv, m.num_heads,
            lambda q, k, v: area_attention(q, k, v, m.area, backend=backend),
            lambda v: m.pe(v.contiguous())))
    if core is not None:
        out = core(qkv, m.num_heads, m.area, wb[0], wb[1], float(m.head_dim ** -0.5))
    else:
        out = fused_area_attention(qkv, m.num_heads, m.area, wb[0], wb[1], backend=backend)
    return m.proj(out)
