"""The fused ABlock MLP (1x1 + SiLU, 1x1 + residual, hidden kept on chip) against
``reference.mlp_residual``, in float64, with the tolerance rule of ``_utils``. Interpreted on a
CPU (float32/float16); bfloat16 and every YOLOv12 width on a GPU only."""
import pytest
import torch

from _utils import assert_close_to_reference

pytest.importorskip("triton")

from yolov12_kernels import reference  # noqa: E402
from yolov12_kernels._conv_checks import unsupported  # noqa: E402
from yolov12_kernels.conv_shapes import model_convs  # noqa: E402
from yolov12_kernels.mlp import fused_mlp  # noqa: E402
from yolov12_kernels.triton import mlp as Mk  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
pytestmark = pytest.mark.skipif(unsupported(torch.device(DEVICE), torch.float32) is not None,
                                reason="the Triton kernels cannot run here")

# (B, C, hidden, H, W): YOLOv12-N's P4 width (hidden 2x), odd widths with hidden tails (1.2x),
# C padded to a power of two with a reduction tail, several pixel blocks
SHAPES = {"n-P4": (1, 64, 128, 5, 7), "odd-1.2x": (2, 48, 57, 3, 5),
          "padded-C": (1, 96, 115, 9, 11)}


def _rand(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).to(DEVICE, dtype)


def _cl(t):
    return t.contiguous(memory_format=torch.channels_last)


def _inputs(shape, dtype):
    B, C, hid, H, W = SHAPES[shape]
    return (_cl(_rand(B, C, H, W, dtype=dtype)),
            _cl(_rand(hid, C, 1, 1, dtype=dtype, scale=C ** -0.5)), _rand(hid, dtype=dtype),
            _cl(_rand(C, hid, 1, 1, dtype=dtype, scale=hid ** -0.5)),
            _rand(C, dtype=dtype, scale=0.5))


def _expect(x, w1, b1, w2, b2, residual=True):
    hi = reference.mlp_residual(*(t.double() for t in (x, w1, b1, w2, b2)), residual)
    return hi, reference.mlp_residual(x, w1, b1, w2, b2, residual)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_matches_reference(shape, dtype, residual):
    args = _inputs(shape, dtype)
    with torch.no_grad():
        out = fused_mlp(*args, residual=residual)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close_to_reference(out, *_expect(*args, residual), name=shape)


@pytest.mark.parametrize("layout", ["nchw", "slice"])
def test_strided_input_into_a_concat_slice(layout):
    x, w1, b1, w2, b2 = _inputs("odd-1.2x", torch.float32)
    B, C, H, W = x.shape
    if layout == "nchw":
        xin = x.contiguous()
    else:
        buf = _cl(_rand(B, C + 16, H, W))
        buf[:, 16:] = x
        xin = buf[:, 16:]
    out_buf = _cl(_rand(B, 2 * C, H, W))
    out_buf[:, C:] = float("nan")
    before = out_buf.clone()
    with torch.no_grad():
        fused_mlp(xin, w1.contiguous(), b1, w2.contiguous(), b2, out=out_buf[:, C:])
    assert_close_to_reference(out_buf[:, C:], *_expect(x, w1, b1, w2, b2))
    assert torch.equal(out_buf[:, :C], before[:, :C]), "wrote outside its slice"


def test_packed_w2():
    """pack_w2: the same values, rows 16-element aligned, and the kernel reads it right."""
    from yolov12_kernels.triton.mlp import pack_w2
    x, w1, b1, w2, b2 = _inputs("odd-1.2x", torch.float32)
    packed = pack_w2(w2)
    assert packed.shape == w2.shape and torch.equal(packed, w2)
    assert packed.stride(0) % 16 == 0 and packed.stride(1) == 1
    with torch.no_grad():
        out = fused_mlp(x, w1, b1, packed, b2)
    assert_close_to_reference(out, *_expect(x, w1, b1, w2, b2))


def test_in_place():
    """out=x: each program reads only its own pixels before writing them."""
    x, w1, b1, w2, b2 = _inputs("padded-C", torch.float32)
    x0 = x.clone()
    with torch.no_grad():
        fused_mlp(x, w1, b1, w2, b2, out=x)
    assert_close_to_reference(x, *_expect(x0, w1, b1, w2, b2))


