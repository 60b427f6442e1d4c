"""yolov12_kernels.patch: swaps AAttn-layout modules onto the fused op, outputs unchanged.

``EagerAAttn`` below is written here, independently of yolov12.modules, with the attribute layout
and the eager forward of the public (ultralytics) AAttn: flatten/transpose, per-area reshape,
q^T k, softmax, v @ attn^T, permutes back, + pe(v), proj. ultralytics itself is not needed.
"""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

import yolov12_kernels
from yolov12 import YOLOv12
from yolov12.modules import AAttn
from _lively import lively


class ConvBN(nn.Module):
    """Conv2d (no bias) + BatchNorm2d, no activation: the layout of the public Conv(act=False)."""

    def __init__(self, c1, c2, k=1, g=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, 1, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)

    def forward(self, x):
        return self.bn(self.conv(x)) if getattr(self, "bn", None) is not None else self.conv(x)

    def fold(self):
        """Fuse like ultralytics does: BN folded into the conv, the bn attribute deleted."""
        self.conv = yolov12_kernels.fold_conv_bn(self.conv, self.bn)
        del self.bn


class EagerAAttn(nn.Module):
    def __init__(self, dim, num_heads, area=1):
        super().__init__()
        self.area = area
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        all_head_dim = self.head_dim * num_heads
        self.qkv = ConvBN(dim, all_head_dim * 3)
        self.proj = ConvBN(all_head_dim, dim)
        self.pe = ConvBN(all_head_dim, dim, 7, g=dim)

    def forward(self, x):
        B, C, H, W = x.shape
        N = H * W
        qkv = self.qkv(x).flatten(2).transpose(1, 2)              # (B, N, 3C)
        if self.area > 1:
            qkv = qkv.reshape(B * self.area, N // self.area, C * 3)
            B, N, _ = qkv.shape
        q, k, v = (qkv.view(B, N, self.num_heads, self.head_dim * 3)
                   .permute(0, 2, 3, 1)                            # (B, heads, 3d, N)
                   .split([self.head_dim, self.head_dim, self.head_dim], dim=2))
        attn = (q.transpose(-2, -1) @ k) * (self.head_dim ** -0.5)  # (B, heads, N, N)
        attn = attn.softmax(dim=-1)
        x = v @ attn.transpose(-2, -1)                             # (B, heads, d, N)
        x = x.permute(0, 3, 1, 2)                                  # (B, N, heads, d)
        v = v.permute(0, 3, 1, 2)
        if self.area > 1:
            x = x.reshape(B // self.area, N * self.area, C)
            v = v.reshape(B // self.area, N * self.area, C)
            B, N, _ = x.shape
        x = x.reshape(B, H, W, C).permute(0, 3, 1, 2)
        v = v.reshape(B, H, W, C).permute(0, 3, 1, 2)
        x = x + self.pe(v)
        return self.proj(x)


def _random_bn(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module


@pytest.mark.parametrize("area", [1, 4])
@pytest.mark.parametrize("folded", [False, True], ids=["bn", "folded"])
def test_patch_eager_module_same_outputs(area, folded):
    m = _random_bn(EagerAAttn(64, 2, area)).eval()
    if folded:
        for c in (m.qkv, m.proj, m.pe):
            c.fold()
    x = torch.randn(2, 64, 8, 12)
    with torch.no_grad():
        want = m(x)
        assert yolov12_kernels.patch(m, backend="reference") == 1
        assert isinstance(m.forward, types.MethodType) and "forward" in vars(m)
        got = m(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert yolov12_kernels.unpatch(m) == 1
    assert "forward" not in vars(m)
    with torch.no_grad():
        assert torch.equal(m(x), want)


def test_patch_keeps_weights_and_gradients():
    m = _random_bn(EagerAAttn(64, 2, 4)).eval()
    ref = _random_bn(EagerAAttn(64, 2, 4)).eval()
    ref.load_state_dict(m.state_dict())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    yolov12_kernels.patch(m, backend="reference")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    # batch 2: with batch 1, torch 2.13's CPU eval-mode batch_norm backward returns wrong input
    # gradients when grad_output has channels-last strides (as in the eager code): not ours to test
    x = torch.randn(2, 64, 8, 8)
    m(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_patch_training_bn_falls_back_to_original():
    m = _random_bn(EagerAAttn(64, 2, 1)).train()
    x = torch.randn(2, 64, 4, 4)
    torch.manual_seed(0)
    want = m(x)
    yolov12_kernels.patch(m)
    torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-5)


def test_patch_our_model():
    model = lively(YOLOv12("n"))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        want = model(x)
    expected = sum(isinstance(m, AAttn) for m in model.modules())
    assert expected == 8
    assert yolov12_kernels.patch(model, backend="auto") == expected
    assert yolov12_kernels.patch(model, backend="reference") == expected  # re-patch: backend only
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got[:, 4:], want[:, 4:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[:, :4], want[:, :4], atol=1e-2, rtol=1e-4)  # pixels
    assert yolov12_kernels.unpatch(model) == expected


def test_patch_ignores_other_modules_and_checks_arguments():
    class NotQuite(EagerAAttn):
        def __init__(self):
            super().__init__(64, 2)
            del self.head_dim  # layout incomplete: left alone

    seq = nn.Sequential(nn.Conv2d(3, 3, 1), NotQuite())
    assert yolov12_kernels.patch(seq) == 0

    wrapper = types.SimpleNamespace(model=nn.Sequential(EagerAAttn(64, 2)))  # like YOLO(...)
    assert yolov12_kernels.patch(wrapper) == 1
    with pytest.raises(ValueError, match="backend"):
        yolov12_kernels.patch(seq, backend="nope")
    with pytest.raises(ValueError, match="model"):
        yolov12_kernels.patch(42)
