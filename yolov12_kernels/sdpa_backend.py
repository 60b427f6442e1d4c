"""torch.nn.functional.scaled_dot_product_attention per area: PyTorch's own fused attention.

The areas are contiguous token chunks, so splitting is a free reshape of (B, N, heads, d) into
(B*area, N/area, heads, d); SDPA then picks its best kernel (flash / efficient / cuDNN / math).
Autograd comes from PyTorch.
"""
from __future__ import annotations

import torch.nn.functional as F

from . import reference
from ._checks import check_area, check_drop_in_qkv, check_model_qkv


def unavailable():
    return None


def unsupported(op, device, dtype, head_dim, needs_grad):
    return None


def area_attention(q, k, v, area=1, scale=None):
    B, N, heads, d = check_drop_in_qkv(q, k, v)
    check_area(area, N)
    n = N // area

    def chunks(t):  # (B, N, h, d) -> (B*area, h, n, d), a view
        return t.reshape(B * area, n, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(chunks(q), chunks(k), chunks(v), scale=scale)
    return out.transpose(1, 2).reshape(B, N, heads, d)


def fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias=None, scale=None):
    B, C, H, W, d = check_model_qkv(qkv, num_heads)
    q, k, v = reference.split_qkv(qkv, num_heads)
    x = area_attention(q, k, v, area, scale)
    x = x.reshape(B, H, W, C).permute(0, 3, 1, 2)
    v_nchw = v.reshape(B, H, W, C).permute(0, 3, 1, 2)
    return x + reference.position_perceiver(v_nchw, pe_weight, pe_bias)
