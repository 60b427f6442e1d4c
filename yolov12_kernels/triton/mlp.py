"""Triton kernel for the ABlock MLP pair in one launch: ``x + conv1x1(silu(conv1x1(x, w1) + b1),
w2) + b2``, the hidden activations never leaving the chip (up to C = 256; see below).

Each program owns a block of pixels and ALL of their output channels: it walks the hidden layer in
blocks of BLOCK_H — first GEMM (pixels x C) @ (C x BLOCK_H) + b1, SiLU, rounded to the input dtype
(as the unfused model stores it) — and feeds each hidden block straight into the second GEMM,
accumulating (pixels x C) in fp32. Output channels are padded to a power of two (C_PAD; the
384 channels of YOLOv12-X become 512 and a quarter of the second GEMM is padding). Because a
program reads only its own pixels and writes them after its last read, ``out`` may be ``x``
itself (an in-place residual).

The accumulator holds BLOCK_M x C_PAD fp32 values in registers, which bounds C: up to 512
(``MAX_CHANNELS``); ``mlp_config`` keeps every YOLOv12 width free of spills (conv_check reports
registers and spills for each). Two other ways to run the pair, chosen by the configuration
(``launches``): ``split_h`` splits the hidden blocks over programs (small batch-1 maps: more
programs), their fp32 partial outputs reduced with b2 and the residual by the conv module's
fixed-order reduction; ``two_gemms`` runs the two 1x1 convs as conv launches through a hidden
buffer — what ``mlp_config`` picks for C > 256 (YOLOv12-L/X's 384), where the 32-pixel tiles the
accumulator allows would re-read both weights every 32 pixels.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import config_tables
from . import launch as _launch  # the module; this one defines a function launch()
from . import conv as _conv
from .conv import _epilogue, _k_range, _pixels, _prec, _store_partial

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
MAX_CHANNELS = 512


@triton.jit
def _mlp_kernel(X, W1, B1, W2, B2, Out, Part,
                HO, WO, C, HID, M,
                sxb, sxc, sxy, sxx,
                s1h, s1c, s2c, s2h,
                sob, soc, soy, sox,
                HAS_RES: tl.constexpr, PREC: tl.constexpr, C_PAD: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                SPLIT_H: tl.constexpr):
    # SPLIT_H > 1: the hidden blocks in that many parts, one program per (pixel block, part);
    # each part's fp32 partial output goes to Part, and conv._splitk_reduce_kernel adds them
    # (in a fixed order) with b2 and the residual. No GEMM work is repeated.
    pid = tl.program_id(0)
    pid_h = pid % SPLIT_H
    pid = pid // SPLIT_H
    offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < M
    b, yo, xo = _pixels(offs_m, HO, WO)
    x_row = X + b * sxb + yo * sxy + xo * sxx
    offs_c = tl.arange(0, C_PAD)
    c_ok = offs_c < C
    offs_h = tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, C_PAD), dtype=tl.float32)
    h_lo, h_hi = _k_range(tl.cdiv(HID, BLOCK_H), pid_h, SPLIT_H)
    for h_step in range(h_lo, h_hi):
        hh = h_step * BLOCK_H + offs_h
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
    if SPLIT_H == 1:
        _epilogue(acc, offs_m, offs_c, m_ok, c_ok, b, yo, xo, B2, X, None, Out,
                  sxb, sxc, sxy, sxx, sob, soc, soy, sox, True, False, HAS_RES, False)
    else:
        _store_partial(acc, Part, pid_h, offs_m, offs_c, m_ok, c_ok, M, C)


class Config(NamedTuple):
    block_m: int
    block_h: int
    block_k: int
    num_warps: int
    num_stages: int
    split_h: int = 1          # > 1: hidden blocks split over programs, partials reduced after
    two_gemms: bool = False   # the two 1x1 convs as two conv launches (hidden through memory)


def mlp_config(channels: int, dtype: torch.dtype, m: int | None = None, hidden: int | None = None,
               arch: str = "sm90") -> Config:
    """The fixed configuration of one MLP pair: the arch's tuned table where it has the shape
    class (``config_tables``), else ``heuristic_config``."""
    if m is not None and hidden is not None:
        tuned = config_tables.lookup(arch, config_tables.mlp_key(dtype, m, channels, hidden))
        if tuned is not None:
            return Config(*tuned)
    return heuristic_config(channels, dtype, m, hidden, arch)


def heuristic_config(channels: int, dtype: torch.dtype, m: int | None = None,
                     hidden: int | None = None, arch: str = "sm90") -> Config:
    """Rules from the plan report's arithmetic (docs/fusion.md), not measured:

    * C > 256 (YOLOv12-L/X's 384): two GEMMs (``two_gemms``: the 1x1 convs as two conv
      launches, the hidden map through memory). The fused kernel holds a BLOCK_M x C_PAD fp32
      accumulator in registers: at C_PAD 512 that forces 32-pixel tiles, one stage and a second
      GEMM a third padded (384 -> 512), and every 32 pixels re-read both weights (~706 KB):
      ~1.1 GB of L2 reads per call at P4 batch 32; the conv kernel's 128-pixel tiles read them a
      quarter as often, with pipelined loads, for one hidden-map round trip through HBM;
    * else fused: 32-pixel blocks, 8 warps (registers: two fp32 accumulators), 64-wide hidden
      blocks in 2 stages (32-wide at C_PAD 256; fp32: 32-wide K and 16-wide hidden blocks, 1
      stage); below one wave of programs (batch 1) ``conv.one_wave_search`` takes 16-pixel
      blocks, or splits the hidden blocks over programs (partials reduced after) where a
      program would walk >= ``conv.SPLIT_MIN_STEPS`` steps."""
    c_pad = max(16, triton.next_power_of_2(channels))
    if c_pad > 256:
        return Config(32, 32, 64, 8, 1, 1, True)
    fp32 = dtype == torch.float32
    bk = min(32 if fp32 else 64, c_pad)
    # fp32: 16-wide hidden blocks (32 x 32 x 32 spilled 24 B at C_PAD 256 on sm_80 under
    # Triton 3.9, 12 B at C_PAD 128 on sm_90 under 3.6; 16 wide: 102-118 registers)
    bh, stages = (16, 1) if fp32 else (64, 2)
    if c_pad == 256 and not fp32:
        bh = 32  # 32 x 64 x 64 at C_PAD 256 spilled 20 B at 128 registers on sm_90 (Triton 3.9,
        # ptxas' own report); 32-wide hidden blocks: 102-104 registers, none
    bm, split = 32, 1
    sms = _conv.ARCHS[arch][0]
    if m is not None and hidden is not None and triton.cdiv(m, 32) < sms:
        # each hidden block is (C / BLOCK_K) + 1 dot steps: the split's unit. At C_PAD 256,
        # 16 x 64 hidden blocks split in two spilled 12 B on sm_80 (Triton 3.9): 32 there
        per_block = triton.cdiv(channels, bk) + 1
        bhs = [16] if fp32 else sorted({bh, 32, 16} if c_pad < 256 else {32, 16}, reverse=True)
        bm, _, bh, split = _conv.one_wave_search(
            sms, m, hidden, lambda b: triton.cdiv(hidden, b), lambda bm_, _: triton.cdiv(m, bm_),
            (32, 16), (0,), bhs, min_steps=triton.cdiv(_conv.SPLIT_MIN_STEPS, per_block))
    # fp32 16-pixel blocks at C_PAD <= 128: 8 warps spilled 12 B at 64 registers on sm_80
    # (Triton 3.9); at C_PAD 256 it is 4 warps that spilled (12 B at 128 on sm_90, Triton 3.6)
    warps = 4 if fp32 and bm == 16 and c_pad <= 128 else 8
    if not fp32 and bm == 16 and c_pad == 256:
        warps = 4  # 16 x 32 x 64 split in two, 8 warps: 32 B spilled at 128 registers on sm_90
        # (Triton 3.9, l's P4 MLP at batch 1); 4 warps: 166 registers, none
    return Config(bm, bh, bk, warps, stages, split)


def interpreter_config(channels: int) -> Config:
    """Under the interpreter numpy runs each program: few large blocks are much faster."""
    return Config(64, 64, min(64, max(16, triton.next_power_of_2(channels))), 4, 1)


forced_config = _conv.Forced()  # ``with forced_config(Config(...)):`` every MLP launch uses it


def pack_w2(w2: torch.Tensor) -> torch.Tensor:
    """The second weight (C, hidden, 1, 1) as a view whose rows start every multiple of 16
    elements (zero padded): with hidden = 307 or 460 (1.2x widths) the plain layout misaligns
    every row, and the kernel then loads it element by element."""
    C, hid = w2.shape[:2]
    padded = -(-hid // 16) * 16
    buf = w2.new_zeros(C, padded)
    buf[:, :hid] = w2.reshape(C, hid)
    return buf[:, :hid, None, None]


def effective_split(hidden: int, config: Config) -> int:
    """The hidden parts that get work (see conv.effective_split)."""
    steps = triton.cdiv(hidden, config.block_h)
    return triton.cdiv(steps, triton.cdiv(steps, max(1, min(config.split_h, steps))))


def launches(x, w1, b1, w2, b2, out, residual: bool, config: Config | None = None,
             arch: str | None = None) -> list:
    """Every launch of one MLP pair (``conv.Launch`` tuples): the fused kernel; with split_h,
    then the reduction (b2, residual); with two_gemms, the two 1x1 convs' launches, the hidden
    map in a channels-last buffer allocated here."""
    B, C, H, W = x.shape
    hid = w1.shape[0]
    m = B * H * W
    if config is None:
        config = forced_config.top()
    if config is None and arch is None and INTERPRET:
        config = interpreter_config(C)
    if config is None:
        config = mlp_config(C, x.dtype, m, hid, arch or _arch(x))
    config = Config(*config)
    if config.two_gemms:
        hidden = torch.empty((B, hid, H, W), dtype=x.dtype, device=x.device,
                             memory_format=torch.channels_last)
        return (_conv.launches(x, w1, b1, None, None, hidden, 1, True, arch=arch)
                + _conv.launches(hidden, w2, b2, x if residual else None, None, out, 1, False,
                                 arch=arch))
    split = effective_split(hid, config)
    part = x.new_empty(split * m * C if split > 1 else 0, dtype=torch.float32)
    args = (x, w1, b1, w2, b2, out, part if split > 1 else None, H, W, C, hid, m, *x.stride(),
            w1.stride(0), w1.stride(1), w2.stride(0), w2.stride(1), *out.stride())
    kwargs = dict(HAS_RES=bool(residual), PREC=_prec(x.dtype),
                  C_PAD=max(16, triton.next_power_of_2(C)), BLOCK_M=config.block_m,
                  BLOCK_H=config.block_h, BLOCK_K=config.block_k, SPLIT_H=split,
                  num_warps=config.num_warps, num_stages=config.num_stages)
    blocks = triton.cdiv(m, config.block_m)
    fused = _conv.Launch(_mlp_kernel, (blocks * split,), args, kwargs)
    if split == 1:
        return [fused]
    flags = dict(HAS_BIAS=True, SILU=False, HAS_RES=bool(residual), HAS_GAMMA=False)
    return [fused, _conv.reduce_launch(part, split, b2, x if residual else None, None, out, m, C,
                                       arch or _arch(x), flags)]


def _arch(x) -> str:
    return _conv.arch_class(x.device) if x.is_cuda else "sm90"


def launch_args(x, w1, b1, w2, b2, out, residual: bool, config: Config | None = None):
    """(grid, args, kwargs) of an MLP pair that is ONE launch (see ``launches``)."""
    runs = launches(x, w1, b1, w2, b2, out, residual, config)
    if len(runs) != 1:
        raise ValueError("config: this MLP configuration is several launches; use "
                         "mlp.launches()")
    return runs[0].grid, runs[0].args, runs[0].kwargs


def launch(x, w1, b1, w2, b2, out, residual: bool) -> None:
    for k in launches(x, w1, b1, w2, b2, out, residual):
        _launch.run(k.kernel, k.grid, k.args, k.kwargs)  # recorded inside a launch.recording()


__all__ = ["launch", "launches", "launch_args", "mlp_config", "interpreter_config",
           "forced_config", "pack_w2", "Config", "MAX_CHANNELS", "INTERPRET"]
