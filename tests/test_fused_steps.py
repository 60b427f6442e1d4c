"""Every data-movement step of the fused forward (``yolov12.fused.FusedForward``) on its own (issue
17): the upsample's strided copy, concat parts at their slices (planned ones written in place and
ones copied in), Detect's level rows and box/class column ranges, turbo's grouped convs, and the
slices C2f/C3k2, C3k and A2C2f read and write inside their own buffers.

Each step writes into a slice of a NaN-poisoned buffer (``FusedForward.poison``) and is compared
with PyTorch (exactly for copies; within 2x the framework's float32 error of float64 for convs),
on non-square maps (a swapped H/W stride changes the result) with inputs that vary over the map.
"""
from __future__ import annotations

import copy
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import yolov12.fused as fused_mod
from _layers import assert_layers_close, reference_layer_outputs, scale_batchnorms
from _utils import assert_close_to_reference
from yolov12.fast import fused_convs_unsupported, resolve_attention
from yolov12.fused import FusedForward
from yolov12.model import YOLOv12
from yolov12.modules import A2C2f, C3k2, Concat, Conv, Detect

CL = torch.channels_last
pytestmark = pytest.mark.skipif(
    fused_convs_unsupported(torch.device("cpu"), torch.float32) is not None,
    reason="the fused conv kernels do not run on this CPU (TRITON_INTERPRET=1 unset)")


class Net(nn.Module):
    """The least of a YOLOv12 the fused forward reads: layers, what each reads, what is kept; its
    ``run`` is YOLOv12's layer loop (the reference)."""

    run = YOLOv12.run
    set_attention_backend = YOLOv12.set_attention_backend

    def __init__(self, layers, froms):
        super().__init__()
        self.model = nn.Sequential(*layers)
        self._froms = froms
        self._save = {j for f in froms if isinstance(f, list) for j in f if j != -1}


def prepared(net: nn.Module, dtype=torch.float32) -> tuple[FusedForward, nn.Module]:
    """(the fused forward of a copy of ``net`` prepared as ``optimize`` does: eval, BN folded,
    cast, channels-last, attention resolved; buffers NaN-poisoned, that copy)."""
    net = copy.deepcopy(net).eval()
    for m in net.modules():
        if isinstance(m, Conv):
            m.fuse()
    net = net.to(dtype=dtype, memory_format=CL)
    resolve_attention(net, "auto", "cpu", dtype)
    net.requires_grad_(False)
    fused = FusedForward(net)
    fused.poison = True
    return fused, net


def varied(*shape, dtype=torch.float32) -> torch.Tensor:
    """A channels-last input that varies over the map: smooth ramps plus noise."""
    B, C, H, W = shape
    ramp = torch.linspace(-1, 1, H)[:, None] * torch.linspace(0.5, 1.5, W)[None, :]
    t = torch.randn(shape) + ramp * torch.randn(B, C, 1, 1) * 2
    return t.to(dtype).contiguous(memory_format=CL)


def assert_untouched(buf: torch.Tensor, lo: int, hi: int) -> None:
    """Nothing outside channels [lo, hi) of the poisoned ``buf`` was written."""
    assert buf[:, :lo].isnan().all() and buf[:, hi:].isnan().all(), "wrote outside its slice"


def poisoned_slice(fused, B, C, H, W, like, lo=5, extra=7):
    """A NaN buffer (B, lo + C + extra, H, W) and its channel slice [lo, lo + C)."""
    buf = fused.empty((B, lo + C + extra, H, W), like)
    return buf, buf[:, lo:lo + C]


