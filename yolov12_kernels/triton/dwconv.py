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

import torch
import triton
import triton.language as tl

from . import config_tables
from . import launch as _launch  # the module; this one defines a function launch()
from .conv import ARCHS, Forced, Launch, _epilogue, _pixels, arch_class, elementwise_blocks

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


def dwconv_config(channels: int, m: int | None = None, arch: str = "sm90",
                  dtype: torch.dtype = torch.float16, ks: int = 3, stride: int = 1) -> Config:
    """The arch's tuned table entry of the shape class (``config_tables``), else
    ``heuristic_config``."""
    if m is not None:
        tuned = config_tables.lookup(arch, config_tables.dwconv_key(dtype, m, channels, ks,
                                                                    stride))
        if tuned is not None:
            return Config(*tuned)
    return heuristic_config(channels, m, arch)


def heuristic_config(channels: int, m: int | None = None, arch: str = "sm90") -> Config:
    """A memory-bound stencil: 32 pixels x up to 64 channels per program, 4 warps. The k*k loads
    are issued together (latency hiding), so registers grow with the tile: 64 x 128 needs 255
    registers and spills on sm_80, 32 x 64 needs ~106 (conv_check). Below one wave of programs
    (batch-1 P5 maps) smaller tiles (down to 8 x 8: no tl.dot here) give every SM one."""
    bc = min(64, max(16, triton.next_power_of_2(channels)))
    if m is not None and triton.cdiv(m, 32) * triton.cdiv(channels, bc) < ARCHS[arch][0]:
        # at most 512 outputs: 1024 with 4 warps (16 x 64, 32 x 32) spilled 254 B at 80
        # registers on sm_90 (Triton 3.9), 512 use ~60
        bm, bc = elementwise_blocks(ARCHS[arch][0], m, channels, 32, bc, max_area=512)
        return Config(bm, bc, 4)
    return Config(32, bc, 4)


forced_config = Forced()  # ``with forced_config(Config(...)):`` every depthwise launch uses it


def launches(x, weight, bias, out, stride: int, silu: bool, config: Config | None = None,
             arch: str | None = None) -> list:
    """The launch (one ``conv.Launch``) of a depthwise conv."""
    B, C, H, W = x.shape
    _, _, HO, WO = out.shape
    m = B * HO * WO
    if config is None:
        config = forced_config.top()
    if config is None and arch is None and INTERPRET:
        config = heuristic_config(C)  # numpy runs each program: few large blocks
    if config is None:
        config = dwconv_config(C, m, arch or arch_class(x.device), x.dtype, weight.shape[-1],
                               stride)
    args = (x, weight, bias, out, H, W, C, HO, WO, m, *x.stride(), weight.stride(0),
            weight.stride(2), weight.stride(3), *out.stride())
    kwargs = dict(KS=weight.shape[-1], STRIDE=stride, HAS_BIAS=bias is not None, SILU=bool(silu),
                  BLOCK_M=config.block_m, BLOCK_C=config.block_c, num_warps=config.num_warps)
    grid = (triton.cdiv(m, config.block_m) * triton.cdiv(C, config.block_c),)
    return [Launch(_dwconv_kernel, grid, args, kwargs)]


def launch_args(x, weight, bias, out, stride: int, silu: bool, config: Config | None = None):
    """(grid, positional args, constexpr/launch kwargs) of the launch (see conv.launch_args)."""
    (run,) = launches(x, weight, bias, out, stride, silu, config)
    return run.grid, run.args, run.kwargs


def launch(x, weight, bias, out, stride: int, silu: bool) -> None:
    for k in launches(x, weight, bias, out, stride, silu):
        _launch.run(k.kernel, k.grid, k.args, k.kwargs)  # recorded inside a launch.recording()


__all__ = ["launch", "launches", "launch_args", "dwconv_config", "heuristic_config",
           "forced_config", "Config", "INTERPRET"]
