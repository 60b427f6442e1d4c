"""A small YOLOv12 for the tests of the fast path's machinery (plans, graphs, autograd modes,
weights loaded, the GPU's choices on the CPU), where the network's size is not the point.

YOLOv12's own modules in a short network: four stride-2 convs to P4, an A2C2f with 4-area
attention at P4 (two ABlocks: the attention core with its 7x7 pe, the fused MLP pair), a
stride-2 conv to P5, a nearest upsample into a concat (a PyTorch step of a plan), a 1x1 conv,
and a Detect head at P4 (its box and class branches, depthwise convs, the float32 box decode).
25 launches per forward where YOLOv12-N has 115: Triton's interpreter runs it in a sixth of the
time (~1.4 s at 64x64 on one core), for the same fast-path code.
"""
from __future__ import annotations

import torch
from torch import nn

from _utils import randomize_bn
from yolov12.model import YOLOv12
from yolov12.modules import A2C2f, Concat, Conv, Detect

SIDE = 64  # P4 4x4: 16 tokens in 4 areas of 4; P5 2x2


def tiny_yolo(seed: int = 0, nc: int = 2) -> YOLOv12:
    """The network above with random weights of ``seed``: random BN statistics (a wrong fold
    shows) and class biases at 0 (probabilities where the sigmoid is steep)."""
    torch.manual_seed(seed)
    model = YOLOv12("n", nc=nc)
    layers = [Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), Conv(32, 64, 3, 2), Conv(64, 64, 3, 2),
              A2C2f(64, 64, 1, True, 4),                  # 4: P4, area attention
              Conv(64, 64, 3, 2),                         # 5: P5
              nn.Upsample(None, 2, "nearest"),            # 6
              Concat(1),                                  # 7: [6, 4]
              Conv(128, 64, 1, 1),                        # 8
              Detect(nc, (64,), (16,))]                   # 9: P4
    froms = [-1, -1, -1, -1, -1, -1, -1, [-1, 4], -1, [8]]
    model.model, model._froms = nn.Sequential(*layers), froms
    model._save = {x for f in froms if isinstance(f, list) for x in f if x != -1}
    model.stride = torch.tensor([16.0])
    model.model[-1].bias_init()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    model = randomize_bn(model).eval()
    with torch.no_grad():
        for seq in model.model[-1].cv3:
            seq[-1].bias.zero_()
    return model


def images(seed: int, n: int = 1, batch: int = 1, side: int = SIDE) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, side, side, generator=g) for _ in range(n)]
