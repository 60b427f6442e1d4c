"""torch.nn.functional.scaled_dot_product_attention per area: PyTorch's own fused attention.

The areas are contiguous token chunks, so splitting is a free reshape of (B, N, heads, d) into
(B*area, N/area, heads, d); SDPA then picks its best kernel (flash / efficient / cuDNN / math).
Autograd comes from PyTorch.
"""
from __future__ import annotations

import torch.nn.functional as F

from .reference import _position_perceiver, attention_plus_pe


def unavailable():
    return None


def unsupported(op, device, dtype, head_dim, needs_grad):
    return None


def area_attention(q, k, v, area, scale):
    B, N, heads, d = q.shape
    n = N // area

    def chunks(t):  # (B, N, h, d) -> (B*area, h, n, d), a view
        return t.reshape(B * area, n, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(chunks(q), chunks(k), chunks(v), scale=scale)
    return out.transpose(1, 2).reshape(B, N, heads, d)


def fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale):
    return attention_plus_pe(qkv, num_heads, lambda q, k, v: area_attention(q, k, v, area, scale),
                             lambda v: _position_perceiver(v, pe_weight, pe_bias))
