"""The fused conv op (1x1 / 3x3, stride 1 / 2, bias + SiLU + residual [+ gamma]) against
``reference.conv_bn_act``.

Without a GPU the Triton kernel runs in its interpreter (conftest sets TRITON_INTERPRET=1), in
float32 and float16 at modest shapes; bfloat16 and the model's full layer table run on a GPU only.
Every comparison is against the reference in float64, with twice the reference's own error in the
tested dtype as the tolerance (``_utils.assert_close_to_reference``).
"""
import os

import pytest
import torch
from torch import nn

from _utils import assert_close_to_reference

pytest.importorskip("triton")

from yolov12_kernels import reference  # noqa: E402
from yolov12_kernels._conv_checks import may_overlap, unsupported  # noqa: E402
from yolov12_kernels.conv import fused_conv2d  # noqa: E402
from yolov12_kernels.conv_shapes import model_convs  # noqa: E402
from yolov12_kernels.triton import conv as K  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (bf16, the full layer table)")
pytestmark = pytest.mark.skipif(unsupported(torch.device(DEVICE), torch.float32) is not None,
                                reason="the Triton conv kernel cannot run here")

# (B, Cin, Cout, H, W, k, stride): odd sizes, K tails, several tiles, both reduction walks
SHAPES = {
    "1x1": (2, 48, 40, 9, 11, 1, 1),
    "1x1-k-tail": (1, 80, 72, 7, 5, 1, 1),
    "1x1-s2": (1, 32, 16, 9, 7, 1, 2),
    "3x3": (1, 40, 24, 9, 7, 3, 1),
    "3x3-s2-odd": (2, 64, 80, 9, 7, 3, 2),
    "3x3-tiles": (1, 32, 96, 12, 13, 3, 1),
    "stem-3ch-s2": (1, 3, 16, 13, 11, 3, 2),
    "narrow-3x3": (2, 16, 8, 7, 9, 3, 1),
}