@pytest.mark.parametrize("where", ["new", "in-place", "concat-slice"])
@pytest.mark.parametrize("config", [
    Mk.Config(16, 16, 32, 4, 1, 3),          # hidden 57 in 4 blocks, split over 2 programs
    Mk.Config(32, 32, 16, 4, 1, 2),          # 2 blocks, 2 parts; K blocks of 16
    Mk.Config(32, 32, 64, 8, 1, 1, True),    # two GEMMs (the conv kernel), hidden in memory
], ids=str)
def test_gpu_configs_split_hidden_and_two_gemms(config, where):
    """The GPU configurations' other code paths (the interpreter's own never takes them): the
    hidden blocks split over programs with a fixed-order reduction (+ b2 + residual), and the
    pair as two conv launches; into a new tensor, in place, or into a NaN-poisoned slice."""
    x, w1, b1, w2, b2 = _inputs("odd-1.2x", torch.float32)
    w2 = Mk.pack_w2(w2)
    B, C, H, W = x.shape
    runs = Mk.launches(x, w1, b1, w2, b2, torch.empty_like(x), True, config=config)
    assert len(runs) == 2
    buf = _cl(_rand(B, C + 8, H, W))
    buf[:, 8:] = float("nan")
    before = buf.clone()
    x0 = x.clone()
    with Mk.forced_config(config), torch.no_grad():
        if where == "new":
            out = fused_mlp(x, w1, b1, w2, b2)
        elif where == "in-place":
            out = fused_mlp(x, w1, b1, w2, b2, out=x)
        else:
            out = fused_mlp(x, w1, b1, w2, b2, out=buf[:, 8:])
            assert torch.equal(buf[:, :8], before[:, :8]), "wrote outside its slice"
    assert_close_to_reference(out, *_expect(x0, w1, b1, w2, b2), name=where)


def _shifted_views(x):
    """x and out as two views of one buffer one pixel apart: they overlap, not identically."""
    B, C, H, W = x.shape
    buf = _cl(_rand(B, C, H, W + 1))
    return {"x": buf[..., :W], "out": buf[..., 1:]}


@pytest.mark.parametrize("change, exc, name", [
    (lambda a: a.update(x=a["x"].double()), ValueError, "x"),
    (lambda a: a.update(x=_rand(1, 520, 2, 2), w1=_rand(8, 520, 1, 1),
                        w2=_rand(520, 8, 1, 1), b1=None, b2=None), ValueError, "x"),
    (lambda a: a.update(w1=a["w1"][:, :8]), ValueError, "w1"),
    (lambda a: a.update(w1=_rand(128, 64, 3, 3)), ValueError, "w1"),
    (lambda a: a.update(w2=a["w2"][:8]), ValueError, "w2"),
    (lambda a: a.update(w2=a["w2"][:, :100]), ValueError, "w2"),
    (lambda a: a.update(b1=a["b1"][:3]), ValueError, "b1"),
    (lambda a: a.update(b2=a["b2"].half()), ValueError, "b2"),
    (lambda a: a.update(residual=None), TypeError, "residual"),
    (lambda a: a.update(out=a["x"][:, :, :4]), ValueError, "out"),
    (lambda a: a.update(**_shifted_views(a["x"])), ValueError, "out"),
])
def test_bad_arguments_name_the_argument(change, exc, name):
    x, w1, b1, w2, b2 = _inputs("n-P4", torch.float32)
    args = dict(x=x, w1=w1, b1=b1, w2=w2, b2=b2)
    change(args)
    with pytest.raises(exc, match=f"^{name}:"), torch.no_grad():
        fused_mlp(**args)


def test_opcheck():
    args = _inputs("odd-1.2x", torch.float32)
    torch.library.opcheck(torch.ops.yolov12.mlp_fused.default, (*args, True))
    out = _cl(torch.empty(args[0].shape, device=DEVICE))
    torch.library.opcheck(torch.ops.yolov12.mlp_fused_out.default, (*args, False, out))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (bf16, every YOLOv12 width)")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_every_model_mlp(dtype):
    """Every (C, hidden) of the five scales at 640, batch 1 and 8."""
    widths = {(r.cin, r.cout, r.h, r.w) for s in "nsmlx" for r in model_convs(s)
              if r.role == "mlp1"}
    for C, hid, H, W in sorted(widths):
        for B in (1, 8):
            x = _cl(_rand(B, C, H, W, dtype=dtype))
            w1 = _cl(_rand(hid, C, 1, 1, dtype=dtype, scale=C ** -0.5))
            w2 = _cl(_rand(C, hid, 1, 1, dtype=dtype, scale=hid ** -0.5))
            b1, b2 = _rand(hid, dtype=dtype), _rand(C, dtype=dtype)
            with torch.no_grad():
                out = fused_mlp(x, w1, b1, w2, b2)
            assert_close_to_reference(out, *_expect(x, w1, b1, w2, b2), name=f"{C}/{hid}")
