"""The fused box decode (DFL + anchors + strides + sigmoid) against ``reference.box_decode``, and
the reference against the model's own ``Detect.decode``. Interpreted on a CPU (float32/float16
inputs; the output is float32)."""
import pytest
import torch

from _utils import assert_close_to_reference

pytest.importorskip("triton")

from yolov12_kernels import reference  # noqa: E402
from yolov12_kernels._conv_checks import unsupported  # noqa: E402
from yolov12_kernels.box_decode import box_decode  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
pytestmark = pytest.mark.skipif(unsupported(torch.device(DEVICE), torch.float32) is not None,
                                reason="the Triton kernels cannot run here")
STRIDES = (8.0, 16.0, 32.0)
# level shapes: three odd levels (several anchor blocks), two levels, one
LEVELS = {"3-levels": [(10, 9), (5, 5), (3, 2)], "2-levels": [(4, 7), (2, 4)], "1-level": [(5, 3)]}


def _feats(B, nc, shapes, dtype, layout="anchors-last", reg_max=16):
    A = sum(h * w for h, w in shapes)
    logits = (torch.randn(B, A, 4 * reg_max + nc, dtype=torch.float64) * 3).to(DEVICE, dtype)
    if layout == "anchors-last":  # (B, A, no) rows, as the head convs write them
        return logits.permute(0, 2, 1)
    return logits.permute(0, 2, 1).contiguous()  # (B, no, A)


def test_reference_is_the_models_decode():
    from yolov12.modules import Detect
    head = Detect(nc=7, ch=(16, 32, 64)).eval().double()
    shapes = LEVELS["3-levels"]
    maps = [torch.randn(2, 64 + 7, h, w, dtype=torch.float64) * 3 for h, w in shapes]
    x_cat = torch.cat([m.reshape(2, 64 + 7, -1) for m in maps], 2)
    torch.testing.assert_close(reference.box_decode(x_cat, shapes, head.stride),
                               head.decode(maps), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("layout", ["anchors-last", "channels-last"])
@pytest.mark.parametrize("nc", [5, 80])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("levels", list(LEVELS))
def test_matches_reference(levels, dtype, nc, layout):
    shapes = LEVELS[levels]
    feats = _feats(2, nc, shapes, dtype, layout)
    strides = STRIDES[:len(shapes)]
    with torch.no_grad():
        out = box_decode(feats, shapes, strides)
    assert out.dtype == torch.float32
    hi = reference.box_decode(feats.double(), shapes, strides)
    lo = reference.box_decode(feats.float(), shapes, strides)  # the yardstick: float32 math
    assert_close_to_reference(out, hi, lo, name=levels)


@pytest.mark.parametrize("change, exc, name", [
    (lambda a: a.update(feats=a["feats"].double()), ValueError, "feats"),
    (lambda a: a.update(feats=a["feats"][0]), ValueError, "feats"),
    (lambda a: a.update(feats=a["feats"][:, :64]), ValueError, "feats"),
    (lambda a: a.update(feats=a["feats"][..., :-1]), ValueError, "feats"),
    (lambda a: a.update(level_shapes=[(5, 3), (2, 2), (1, 1), (1, 1)]), ValueError,
     "level_shapes"),
    (lambda a: a.update(level_shapes=[(5, 0)]), ValueError, "level_shapes"),
    (lambda a: a.update(strides=(8.0, 16.0)), ValueError, "strides"),
    (lambda a: a.update(strides=(-8.0,)), ValueError, "strides"),
    (lambda a: a.update(reg_max=12), ValueError, "reg_max"),
    (lambda a: a.update(reg_max=0), ValueError, "reg_max"),
])
def test_bad_arguments_name_the_argument(change, exc, name):
    args = dict(feats=_feats(1, 3, LEVELS["1-level"], torch.float32), level_shapes=[(5, 3)],
                strides=(8.0,))
    change(args)
    with pytest.raises(exc, match=f"^{name}:"), torch.no_grad():
        box_decode(**args)


def test_opcheck():
    feats = _feats(2, 5, LEVELS["2-levels"], torch.float32)
    torch.library.opcheck(torch.ops.yolov12.box_decode.default,
                          (feats, [4, 7, 2, 4], [8.0, 16.0], 16))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (the 640 x 640 anchor count)")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_yolov12_640(dtype):
    shapes = [(80, 80), (40, 40), (20, 20)]
    for B in (1, 32):
        feats = _feats(B, 80, shapes, dtype)
        with torch.no_grad():
            out = box_decode(feats, shapes, STRIDES)
        assert_close_to_reference(out, reference.box_decode(feats.double(), shapes, STRIDES),
                                  reference.box_decode(feats.float(), shapes, STRIDES))


def test_detect_head_through_the_fused_ops():
    """docs/fusion.md's Detect plan, end to end: each level's convs write their columns of one
    (B, anchors, 4*16 + nc) buffer through out= views, box_decode reads it; equals the model's
    Detect in eval mode (BN folded), float32."""
    import copy

    from _utils import randomize_bn
    from yolov12.modules import Conv, Detect
    from yolov12_kernels.conv import fused_conv2d
    from yolov12_kernels.dwconv import fused_depthwise_conv2d
    torch.manual_seed(0)
    head = randomize_bn(Detect(nc=5, ch=(32, 64, 64))).eval()
    for m in head.modules():
        if isinstance(m, Conv):
            m.fuse()
    head = head.to(DEVICE)
    shapes = [(6, 5), (3, 3), (2, 2)]
    feats = [_cl4(torch.randn(1, c, h, w, device=DEVICE)) for c, (h, w) in zip((32, 64, 64), shapes)]
    with torch.no_grad():
        expected = head(feats)  # float32, the yardstick
        truth = copy.deepcopy(head).double()([f.double() for f in feats])
        A, no = sum(h * w for h, w in shapes), head.no
        D = torch.full((1, A, no), float("nan"), device=DEVICE)
        a0 = 0
        for i, (h, w) in enumerate(shapes):
            view = D[:, a0:a0 + h * w].unflatten(1, (h, w)).permute(0, 3, 1, 2)
            a0 += h * w
            x = feats[i]
            for m in head.cv2[i][:2]:
                x = fused_conv2d(x, m.conv.weight, m.conv.bias, silu=True)
            last = head.cv2[i][2]
            fused_conv2d(x, last.weight, last.bias, out=view[:, :64])
            x = feats[i]
            for dw, pw in head.cv3[i][:2]:
                x = fused_depthwise_conv2d(x, dw.conv.weight, dw.conv.bias, silu=True)
                x = fused_conv2d(x, pw.conv.weight, pw.conv.bias, silu=True)
            last = head.cv3[i][2]
            fused_conv2d(x, last.weight, last.bias, out=view[:, 64:])
        out = box_decode(D.permute(0, 2, 1), shapes, head.stride)
    assert_close_to_reference(out, truth, expected)


def _cl4(t):
    return t.contiguous(memory_format=torch.channels_last)
