"""The reference ops against independent formulations, and their argument checks."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolov12_kernels import reference


def dense_masked_attention(q, k, v, area):
    """Independent formulation: global attention over all N tokens with a block-diagonal mask
    (token i may attend to j only when both lie in the same area), computed per (b, head)."""
    B, N, H, d = q.shape
    region = torch.arange(N) // (N // area)
    allowed = region[:, None] == region[None, :]
    out = torch.empty_like(q)
    for b in range(B):
        for h in range(H):
            s = (q[b, :, h] @ k[b, :, h].T) / math.sqrt(d)
            s = s.masked_fill(~allowed, float("-inf"))
            out[b, :, h] = torch.softmax(s, dim=-1) @ v[b, :, h]
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("area", [1, 2, 4])
@pytest.mark.parametrize("B,N,H,d", [(1, 16, 1, 8), (2, 48, 3, 16), (3, 100, 2, 32)])
def test_area_attention_equals_block_diagonal_dense(dtype, area, B, N, H, d):
    q, k, v = (torch.randn(B, N, H, d, dtype=torch.float64) for _ in range(3))
    want = dense_masked_attention(q, k, v, area)
    got = reference.area_attention(q.to(dtype), k.to(dtype), v.to(dtype), area)
    assert got.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)


def test_area_one_is_global_attention():
    q, k, v = (torch.randn(2, 64, 4, 32, dtype=torch.float64) for _ in range(3))
    want = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                          v.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(reference.area_attention(q, k, v, 1), want)


def ultralytics_style_aattn_core(qkv, num_heads, area, pe_w, pe_b):
    """What the public AAttn.forward does between its qkv and proj convs, written out step by
    step the public way (flatten, transpose, area reshape, view, permute, split, q^T k, ...)."""
    B, C3, H, W = qkv.shape
    C, N, d = C3 // 3, H * W, C3 // 3 // num_heads
    x = qkv.flatten(2).transpose(1, 2)
    Bt, Nt = B, N
    if area > 1:
        x = x.reshape(B * area, N // area, C * 3)
        Bt, Nt = x.shape[:2]
    q, k, v = x.view(Bt, Nt, num_heads, d * 3).permute(0, 2, 3, 1).split([d, d, d], dim=2)
    attn = ((q.transpose(-2, -1) @ k) * d ** -0.5).softmax(dim=-1)
    out = (v @ attn.transpose(-2, -1)).permute(0, 3, 1, 2)
    v = v.permute(0, 3, 1, 2)
    out = out.reshape(B, N, C).reshape(B, H, W, C).permute(0, 3, 1, 2)
    v = v.reshape(B, N, C).reshape(B, H, W, C).permute(0, 3, 1, 2)
    return out + F.conv2d(v, pe_w, pe_b, padding=pe_w.shape[-1] // 2, groups=C)


@pytest.mark.parametrize("B,heads,H,W,area", [(1, 2, 8, 8, 4), (2, 3, 6, 10, 2), (2, 1, 5, 7, 1)])
def test_model_layout_matches_public_eager_code(B, heads, H, W, area):
    d = 32
    qkv = torch.randn(B, 3 * heads * d, H, W, dtype=torch.float64)
    pe_w = torch.randn(heads * d, 1, 7, 7, dtype=torch.float64)
    pe_b = torch.randn(heads * d, dtype=torch.float64)
    want = ultralytics_style_aattn_core(qkv, heads, area, pe_w, pe_b)
    got = reference.fused_area_attention(qkv, heads, area, pe_w, pe_b)
    torch.testing.assert_close(got, want)
    # the composition helper every backend uses, with the pe left out
    attn_only = reference.attention_plus_pe(
        qkv, heads, lambda q, k, v: reference.area_attention(q, k, v, area), torch.zeros_like)
    torch.testing.assert_close(attn_only, want - F.conv2d(
        reference.split_qkv(qkv, heads)[2].reshape(B, H, W, -1).permute(0, 3, 1, 2),
        pe_w, pe_b, padding=3, groups=heads * d))


@pytest.mark.parametrize("k", [1, 3, 7])
def test_position_perceiver_equals_explicit_stencil(k):
    B, C, H, W = 2, 3, 5, 6
    v = torch.randn(B, C, H, W, dtype=torch.float64)
    w = torch.randn(C, 1, k, k, dtype=torch.float64)
    b = torch.randn(C, dtype=torch.float64)
    r = k // 2
    padded = F.pad(v, (r, r, r, r))
    want = torch.zeros_like(v) + b.view(1, C, 1, 1)
    for dy in range(k):
        for dx in range(k):
            want += w[:, 0, dy, dx].view(1, C, 1, 1) * padded[:, :, dy:dy + H, dx:dx + W]
    torch.testing.assert_close(reference.position_perceiver(v, w, b), want)
    torch.testing.assert_close(reference.position_perceiver(v, w, None),
                               want - b.view(1, C, 1, 1))


def randomized_bn(c, dtype=torch.float32):
    bn = nn.BatchNorm2d(c, eps=1e-3).to(dtype)
    with torch.no_grad():  # random statistics, not the defaults, so folding is really tested
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return bn.eval()


@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,groups,bias", [
    (8, 16, 3, 1, 1, 1, 1, False),
    (8, 16, 1, 2, 0, 1, 1, True),
    (8, 8, 7, 1, 3, 1, 8, False),      # depthwise, the position perceiver
    (12, 6, 3, 2, 2, 2, 3, True),      # grouped, strided, dilated
])
def test_fold_conv_bn_equals_conv_then_bn(cin, cout, k, stride, pad, dil, groups, bias):
    conv = nn.Conv2d(cin, cout, k, stride, pad, dil, groups, bias=bias)
    bn = randomized_bn(cout)
    x = torch.randn(2, cin, 11, 13)
    fused = reference.fold_conv_bn(conv, bn)
    assert fused.bias is not None and fused.weight.dtype == conv.weight.dtype
    assert (fused.stride, fused.padding, fused.dilation, fused.groups) == \
        (conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_fold_conv_bn_keeps_dtype_and_rejects_mismatch():
    conv = nn.Conv2d(4, 6, 3, bias=False).double()
    fused = reference.fold_conv_bn(conv, randomized_bn(6, torch.float64))
    assert fused.weight.dtype == torch.float64 and fused.bias.dtype == torch.float64
    with pytest.raises(ValueError, match="bn"):
        reference.fold_conv_bn(conv, randomized_bn(5))
    with pytest.raises(ValueError, match="conv"):
        reference.fold_conv_bn(nn.Linear(2, 2), randomized_bn(6))


def test_fold_conv_bn_refuses_a_training_mode_bn():
    conv = nn.Conv2d(4, 6, 3, bias=False)
    with pytest.raises(ValueError, match=r"^bn: is in training mode.*\.eval\(\)"):
        reference.fold_conv_bn(conv, randomized_bn(6).train())


def test_bad_inputs_name_the_argument():
    q = torch.randn(1, 16, 2, 8)
    with pytest.raises(ValueError, match="^q: expected a 4-D"):
        reference.area_attention(q[0], q, q)
    with pytest.raises(ValueError, match="^k: shape"):
        reference.area_attention(q, q[:, :8], q)
    with pytest.raises(ValueError, match="^v: dtype"):
        reference.area_attention(q, q, q.double())
    with pytest.raises(ValueError, match="^area: 3 does not divide"):
        reference.area_attention(q, q, q, 3)
    with pytest.raises(ValueError, match="^area: must be >= 1"):
        reference.area_attention(q, q, q, 0)
    with pytest.raises(ValueError, match="^q: expected a floating"):
        reference.area_attention(q.long(), q.long(), q.long())
    qkv = torch.randn(1, 3 * 64, 4, 4)
    with pytest.raises(ValueError, match="^qkv: channel count 192"):
        reference.fused_area_attention(qkv, 5, 1, torch.randn(64, 1, 7, 7))
    with pytest.raises(ValueError, match="^num_heads"):
        reference.split_qkv(qkv, 0)
    with pytest.raises(ValueError, match="^pe_weight: expected a depthwise"):
        reference.fused_area_attention(qkv, 2, 1, torch.randn(32, 1, 7, 7))
    with pytest.raises(ValueError, match="^pe_bias: expected shape"):
        reference.fused_area_attention(qkv, 2, 1, torch.randn(64, 1, 7, 7), torch.randn(3))
    with pytest.raises(ValueError, match="^weight: kernel size must be odd"):
        reference.position_perceiver(torch.randn(1, 4, 5, 5), torch.randn(4, 1, 4, 4))


def test_conv_bn_params_match_fold_and_carry_gradients():
    conv, bn = nn.Conv2d(6, 6, 7, padding=3, groups=6, bias=True), randomized_bn(6)
    w, b = reference.conv_bn_params(conv, bn)
    folded = reference.fold_conv_bn(conv, bn)
    torch.testing.assert_close(w.detach(), folded.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(b.detach(), folded.bias, atol=1e-6, rtol=1e-5)
    (w.sum() + b.sum()).backward()
    assert conv.weight.grad is not None and bn.weight.grad is not None
    assert reference.conv_bn_params(conv, None) == (conv.weight, conv.bias)
    assert reference.conv_bn_params(conv, bn.train()) is None
