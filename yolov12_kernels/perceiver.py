"""Public position-perceiver op: the depthwise k x k conv (7x7 in YOLOv12) on v, 'same' padding."""
from __future__ import annotations

import torch

from . import dispatch
from ._checks import check_pe_params


def position_perceiver(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                       *, backend: str = "auto") -> torch.Tensor:
    """pe(v) = depthwise_conv(v, weight) + bias; v (B, C, H, W), weight (C, 1, k, k), bias (C,)."""
    check_pe_params(v, weight, bias)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (v, weight, bias))
    impl = dispatch.select("position_perceiver", backend, v.device, v.dtype, None, needs_grad)
    return impl.position_perceiver(v, weight, bias)
