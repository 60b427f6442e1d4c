"""Plain-PyTorch reference ops: the ground truth every fast backend is tested against.

Readable first, fast never. Every public function validates its arguments and raises ``ValueError``
naming the argument at fault (the checks of ``_checks``, shared with the public ops); its
``_``-prefixed twin computes the same on validated inputs and is what the reference backend runs,
so a call through the dispatcher is checked once.

Layouts
-------
* drop-in layout: q, k, v are (B, N, heads, head_dim), N = H*W tokens in row-major order.
* model layout: ``qkv`` is the output of AAttn's 1x1 qkv conv, (B, 3C, H, W) with C = heads*head_dim.
  Channel ``h*3*d + j`` holds q (j < d), k (d <= j < 2d) or v (2d <= j < 3d) of head h: per head the
  three slices are consecutive, exactly as the public YOLO12 ``AAttn`` views them.
* area attention: the N tokens are cut into ``area`` equal contiguous chunks (horizontal stripes of
  the feature map) and softmax(q k^T * scale) v runs inside each chunk; ``area=1`` is global attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (
    check_area,
    check_drop_in_qkv,
    check_model_qkv,
    check_pe_params,
    check_tensor,
)
from ._conv_checks import (
    check_box_decode_args,
    check_conv_args,
    check_dwconv_args,
    check_mlp_args,
)

__all__ = [
    "area_attention",
    "split_qkv",
    "attention_plus_pe",
    "position_perceiver",
    "fused_area_attention",
    "fold_conv_bn",
    "conv_bn_params",
    "conv_bn_act",
    "depthwise_conv_bn_act",
    "mlp_residual",
    "box_decode",
]


def area_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, area: int = 1,
                   scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v inside each of ``area`` contiguous token chunks.

    q, k, v: (B, N, heads, head_dim); returns (B, N, heads, head_dim) in q's dtype.
    ``scale`` defaults to head_dim ** -0.5. Computed in the inputs' dtype (cast them to float64
    for a ground truth).
    """
    B, N, heads, d = check_drop_in_qkv(q, k, v)
    check_area(area, N)
    return _area_attention(q, k, v, area, d ** -0.5 if scale is None else scale)


def _area_attention(q, k, v, area: int, scale: float) -> torch.Tensor:
    """``area_attention`` on validated inputs (the reference backend's entry point)."""
    B, N, heads, d = q.shape
    n = N // area

    def chunks(t):  # (B, N, h, d) -> (B*area, h, n, d)
        return t.reshape(B * area, n, heads, d).transpose(1, 2)

    qa, ka, va = chunks(q), chunks(k), chunks(v)
    attn = (qa @ ka.transpose(-2, -1)) * scale
    out = attn.softmax(dim=-1) @ va  # (B*area, h, n, d)
    return out.transpose(1, 2).reshape(B, N, heads, d)


def split_qkv(qkv: torch.Tensor, num_heads: int):
    """Views q, k, v of shape (B, N, heads, head_dim) on the model-layout ``qkv`` (B, 3C, H, W)."""
    check_model_qkv(qkv, num_heads)
    return _split_qkv(qkv, num_heads)


def _split_qkv(qkv: torch.Tensor, num_heads: int):
    B, C3, H, W = qkv.shape
    d = C3 // 3 // num_heads
    # (B, heads, 3, d, N) -> three (B, N, heads, d) strided views, no copies
    t = qkv.reshape(B, num_heads, 3, d, H * W).permute(2, 0, 4, 1, 3)
    return t[0], t[1], t[2]