def _rand(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).to(DEVICE, dtype)


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``x`` in a given memory layout (a view where the layout is one)."""
    B, C, H, W = x.shape
    if layout == "nhwc":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "nchw":
        return x.contiguous()
    if layout == "slice":  # channels [5, 5 + C) of a wider channels-last buffer
        buf = _rand(B, C + 9, H, W, dtype=x.dtype).contiguous(memory_format=torch.channels_last)
        buf[:, 5:5 + C] = x
        return buf[:, 5:5 + C]
    if layout == "crop":  # a spatial crop: no stride collapses
        buf = _rand(B, C, H + 3, W + 4, dtype=x.dtype).contiguous(memory_format=torch.channels_last)
        buf[:, :, 1:1 + H, 2:2 + W] = x
        return buf[:, :, 1:1 + H, 2:2 + W]
    raise AssertionError(layout)


def _params(cin, cout, k, dtype):
    w = _rand(cout, cin, k, k, dtype=dtype, scale=(cin * k * k) ** -0.5)
    return w.contiguous(memory_format=torch.channels_last), _rand(cout, dtype=dtype, scale=0.5)


def _expect(x, w, b, stride, silu, residual, gamma):
    """(float64 truth, the reference in x's dtype on the same inputs)."""
    def d(t):
        return None if t is None else t.double()
    hi = reference.conv_bn_act(d(x), d(w), d(b), stride, silu, d(residual), d(gamma))
    lo = reference.conv_bn_act(x, w, b, stride, silu, residual, gamma)
    return hi, lo


def _out_shape(B, cout, H, W, k, s):
    p = k // 2
    return B, cout, (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", list(SHAPES), ids=str)
def test_matches_reference(shape, dtype):
    B, cin, cout, H, W, k, s = SHAPES[shape]
    x = _layout(_rand(B, cin, H, W, dtype=dtype), "nhwc")
    w, b = _params(cin, cout, k, dtype)
    with torch.no_grad():
        out = fused_conv2d(x, w, b, s, silu=True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    hi, lo = _expect(x, w, b, s, True, None, None)
    assert_close_to_reference(out, hi, lo, name=shape)


EPILOGUES = {"plain": (False, False, False), "silu": (True, False, False),
             "residual": (False, True, False), "silu+residual": (True, True, False),
             "silu+residual*gamma": (True, True, True)}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("epilogue", list(EPILOGUES))
@pytest.mark.parametrize("shape", ["1x1", "3x3-s2-odd"])
def test_epilogues(shape, epilogue, dtype):
    B, cin, cout, H, W, k, s = SHAPES[shape]
    silu, has_res, has_gamma = EPILOGUES[epilogue]
    x = _layout(_rand(B, cin, H, W, dtype=dtype), "nhwc")
    w, b = _params(cin, cout, k, dtype)
    res = _layout(_rand(*_out_shape(B, cout, H, W, k, s), dtype=dtype), "nhwc") if has_res else None
    gamma = _rand(cout, dtype=dtype, scale=0.5) if has_gamma else None
    with torch.no_grad():
        out = fused_conv2d(x, w, b, s, silu=silu, residual=res, gamma=gamma)
    assert_close_to_reference(out, *_expect(x, w, b, s, silu, res, gamma), name=epilogue)


@pytest.mark.parametrize("layout", ["nchw", "slice", "crop"])
@pytest.mark.parametrize("shape", ["1x1", "3x3-s2-odd", "stem-3ch-s2"])
def test_strided_inputs(shape, layout):
    """Inputs, weights and residuals of any strides (NCHW, a concat slice, a spatial crop)."""
    B, cin, cout, H, W, k, s = SHAPES[shape]
    dtype = torch.float32
    x = _layout(_rand(B, cin, H, W, dtype=dtype), layout)
    w, b = _params(cin, cout, k, dtype)
    w = w.contiguous()  # the (Cout, Cin, k, k) default layout: strided reduction loads
    res = _layout(_rand(*_out_shape(B, cout, H, W, k, s), dtype=dtype), layout)
    with torch.no_grad():
        out = fused_conv2d(x, w, b, s, silu=True, residual=res)
    assert_close_to_reference(out, *_expect(x, w, b, s, True, res, None), name=layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("shape", ["1x1", "3x3-s2-odd", "narrow-3x3"])
def test_writes_only_its_concat_slice(shape, dtype):
    """out= a channel slice of a concat buffer: the slice (poisoned with NaN) is fully written,
    every other element of the buffer is left exactly as it was."""
    B, cin, cout, H, W, k, s = SHAPES[shape]
    x = _layout(_rand(B, cin, H, W, dtype=dtype), "nhwc")
    w, b = _params(cin, cout, k, dtype)
    _, _, HO, WO = _out_shape(B, cout, H, W, k, s)
    off, total = 24, cout + 40
    buf = _rand(B, total, HO, WO, dtype=dtype).contiguous(memory_format=torch.channels_last)
    buf[:, off:off + cout] = float("nan")
    before = buf.clone()
    with torch.no_grad():
        ret = fused_conv2d(x, w, b, s, silu=True, out=buf[:, off:off + cout])
    assert ret.data_ptr() == buf[:, off:off + cout].data_ptr()
    assert_close_to_reference(buf[:, off:off + cout], *_expect(x, w, b, s, True, None, None))
    rest = torch.ones(total, dtype=torch.bool)
    rest[off:off + cout] = False
    assert torch.equal(buf[:, rest], before[:, rest]), "wrote outside its slice"


def test_float32_bias_and_gamma_with_float16_activations():
    B, cin, cout, H, W, k, s = SHAPES["1x1"]
    x = _layout(_rand(B, cin, H, W, dtype=torch.float16), "nhwc")
    w, _ = _params(cin, cout, k, torch.float16)
    b, gamma = _rand(cout, scale=0.5), _rand(cout, scale=0.5)  # float32
    res = _layout(_rand(B, cout, H, W, dtype=torch.float16), "nhwc")
    with torch.no_grad():
        out = fused_conv2d(x, w, b, silu=True, residual=res, gamma=gamma)
    hi = reference.conv_bn_act(x.double(), w.double(), b.double(), 1, True, res.double(),
                               gamma.double())
    lo = reference.conv_bn_act(x, w, b.half(), 1, True, res, gamma.half())
    assert_close_to_reference(out, hi, lo)


def test_c2f_pattern_in_one_buffer():
    """A C2f/C3k2 stage inside ONE buffer: the block reads slice 1 and writes slice 2, with
    slice 1 as residual (disjoint channel slices of one buffer are not an overlap)."""
    c, H, W = 32, 7, 9
    buf = _rand(2, 3 * c, H, W).contiguous(memory_format=torch.channels_last)
    buf[:, 2 * c:] = float("nan")
    x = buf[:, c:2 * c]
    x_copy = x.clone()
    w, b = _params(c, c, 3, torch.float32)
    with torch.no_grad():
        fused_conv2d(x, w, b, silu=True, residual=x, out=buf[:, 2 * c:])
    assert_close_to_reference(buf[:, 2 * c:], *_expect(x_copy, w, b, 1, True, x_copy, None))
    assert torch.equal(buf[:, c:2 * c], x_copy)


def test_in_place_residual():
    """out= the residual itself: x + proj(attn) written over x (ABlock)."""
    B, cin, cout, H, W, k, s = SHAPES["1x1"]
    x = _layout(_rand(B, cin, H, W), "nhwc")
    w, b = _params(cin, cout, k, torch.float32)
    res = _layout(_rand(B, cout, H, W), "nhwc")
    res0 = res.clone()
    with torch.no_grad():
        fused_conv2d(x, w, b, residual=res, out=res)
    assert_close_to_reference(res, *_expect(x, w, b, 1, False, res0, None))


@pytest.mark.parametrize("config", [K.Config(64, 32, 32, 4, 1), K.Config(128, 16, 16, 4, 1)],
                         ids=str)
def test_forced_configs(config):
    """Other tile sizes than the interpreter's default: several N tiles with a tail, K blocks of
    16 in both reduction walks."""
    for shape in ("3x3-tiles", "narrow-3x3", "1x1-k-tail"):
        B, cin, cout, H, W, k, s = SHAPES[shape]
        x = _layout(_rand(B, cin, H, W), "nhwc")
        w, b = _params(cin, cout, k, torch.float32)
        with K.forced_config(config), torch.no_grad():
            out = fused_conv2d(x, w, b, s, silu=True)
        assert_close_to_reference(out, *_expect(x, w, b, s, True, None, None), name=shape)


@pytest.mark.parametrize("shape, config", [
    ("3x3-tiles", K.Config(64, 32, 32, 4, 1, 3)),   # per-tap walk: 9 steps in 3 parts
    ("3x3-s2-odd", K.Config(16, 64, 32, 4, 1, 7)),  # 18 steps: 6 parts of 3 (7 asked)
    ("narrow-3x3", K.Config(32, 16, 16, 4, 1, 4)),  # taps folded into K: 9 steps
    ("1x1-k-tail", K.Config(16, 32, 32, 4, 1, 2)),  # plain GEMM with a K tail
], ids=str)
def test_split_k(shape, config):
    """Split-K (the GPU configurations of batch-1 P4/P5 layers; the interpreter's own never
    splits): fp32 partial sums reduced in a fixed order, then the whole epilogue (SiLU,
    residual + gamma) into a NaN-poisoned concat slice; nothing else of the buffer written, and
    the same bits on a second run."""
    B, cin, cout, H, W, k, s = SHAPES[shape]
    x = _layout(_rand(B, cin, H, W), "nhwc")
    w, b = _params(cin, cout, k, torch.float32)
    _, _, HO, WO = _out_shape(B, cout, H, W, k, s)
    res = _layout(_rand(B, cout, HO, WO), "nhwc")
    gamma = _rand(cout, scale=0.5)
    buf = _rand(B, cout + 12, HO, WO).contiguous(memory_format=torch.channels_last)
    buf[:, 5:5 + cout] = float("nan")
    before = buf.clone()
    runs = K.launches(x, w, b, res, gamma, buf[:, 5:5 + cout], s, True, config=config)
    assert [r.kernel for r in runs] == [K._conv_kernel, K._splitk_reduce_kernel]
    assert runs[0].kwargs["SPLIT_K"] == K.effective_split(k, cin, config) > 1
    with K.forced_config(config), torch.no_grad():
        fused_conv2d(x, w, b, s, silu=True, residual=res, gamma=gamma, out=buf[:, 5:5 + cout])
        first = buf.clone()
        fused_conv2d(x, w, b, s, silu=True, residual=res, gamma=gamma, out=buf[:, 5:5 + cout])
    assert_close_to_reference(first[:, 5:5 + cout], *_expect(x, w, b, s, True, res, gamma),
                              name=shape)
    assert torch.equal(buf, first), "split-K is not deterministic"
    rest = torch.ones(cout + 12, dtype=torch.bool)
    rest[5:5 + cout] = False
    assert torch.equal(buf[:, rest], before[:, rest]), "wrote outside its slice"


def test_effective_split_and_one_launch_api():
    """Parts that would get no steps are not launched; launch_args (one launch) refuses a
    split-K configuration instead of running half of it."""
    assert K.k_steps(3, 64, 64) == 9 and K.k_steps(3, 16, 32) == 5  # taps in K: 144 -> 5 x 32
    assert K.effective_split(3, 64, K.Config(32, 32, 64, 4, 2, 6)) == 5   # 9 steps: 5 x 2
    assert K.effective_split(3, 64, K.Config(32, 32, 64, 4, 2, 50)) == 9
    assert K.effective_split(1, 64, K.Config(32, 32, 64, 4, 2, 4)) == 1   # one step
    x, w, b = _good()
    out = torch.empty(1, 8, 6, 5).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="^config: a split-K conv is two launches"):
        K.launch_args(x, w, b, None, None, out, 1, True, config=K.Config(16, 16, 16, 4, 1, 3))


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def _good():
    x = _layout(_rand(1, 16, 6, 5), "nhwc")
    w, b = _params(16, 8, 3, torch.float32)
    return x, w, b


@pytest.mark.parametrize("change, exc, name", [
    (lambda a: a.update(x=a["x"].numpy()), TypeError, "x"),
    (lambda a: a.update(x=a["x"][0]), ValueError, "x"),
    (lambda a: a.update(x=a["x"].double(), weight=a["weight"].double(),
                        bias=a["bias"].double()), ValueError, "x"),
    (lambda a: a.update(x=a["x"][:, :0]), ValueError, "x"),
    (lambda a: a.update(weight=a["weight"][:, :8]), ValueError, "weight"),
    (lambda a: a.update(weight=_rand(8, 16, 5, 5)), ValueError, "weight"),
    (lambda a: a.update(weight=a["weight"].half()), ValueError, "weight"),
    (lambda a: a.update(bias=a["bias"][:4]), ValueError, "bias"),
    (lambda a: a.update(stride=3), ValueError, "stride"),
    (lambda a: a.update(stride=True), TypeError, "stride"),
    (lambda a: a.update(silu="yes"), TypeError, "silu"),
    (lambda a: a.update(residual=_rand(1, 8, 5, 5)), ValueError, "residual"),
    (lambda a: a.update(gamma=_rand(8)), ValueError, "gamma"),
    (lambda a: a.update(residual=_rand(1, 8, 6, 5), gamma=_rand(4)), ValueError, "gamma"),
    (lambda a: a.update(out=_rand(1, 8, 6, 6)), ValueError, "out"),
    (lambda a: a.update(out=_rand(1, 8, 6, 5).half()), ValueError, "out"),
])
def test_bad_arguments_name_the_argument(change, exc, name):
    x, w, b = _good()
    args = dict(x=x, weight=w, bias=b)
    change(args)
    with pytest.raises(exc, match=f"^{name}:"), torch.no_grad():
        fused_conv2d(**args)


def test_out_overlapping_an_input_is_refused():
    x = _layout(_rand(1, 16, 6, 5), "nhwc")
    w, b = _params(16, 16, 1, torch.float32)
    with pytest.raises(ValueError, match="^out: overlaps x"), torch.no_grad():
        fused_conv2d(x, w, b, out=x)
    buf = _rand(1, 24, 6, 5).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="^out: overlaps x"), torch.no_grad():
        fused_conv2d(buf[:, :16], w, b, out=buf[:, 8:24])  # channel slices that share 8


def test_may_overlap_channel_slices():
    buf = torch.empty(2, 48, 5, 7).contiguous(memory_format=torch.channels_last)
    assert not may_overlap(buf[:, :16], buf[:, 16:48])
    assert not may_overlap(buf[:, 32:], buf[:, :32])
    assert may_overlap(buf[:, :17], buf[:, 16:32])
    assert may_overlap(buf, buf[:, 3:4])
    nchw = torch.empty(1, 48, 5, 7)
    assert not may_overlap(nchw[:, :16], nchw[:, 16:])  # disjoint element ranges
    assert may_overlap(nchw[:, :, :, :3], nchw[:, :, :, 3:])  # interleaved: not proven disjoint
    assert not may_overlap(buf, torch.empty_like(buf))


def test_requires_grad_is_refused():
    x, w, b = _good()
    with pytest.raises(ValueError, match="^weight: requires grad"):
        fused_conv2d(x, w.requires_grad_(), b)


@pytest.mark.skipif(CUDA, reason="the interpreter's limits")
def test_unsupported_device_or_dtype_raises_clearly():
    x, w, b = _good()
    with pytest.raises(RuntimeError, match="bfloat16"), torch.no_grad():
        fused_conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16())
    assert "CUDA tensor" in unsupported(torch.device("meta"), torch.float32)
    assert "float16/bfloat16/float32" in unsupported(torch.device("cpu"), torch.float64)


# ------------------------------------------------------------------------------------------------
# torch.library / torch.compile
# ------------------------------------------------------------------------------------------------
def test_opcheck():
    x, w, b = _good()
    res = _rand(1, 8, 6, 5).contiguous(memory_format=torch.channels_last)
    g = _rand(8)
    torch.library.opcheck(torch.ops.yolov12.conv2d_fused.default, (x, w, b, res, g, 1, True))
    torch.library.opcheck(torch.ops.yolov12.conv2d_fused.default, (x, w, None, None, None, 2, False))
    out = torch.empty(1, 8, 6, 5).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.yolov12.conv2d_fused_out.default,
                          (x, w, b, None, None, 1, True, out))


