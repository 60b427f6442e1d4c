"""flash-attn (``flash_attn_func``), when installed: optional, used only when asked for.

flash-attn takes (B, N, heads, d) like our drop-in layout, so each area is a free reshape. It needs
fp16/bf16, CUDA, compute capability >= 8.0 (FlashAttention-2 does not run on Turing) and a
contiguous last dimension.
"""
from __future__ import annotations

import torch

from .reference import _position_perceiver, attention_plus_pe

try:
    from flash_attn import flash_attn_func
except ImportError as e:  # optional dependency
    flash_attn_func = None
    _import_error = str(e)


def unavailable():
    return None if flash_attn_func is not None else f"flash-attn is not installed ({_import_error})"


def unsupported(op, device, dtype, head_dim, needs_grad):
    if device.type != "cuda":
        return f"flash-attn needs a CUDA tensor, got {device}"
    if torch.cuda.get_device_capability(device)[0] < 8:
        return "flash-attn (FlashAttention-2) needs compute capability >= 8.0"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"flash-attn takes float16/bfloat16, got {dtype}"
    if head_dim is not None and (head_dim % 8 or head_dim > 256):
        return f"flash-attn takes head_dim a multiple of 8 up to 256, got {head_dim}"
    return None


def area_attention(q, k, v, area, scale):
    B, N, heads, d = q.shape
    n = N // area

    def chunks(t):
        t = t.reshape(B * area, n, heads, d)
        return t if t.stride(-1) == 1 else t.contiguous()

    out = flash_attn_func(chunks(q), chunks(k), chunks(v), softmax_scale=scale)
    return out.reshape(B, N, heads, d)


def fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale):
    return attention_plus_pe(qkv, num_heads, lambda q, k, v: area_attention(q, k, v, area, scale),
                             lambda v: _position_perceiver(v, pe_weight, pe_bias))
