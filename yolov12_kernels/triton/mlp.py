"""Triton kernel for the ABlock MLP pair in one launch: ``x + conv1x1(silu(conv1x1(x, w1) + b1),
w2) + b2``, the hidden activations never leaving the chip.

Each program owns a block of pixels and ALL of their output channels: it walks the hidden layer in
blocks of BLOCK_H — first GEMM (pixels x C) @ (C x BLOCK_H) + b1, SiLU, rounded to the input dtype
(as the unfused model stores it) — and feeds each hidden block straight into the second GEMM,
accumulating (pixels x C) in fp32. Output channels are padded to a power of two (C_PAD; the
384 channels of YOLOv12-X become 512 and a quarter of the second GEMM is padding). Because a
program reads only its own pixels and writes them after its last read, ``out`` may be ``x``
itself (an in-place residual).

The accumulator holds BLOCK_M x C_PAD fp32 values in registers, which bounds C: up to 512
(``MAX_CHANNELS``); ``mlp_config`` keeps every YOLOv12 width free of spills (conv_check reports
registers and spills for each).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import launch as _launch  # the module; this one defines a function launch()
from .conv import _epilogue, _pixels, _prec

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
MAX_CHANNELS = 512


@triton.jit
def _mlp_kernel(X, W1, B1, W2, B2, Out,
                HO, WO, C, HID, M,
                sxb, sxc, sxy, sxx,
                s1h, s1c, s2c, s2h,
                sob, soc, soy, sox,
                HAS_RES: tl.constexpr, PREC: tl.constexpr, C_PAD: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < M
    b, yo, xo = _pixels(offs_m, HO, WO)
    x_row = X + b * sxb + yo * sxy + xo * sxx
    offs_c = tl.arange(0, C_PAD)
    c_ok = offs_c < C
    offs_h = tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, C_PAD), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hh = h0 + offs_h
        h_ok = hh < HID
        hid = tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32)
        for k0 in range(0, C, BLOCK_K):
            kk = k0 + offs_k
            k_ok = kk < C
            a = tl.load(x_row[:, None] + kk[None, :] * sxc, mask=m_ok[:, None] & k_ok[None, :],
                        other=0.0)
            w1 = tl.load(W1 + hh[None, :] * s1h + kk[:, None] * s1c,
                         mask=k_ok[:, None] & h_ok[None, :], other=0.0)
            hid = tl.dot(a, w1, hid, input_precision=PREC)
        hid += tl.load(B1 + hh, mask=h_ok, other=0.0).to(tl.float32)[None, :]
        hid = hid * tl.sigmoid(hid)  # padded hidden columns: silu(0) = 0, and w2 rows are 0
        w2 = tl.load(W2 + offs_c[None, :] * s2c + hh[:, None] * s2h,
                     mask=h_ok[:, None] & c_ok[None, :], other=0.0)
        acc = tl.dot(hid.to(W2.dtype.element_ty), w2, acc, input_precision=PREC)
    _epilogue(acc, offs_m, offs_c, m_ok, c_ok, b, yo, xo, B2, X, None, Out,
              sxb, sxc, sxy, sxx, sob, soc, soy, sox, True, False, HAS_RES, False)


class Config(NamedTuple):
    block_m: int
    block_h: int
    block_k: int
    num_warps: int
    num_stages: int


def mlp_config(channels: int, dtype: torch.dtype) -> Config:
    """Fixed per width class, the same on every arch: registers are the limit (two fp32
    accumulators, BLOCK_M x C_PAD and BLOCK_M x BLOCK_H). 8 warps and 32-pixel blocks keep every
    YOLOv12 width free of spills on sm_80/sm_90 (conv_check); 32 pixels also give the small b1
    maps more programs. C_PAD 512 (YOLOv12-X) needs 32-wide hidden blocks and no pipelining."""
    c_pad = max(16, triton.next_power_of_2(channels))
    if INTERPRET:
        return Config(64, 64, min(64, c_pad), 4, 1)
    fp32 = dtype == torch.float32
    bk = min(32 if fp32 else 64, c_pad)
    if c_pad <= 256 and not fp32:
        return Config(32, 64, bk, 8, 2)
    return Config(32, 32, bk, 8, 1)


def pack_w2(w2: torch.Tensor) -> torch.Tensor:
    """The second weight (C, hidden, 1, 1) as a view whose rows start every multiple of 16
    elements (zero padded): with hidden = 307 or 460 (1.2x widths) the plain layout misaligns
    every row, and the kernel then loads it element by element."""
    C, hid = w2.shape[:2]
    padded = -(-hid // 16) * 16
    buf = w2.new_zeros(C, padded)
    buf[:, :hid] = w2.reshape(C, hid)
    return buf[:, :hid, None, None]


def launch_args(x, w1, b1, w2, b2, out, residual: bool, config: Config | None = None):
    B, C, H, W = x.shape
    hid = w1.shape[0]
    m = B * H * W
    config = config or mlp_config(C, x.dtype)
    args = (x, w1, b1, w2, b2, out, H, W, C, hid, m, *x.stride(), w1.stride(0), w1.stride(1),
            w2.stride(0), w2.stride(1), *out.stride())
    kwargs = dict(HAS_RES=bool(residual), PREC=_prec(x.dtype),
                  C_PAD=max(16, triton.next_power_of_2(C)), BLOCK_M=config.block_m,
                  BLOCK_H=config.block_h, BLOCK_K=config.block_k, num_warps=config.num_warps,
                  num_stages=config.num_stages)
    return (triton.cdiv(m, config.block_m),), args, kwargs


def launch(x, w1, b1, w2, b2, out, residual: bool) -> None:
    grid, args, kwargs = launch_args(x, w1, b1, w2, b2, out, residual)
    _launch.run(_mlp_kernel, grid, args, kwargs)  # recorded inside a launch.recording()


__all__ = ["launch", "launch_args", "mlp_config", "pack_w2", "Config", "MAX_CHANNELS",
           "INTERPRET"]