# ---------------------------------------------------------------------------------------------
# the upsample: one strided copy
@pytest.mark.parametrize("H,W", [(3, 5), (4, 6), (1, 7), (2, 2)])
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_upsample_is_nearest_interpolation_into_its_slice(H, W, layout):
    fused, _ = prepared(Net([Conv(6, 6)], [-1]))  # a net with parameters; the upsample is alone
    up = nn.Upsample(None, 2, "nearest")
    x = varied(2, 6, H, W)
    if layout == "nchw":
        x = x.contiguous()
    want = F.interpolate(x, scale_factor=2, mode="nearest")
    buf, slot = poisoned_slice(fused, 2, 6, 2 * H, 2 * W, x)
    out = fused.upsample(up, x, slot)
    assert out.data_ptr() == slot.data_ptr()
    assert torch.equal(buf[:, 5:11], want)
    assert_untouched(buf, 5, 11)
    assert torch.equal(fused.upsample(up, x), want)  # its own buffer


# ---------------------------------------------------------------------------------------------
# concat parts at their slices
def concat_net() -> Net:
    """Layer 0 feeds two concats (written in place into the first, copied into the second), layer
    1 too; concat 4 has three parts, planned and copied ones mixed, on a 6x10 map."""
    layers = [Conv(3, 8, 3, 2), Conv(8, 16, 3, 1), Concat(1), Conv(24, 8, 1), Concat(1),
              Conv(32, 8, 1)]
    return Net(layers, [-1, -1, [1, 0], -1, [0, 3, 1], -1])


def test_concat_parts_at_their_slices():
    net = concat_net()
    x = varied(2, 3, 12, 20)
    scale_batchnorms(net, lambda n: n.run(x.double()))
    fused, _ = prepared(net)
    # the plan, from the channel counts alone: part -> (concat, offset, width); a part already
    # in an earlier concat is copied into the later one
    assert fused.cat_parts == {1: (2, 0, 16), 0: (2, 16, 8), 3: (4, 8, 8)}
    assert fused.cat_width == {2: 24, 4: 32}
    outs: list = []
    with torch.inference_mode():
        fused(x, layer_outputs=outs)
    truth = reference_layer_outputs(net, x, torch.float64)
    framework = reference_layer_outputs(net, x, torch.float32)
    assert_layers_close(outs, truth, framework, 20)
    assert outs[1].data_ptr() == outs[2][:, 0:16].data_ptr()
    assert outs[0].data_ptr() == outs[2][:, 16:24].data_ptr()
    assert outs[3].data_ptr() == outs[4][:, 8:16].data_ptr()


# ---------------------------------------------------------------------------------------------
# Detect: every level's box and class maps at their rows and columns
def raw_maps(head: Detect, xs) -> list:
    """The head's per-level maps (its train-mode output) with its BNs still in eval mode."""
    head.training = True  # the head only, not its children
    try:
        return head(xs)
    finally:
        head.training = False


def test_detect_level_rows_and_column_ranges():
    """Levels 8x12, 4x6, 2x3 (non-square: a transposed level shows), nc = 5: the head's buffer
    (B, anchors, 4 * 16 + nc) against the reference's concatenated maps, row by row (level
    offsets) and column by column (boxes then classes), and the decoded output."""
    head = Detect(5, (16, 24, 32))
    xs = [varied(2, c, h, w) for c, (h, w) in zip((16, 24, 32), ((8, 12), (4, 6), (2, 3)))]
    scale_batchnorms(head, lambda m: raw_maps(m, [t.double() for t in xs]))
    fused, fast_head = prepared(Net([head], [-1]))
    fast_head = fast_head.model[0]
    with torch.inference_mode(), mock.patch.object(fused_mod, "box_decode",
                                                    wraps=fused_mod.box_decode) as decode:
        out = fused.detect(fast_head, xs)
    maps = decode.call_args.args[0]  # (B, 4 * 16 + nc, anchors), a view of the head's buffer

    def reference(dtype):
        m = copy.deepcopy(head).to(dtype)
        with torch.inference_mode():
            raw = torch.cat([lv.flatten(2) for lv in raw_maps(m, [t.to(dtype) for t in xs])], 2)
            return raw.double(), m([t.to(dtype) for t in xs]).double()
    (raw_hi, out_hi), (raw_lo, out_lo) = reference(torch.float64), reference(torch.float32)
    assert maps.shape == raw_hi.shape == (2, 64 + 5, 96 + 24 + 6)
    a0 = 0
    for h, w in ((8, 12), (4, 6), (2, 3)):
        rows = slice(a0, a0 + h * w)
        for cols, what in ((slice(0, 64), "boxes"), (slice(64, 69), "classes")):
            assert_close_to_reference(maps[:, cols, rows], raw_hi[:, cols, rows],
                                      raw_lo[:, cols, rows], name=f"level {h}x{w} {what}")
        a0 += h * w
    assert_close_to_reference(out[:, :4] / 96, out_hi[:, :4] / 96, out_lo[:, :4] / 96,
                              name="boxes / side")
    assert_close_to_reference(out[:, 4:], out_hi[:, 4:], out_lo[:, 4:], name="class scores")


