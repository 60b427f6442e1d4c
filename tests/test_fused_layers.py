"""The fused forward of YOLOv12-N against the float64 model layer by layer, with features that vary
over the image (issue 17; tests/_layers.py says how and why).

The final-output checks of test_fused_forward.py run random-init weights, whose deep features are
nearly constant in space: a tiled upsample moved their output by 5e-5 px and passed. Here every
layer's output (a concat part as its slice of the concat's buffer, read after the whole forward,
so a later write into the wrong slice shows) is compared with the float64 model's, each within 2x
the framework's own error in the same dtype, buffers NaN-poisoned; the image is 64x96 (an odd
aspect ratio: a swapped H/W stride changes the result; P4 is 4x6, 24 tokens in 4 areas), and a
test measures that every layer's output does vary over it.
"""
from __future__ import annotations

import pytest
import torch

from _layers import (
    assert_layers_close,
    reference_layer_outputs,
    spatial_variation,
    spread_features,
    structured_image,
)
from _utils import randomize_bn
from yolov12.fast import fused_convs_unsupported, optimize
from yolov12.model import YOLOv12
from yolov12.modules import Concat

H, W = 64, 96
# every layer's output keeps at least this share varying over the image (measured: 0.2 to 0.76
# for the maps, 0.15 for the head's class scores; random init: 0.005 to 0.01 past P3)
MIN_VARIATION_MAPS, MIN_VARIATION_SCORES = 0.1, 0.05

interpreted = pytest.mark.skipif(fused_convs_unsupported(torch.device("cpu"), torch.float32)
                                 is not None, reason="the fused conv kernels do not run on this "
                                                     "CPU (TRITON_INTERPRET=1 unset)")


@pytest.fixture(scope="module")
def spread_n():
    """(YOLOv12-N with spread features, the structured image (2 images), the float64 layer
    outputs). Seeded here: a module fixture must not take whatever RNG state a test left."""
    with torch.random.fork_rng():
        torch.manual_seed(17)
        x = structured_image(2, H, W)
        model = spread_features(YOLOv12("n"), x)
    return model, x, reference_layer_outputs(model, x, torch.float64)


def test_every_layer_varies_over_the_image(spread_n):
    """The property the layer-by-layer checks rest on, measured so it cannot silently decay; the
    random-init model (what the older tests use) does not have it."""
    model, x, truth = spread_n
    for i, t in enumerate(truth):
        floor = MIN_VARIATION_SCORES if t.dim() == 3 else MIN_VARIATION_MAPS
        v = spatial_variation(t)
        assert v > floor, (f"layer {i} ({type(model.model[i]).__name__}): only {v:.3g} of its "
                           f"output varies over the image (floor {floor})")
    with torch.random.fork_rng():
        torch.manual_seed(17)
        plain = randomize_bn(YOLOv12("n")).eval()
    deep = reference_layer_outputs(plain, x, torch.float64)[6:21]
    assert min(spatial_variation(t) for t in deep) < 0.02


def assert_parts_in_their_slices(fused, model, outs, truth) -> None:
    """Every concat part was written by its producer into the concat's buffer, at the offset the
    reference's channel counts give (the plan, and the tensors the forward produced)."""
    for i, (layer, f) in enumerate(zip(model.model, model._froms)):
        if not isinstance(layer, Concat):
            continue
        off = 0
        for s in [i - 1 if j == -1 else j for j in f]:
            width = truth[s].shape[1]
            assert fused.cat_parts[s] == (i, off, width), (i, s, fused.cat_parts[s], off)
            part, slot = outs[s], outs[i][:, off:off + width]
            assert (part.data_ptr(), part.stride()) == (slot.data_ptr(), slot.stride()), \
                f"layer {s} is not its slice [{off}:{off + width}] of concat {i}'s buffer"
            off += width
        assert off == truth[i].shape[1]


@interpreted
@pytest.mark.parametrize("dtype,batch", [(torch.float32, 2), (torch.float16, 1)])
def test_fused_forward_layer_by_layer(spread_n, dtype, batch):
    model, x, truth = spread_n
    x, truth = x[:batch], [t[:batch] for t in truth]
    framework = reference_layer_outputs(model, x, dtype)
    fast = optimize(model, "cpu", dtype, fused_convs=True)
    fast._fused.poison = True
    outs: list = []
    with torch.inference_mode():
        fast._fused(x.to(dtype).contiguous(memory_format=torch.channels_last), layer_outputs=outs)
    assert_layers_close(outs, truth, framework, W,
                        names=[type(m).__name__ for m in model.model])
    assert_parts_in_their_slices(fast._fused, model, outs, truth)


@interpreted
def test_plan_replay_layer_by_layer(spread_n):
    """The launch plan the fast model replays (yolov12/plan.py), layer by layer against the
    float64 model: built on another image (the mirrored one), every buffer then NaN-poisoned, and
    replayed on this one — a step the recording missed would leave a layer stale or NaN."""
    model, x, truth = spread_n
    from yolov12.plan import LaunchPlan
    dtype = torch.float32
    x, truth = x[:1], [t[:1] for t in truth]
    framework = reference_layer_outputs(model, x, dtype)
    fast = optimize(model, "cpu", dtype, fused_convs=True)
    image = x.to(dtype).contiguous(memory_format=torch.channels_last)
    plan = LaunchPlan(fast._fused, image.flip(-1), fast.device, dtype, fast.memory_format)
    plan.poison()
    plan.replay(image)
    assert_layers_close(plan.layer_outputs, truth, framework, W,
                        names=[type(m).__name__ for m in model.model])
    assert_parts_in_their_slices(fast._fused, model, plan.layer_outputs, truth)