_UNTRACED_CALLS = """
import sys, torch
from yolov12_kernels.box_decode import box_decode
from yolov12_kernels.conv import fused_conv2d
from yolov12_kernels.dwconv import fused_depthwise_conv2d
from yolov12_kernels.mlp import fused_mlp
cl = lambda t: t.contiguous(memory_format=torch.channels_last)
x = cl(torch.randn(1, 16, 8, 8))
y = fused_conv2d(x, cl(torch.randn(16, 16, 3, 3)), torch.randn(16), silu=True)
fused_conv2d(x, cl(torch.randn(8, 16, 1, 1)), None, out=cl(torch.empty(1, 24, 8, 8))[:, 8:16])
fused_depthwise_conv2d(y, cl(torch.randn(16, 1, 7, 7)), torch.randn(16))
fused_mlp(y, cl(torch.randn(32, 16, 1, 1)), torch.randn(32), cl(torch.randn(16, 32, 1, 1)),
          torch.randn(16))
box_decode(torch.randn(1, 64 + 3, 4 * 4 + 2 * 2), [(4, 4), (2, 2)], [8.0, 16.0])
print("dynamo imported:", "torch._dynamo" in sys.modules)
"""


def test_untraced_calls_launch_past_the_custom_op_layers():
    """A plain call of each conv-family op launches its kernel directly: the first call of a
    custom op in a process imports torch._dynamo (about a second: what a model's first call paid,
    issue 27's warm start), so none may happen on the eager path. Traced calls still see one op:
    ``test_opcheck`` and the torch.compile test below."""
    import subprocess
    import sys
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", _UNTRACED_CALLS], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dynamo imported: False" in done.stdout, done.stdout


