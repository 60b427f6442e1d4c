"""A randomly initialised YOLOv12 whose outputs actually depend on its input.

Fresh-init weights shrink the signal layer by layer and eval-mode BN (running var 1) does not
restore it: at 64x96 the output moves by ~1e-7 between two random images, so an "outputs equal"
test would pass for almost any bug. Calibrating each BN's running statistics on random batches
makes every layer's eval-mode activations unit-scale, and the outputs input-sensitive.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def lively(model: nn.Module, shape=(4, 3, 64, 96), batches: int = 2) -> nn.Module:
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(batches):
        model(torch.rand(shape))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


@torch.no_grad()
def detecting(model: nn.Module) -> nn.Module:
    """``lively(model)`` that also *detects*: Detect's bias init puts every class probability near
    1e-4 and lively's unit-scale box logits make near-uniform DFL distributions (boxes of ~8
    strides, clipped to the whole image). Raised class biases and box-bin biases that fall with
    the distance give scores up to ~0.7 and boxes a fraction of the image, so a wrong box mapping
    is not hidden by clipping."""
    model = lively(model)
    head = model.model[-1]
    for branch in head.cv3:
        branch[-1].bias.add_(8.0)
    for branch in head.cv2:
        bins = branch[-1].bias.view(4, -1)
        bins.sub_(0.7 * torch.arange(bins.shape[1], dtype=bins.dtype))
    return model