# ---------------------------------------------------------------------------------------------
# turbo's grouped convs: one fused conv per group, each into its slice
@pytest.mark.parametrize("cin,cout,groups", [(8, 12, 2), (16, 32, 4)])
@pytest.mark.parametrize("into", ["slice", "own"])
def test_grouped_conv_per_group_into_its_slice(cin, cout, groups, into):
    conv = Conv(cin, cout, 3, 2, g=groups)
    src = varied(2, cin + 6, 7, 10)[:, 3:3 + cin]  # a channel slice, as C2f's blocks read
    scale_batchnorms(conv, lambda m: m(src.double()))
    fused, fast = prepared(Net([conv], [-1]))
    conv_fast = fast.model[0]
    assert conv_fast.fused.kind == "grouped" and len(conv_fast.fused.weight) == groups
    hi = copy.deepcopy(conv).double()(src.double())
    lo = conv(src)
    if into == "slice":
        buf, slot = poisoned_slice(fused, 2, cout, 4, 5, src)
        out = fused.conv(conv_fast, src, slot)
        assert out.data_ptr() == slot.data_ptr()
        assert_untouched(buf, 5, 5 + cout)
    else:
        out = fused.conv(conv_fast, src)
    assert_close_to_reference(out, hi, lo, name=f"grouped conv g={groups}")


# ---------------------------------------------------------------------------------------------
# the blocks' own buffers: C2f/C3k2 (Bottleneck and C3k blocks), A2C2f (attention and C3k
# stages, the gamma residual)
BLOCKS = {
    "C3k2 bottlenecks": lambda: C3k2(32, 48, 2, False, 0.5),
    "C3k2 with C3k": lambda: C3k2(32, 32, 1, True),
    "A2C2f attention, 4 areas": lambda: A2C2f(64, 64, 1, True, 4, False, 2.0),
    "A2C2f C3k stages": lambda: A2C2f(64, 64, 2, False, -1),
    "A2C2f gamma residual": lambda: A2C2f(64, 64, 1, True, 1, True, 1.2),
}


@pytest.mark.parametrize("name", list(BLOCKS), ids=list(BLOCKS))
def test_block_slices_into_a_concat_slice(name):
    block = BLOCKS[name]()
    x = varied(2, block.cv1.conv.in_channels, 6, 10)  # 60 tokens: 4 areas of 15
    net = Net([block], [-1])
    scale_batchnorms(net, lambda n: n.set_attention_backend("reference").run(x.double()))
    fused, fast = prepared(net)
    cout = block.cv2.conv.out_channels
    buf, slot = poisoned_slice(fused, 2, cout, 6, 10, x)
    with torch.inference_mode():
        out = fused.layer(fast.model[0], x, slot)
    assert out.data_ptr() == slot.data_ptr()
    assert_untouched(buf, 5, 5 + cout)
    truth = reference_layer_outputs(net, x, torch.float64)[0]
    framework = reference_layer_outputs(net, x, torch.float32)[0]
    assert_close_to_reference(out, truth, framework, name=name)