def test_make_fx_sees_one_op_per_call():
    """Under a tracer (make_fx: a dispatch mode) the call goes through the custom op."""
    from torch.fx.experimental.proxy_tensor import make_fx
    x, w, b = _good()
    graph = make_fx(lambda x: fused_conv2d(x, w, b, silu=True))(x)
    targets = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
    assert targets == ["yolov12.conv2d_fused.default"], targets


def test_torch_compile_one_graph_with_concat_slices():
    """A C2f stage written through out= slices compiles in one graph (aot_eager: no inductor C++
    build in CI) and equals eager."""
    c, H, W = 16, 6, 7
    x = _layout(_rand(1, 32, H, W), "nhwc")
    w1, b1 = _params(32, 2 * c, 1, torch.float32)
    w2, b2 = _params(c, c, 3, torch.float32)
    w3, b3 = _params(3 * c, 24, 1, torch.float32)

    def c2f(x):
        buf = torch.empty(1, 3 * c, H, W, device=x.device).contiguous(
            memory_format=torch.channels_last)
        fused_conv2d(x, w1, b1, silu=True, out=buf[:, :2 * c])
        fused_conv2d(buf[:, c:2 * c], w2, b2, silu=True, residual=buf[:, c:2 * c],
                     out=buf[:, 2 * c:])
        return fused_conv2d(buf, w3, b3, silu=True)

    torch._dynamo.reset()
    with torch.no_grad():
        eager = c2f(x)
        compiled = torch.compile(c2f, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# the model's layer table and the launch configurations
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["n", "m", "l"])
def test_conv_table_is_the_model(scale):
    """conv_shapes.model_convs lists exactly the convs the model runs, in order, with the right
    activation (a non-square input, so rows and columns cannot be swapped unnoticed)."""
    from yolov12.model import YOLOv12
    from yolov12.modules import Conv
    model = YOLOv12(scale).eval()
    seen = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Conv2d) or name.endswith(("dfl.conv", "attn.pe.conv")):
            continue
        parent = model.get_submodule(name.removesuffix(".conv")) if name.endswith(".conv") else mod
        silu = isinstance(parent, Conv) and isinstance(parent.act, nn.SiLU)

        def hook(m, inp, out, name=name, silu=silu):
            seen.append((name.removesuffix(".conv"), inp[0].shape[1], out.shape[1],
                         m.kernel_size[0], m.stride[0], inp[0].shape[2], inp[0].shape[3],
                         m.groups > 1, silu))
        mod.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, 256, 192))
    table = [(r.name, r.cin, r.cout, r.k, r.stride, r.h, r.w, r.depthwise, r.silu)
             for r in model_convs(scale, (256, 192))]
    assert table == seen