def _to_nchw(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, N, heads, d) -> (B, heads*d, H, W) with channel h*d + j (a view)."""
    B, N, heads, d = x.shape
    return x.reshape(B, H, W, heads * d).permute(0, 3, 1, 2)


def attention_plus_pe(qkv: torch.Tensor, num_heads: int, attention, pe) -> torch.Tensor:
    """AAttn's core written once, for any attention and any position perceiver:
    split ``qkv`` (B, 3C, H, W) into q, k, v -> ``attention(q, k, v)`` on (B, N, heads, d) ->
    back to (B, C, H, W) -> ``+ pe(v)`` with v as (B, C, H, W) (a strided view).

    The reference, SDPA and flash-attn backends differ only in ``attention``; AAttn with a
    training-mode BN in pe passes its pe module as ``pe``. Inputs are not validated here.
    """
    H, W = qkv.shape[-2:]
    q, k, v = _split_qkv(qkv, num_heads)
    # pe's output first: the sum takes its memory format, which is qkv's (the conv keeps its
    # input's); the attention output, seen as (B, C, H, W), is channels-last whatever qkv is
    return pe(_to_nchw(v, H, W)) + _to_nchw(attention(q, k, v), H, W)


def position_perceiver(v: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
    """The position perceiver pe(v): a depthwise k x k conv (7x7 in YOLOv12), stride 1, 'same'
    zero padding, one filter per channel. ``weight`` is (C, 1, k, k), ``bias`` (C,) or None
    (with BN folded into weight/bias, this is the whole Conv+BN of the model)."""
    check_tensor(v, "v", ndim=4)
    check_pe_params(v.shape[1], weight, bias, device=v.device)
    return _position_perceiver(v, weight, bias)


def _position_perceiver(v, weight, bias=None) -> torch.Tensor:
    # weights in v's dtype, as autocast would cast them (the kernels take any float weights)
    k = weight.shape[-1]
    bias = bias.to(v.dtype) if bias is not None else None
    return F.conv2d(v, weight.to(v.dtype), bias, stride=1, padding=k // 2, groups=v.shape[1])


def fused_area_attention(qkv: torch.Tensor, num_heads: int, area: int, pe_weight: torch.Tensor,
                         pe_bias: torch.Tensor | None = None,
                         scale: float | None = None) -> torch.Tensor:
    """The attention core of AAttn: area attention of qkv plus pe(v), both (B, C, H, W).

    This is everything between the qkv conv and the proj conv of the public model:
    ``x = attn(qkv); v = v as (B, C, H, W); return x + pe(v)``.
    """
    B, C, H, W, d = check_model_qkv(qkv, num_heads)
    check_area(area, H * W)
    check_pe_params(C, pe_weight, pe_bias, name="pe_weight", bias_name="pe_bias",
                    device=qkv.device)
    return _fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias,
                                 d ** -0.5 if scale is None else scale)


def _fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale) -> torch.Tensor:
    return attention_plus_pe(qkv, num_heads,
                             lambda q, k, v: _area_attention(q, k, v, area, scale),
                             lambda v: _position_perceiver(v, pe_weight, pe_bias))


def conv_bn_params(conv: nn.Conv2d, bn: nn.BatchNorm2d | None):
    """(weight, bias) of ``bn(conv(x))`` as one conv, computed in autograd (gradients reach conv and
    bn parameters), for ops that take the folded weights directly (the position perceiver).

    ``bn=None`` (already folded) gives the conv's own; a BN in training mode gives None: batch
    statistics cannot be folded, so the caller must run the modules.
    """
    if bn is None:
        return conv.weight, conv.bias
    if bn.training or bn.running_var is None:
        return None
    factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * factor.view(-1, 1, 1, 1)
    b = bn.bias - bn.running_mean * factor
    if conv.bias is not None:
        b = b + conv.bias * factor
    return w, b


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d with bias equal to ``bn(conv(x))`` in eval mode (running statistics); a BN in
    training mode is refused (``ValueError``), since its output depends on the batch.

    Any groups / stride / padding / dilation / padding_mode; dtype and device of ``conv`` kept. The
    arithmetic runs in float64 so folding does not add rounding of its own.
    """
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"conv: expected nn.Conv2d, got {type(conv).__name__}")
    if not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(f"bn: expected nn.BatchNorm2d, got {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"bn: num_features={bn.num_features} does not match "
                         f"conv.out_channels={conv.out_channels}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn: has no running statistics (track_running_stats=False); cannot fold")
    if bn.training:
        # a training-mode BN normalises with each batch's statistics, which no fixed conv can
        # reproduce; folding its running statistics would silently change the outputs
        raise ValueError("bn: is in training mode (it normalises with batch statistics); folding "
                         "uses its running statistics, so call .eval() on the model first")
    w = conv.weight.double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    factor = gamma / torch.sqrt(var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device=conv.weight.device,
                      dtype=conv.weight.dtype)
    fused.weight.copy_((w * factor.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    fused.bias.copy_(((b - mean) * factor + beta).to(conv.weight.dtype))
    fused.weight.requires_grad_(conv.weight.requires_grad)
    return fused


def conv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                stride: int = 1, silu: bool = False, residual: torch.Tensor | None = None,
                gamma: torch.Tensor | None = None) -> torch.Tensor:
    """The model's Conv with BN folded (``weight``, ``bias``) and the fused kernels' epilogue.

    ``y = conv2d(x, weight, bias, stride, padding=k // 2)`` for x (B, Cin, H, W) and weight
    (Cout, Cin, k, k), k in (1, 3); then SiLU if ``silu``; then, with ``residual`` (B, Cout, HO, WO),
    ``residual + y`` — or ``residual + gamma * y`` with ``gamma`` (Cout,), A2C2f's layer scale.
    Logical NCHW in and out, any memory format; computed in the inputs' dtype.
    """
    check_conv_args(x, weight, bias, stride, silu, residual, gamma)
    y = F.conv2d(x, weight, bias, stride=stride, padding=weight.shape[-1] // 2)
    if silu:
        y = F.silu(y)
    if residual is not None:
        y = residual + (gamma.view(1, -1, 1, 1) * y if gamma is not None else y)
    return y


def depthwise_conv_bn_act(x: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None = None, stride: int = 1,
                          silu: bool = False) -> torch.Tensor:
    """The model's DWConv with BN folded: a depthwise k x k conv (one filter per channel, weight
    (C, 1, k, k), 'same' padding k // 2) + ``bias``, then SiLU if ``silu``. Logical NCHW."""
    check_dwconv_args(x, weight, bias, stride, silu)
    y = F.conv2d(x, weight, bias, stride=stride, padding=weight.shape[-1] // 2,
                 groups=x.shape[1])
    return F.silu(y) if silu else y


def mlp_residual(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None,
                 w2: torch.Tensor, b2: torch.Tensor | None,
                 residual: bool = True) -> torch.Tensor:
    """ABlock's MLP with BNs folded: ``x + conv1x1(silu(conv1x1(x, w1, b1)), w2, b2)`` (without
    the ``x +`` when ``residual=False``). w1 (hidden, C, 1, 1), w2 (C, hidden, 1, 1); the hidden
    activations are in x's dtype, as the model stores them. Logical NCHW."""
    check_mlp_args(x, w1, b1, w2, b2, residual)
    y = F.conv2d(F.silu(F.conv2d(x, w1, b1)), w2, b2)
    return x + y if residual else y


def box_decode(feats: torch.Tensor, level_shapes, strides, reg_max: int = 16) -> torch.Tensor:
    """The Detect head's eval-mode decode on the levels' outputs concatenated along anchors.

    feats (B, 4 * reg_max + nc, A): per anchor (level by level, row-major inside a level) 4 sides
    x reg_max bin logits, then nc class logits. Returns (B, 4 + nc, A): xywh boxes in input pixels
    — each side is the softmax-expected bin (DFL), measured from the anchor's cell centre, times
    the level's stride — then sigmoid class scores. Computed in feats' dtype.
    """
    nc, A = check_box_decode_args(feats, level_shapes, strides, reg_max)
    B = feats.shape[0]
    centres, scale = [], []
    for (h, w), s in zip(level_shapes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, dtype=feats.dtype, device=feats.device) + 0.5,
                                torch.arange(w, dtype=feats.dtype, device=feats.device) + 0.5,
                                indexing="ij")
        centres.append(torch.stack((xs.reshape(-1), ys.reshape(-1))))
        scale.append(torch.full((h * w,), float(s), dtype=feats.dtype, device=feats.device))
    centre, stride = torch.cat(centres, 1), torch.cat(scale)  # (2, A), (A,)
    box, cls = feats.split((4 * reg_max, nc), 1)
    prob = box.reshape(B, 4, reg_max, A).softmax(2)
    bins = torch.arange(reg_max, dtype=feats.dtype, device=feats.device).view(1, 1, reg_max, 1)
    dist = (prob * bins).sum(2)  # (B, 4, A): left, top, right, bottom
    x1y1, x2y2 = centre - dist[:, :2], centre + dist[:, 2:]
    xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * stride
    return torch.cat((xywh, cls.sigmoid()), 1)
