"""Layer-by-layer checks of a whole model against the float64 reference, with features that vary
over the image (issue 17).

With random-init weights YOLOv12's deep features are nearly constant in space (at P5 a spatial
deviation of ~0.008 against a magnitude of 0.78), so moving pixels around (a tiled upsample, a
transposed level in the head) moves the output by less than float32's own error. Here:

* ``structured_image``: gradients, a checkerboard and a disc, different per image of the batch —
  no symmetry a transposed or mirrored layout would preserve, and no noise;
* ``spread_features`` / ``scale_batchnorms``: random conv weights with every BatchNorm scaled on
  that image, one scale per layer: every conv's output is O(1) at every depth and keeps the
  spatial structure of its input;
* ``spatial_variation`` measures it (a test keeps it above a floor at every layer);
* ``reference_layer_outputs`` / ``assert_layers_close``: every layer's output of any forward
  (the fused forward's ``layer_outputs`` list, a plan replay's, ...) against the float64 model,
  each within ``factor`` times the framework's own error in the same dtype.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from _utils import assert_close_to_reference


def structured_image(batch: int, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    """(batch, 3, h, w) in [0, 1]: a horizontal gradient, an 8-pixel checkerboard and a disc over a
    vertical gradient; each further image is the pattern shifted and its channels rolled."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    images = []
    for b in range(batch):
        y, x = yy + 5 * b, xx + 11 * b
        grad = (x % w) / w
        checker = ((y // 8 + x // 8) % 2) * 0.8 + 0.1
        disc = (((y - 0.3 * h) ** 2 + (x - 0.62 * w) ** 2).sqrt() < 0.22 * h).double()
        blue = 0.6 * disc + 0.4 * (y % h) / h
        images.append(torch.stack((grad, checker, blue)).roll(b, 0))
    return torch.stack(images).to(dtype)


def scale_batchnorms(module: nn.Module, forward, seed: int = 0) -> nn.Module:
    """``module`` (in place, returned in eval mode, in its dtype) with its random conv weights kept
    and every BatchNorm scaled per layer: during one float64 run of ``forward(module)`` in eval
    mode, each BN, just before it runs (so it sees the BNs before it already set), gets running
    mean 0 and running variance the mean square of its whole input (one number per layer), and a
    random affine (weight in [0.5, 1.5], bias in [-0.5, 0.5]). Every conv's output is then O(1)
    at every depth and keeps the spatial structure its input had (``spatial_variation``: 0.2 to
    0.8 of every layer's output of YOLOv12-N varies over the image, against 0.005 to 0.01 past P3
    with the random init). A2C2f gammas random in [0.5, 1.5] (the 0.01 init would hide the block).

    Why one scale per layer and no mean subtraction: a per-channel scale amplifies a channel that
    is small by cancellation, and subtracting the mean amplifies one that barely varies over the
    image; both amplify rounding errors as much as the signal, and compounded over the depth
    float16 ended up wrong by 10 to 100x its outputs' magnitude at P5 (then "within 2x the
    framework's error" checks nothing). Here float16's error stays below 1% of the outputs."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]

    def calibrate(bn, inputs):
        bn.running_mean.zero_()
        bn.running_var.fill_(inputs[0].pow(2).mean().item())

    dtype = next(module.parameters()).dtype
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
        for name, p in module.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
        hooks = [m.register_forward_pre_hook(calibrate) for m in bns]
        module.double().eval()
        try:
            forward(module)
        finally:
            for h in hooks:
                h.remove()
        module.to(dtype)
    return module


def spread_features(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """A YOLOv12 ``model`` (in place, returned in eval mode) with its BatchNorms scaled on the
    image ``x`` (``scale_batchnorms``, the reference attention) and its class biases 0
    (probabilities where the sigmoid is steep)."""
    def run(net):
        net.set_attention_backend("reference")
        net.run(x.double())
        net.set_attention_backend("auto")
    scale_batchnorms(model, run, seed)
    with torch.no_grad():
        for seq in model.model[-1].cv3:
            seq[-1].bias.zero_()
    return model


def spatial_variation(t: torch.Tensor) -> float:
    """How much of ``t`` varies over the image: the RMS of its deviation from each (image, channel)
    spatial mean, over the RMS of ``t``. (B, C, H, W) maps over H, W; the head's (B, 4 + nc,
    anchors) output over the anchors, on the class scores (the boxes vary with the anchor
    position whatever the features)."""
    t = t.double()
    if t.dim() == 3:
        t = t[:, 4:]
    dims = tuple(range(2, t.dim()))
    dev = t - t.mean(dims, keepdim=True)
    return (dev.pow(2).mean().sqrt() / t.pow(2).mean().sqrt().clamp(min=1e-30)).item()


def reference_layer_outputs(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> list:
    """Every layer's output of ``model`` (unchanged) run in ``dtype`` with the reference attention,
    in layer order, as float64 copies: forward hooks on ``model.model[i]``, ``YOLOv12.run``
    itself."""
    net = copy.deepcopy(model).to(dtype).eval().set_attention_backend("reference")
    outs: list = []
    hooks = [layer.register_forward_hook(lambda mod, inp, out: outs.append(out.double()))
             for layer in net.model]
    try:
        with torch.inference_mode():
            net.run(x.to(dtype))
    finally:
        for h in hooks:
            h.remove()
    return outs


def assert_layers_close(outs: list, truth: list, framework: list, side: float,
                        factor: float = 2.0, names: list | None = None) -> None:
    """Layer i of ``outs`` (any forward's, any dtype and memory format) against ``truth[i]`` (the
    float64 model), within ``factor`` times the error ``framework[i]`` (the reference model in the
    same dtype) makes; no NaN. The head's output as boxes over the image side and class scores."""
    assert len(outs) == len(truth) == len(framework), (len(outs), len(truth), len(framework))
    for i, (out, hi, lo) in enumerate(zip(outs, truth, framework)):
        name = f"layer {i}" + (f" ({names[i]})" if names else "")
        if out.dim() == 3:  # the Detect head: (B, 4 + nc, anchors)
            assert_close_to_reference(out[:, :4] / side, hi[:, :4] / side, lo[:, :4] / side,
                                      factor, name=f"{name} boxes / side")
            assert_close_to_reference(out[:, 4:], hi[:, 4:], lo[:, 4:], factor,
                                      name=f"{name} class scores")
        else:
            assert_close_to_reference(out, hi, lo, factor, name=name)