def test_conv_table_epilogues():
    """The residual / gamma / mlp rows are where the model adds them."""
    for scale, ratio in (("n", 2.0), ("x", 1.2)):
        rows = model_convs(scale)
        mlp1 = [r for r in rows if r.role == "mlp1"]
        assert mlp1 and all(r.cout == int(r.cin * ratio) for r in mlp1)
        assert all(r.residual for r in rows if r.role == "mlp2" or r.name.endswith("attn.proj"))
        gammas = [r.name for r in rows if r.gamma]
        assert gammas == (["model.6.cv2", "model.8.cv2"] if scale == "x" else [])
        assert all(r.out_off + r.cout <= r.out_total for r in rows if r.out_total)
        assert all(r.in_off + r.cin <= r.in_total for r in rows if r.in_total)


def test_configs_fit_every_arch():
    """Each layer's fixed configuration: power-of-two blocks tl.dot accepts, pipeline stages that
    fit the arch's shared memory (estimate; the compile check measures it)."""
    for scale in "nsmlx":
        for r in model_convs(scale):
            if r.depthwise:
                continue
            for arch, (_, smem) in K.ARCHS.items():
                for batch in (1, 32):
                    for dtype, elem in ((torch.float16, 2), (torch.float32, 4)):
                        c = K.conv_config(arch, dtype, batch * r.ho * r.wo, r.cout, r.cin, r.k)
                        for blk in c[:3]:
                            assert blk >= 16 and blk & (blk - 1) == 0, (r, c)
                        need = c.num_stages * (c.block_m * c.block_k
                                               + c.block_k * c.block_n) * elem
                        assert need <= smem, (arch, r, c)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scale", ["n", "x"])
