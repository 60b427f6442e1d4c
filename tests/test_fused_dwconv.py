"""The fused depthwise conv op (Detect's DWConv: k x k per channel, bias, SiLU) against
``reference.depthwise_conv_bn_act``, in float64, with the tolerance rule of ``_utils``.
Interpreted on a CPU (float32/float16); bfloat16 on a GPU only."""
import pytest
import torch

from _utils import assert_close_to_reference

pytest.importorskip("triton")

from yolov12_kernels import reference  # noqa: E402
from yolov12_kernels._conv_checks import unsupported  # noqa: E402
from yolov12_kernels.conv_shapes import model_convs  # noqa: E402
from yolov12_kernels.dwconv import fused_depthwise_conv2d  # noqa: E402
from yolov12_kernels.triton import dwconv as D  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
pytestmark = pytest.mark.skipif(unsupported(torch.device(DEVICE), torch.float32) is not None,
                                reason="the Triton kernels cannot run here")

# (B, C, H, W, k, stride)
SHAPES = {"3x3": (2, 40, 9, 11, 3, 1), "3x3-s2-odd": (1, 80, 7, 5, 3, 2),
          "channel-tail": (1, 200, 6, 7, 3, 1), "7x7": (1, 24, 9, 9, 7, 1)}


def _rand(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).to(DEVICE, dtype)


def _cl(t):
    return t.contiguous(memory_format=torch.channels_last)


def _inputs(shape, dtype):
    B, C, H, W, k, s = SHAPES[shape]
    x = _cl(_rand(B, C, H, W, dtype=dtype))
    return x, _rand(C, 1, k, k, dtype=dtype, scale=1 / k), _rand(C, dtype=dtype, scale=0.5), s


def _expect(x, w, b, s, silu):
    hi = reference.depthwise_conv_bn_act(x.double(), w.double(), b.double(), s, silu)
    return hi, reference.depthwise_conv_bn_act(x, w, b, s, silu)


@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_matches_reference(shape, dtype, silu):
    x, w, b, s = _inputs(shape, dtype)
    with torch.no_grad():
        out = fused_depthwise_conv2d(x, w, b, s, silu=silu)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close_to_reference(out, *_expect(x, w, b, s, silu), name=shape)


@pytest.mark.parametrize("shape, config", [("3x3-s2-odd", D.Config(8, 8, 4)),
                                           ("channel-tail", D.Config(16, 32, 2))], ids=str)
def test_small_tiles(shape, config):
    """The tiles the GPU heuristic takes below one wave (batch-1 P5): 8-pixel, 8-channel blocks
    (no tl.dot here), channel tails."""
    x, w, b, s = _inputs(shape, torch.float32)
    with D.forced_config(config), torch.no_grad():
        out = fused_depthwise_conv2d(x, w, b, s, silu=True)
    assert_close_to_reference(out, *_expect(x, w, b, s, True), name=shape)


@pytest.mark.parametrize("layout", ["nchw", "slice"])
def test_strided_input_and_concat_slice_output(layout):
    x, w, b, s = _inputs("3x3-s2-odd", torch.float32)
    if layout == "nchw":
        xin = x.contiguous()
    else:
        buf = _cl(_rand(x.shape[0], x.shape[1] + 16, *x.shape[2:]))
        buf[:, 16:] = x
        xin = buf[:, 16:]
    ref = _expect(x, w, b, s, True)
    B, C, HO, WO = ref[0].shape
    out_buf = _cl(_rand(B, C + 24, HO, WO))
    out_buf[:, 8:8 + C] = float("nan")
    before = out_buf.clone()
    with torch.no_grad():
        fused_depthwise_conv2d(xin, w, b, s, silu=True, out=out_buf[:, 8:8 + C])
    assert_close_to_reference(out_buf[:, 8:8 + C], *ref)
    rest = torch.ones(C + 24, dtype=torch.bool)
    rest[8:8 + C] = False
    assert torch.equal(out_buf[:, rest], before[:, rest]), "wrote outside its slice"


def test_no_bias():
    x, w, _, s = _inputs("3x3", torch.float32)
    with torch.no_grad():
        out = fused_depthwise_conv2d(x, w, None, s)
    hi = reference.depthwise_conv_bn_act(x.double(), w.double(), None, s)
    assert_close_to_reference(out, hi, reference.depthwise_conv_bn_act(x, w, None, s))


@pytest.mark.parametrize("change, exc, name", [
    (lambda a: a.update(x=a["x"].double()), ValueError, "x"),
    (lambda a: a.update(weight=a["weight"][:8]), ValueError, "weight"),
    (lambda a: a.update(weight=_rand(40, 2, 3, 3)), ValueError, "weight"),
    (lambda a: a.update(weight=_rand(40, 1, 4, 4)), ValueError, "weight"),
    (lambda a: a.update(weight=a["weight"].half()), ValueError, "weight"),
    (lambda a: a.update(bias=a["bias"][:3]), ValueError, "bias"),
    (lambda a: a.update(stride=0), ValueError, "stride"),
    (lambda a: a.update(silu=1), TypeError, "silu"),
    (lambda a: a.update(out=a["x"]), ValueError, "out"),
    (lambda a: a.update(out=_rand(2, 40, 9, 10)), ValueError, "out"),
])
def test_bad_arguments_name_the_argument(change, exc, name):
    x, w, b, s = _inputs("3x3", torch.float32)
    args = dict(x=x, weight=w, bias=b)
    change(args)
    with pytest.raises(exc, match=f"^{name}:"), torch.no_grad():
        fused_depthwise_conv2d(**args)


def test_opcheck():
    x, w, b, s = _inputs("3x3-s2-odd", torch.float32)
    torch.library.opcheck(torch.ops.yolov12.dwconv2d_fused.default, (x, w, b, s, True))
    out = _cl(torch.empty(1, 80, 4, 3, device=DEVICE))
    torch.library.opcheck(torch.ops.yolov12.dwconv2d_fused_out.default, (x, w, None, s, False, out))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (bf16, the full layer table)")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_every_model_dwconv(dtype):
    for scale in ("n", "x"):
        for r in model_convs(scale):
            if not r.depthwise:
                continue
            x = _cl(_rand(1, r.cin, r.h, r.w, dtype=dtype))
            w, b = _rand(r.cin, 1, 3, 3, dtype=dtype, scale=1 / 3), _rand(r.cin, dtype=dtype)
            with torch.no_grad():
                out = fused_depthwise_conv2d(x, w, b, 1, silu=True)
            assert_close_to_reference(out, *_expect(x, w, b, 1, True), name=r.name)
