"""YOLOv12-turbo: the configuration of the official repository's default checkpoints.

The official repository (github.com/sunsmarterjie/yolov12) publishes two model families. Its
README's first table, "Turbo (default version)", released 2025-03-09 with the weights of the
``turbo`` release (``releases/download/turbo/yolov12{n,s,m,l,x}.pt``), is what its main branch
builds; its second table, v1.0, is the paper's configuration, which ultralytics ships as YOLO12
(``YOLOv12(scale)`` here). Read from its ``ultralytics/cfg/models/v12/yolov12.yaml`` (header "CFG
file for YOLOv12-turbo"), ``ultralytics/nn/modules/block.py`` (``AAttn``, ``ABlock``, ``A2C2f``) and
``ultralytics/nn/tasks.py`` (``parse_model``), turbo differs from YOLO12 in exactly four places:

1. layer 1 (P2/4) is a 3x3 stride-2 conv with 2 groups, layer 3 (P3/8) one with 4 groups
   (``Conv, [128, 3, 2, 1, 2]`` and ``Conv, [256, 3, 2, 1, 4]`` in its YAML);
2. attention computes q and k with one 1x1 Conv+BN (``attn.qk``, 2C channels: all of q, then all
   of k, head h at channels h*d..h*d+d-1 of each) and v with another (``attn.v``, C channels),
   where YOLO12 has one ``attn.qkv`` conv whose channels interleave [q | k | v] per head;
3. the position perceiver ``attn.pe`` is a 5x5 depthwise Conv+BN on v (7x7 in YOLO12);
4. scales l and x use an MLP ratio of 1.5 in the attention blocks (1.2 in YOLO12).

Everything else (widths, depths, areas, the R-ELAN residual of l/x, the Detect head) is YOLO12's.
The resulting parameter counts are those its YAML prints (``PARAMS``); its README's are those of
the deployed model (BN folded), to 0.1 M, and its GFLOPs those of the convolutions at 640.

How it runs here: ``YOLOv12(scale, variant="turbo")`` builds YOLO12's layers and ``convert`` changes
those four things. Attention keeps the fused ``qkv`` conv: q, k and v are 1x1 convs of the same
input, so the official ``qk`` and ``v`` convs are *one* conv whose output channels are permuted
(``qkv_from_qk_v`` does it to the weights and BN statistics when a checkpoint is loaded; it is
exact, no arithmetic). Every attention backend, fused kernels included, then runs turbo through
``yolov12_kernels.fused_area_attention`` like YOLO12, with a 5x5 ``pe_weight``.

The official attention, for the record (the reference the tests check against step by step): with
``qk = qk_conv(x)``, ``v = v_conv(x)`` as (B, N, 2C) and (B, N, C) token-major tensors and N = H*W
tokens in row-major order, the N tokens are split into ``area`` equal contiguous stripes; in each,
per head h, ``softmax(q_h k_h^T / sqrt(d)) v_h``; the result is laid back to (B, C, H, W), plus
``pe(v)`` computed on v in (B, C, H, W), then the ``proj`` Conv+BN.
"""
from __future__ import annotations

import torch
from torch import nn

from .modules import ABlock, Conv

# The turbo table of the official README (T4 TensorRT10 FP16, 640): printed beside our figures.
README = {
    "n": {"mAP": 40.4, "t4_ms": 1.60, "params_M": 2.5, "gflops": 6.0},
    "s": {"mAP": 47.6, "t4_ms": 2.42, "params_M": 9.1, "gflops": 19.4},
    "m": {"mAP": 52.5, "t4_ms": 4.27, "params_M": 19.6, "gflops": 59.8},
    "l": {"mAP": 53.8, "t4_ms": 5.83, "params_M": 26.5, "gflops": 82.4},
    "x": {"mAP": 55.4, "t4_ms": 10.38, "params_M": 59.3, "gflops": 184.6},
}
# Exact parameter counts (DFL's fixed 16 weights included), from the summaries in its YAML.
PARAMS = {"n": 2_553_904, "s": 9_127_424, "m": 19_670_784, "l": 26_506_496, "x": 59_414_176}

