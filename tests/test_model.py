"""The YOLOv12 model: parameter counts, shapes, state-dict layout, fuse, bad input."""
import pytest
import torch
from torch import nn

from _utils import randomize_bn
from yolov12 import SCALES, YOLOv12
from yolov12.modules import AAttn
from yolov12_kernels.shapes import HEADS  # (P4, P5) heads: layer 6 (area 4), layer 8 (area 1)

# Exact parameter counts of the public YOLO12 models (80 classes, unfused).
PARAMS = {"n": 2_602_288, "s": 9_284_096, "m": 20_199_168, "l": 26_450_784, "x": 59_210_784}


def anchors(h, w):
    return sum((h // s) * (w // s) for s in (8, 16, 32))


@pytest.mark.parametrize("scale", list(SCALES))
def test_parameter_count_and_attention_layout(scale):
    model = YOLOv12(scale)
    assert model.num_params() == PARAMS[scale]
    p4 = [m for m in model.model[6].modules() if isinstance(m, AAttn)]
    p5 = [m for m in model.model[8].modules() if isinstance(m, AAttn)]
    assert {(m.num_heads, m.head_dim, m.area) for m in p4} == {(HEADS[scale][0], 32, 4)}
    assert {(m.num_heads, m.head_dim, m.area) for m in p5} == {(HEADS[scale][1], 32, 1)}
    residual = scale in "lx"
    assert (model.model[6].gamma is not None) == residual
    if residual:
        torch.testing.assert_close(model.model[6].gamma.detach(),
                                   torch.full_like(model.model[6].gamma, 0.01))
    mlp_hidden = p4[0].qkv.conv.in_channels * (1.2 if residual else 2.0)
    blk = model.model[6].m[0][0]
    assert blk.mlp[0].conv.out_channels == int(mlp_hidden)


@pytest.mark.parametrize("scale", list(SCALES))
def test_eval_output_shape_640(scale):
    model = YOLOv12(scale).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 640, 640))
    assert y.shape == (1, 84, 8400)
    assert torch.isfinite(y).all()


def test_non_square_train_and_eval_outputs():
    model = YOLOv12("n", nc=7)
    x = torch.rand(2, 3, 384, 640)
    model.train()
    maps = model(x)
    assert [tuple(m.shape) for m in maps] == [(2, 64 + 7, 384 // s, 640 // s) for s in (8, 16, 32)]
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 4 + 7, anchors(384, 640))
    boxes, scores = y[:, :4], y[:, 4:]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (boxes[:, 2:] >= 0).all()  # widths and heights are sums of non-negative distances


def test_state_dict_keys_follow_the_public_layout():
    sd = YOLOv12("n").state_dict()
    for key in ["model.0.conv.weight", "model.0.bn.running_var",
                "model.2.m.0.cv1.conv.weight",
                "model.6.m.0.0.attn.qkv.conv.weight", "model.6.m.0.0.attn.pe.bn.weight",
                "model.6.m.1.1.mlp.1.conv.weight", "model.8.m.1.1.attn.proj.conv.weight",
                "model.11.m.0.m.1.cv2.conv.weight", "model.20.m.0.m.0.cv1.conv.weight",
                "model.21.cv2.0.2.bias", "model.21.cv3.2.0.0.conv.weight",
                "model.21.dfl.conv.weight"]:
        assert key in sd, key
    assert sd["model.6.m.0.0.attn.qkv.conv.weight"].shape == (192, 64, 1, 1)
    assert sd["model.6.m.0.0.attn.pe.conv.weight"].shape == (64, 1, 7, 7)
    assert not any("stride" in k for k in sd)
    assert "model.6.gamma" in YOLOv12("l").state_dict()


def test_load_state_dict_strict_round_trip():
    src = randomize_bn(YOLOv12("n", nc=3)).eval()
    dst = YOLOv12("n", nc=3)
    dst.load_state_dict(src.state_dict(), strict=True)
    dst.eval()
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)