def test_gpu_every_model_conv(scale, dtype):
    """Every dense conv of the model at 640 with its real config, epilogue and concat slice."""
    seen = set()
    for r in model_convs(scale):
        key = r._replace(name="", role="")
        if r.depthwise or key in seen:
            continue  # each distinct layer once: every new variant costs a JIT compile
        seen.add(key)
        x = _layout(_rand(1, r.cin, r.h, r.w, dtype=dtype), "nhwc")
        w, b = _params(r.cin, r.cout, r.k, dtype)
        shape = (1, r.cout, r.ho, r.wo)
        res = _layout(_rand(*shape, dtype=dtype), "nhwc") if r.residual else None
        gamma = _rand(r.cout, dtype=dtype, scale=0.1) if r.gamma else None
        total = r.out_total or r.cout
        buf = torch.full((1, total, r.ho, r.wo), float("nan"), device=DEVICE, dtype=dtype
                         ).contiguous(memory_format=torch.channels_last)
        out = buf[:, r.out_off:r.out_off + r.cout]
        with torch.no_grad():
            fused_conv2d(x, w, b, r.stride, silu=r.silu, residual=res, gamma=gamma, out=out)
        assert_close_to_reference(out, *_expect(x, w, b, r.stride, r.silu, res, gamma),
                                  name=r.name)


def test_launch_plan_within_budget():
    """The fused forward's launch count (docs/fusion.md), YOLOv12-N: <= 120 (issue 13)."""
    import subprocess
    import sys
    code = ("from yolov12_kernels.triton.conv_table import launch_plan, table; import torch; "
            "t = table('n', [1, 32], torch.float16); assert t.count('\\n') > 90; "
            "print(launch_plan('n')['total'])")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split()[-1]) <= 120
