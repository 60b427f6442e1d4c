"""Public position-perceiver op: the depthwise k x k conv (7x7 in YOLOv12) on v, 'same' padding."""
from __future__ import annotations

import torch

from . import dispatch
from ._checks import check_pe_params, check_tensor
from ._layout import is_channels_last
from .attention import _needs_grad


def position_perceiver(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                       *, backend: str = "auto") -> torch.Tensor:
    """pe(v) = depthwise_conv(v, weight) + bias; v (B, C, H, W), weight (C, 1, k, k), bias (C,)."""
    check_tensor(v, "v", ndim=4)
    check_pe_params(v.shape[1], weight, bias, device=v.device)
    impl = dispatch.select("position_perceiver", backend, v.device, v.dtype, None,
                           _needs_grad(v, weight, bias), v.numel(), is_channels_last(v))
    return impl.position_perceiver(v, weight, bias)