def public_aattn_forward(m: AAttn, x):
    """The public YOLO12 AAttn.forward written out independently (conv modules in eval mode)."""
    B, C, H, W = x.shape
    N = H * W
    qkv = m.qkv(x).flatten(2).transpose(1, 2)
    if m.area > 1:
        qkv = qkv.reshape(B * m.area, N // m.area, C * 3)
        B, N, _ = qkv.shape
    q, k, v = qkv.view(B, N, m.num_heads, m.head_dim * 3).permute(0, 2, 3, 1).split(
        [m.head_dim] * 3, dim=2)
    attn = ((q.transpose(-2, -1) @ k) * (m.head_dim ** -0.5)).softmax(dim=-1)
    out = (v @ attn.transpose(-2, -1)).permute(0, 3, 1, 2)
    v = v.permute(0, 3, 1, 2)
    if m.area > 1:
        out = out.reshape(B // m.area, N * m.area, C)
        v = v.reshape(B // m.area, N * m.area, C)
        B, N, _ = out.shape
    out = out.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
    v = v.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
    return m.proj(out + m.pe(v))


@pytest.mark.parametrize("area,hw", [(4, (8, 8)), (1, (4, 6))])
def test_aattn_matches_public_forward(area, hw):
    m = randomize_bn(AAttn(64, 2, area)).eval()
    x = torch.randn(2, 64, *hw)
    with torch.no_grad():
        torch.testing.assert_close(m(x), public_aattn_forward(m, x), atol=2e-5, rtol=1e-4)
    m.train()  # training BN path: pe through its module, attention through the op
    torch.testing.assert_close(m(x), public_aattn_forward(m, x), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("scale", ["n", "l"])
def test_fuse_keeps_outputs(scale):
    model = randomize_bn(YOLOv12(scale)).eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        want = model(x)
        got = model.fuse()(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def test_training_step_runs_and_reaches_attention_weights():
    model = YOLOv12("n", nc=2).train()
    loss = sum(m.float().pow(2).mean() for m in model(torch.rand(2, 3, 64, 64)))
    loss.backward()
    g = model.model[6].m[0][0].attn.qkv.conv.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_gflops_match_paper_for_n():
    gf = YOLOv12("n").gflops(640)
    assert abs(gf["conv"] - 6.5) < 0.05  # the paper counts convolutions: 6.5 GFLOPs
    assert gf["attention"] > 0.5 and abs(gf["total"] - gf["conv"] - gf["attention"]) < 1e-9


def test_bad_input_names_the_argument():
    model = YOLOv12("n").eval()
    with pytest.raises(ValueError, match=r"^x: image sides must be multiples of 32, got 100x128;"
                                         r" letterbox or pad"):
        model(torch.rand(1, 3, 100, 128))
    with pytest.raises(ValueError, match="^x: expected 3 channels"):
        model(torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"^x: expected an image batch \(B, 3, H, W\)"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match=r"^x: expected an image batch, a torch.Tensor"):
        model([[0.0]])
    with pytest.raises(TypeError, match=r"^x: expected a floating-point .* got torch.uint8 "
                                        r"\(8-bit pixels: use x.float\(\) / 255\)"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"^x: dtype torch.float64 does not match the model's "
                                        r"torch.float32"):
        model(torch.rand(1, 3, 64, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^x: empty batch \(B=0\)"):
        model(torch.rand(0, 3, 64, 64))
    with pytest.raises(ValueError, match="^scale"):
        YOLOv12("q")
    with pytest.raises(ValueError, match="^nc"):
        YOLOv12("n", nc=0)
    with pytest.raises(ValueError, match="^backend"):
        model.set_attention_backend("tensorrt")


def test_attention_area_must_divide_tokens():
    m = AAttn(64, 2, area=4).eval()
    with pytest.raises(ValueError, match="^x: area=4 does not divide H\\*W=15"):
        m(torch.randn(1, 64, 3, 5))


def test_sdpa_backend_model_equals_reference():
    model = randomize_bn(YOLOv12("n")).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        want = model(x)
        got = model.set_attention_backend("sdpa")(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert all(m.backend == "sdpa" for m in model.modules() if isinstance(m, AAttn))


def test_reference_model_traces_as_one_graph():
    """torch.compile sees the whole model, the attention dispatch and Detect's decode included."""
    model = YOLOv12("n").eval()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(torch.rand(1, 3, 64, 64))
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    assert explained.graph_count == 1
