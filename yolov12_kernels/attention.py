"""Public area-attention ops: validate, pick a backend (see ``dispatch``), run.

Two entry points:

* ``area_attention(q, k, v, area)`` on (B, N, heads, head_dim): the drop-in for ``flash_attn_func``
  / SDPA users;
* ``fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias)`` on the model's layout: the qkv
  conv output (B, 3C, H, W) -> attention + pe(v) in (B, C, H, W), which the model's AAttn calls.
"""
from __future__ import annotations

import torch

from . import dispatch
from ._checks import check_area, check_drop_in_qkv, check_model_qkv, check_pe_params


def area_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, area: int = 1, *,
                   scale: float | None = None, backend: str = "auto") -> torch.Tensor:
    """Area attention: softmax(q k^T * scale) v inside each of ``area`` equal contiguous chunks of
    the N tokens. q, k, v: (B, N, heads, head_dim), any strides; returns (B, N, heads, head_dim).

    ``scale`` defaults to head_dim ** -0.5. ``backend``: "auto" (default), "triton", "cuda",
    "flash", "sdpa" or "reference"; ``YOLOV12_BACKEND`` overrides "auto".
    """
    B, N, heads, d = check_drop_in_qkv(q, k, v)
    check_area(area, N)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    impl = dispatch.select("area_attention", backend, q.device, q.dtype, d, needs_grad)
    return impl.area_attention(q, k, v, area, scale)


def fused_area_attention(qkv: torch.Tensor, num_heads: int, area: int, pe_weight: torch.Tensor,
                         pe_bias: torch.Tensor | None = None, *, scale: float | None = None,
                         backend: str = "auto") -> torch.Tensor:
    """AAttn's attention core on the model layout: ``attn(qkv) + pe(v)``, (B, C, H, W).

    qkv: the qkv 1x1 conv output (B, 3C, H, W), per head [q | k | v] slices of head_dim channels;
    pe_weight (C, 1, k, k) and pe_bias (C,): the depthwise position-perceiver conv with BN folded.
    """
    B, C, H, W, d = check_model_qkv(qkv, num_heads)
    check_area(area, H * W)
    # pe acts on v in (B, C, H, W); check against a same-shaped stand-in without slicing qkv
    check_pe_params(qkv.new_empty((1, C, 1, 1)), pe_weight, pe_bias,
                    name="pe_weight", bias_name="pe_bias")
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (qkv, pe_weight, pe_bias))
    impl = dispatch.select("fused_area_attention", backend, qkv.device, qkv.dtype, d, needs_grad)
    return impl.fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale)
