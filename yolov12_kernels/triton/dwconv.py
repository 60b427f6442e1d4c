"""Triton kernel for the depthwise k x k conv (YOLOv12's DWConv, in the Detect head's class branch)
with BN folded and the conv kernels' epilogue (bias, optional SiLU).

A depthwise conv has no reduction over channels, so it is no GEMM: each program computes a tile of
(output pixels, channels) as k*k shifted loads times a per-channel weight, in fp32. With channels
innermost (channels-last) every load is a contiguous run of channels. Any strides are accepted,
and the output may be any view (e.g. a concat slice), like the dense conv kernel's.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import triton
import triton.language as tl

from . import launch as _launch  # the module; this one defines a function launch()
from .conv import _epilogue, _pixels

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _dwconv_kernel(X, Wt, Bias, Out,
                   H, W, C, HO, WO, M,
                   sxb, sxc, sxy, sxx,
                   swc, swy, swx,
                   sob, soc, soy, sox,
                   KS: tl.constexpr, STRIDE: tl.constexpr, HAS_BIAS: tl.constexpr,
                   SILU: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    c_blocks = tl.cdiv(C, BLOCK_C)
    pid_m = pid // c_blocks
    pid_c = pid - pid_m * c_blocks
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    m_ok = offs_m < M
    c_ok = offs_c < C
    b, yo, xo = _pixels(offs_m, HO, WO)
    x_img = X + b * sxb
    w_c = Wt + offs_c * swc
    acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for ky in tl.static_range(KS):
        yi = yo * STRIDE + (ky - KS // 2)
        y_ok = m_ok & (yi >= 0) & (yi < H)
        for kx in tl.static_range(KS):
            xi = xo * STRIDE + (kx - KS // 2)
            ok = y_ok & (xi >= 0) & (xi < W)
            xv = tl.load((x_img + yi * sxy + xi * sxx)[:, None] + offs_c[None, :] * sxc,
                         mask=ok[:, None] & c_ok[None, :], other=0.0)
            wv = tl.load(w_c + ky * swy + kx * swx, mask=c_ok, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    _epilogue(acc, offs_m, offs_c, m_ok, c_ok, b, yo, xo, Bias, None, None, Out,
              0, 0, 0, 0, sob, soc, soy, sox, HAS_BIAS, SILU, False, False)


class Config(NamedTuple):
    block_m: int
    block_c: int
    num_warps: int


def dwconv_config(channels: int) -> Config:
    """Fixed for every arch: a memory-bound stencil; 32 pixels x up to 64 channels per program,
    4 warps. The k*k loads are issued together (latency hiding), so registers grow with the tile:
    64 x 128 needs 255 registers and spills on sm_80, 32 x 64 needs ~106 (conv_check)."""
    return Config(32, min(64, max(16, triton.next_power_of_2(channels))), 4)


def launch_args(x, weight, bias, out, stride: int, silu: bool, config: Config | None = None):
    """(grid, positional args, constexpr/launch kwargs) of one launch (see conv.launch_args)."""
    B, C, H, W = x.shape
    _, _, HO, WO = out.shape
    m = B * HO * WO
    config = config or dwconv_config(C)
    args = (x, weight, bias, out, H, W, C, HO, WO, m, *x.stride(), weight.stride(0),
            weight.stride(2), weight.stride(3), *out.stride())
    kwargs = dict(KS=weight.shape[-1], STRIDE=stride, HAS_BIAS=bias is not None, SILU=bool(silu),
                  BLOCK_M=config.block_m, BLOCK_C=config.block_c, num_warps=config.num_warps)
    grid = (triton.cdiv(m, config.block_m) * triton.cdiv(C, config.block_c),)
    return grid, args, kwargs


def launch(x, weight, bias, out, stride: int, silu: bool) -> None:
    grid, args, kwargs = launch_args(x, weight, bias, out, stride, silu)
    _launch.run(_dwconv_kernel, grid, args, kwargs)  # recorded inside a launch.recording()


__all__ = ["launch", "launch_args", "dwconv_config", "Config", "INTERPRET"]
