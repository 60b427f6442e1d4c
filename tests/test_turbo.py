"""YOLOv12-turbo, the official repository's default checkpoints: configuration (parameter counts
and GFLOPs against its YAML and README), loading its checkpoint layout safely, and outputs equal
to an independently written reference of its attention, on every attention backend here."""
from __future__ import annotations

import copy
import sys
import types

import pytest
import torch
from torch import nn

from _lively import lively
from _utils import assert_close_to_reference, randomize_bn
from yolov12 import YOLOv12
from yolov12.modules import AAttn, ABlock
from yolov12.turbo import PARAMS, README, qkv_from_qk_v, qkv_permutation
from yolov12.weights import infer_variant, save_safetensors


# ---------------------------------------------------------------------------------------------
# the configuration
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", list("nsmlx"))
def test_parameter_counts_equal_the_official_yaml_and_readme(scale):
    model = YOLOv12(scale, variant="turbo")
    assert model.num_params() == PARAMS[scale]  # the summaries printed in its yolov12.yaml
    # the README counts the deployed model: BN folded into the convs
    fused = model.eval().fuse()
    assert round(fused.num_params() / 1e6, 1) == README[scale]["params_M"]
    pe = {m.pe.conv.kernel_size for m in model.modules() if isinstance(m, AAttn)}
    assert pe == {(5, 5)}
    assert (model.model[1].conv.groups, model.model[3].conv.groups) == (2, 4)


@pytest.mark.parametrize("scale", ["n", "s"])
def test_conv_gflops_equal_the_readme(scale):
    gf = YOLOv12(scale, variant="turbo").gflops(640)
    assert abs(gf["conv"] - README[scale]["gflops"]) < 0.05


def test_mlp_ratio_is_1_5_for_l_and_x_only():
    for scale, ratio in (("m", 2.0), ("l", 1.5)):
        blocks = [m for m in YOLOv12(scale, variant="turbo").modules() if isinstance(m, ABlock)]
        dim = blocks[0].mlp[0].conv.in_channels
        assert blocks[0].mlp[0].conv.out_channels == int(dim * ratio)


# ---------------------------------------------------------------------------------------------
# an independent reference of the official turbo attention, written out step by step
# ---------------------------------------------------------------------------------------------
class ConvBN(nn.Module):
    """The official ``Conv(..., act=False)``: conv without bias, then BatchNorm."""

    def __init__(self, c1, c2, k=1, g=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, 1, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3)

    def forward(self, x):
        return self.bn(self.conv(x))