GROUPS = {1: 2, 3: 4}   # layer index -> groups of its 3x3 stride-2 conv
PE_KERNEL = 5
MLP_RATIO_LX = 1.5
HEAD_DIM = 32           # A2C2f gives every attention block dim // 32 heads, turbo as YOLO12


def _replace_conv(old: Conv, k: int, s: int, g: int) -> Conv:
    c2, c1 = old.conv.out_channels, old.conv.in_channels
    return Conv(c1, c2, k, s, None, g=g, act=not isinstance(old.act, nn.Identity))


def convert(model) -> None:
    """Turn a freshly built YOLO12 ``model`` into the turbo configuration, in place (the four
    changes of the module docstring). Called by ``YOLOv12(..., variant="turbo")`` before the
    model's BN settings and head biases are applied."""
    for i, groups in GROUPS.items():
        model.model[i] = _replace_conv(model.model[i], 3, 2, groups)
    for block in model.modules():
        if not isinstance(block, ABlock):
            continue
        attn = block.attn
        c = attn.num_heads * attn.head_dim
        attn.pe = Conv(c, c, PE_KERNEL, 1, PE_KERNEL // 2, g=c, act=False)
        if model.scale in ("l", "x"):
            dim = block.mlp[0].conv.in_channels
            hidden = int(dim * MLP_RATIO_LX)
            block.mlp = nn.Sequential(Conv(dim, hidden, 1), Conv(hidden, dim, 1, act=False))
        block.apply(ABlock._init_weights)  # the new convs get the block's init


def qkv_permutation(channels: int, head_dim: int = HEAD_DIM) -> torch.Tensor:
    """Index ``idx`` such that ``qkv = cat([qk, v])[idx]`` along channels: row ``h*3d + p*d + j``
    of the fused conv (part p = q, k, v of head h) is row ``p*C + h*d + j`` of the official pair."""
    if channels % head_dim:
        raise ValueError(f"channels: {channels} is not a multiple of head_dim {head_dim}")
    heads = channels // head_dim
    h, p, j = torch.meshgrid(torch.arange(heads), torch.arange(3), torch.arange(head_dim),
                             indexing="ij")
    return (p * channels + h * head_dim + j).reshape(-1)


def qkv_from_qk_v(sd: dict) -> dict:
    """A state dict in the official turbo layout (``attn.qk.*``, ``attn.v.*``) with each attention
    block's pair of convs merged into our fused ``attn.qkv.*`` (conv weight and bias, BN weight,
    bias and running statistics permuted alike; BN's step counter taken from ``qk``). Exact: the
    tensors are only reordered. Other keys pass unchanged."""
    out = {}
    prefixes = sorted({k[: k.index(".attn.qk.") + len(".attn.")] for k in sd if ".attn.qk." in k})
    for k, v in sd.items():
        if not any(k.startswith(p + "qk.") or k.startswith(p + "v.") for p in prefixes):
            out[k] = v
    for p in prefixes:
        qk_keys = {k[len(p) + 3:] for k in sd if k.startswith(p + "qk.")}
        v_keys = {k[len(p) + 2:] for k in sd if k.startswith(p + "v.")}
        if qk_keys != v_keys:
            raise ValueError(f"state dict: {p}qk.* and {p}v.* hold different tensors "
                             f"({sorted(qk_keys ^ v_keys)})")
        channels = sd[p + "v.conv.weight"].shape[0]
        idx = qkv_permutation(channels)
        for name in sorted(qk_keys):
            a, b = sd[p + "qk." + name], sd[p + "v." + name]
            if a.dim() == 0:  # num_batches_tracked
                out[p + "qkv." + name] = a
                continue
            if a.shape[0] != 2 * channels or b.shape[0] != channels or a.shape[1:] != b.shape[1:]:
                raise ValueError(f"state dict: {p}qk.{name} {tuple(a.shape)} and {p}v.{name} "
                                 f"{tuple(b.shape)} are not a (2C, ...) / (C, ...) pair")
            out[p + "qkv." + name] = torch.cat([a, b])[idx]
    return out

