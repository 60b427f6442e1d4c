"""Public area-attention ops: validate once, pick a backend (see ``dispatch``), run.

Two entry points:

* ``area_attention(q, k, v, area)`` on (B, N, heads, head_dim): the drop-in for ``flash_attn_func``
  / SDPA users;
* ``fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias)`` on the model's layout: the qkv
  conv output (B, 3C, H, W) -> attention + pe(v) in (B, C, H, W), which the model's AAttn calls.

The arguments are checked here and nowhere after: backends receive validated tensors and a float
``scale``.
"""
from __future__ import annotations

import torch

from . import dispatch
from ._checks import check_area, check_drop_in_qkv, check_model_qkv, check_pe_params
from ._layout import is_channels_last


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def area_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, area: int = 1, *,
                   scale: float | None = None, backend: str = "auto") -> torch.Tensor:
    """Area attention: softmax(q k^T * scale) v inside each of ``area`` equal contiguous chunks of
    the N tokens. q, k, v: (B, N, heads, head_dim), any strides; returns (B, N, heads, head_dim).

    ``scale`` defaults to head_dim ** -0.5. ``backend``: "auto" (default), "triton", "cuda",
    "flash", "sdpa" or "reference"; ``YOLOV12_BACKEND`` overrides "auto".
    """
    B, N, heads, d = check_drop_in_qkv(q, k, v)
    check_area(area, N)
    impl = dispatch.select("area_attention", backend, q.device, q.dtype, d,
                           _needs_grad(q, k, v), B * N * heads * d)
    return impl.area_attention(q, k, v, area, float(d ** -0.5 if scale is None else scale))


def fused_area_attention(qkv: torch.Tensor, num_heads: int, area: int, pe_weight: torch.Tensor,
                         pe_bias: torch.Tensor | None = None, *, scale: float | None = None,
                         backend: str = "auto") -> torch.Tensor:
    """AAttn's attention core on the model layout: ``attn(qkv) + pe(v)``, (B, C, H, W).

    qkv: the qkv 1x1 conv output (B, 3C, H, W), per head [q | k | v] slices of head_dim channels;
    pe_weight (C, 1, k, k) and pe_bias (C,): the depthwise position-perceiver conv with BN folded.
    """
    B, C, H, W, d = check_model_qkv(qkv, num_heads)
    check_area(area, H * W)
    check_pe_params(C, pe_weight, pe_bias, name="pe_weight", bias_name="pe_bias",
                    device=qkv.device)
    impl = dispatch.select("fused_area_attention", backend, qkv.device, qkv.dtype, d,
                           _needs_grad(qkv, pe_weight, pe_bias), B * C * H * W,
                           is_channels_last(qkv))
    return impl.fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias,
                                     float(d ** -0.5 if scale is None else scale))