class OfficialTurboAAttn(nn.Module):
    """The turbo AAttn as its code computes it (on CPU: its non-flash-attn path)."""

    def __init__(self, dim, num_heads, area=1):
        super().__init__()
        self.area, self.num_heads, self.head_dim = area, num_heads, dim // num_heads
        self.qk = ConvBN(dim, 2 * dim)
        self.v = ConvBN(dim, dim)
        self.proj = ConvBN(dim, dim)
        self.pe = ConvBN(dim, dim, 5, g=dim)

    def forward(self, x):
        B, C, H, W = x.shape
        N, heads, d = H * W, self.num_heads, self.head_dim
        # 1. the two projections; tokens in row-major order, channels last
        qk = self.qk(x).flatten(2).transpose(1, 2)           # (B, N, 2C)
        v_image = self.v(x)                                  # (B, C, H, W)
        pos = self.pe(v_image)                               # position perceiver on v
        v = v_image.flatten(2).transpose(1, 2)               # (B, N, C)
        # 2. areas: equal contiguous runs of tokens become extra batch entries
        qk = qk.reshape(B * self.area, N // self.area, 2 * C)
        v = v.reshape(B * self.area, N // self.area, C)
        Ba, n = qk.shape[:2]
        # 3. q = first C channels, k = the next C; head h owns channels h*d .. h*d+d-1 of each
        q = qk[:, :, :C].reshape(Ba, n, heads, d).transpose(1, 2)   # (Ba, heads, n, d)
        k = qk[:, :, C:].reshape(Ba, n, heads, d).transpose(1, 2)
        vh = v.reshape(Ba, n, heads, d).transpose(1, 2)
        # 4. softmax attention, max subtracted, as its code writes it
        scores = (q @ k.transpose(-2, -1)) * d ** -0.5
        scores = scores - scores.max(dim=-1, keepdim=True).values
        weights = scores.exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = weights @ vh                                   # (Ba, heads, n, d)
        # 5. back to (B, C, H, W), add pe(v), project
        out = out.transpose(1, 2).reshape(B, N, C)
        out = out.transpose(1, 2).reshape(B, C, H, W)
        return self.proj(out + pos)


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return randomize_bn(module).eval()


def _ours_from(official: OfficialTurboAAttn) -> AAttn:
    """Our AAttn (5x5 pe) holding ``official``'s weights, through the checkpoint mapping."""
    dim = official.v.conv.out_channels
    ours = AAttn(dim, official.num_heads, official.area)
    ours.pe = copy.deepcopy(official.pe)  # 5x5, turbo's
    for m in ours.modules():  # the models' BN setting (YOLOv12 sets it on the whole model)
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
    sd = {f"m.attn.{k}": v for k, v in official.state_dict().items()}
    ours.load_state_dict({k[len("m.attn."):]: v for k, v in qkv_from_qk_v(sd).items()})
    return ours.eval()


def test_qkv_permutation_interleaves_per_head():
    idx = qkv_permutation(64, 32).tolist()  # C=64: 2 heads of 32
    assert idx[:32] == list(range(0, 32))            # head 0 q = qk rows 0..31
    assert idx[32:64] == list(range(64, 96))         # head 0 k = qk rows C..C+31
    assert idx[64:96] == list(range(128, 160))       # head 0 v = v rows 0..31
    assert idx[96:128] == list(range(32, 64))        # head 1 q
    assert sorted(idx) == list(range(192))


@pytest.mark.parametrize("dim,heads,area,hw", [(64, 2, 4, (8, 6)), (128, 4, 1, (5, 7)),
                                               (64, 2, 4, (4, 4))])
def test_attention_equals_the_official_reference_in_float64(dim, heads, area, hw):
    official = _randomize(OfficialTurboAAttn(dim, heads, area)).double()
    ours = _ours_from(official).double()
    ours.backend = "reference"
    x = torch.randn(2, dim, *hw, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), atol=1e-10, rtol=1e-10)


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _runs_here(backend, dtype=torch.float32, device=DEVICE) -> str | None:
    """None if ``backend`` can run the fused attention here, else why not."""
    from yolov12_kernels import dispatch
    try:
        dispatch.select("fused_area_attention", backend, device, dtype, 32, False)
    except RuntimeError as e:
        return str(e)
    return None


def _backends(device=torch.device("cpu")):
    return [b for b in ("reference", "sdpa", "triton") if _runs_here(b, device=device) is None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("backend", ["reference", "sdpa", "triton", "cuda", "flash"])
def test_attention_equals_the_official_reference_on_every_backend(backend, dtype):
    """turbo's 5x5 pe through every backend (on a GPU the fused Triton and CUDA kernels)."""
    if DEVICE.type == "cpu" and (dtype == torch.float16 or backend in ("cuda", "flash")):
        pytest.skip("float16 and the cuda/flash backends are checked on a GPU")
    why = _runs_here(backend, dtype)
    if why:
        pytest.skip(why)
    official = _randomize(OfficialTurboAAttn(64, 2, 4))
    ours = _ours_from(official).to(DEVICE, dtype)
    ours.backend = backend
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        want_hi = copy.deepcopy(official).double()(x.double())
        # the official module's own error in this dtype (on this device) sets the tolerance
        want_lo = copy.deepcopy(official).to(DEVICE, dtype)(x.to(DEVICE, dtype))
        got = ours(x.to(DEVICE, dtype))
    assert_close_to_reference(got.cpu(), want_hi, want_lo.cpu(),
                              name=f"turbo attention ({backend}, {dtype})")


# ---------------------------------------------------------------------------------------------
# whole model: the official checkpoint layout, loaded
# ---------------------------------------------------------------------------------------------
def _official_network(scale="n") -> nn.Module:
    """A turbo network with the official attention modules (qk / v convs) in place of ours:
    its state dict has the official keys (model.6.m.0.0.attn.qk.conv.weight ...)."""
    torch.manual_seed(3)
    net = YOLOv12(scale, variant="turbo")
    for block in net.modules():
        if isinstance(block, ABlock):
            a = block.attn
            block.attn = _randomize(OfficialTurboAAttn(a.num_heads * a.head_dim, a.num_heads,
                                                      a.area))
    return lively(net)


@pytest.fixture(scope="module")
def official_n():
    return _official_network("n")


def test_official_state_dict_loads_and_equals_the_official_network(tmp_path, official_n):
    sd = official_n.state_dict()
    assert "model.6.m.0.0.attn.qk.conv.weight" in sd and "model.6.m.0.0.attn.v.bn.weight" in sd
    assert infer_variant(sd) == "turbo"
    path = tmp_path / "yolov12n.pt"
    torch.save(sd, path)
    ours = YOLOv12.load(path)
    assert (ours.scale, ours.nc, ours.variant) == ("n", 80, "turbo")
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        want_hi = copy.deepcopy(official_n).double()(x.double())
        want_lo = official_n(x)
        # (the Triton kernels, interpreted on CPU, are checked on the attention module above)
        for backend in [b for b in _backends() if b != "triton"]:
            got = ours.set_attention_backend(backend)(x)
            assert_close_to_reference(got, want_hi, want_lo, name=f"turbo model ({backend})")
        fast = ours.optimize("cpu", torch.float32)
        assert_close_to_reference(fast(x), want_hi, want_lo, name="turbo fast path")
    # our own turbo model saves and loads back (qkv layout, 5x5, grouped convs), as
    # safetensors too, with the variant in the metadata
    torch.save(ours.state_dict(), tmp_path / "ours.pt")
    assert YOLOv12.load(tmp_path / "ours.pt").variant == "turbo"
    pytest.importorskip("safetensors", reason="safetensors not installed")
    save_safetensors(ours, tmp_path / "ours.safetensors")
    again = YOLOv12.load(tmp_path / "ours.safetensors")
    assert again.variant == "turbo"
    with torch.no_grad():
        assert torch.equal(again.set_attention_backend("reference")(x),
                           ours.set_attention_backend("reference")(x))


@pytest.fixture
def ultralytics_names(monkeypatch):
    """Registers modules named like the official repository's (its ultralytics fork), so that a
    pickle written here names the same globals as a published turbo checkpoint."""
    def make(full):
        mod_name, _, name = full.rpartition(".")
        parts = mod_name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub not in sys.modules:
                monkeypatch.setitem(sys.modules, sub, types.ModuleType(sub))
        cls = type(name, (nn.Module,), {"__module__": mod_name, "__qualname__": name})
        setattr(sys.modules[mod_name], name, cls)
        return cls
    return make


def test_published_checkpoint_layout_loads_without_importing_or_running_anything(
        tmp_path, official_n, ultralytics_names):
    from yolov12 import modules as M
    where = {M.Conv: "ultralytics.nn.modules.conv.Conv", M.DWConv: "ultralytics.nn.modules.conv.DWConv",
             M.Concat: "ultralytics.nn.modules.conv.Concat",
             M.Bottleneck: "ultralytics.nn.modules.block.Bottleneck",
             M.C3k: "ultralytics.nn.modules.block.C3k", M.C3k2: "ultralytics.nn.modules.block.C3k2",
             M.A2C2f: "ultralytics.nn.modules.block.A2C2f",
             M.ABlock: "ultralytics.nn.modules.block.ABlock",
             OfficialTurboAAttn: "ultralytics.nn.modules.block.AAttn",
             ConvBN: "ultralytics.nn.modules.conv.Conv",
             M.DFL: "ultralytics.nn.modules.block.DFL", M.Detect: "ultralytics.nn.modules.head.Detect"}
    classes = {}
    seq = copy.deepcopy(official_n.model).half()  # published files are float16
    for m in seq.modules():
        full = where.get(type(m))
        if full is not None:
            if full not in classes:
                classes[full] = ultralytics_names(full)
            m.__class__ = classes[full]
    det = ultralytics_names("ultralytics.nn.tasks.DetectionModel")()
    det.model, det.names = seq, {i: f"c{i}" for i in range(80)}
    det.yaml = {"nc": 80, "scale": "n"}
    path = tmp_path / "yolov12n.pt"
    torch.save({"model": det, "ema": None, "epoch": -1, "version": "8.3.63"}, path)
    for name in list(sys.modules):  # loading must not need (or import) anything of theirs
        if name.split(".")[0] == "ultralytics":
            del sys.modules[name]
    ours = YOLOv12.load(path)
    assert "ultralytics" not in sys.modules
    assert (ours.scale, ours.variant, ours.names[5]) == ("n", "turbo", "c5")
    expected = copy.deepcopy(official_n).half().float()  # the float16 weights, back in fp32
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_to_reference(ours.set_attention_backend("reference")(x),
                                  copy.deepcopy(expected).double()(x.double()), expected(x))
