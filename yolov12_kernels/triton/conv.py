"""Triton kernel for YOLOv12's dense convolutions: 1x1 and 3x3 (stride 1 or 2) as one GEMM each.

Every tensor is a logical (B, C, H, W) tensor with any strides; the kernel is built for channels
innermost (``torch.channels_last``, i.e. NHWC in memory), where every load is a contiguous run of
channels. A channel slice of a larger channels-last buffer (``buf[:, c0:c1]``, the following
concat's buffer) is such a tensor too, so the output is written straight into its concat slice
and no ``cat`` copy is needed.

The conv is an implicit GEMM: rows are the B*HO*WO output pixels, columns the output channels, and
the reduction runs over (tap, input channel). Two ways to walk the reduction (``TAPS_IN_K``):

* per tap (wide inputs, Cin >= 32): an outer walk over the KS*KS taps times Cin blocks in ONE flat
  loop (so the compiler pipelines the whole reduction, not just one tap's few channel blocks); each
  step loads a (pixels, channels) tile shifted by the tap, masked at the image border;
* taps folded into K (narrow inputs: the 3-channel stem, 8/16-channel bottlenecks): the reduction
  index k = tap*Cin + c runs over KS*KS*Cin in blocks, so a 3-channel 3x3 conv is one K=27 block
  instead of nine mostly-masked ones.

Epilogue, in fp32 before the one rounding to the output dtype: ``+ bias``, optional SiLU, optional
residual ``res + y`` or ``res + gamma[c] * y`` (A2C2f's layer scale). The weight is read through
its strides too: channels-last weights (``w.contiguous(memory_format=torch.channels_last)``) make
its (k, n) tiles contiguous along the reduction.

Precision: inputs in fp16/bf16 run on tensor cores with fp32 accumulation; fp32 inputs use IEEE
fp32 products (``input_precision="ieee"``), an exact path rather than TF32.

Split-K (``Config.split_k`` > 1, for layers too small to give every SM a program): each split
walks its share of the reduction steps and writes fp32 partial sums to a workspace; a second
launch, ``_splitk_reduce_kernel``, adds them in a fixed order (the same bits on every run: no
atomics) and runs the epilogue. ``launches`` returns the one or two launches of a conv.

Launch configurations are fixed per (arch class, layer-shape class) by ``conv_config`` — the
arch's tuned table (``config_tables``, written by ``benchmarks.tune`` on a GPU) where it has the
shape class, else ``heuristic_config`` — no autotuning at start-up or in tests;
``YOLOV12_CONV_CONFIG="BM,BN,BK,warps,stages[,split]"`` pins one for offline tuning.
"""
from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import config_tables
from . import launch as _launch  # the module; this one defines a function launch()

# triton.jit decides between compiling and interpreting at import time
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# "BM,BN,BK,warps,stages[,split]": every launch of this module uses it (offline tuning)
CONFIG_ENV = "YOLOV12_CONV_CONFIG"


@triton.jit
def _pixels(offs_m, HO, WO):
    """Output pixel index -> (batch as int64, y, x)."""
    hw = HO * WO
    b = offs_m // hw
    r = offs_m - b * hw
    y = r // WO
    return b.to(tl.int64), y, r - y * WO


@triton.jit
def _epilogue(acc, offs_m, offs_n, m_ok, n_ok, b, yo, xo, Bias, Res, Gamma, Out,
              srb, src, sry, srx, sob, soc, soy, sox,
              HAS_BIAS: tl.constexpr, SILU: tl.constexpr, HAS_RES: tl.constexpr,
              HAS_GAMMA: tl.constexpr):
    """acc (fp32, pixels x channels) -> act(acc + bias) [-> res + gamma * that] -> Out."""
    if HAS_BIAS:
        acc += tl.load(Bias + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    if SILU:
        acc = acc * tl.sigmoid(acc)
    ok = m_ok[:, None] & n_ok[None, :]
    if HAS_RES:
        if HAS_GAMMA:
            acc = acc * tl.load(Gamma + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        r_pix = b * srb + yo * sry + xo * srx
        acc += tl.load(Res + r_pix[:, None] + offs_n[None, :] * src, mask=ok,
                       other=0.0).to(tl.float32)
    o_pix = b * sob + yo * soy + xo * sox
    tl.store(Out + o_pix[:, None] + offs_n[None, :] * soc, acc.to(Out.dtype.element_ty), mask=ok)


@triton.jit
def _k_range(k_steps, pid_k, SPLIT_K: tl.constexpr):
    """The reduction steps [k_lo, k_hi) of split ``pid_k`` (all of them without split-K)."""
    if SPLIT_K == 1:
        k_lo = 0
        k_hi = k_steps
    else:
        per = tl.cdiv(k_steps, SPLIT_K)
        k_lo = pid_k * per
        k_hi = tl.minimum(k_lo + per, k_steps)
    return k_lo, k_hi


@triton.jit
def _store_partial(acc, Part, pid_k, offs_m, offs_n, m_ok, n_ok, M, COUT):
    """Split-K: this split's fp32 partial sums into its (M, COUT) plane of the workspace."""
    plane = Part + pid_k * (M * COUT)  # the launcher keeps the workspace under 2**31 elements
    tl.store(plane + offs_m[:, None] * COUT + offs_n[None, :], acc,
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _conv_kernel(X, Wt, Bias, Res, Gamma, Out, Part,
                 H, W, CIN, HO, WO, COUT, M,
                 sxb, sxc, sxy, sxx,
                 swn, swc, swy, swx,
                 srb, src, sry, srx,
                 sob, soc, soy, sox,
                 KS: tl.constexpr, STRIDE: tl.constexpr, TAPS_IN_K: tl.constexpr,
                 HAS_BIAS: tl.constexpr, SILU: tl.constexpr, HAS_RES: tl.constexpr,
                 HAS_GAMMA: tl.constexpr, PREC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 SPLIT_K: tl.constexpr):
    # one program per (pixel block, channel block[, reduction split]); channel blocks of one
    # pixel block are neighbours on the grid, so they share the activation tiles through L2.
    # SPLIT_K > 1: each split walks its share of the reduction steps and writes fp32 partial
    # sums to Part; _splitk_reduce_kernel adds them in a fixed order and runs the epilogue.
    pid = tl.program_id(0)
    pid_k = pid % SPLIT_K
    pid = pid // SPLIT_K
    n_blocks = tl.cdiv(COUT, BLOCK_N)
    pid_m = pid // n_blocks
    pid_n = pid - pid_m * n_blocks
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < M
    n_ok = offs_n < COUT
    b, yo, xo = _pixels(offs_m, HO, WO)
    yi0 = yo * STRIDE - KS // 2
    xi0 = xo * STRIDE - KS // 2
    x_img = X + b * sxb  # (BLOCK_M,) pointers to each row's image
    w_col = Wt + offs_n * swn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if TAPS_IN_K:
        K_TOTAL = KS * KS * CIN
        k_lo, k_hi = _k_range(tl.cdiv(K_TOTAL, BLOCK_K), pid_k, SPLIT_K)
        for step in range(k_lo, k_hi):
            kk = step * BLOCK_K + offs_k
            k_ok = kk < K_TOTAL
            tap = kk // CIN
            c = kk - tap * CIN
            ky = tap // KS
            kx = tap - ky * KS
            yi = yi0[:, None] + ky[None, :]
            xi = xi0[:, None] + kx[None, :]
            a_ok = (m_ok[:, None] & k_ok[None, :] & (yi >= 0) & (yi < H)
                    & (xi >= 0) & (xi < W))
            a = tl.load(x_img[:, None] + yi * sxy + xi * sxx + c[None, :] * sxc, mask=a_ok,
                        other=0.0)
            w = tl.load(w_col[None, :] + (c * swc + ky * swy + kx * swx)[:, None],
                        mask=k_ok[:, None] & n_ok[None, :], other=0.0)
            acc = tl.dot(a, w, acc, input_precision=PREC)
    elif KS == 1:  # a plain GEMM: no taps, no halo (every input pixel of a 1x1 conv exists)
        a_row = x_img + yi0 * sxy + xi0 * sxx
        k_lo, k_hi = _k_range(tl.cdiv(CIN, BLOCK_K), pid_k, SPLIT_K)
        for step in range(k_lo, k_hi):
            c = step * BLOCK_K + offs_k
            c_ok = c < CIN
            a = tl.load(a_row[:, None] + c[None, :] * sxc, mask=m_ok[:, None] & c_ok[None, :],
                        other=0.0)
            w = tl.load(w_col[None, :] + (c * swc)[:, None], mask=c_ok[:, None] & n_ok[None, :],
                        other=0.0)
            acc = tl.dot(a, w, acc, input_precision=PREC)
    else:
        k_blocks = tl.cdiv(CIN, BLOCK_K)
        k_lo, k_hi = _k_range(KS * KS * k_blocks, pid_k, SPLIT_K)
        for i in range(k_lo, k_hi):
            tap = i // k_blocks
            c = (i - tap * k_blocks) * BLOCK_K + offs_k
            c_ok = c < CIN
            ky = tap // KS
            kx = tap - ky * KS
            yi = yi0 + ky
            xi = xi0 + kx
            row_ok = m_ok & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
            a = tl.load((x_img + yi * sxy + xi * sxx)[:, None] + c[None, :] * sxc,
                        mask=row_ok[:, None] & c_ok[None, :], other=0.0)
            w = tl.load(w_col[None, :] + (c * swc)[:, None] + (ky * swy + kx * swx),
                        mask=c_ok[:, None] & n_ok[None, :], other=0.0)
            acc = tl.dot(a, w, acc, input_precision=PREC)
    if SPLIT_K == 1:
        _epilogue(acc, offs_m, offs_n, m_ok, n_ok, b, yo, xo, Bias, Res, Gamma, Out,
                  srb, src, sry, srx, sob, soc, soy, sox, HAS_BIAS, SILU, HAS_RES, HAS_GAMMA)
    else:
        _store_partial(acc, Part, pid_k, offs_m, offs_n, m_ok, n_ok, M, COUT)


@triton.jit
def _splitk_reduce_kernel(Part, Bias, Res, Gamma, Out,
                          HO, WO, COUT, M,
                          srb, src, sry, srx,
                          sob, soc, soy, sox,
                          SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
                          HAS_RES: tl.constexpr, HAS_GAMMA: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Sum the SPLIT_K partial planes of a split-K launch in a fixed order (so the result is
    the same bits on every run: no atomics), then the conv epilogue into Out."""
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(COUT, BLOCK_N)
    pid_m = pid // n_blocks
    pid_n = pid - pid_m * n_blocks
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < COUT
    ok = m_ok[:, None] & n_ok[None, :]
    tile = Part + offs_m[:, None] * COUT + offs_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for s in tl.static_range(SPLIT_K):  # fixed order: the same sum on every run
        acc += tl.load(tile + s * (M * COUT), mask=ok, other=0.0)
    b, yo, xo = _pixels(offs_m, HO, WO)
    _epilogue(acc, offs_m, offs_n, m_ok, n_ok, b, yo, xo, Bias, Res, Gamma, Out,
              srb, src, sry, srx, sob, soc, soy, sox, HAS_BIAS, SILU, HAS_RES, HAS_GAMMA)


# ------------------------------------------------------------------------------------------------
# launch configurations
# ------------------------------------------------------------------------------------------------
class Config(NamedTuple):
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int
    split_k: int = 1  # > 1: the reduction in that many parts, then _splitk_reduce_kernel


# Per arch class: streaming multiprocessors (to size the grid) and the shared memory one block may
# use (the pipeline's stages must fit it). "sm86" stands for every 99 KB part (sm_86, sm_89).
ARCHS = {"sm80": (108, 163 * 1024), "sm86": (84, 99 * 1024), "sm90": (132, 227 * 1024)}


def arch_class(device: torch.device) -> str:
    """The ARCHS row of a CUDA device ("sm80" for A100, "sm86" for 99 KB parts, "sm90" Hopper+)."""
    major, minor = torch.cuda.get_device_capability(device)
    if major >= 9:
        return "sm90"
    return "sm80" if (major, minor) == (8, 0) else "sm86"


def _pow2_at_least(n: int, lo: int) -> int:
    return max(lo, triton.next_power_of_2(n))


def taps_in_k(ks: int, cin: int) -> bool:
    """Fold the taps into the reduction for narrow inputs (fewer than 32 channels)."""
    return ks > 1 and cin < 32


def fitted_block(n: int, largest: int, smallest: int = 16, tol: float = 1 / 16) -> int:
    """The widest power-of-two block in [smallest, largest] whose blocks cover ``n`` with at
    most ``tol`` more padding than the tightest one: 96 -> 32 (3 blocks, none padded; 128
    would issue a third more), 192 -> 64, 80 -> 16, 460 -> 32 (480), 256 -> ``largest``."""
    sizes = [b for b in (256, 128, 64, 32, 16, 8) if smallest <= b <= largest]
    best = min(triton.cdiv(n, b) * b for b in sizes)
    return next(b for b in sizes if triton.cdiv(n, b) * b <= best * (1 + tol))


# Shared memory per SM (the 2-CTAs-per-SM budget); ARCHS holds what ONE block may use.
SMEM_PER_SM = {"sm80": 164 * 1024, "sm86": 100 * 1024, "sm90": 228 * 1024}


# Split-K only where a program would walk at least this many reduction steps: with fewer, the
# programs of a fraction of a wave all run at once and finish in a few steps, and the second
# launch (the reduction) would cost more than the split saves; it also keeps YOLOv12-N at batch 1
# within issue 13's budget of 120 launches (with 8: 125). The tuning sweep times splits anyway.
SPLIT_MIN_STEPS = 16


def one_wave_search(sms: int, m: int, n: int, steps_of, tiles_of, bms, bns, bks,
                    min_steps: int | None = None) -> tuple:
    """(block_m, block_n, block_k, split) for a GEMM-like launch too small for one wave of
    programs: the largest tiles (``bms`` x ``bns``) that make >= ``sms`` programs; else, when the
    programs would walk >= ``min_steps`` reduction steps (``steps_of(bk)``), a split of the
    reduction with the fewest parts (then the largest tiles); else the largest tiles with the
    most programs (under one wave: all run at once)."""
    def best_of(split_ok):
        best = None
        for bm in bms:
            for bn in bns:
                for bk in bks:
                    tiles, steps = tiles_of(bm, bn), steps_of(bk)
                    split = 1
                    if split_ok:
                        split = next((s for s in range(1, steps + 1)
                                      if tiles * triton.cdiv(steps, triton.cdiv(steps, s))
                                      >= sms), steps)
                        split = triton.cdiv(steps, triton.cdiv(steps, split))
                    score = (tiles * split >= sms, -split, min(tiles * split, sms), bm * bn,
                             bm, bk)
                    if best is None or score > best[0]:
                        best = (score, (bm, bn, bk, split))
        return best[1]
    plain = best_of(False)
    bm, bn, bk, _ = plain
    if tiles_of(bm, bn) >= sms or steps_of(bk) < (min_steps or SPLIT_MIN_STEPS):
        return plain
    return best_of(True)


def _pow2_down(top: int, bottom: int) -> list[int]:
    out = []
    while top >= bottom:
        out.append(top)
        top //= 2
    return out


def elementwise_blocks(sms: int, m: int, n: int, bm_max: int = 32, bn_max: int = 64,
                       smallest: int = 8, max_area: int = 4096) -> tuple[int, int]:
    """(block_m, block_n) of an elementwise tile launch (no tl.dot, so blocks may be 8 wide):
    the largest tiles (up to ``max_area`` elements) that give every SM a program, else the
    smallest."""
    bn_max = min(bn_max, max(smallest, triton.next_power_of_2(n)))
    cands = [(bm, bn) for bm in _pow2_down(bm_max, smallest) for bn in _pow2_down(bn_max, smallest)
             if bm * bn <= max_area]
    ok = [c for c in cands if triton.cdiv(m, c[0]) * triton.cdiv(n, c[1]) >= sms]
    return max(ok, key=lambda c: (c[0] * c[1], c[1])) if ok else min(cands, key=lambda c: (
        c[0] * c[1], -c[1]))


def heuristic_config(arch: str, dtype: torch.dtype, m: int, cout: int, cin: int, ks: int,
                     stride: int = 1) -> Config:
    """The configuration rules, used where no tuned table has the shape class (``conv_config``).
    Written from the plan report's arithmetic (``plan_report``; docs/fusion.md), not measured:

    * BLOCK_N fitted to Cout (``fitted_block``, <= 128): 96 -> 3 x 32, 192 -> 3 x 64, 80 ->
      5 x 16 instead of the next power of two (a third more tensor-core work issued);
    * BLOCK_K dividing Cin (64, else 32, else 16; fp32 <= 32, taps folded into K <= 32: their
      addresses are per element): Cin 96 walks 3 x 32 per tap, not 2 x 64 with 32 padded;
    * BLOCK_M 128 when that still gives two waves of programs on the arch's SMs, else 64, else
      32; below one wave of 32-pixel tiles (batch-1 P4/P5 layers) ``one_wave_search`` picks
      smaller tiles (16 pixels, BLOCK_N down to 16), or split-K where a program would walk
      ``SPLIT_MIN_STEPS`` or more reduction steps, so that every SM gets a program;
    * warps: 8 from 128 x 128 (mma.sync on sm_80/sm_86, and 3x3 convs on sm_90: from 128 x 64,
      where 4 warps reached 255 registers and spilled under Triton 3.6 / 3.9), else 4; fp32
      (IEEE products on the FMA units) caps BLOCK_N at 64 with 8 warps from 32 x 64 or 128
      pixels (4 spilled);
    * stages: on sm_90 as many as leave room for 2 CTAs per SM (3 of 128 x 128 x 64: 96 KB, not
      4 = 128 KB and one CTA), at most 4; elsewhere as many as fit, at most 3; fp32 2 (1 for
      the 1x1 at 128 x 16 on sm_90, where 2 spilled).
    """
    fp32 = dtype == torch.float32
    tik = taps_in_k(ks, cin)
    k_red = ks * ks * cin if tik else cin
    sms, smem = ARCHS[arch]
    bn = fitted_block(cout, 64 if fp32 else 128)
    bk_max = 32 if (fp32 or tik) else 64
    bk = fitted_block(k_red, bk_max)
    n_blocks = triton.cdiv(cout, bn)
    bm, split = 32, 1
    for cand in (128, 64):
        if triton.cdiv(m, cand) * n_blocks >= 2 * sms:
            bm = cand
            break
    if triton.cdiv(m, 32) * n_blocks < sms:  # under one wave (batch-1 P4/P5 layers)
        bks = [bk] + [b for b in (32, 16) if b < bk and triton.cdiv(k_red, b) * b
                      <= triton.cdiv(k_red, bk) * bk]
        bm, bn, bk, split = one_wave_search(
            sms, m, cout, lambda b: k_steps(ks, cin, b),
            lambda bm_, bn_: triton.cdiv(m, bm_) * triton.cdiv(cout, bn_), (32, 16),
            _pow2_down(bn, 16), bks)
    if ks > 1 and arch != "sm90" and bm * bn >= 128 * 128:
        bk = 32  # mma.sync 3x3 at 128 x 128 x 64 + residual: 255 registers and spills on sm_80
    if fp32:
        # 8 warps from 32 x 64 (4 spilled 12 B there on sm_90 under Triton 3.6) and for
        # 128-pixel tiles (taps-in-K 128 x 16 x 32 with 4: 255 registers, 280 B spilled on
        # sm_80); a 3x3 at 128 x 32 x 32 spilled 16 B on sm_90 (Triton 3.9): K blocks of 16
        # there (80-108 registers), while a 1x1 keeps 32 (16 spilled under Triton 3.6)
        warps = 8 if bm * bn >= 32 * 64 or bm >= 128 else 4
        if bm * bn == 128 * 32 and ks > 1 and not tik:
            bk = min(bk, 16)
        if bm * bn >= 128 * 64 and tik:
            bk = 16  # taps in K at 128 x 64 x 32: 255 registers, 212 B spilled on sm_80
    elif arch == "sm90":
        # a 3x3 at 128 x 64 with 4 warps (one warpgroup) reaches 255 registers, and with a
        # residual spilled 8 B under Triton 3.9 (ptxas' own report); 8 warps: 128, none
        warps = 8 if bm * bn >= 128 * 128 or (ks > 1 and bm * bn >= 128 * 64) else 4
    else:
        warps = 8 if bm * bn >= 128 * 64 else 4
    elem = 4 if fp32 else 2
    stage_bytes = (bm * bk + bk * bn) * elem
    if arch == "sm90":
        two_ctas = (SMEM_PER_SM[arch] // 2 - 2048) // stage_bytes
        stages = max(2, min(4, two_ctas))
    else:
        stages = max(2, min(3, smem // stage_bytes))
    if fp32:
        stages = 2  # 3-stage fp32 3x3 spilled on sm_80 (ptxas), 2 stages did not (conv_check)
        if arch == "sm90" and ks == 1 and (bm, bn) == (128, 16):
            # a 1x1 at 128 x 16 x 16 on sm_90 (n's Detect cv3 at batch 32): 2 stages spilled
            # 8 B at 80 registers with 8 warps under Triton 3.9, and 32 B with 4 under 3.6;
            # one stage, 8 warps: 74-80 registers, none under either (FMA-bound: little to hide)
            stages = 1
    return Config(bm, bn, bk, warps, stages, split)


def conv_config(arch: str, dtype: torch.dtype, m: int, cout: int, cin: int, ks: int,
                stride: int = 1) -> Config:
    """The fixed launch configuration of one conv: a function of the arch class and the layer's
    shape class (pixel count m = B*HO*WO, widths, kernel size, stride), never tuned at run
    time: the arch's tuned table (``config_tables``) where it has the shape class, else
    ``heuristic_config``. ``python -m yolov12_kernels.triton.plan_report`` shows it for every
    YOLOv12 launch."""
    tuned = config_tables.lookup(arch, config_tables.conv_key(dtype, m, cout, cin, ks, stride))
    if tuned is not None:
        return Config(*tuned)
    return heuristic_config(arch, dtype, m, cout, cin, ks, stride)


def interpreter_config(cout: int, cin: int, ks: int) -> Config:
    """Under the interpreter numpy runs each program: few large blocks are much faster."""
    k_red = ks * ks * cin if taps_in_k(ks, cin) else cin
    return Config(64, min(64, _pow2_at_least(cout, 16)), 64 if k_red > 32 else 32, 4, 1)


def _config_from_env() -> Config | None:
    spec = os.environ.get(CONFIG_ENV)
    if not spec:
        return None
    return Config(*(int(v) for v in spec.split(",")))


class Forced:
    """A stack of configurations that every launch of a kernel family uses while one is pushed
    (``with forced(config): ...``; tests: several tiles, K tails, split-K)."""

    def __init__(self):
        self.stack: list = []

    def top(self):
        return self.stack[-1] if self.stack else None

    @contextlib.contextmanager
    def __call__(self, config):
        self.stack.append(config)
        try:
            yield
        finally:
            self.stack.pop()


forced_config = Forced()  # ``with forced_config(Config(...)):`` every conv launch uses it


# ------------------------------------------------------------------------------------------------
# launcher
# ------------------------------------------------------------------------------------------------
def _prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # 16-bit inputs: plain tensor-core MMA


class Launch(NamedTuple):
    """One kernel launch: ``kernel[grid](*args, **kwargs)``."""
    kernel: object
    grid: tuple
    args: tuple
    kwargs: dict


def k_steps(ks: int, cin: int, block_k: int) -> int:
    """Iterations of the kernel's reduction loop (what split-K divides)."""
    if taps_in_k(ks, cin):
        return triton.cdiv(ks * ks * cin, block_k)
    return ks * ks * triton.cdiv(cin, block_k)


def effective_split(ks: int, cin: int, config: Config) -> int:
    """The splits that get work: ``split_k`` parts of ceil(steps / split_k) steps each leave
    the last ones empty when it does not divide (9 steps in 6 parts: 5 of 2 steps)."""
    steps = k_steps(ks, cin, config.block_k)
    return triton.cdiv(steps, triton.cdiv(steps, max(1, min(config.split_k, steps))))


def choose_config(x, weight, out, config: Config | None = None, arch: str | None = None,
                  stride: int = 1) -> Config:
    """The launch's configuration: ``config``, else a forced one (tests), else
    YOLOV12_CONV_CONFIG, else the interpreter's (no arch given), else ``conv_config``."""
    B, cin, _, _ = x.shape
    cout, _, ks, _ = weight.shape
    if config is None:
        config = forced_config.top() or _config_from_env()
    if config is None and arch is None and INTERPRET:
        config = interpreter_config(cout, cin, ks)
    if config is None:
        m = B * out.shape[2] * out.shape[3]
        config = conv_config(arch or arch_class(x.device), x.dtype, m, cout, cin, ks, stride)
    return Config(*config)


def launches(x, weight, bias, residual, gamma, out, stride: int, silu: bool,
             config: Config | None = None, arch: str | None = None) -> list[Launch]:
    """Every launch of one conv (one; two with split-K: the partial sums, then their reduction
    with the epilogue), with the split-K workspace allocated here. The compile check lowers
    exactly these, so what it checks is what ``launch`` runs; a launch plan may keep them and
    replay them (the workspace is theirs)."""
    B, cin, H, W = x.shape
    cout, _, ks, _ = weight.shape
    _, _, HO, WO = out.shape
    m = B * HO * WO
    config = choose_config(x, weight, out, config, arch, stride)
    arch = arch or (arch_class(x.device) if x.is_cuda else "sm90")
    split = effective_split(ks, cin, config)
    if split > 1 and split * m * cout >= 2 ** 31:
        split = 1  # the workspace's int32 offsets (split-K is meant for small maps)
    config = config._replace(split_k=split)
    part = x.new_empty(split * m * cout if split > 1 else 0, dtype=torch.float32)
    res_strides = residual.stride() if residual is not None else (0, 0, 0, 0)
    flags = dict(HAS_BIAS=bias is not None, SILU=bool(silu), HAS_RES=residual is not None,
                 HAS_GAMMA=gamma is not None)
    # strides in the kernel's order: activations (b, c, y, x), weight (cout, cin, ky, kx)
    args = (x, weight, bias, residual, gamma, out, part if split > 1 else None,
            H, W, cin, HO, WO, cout, m,
            *x.stride(), *weight.stride(), *res_strides, *out.stride())
    kwargs = dict(KS=ks, STRIDE=stride, TAPS_IN_K=taps_in_k(ks, cin), **flags,
                  PREC=_prec(x.dtype), BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                  BLOCK_K=config.block_k, SPLIT_K=split, num_warps=config.num_warps,
                  num_stages=config.num_stages)
    tiles = triton.cdiv(m, config.block_m) * triton.cdiv(cout, config.block_n)
    conv = Launch(_conv_kernel, (tiles * split,), args, kwargs)
    if split == 1:
        return [conv]
    return [conv, reduce_launch(part, split, bias, residual, gamma, out, m, cout, arch, flags)]


def reduce_launch(part, split: int, bias, residual, gamma, out, m: int, n: int, arch: str,
                  flags: dict) -> Launch:
    """The split-K reduction + epilogue launch (its own tiles: elementwise, one wave)."""
    bm, bn = elementwise_blocks(ARCHS[arch][0], m, n)
    res_strides = residual.stride() if residual is not None else (0, 0, 0, 0)
    args = (part, bias, residual, gamma, out, out.shape[2], out.shape[3], n, m, *res_strides,
            *out.stride())
    kwargs = dict(SPLIT_K=split, **flags, BLOCK_M=bm, BLOCK_N=bn, num_warps=4)
    return Launch(_splitk_reduce_kernel, (triton.cdiv(m, bm) * triton.cdiv(n, bn),), args,
                  kwargs)


def launch_args(x, weight, bias, residual, gamma, out, stride: int, silu: bool,
                config: Config | None = None, arch: str | None = None):
    """(grid, positional args, constexpr/launch kwargs) of a conv that is ONE launch; a
    split-K configuration is two (``launches``), and is refused here rather than half run."""
    runs = launches(x, weight, bias, residual, gamma, out, stride, silu, config, arch)
    if len(runs) != 1:
        raise ValueError("config: a split-K conv is two launches; use conv.launches()")
    return runs[0].grid, runs[0].args, runs[0].kwargs


def launch(x, weight, bias, residual, gamma, out, stride: int, silu: bool) -> None:
    """Run the conv into ``out`` (already validated tensors; see ``yolov12_kernels.conv``)."""
    for k in launches(x, weight, bias, residual, gamma, out, stride, silu):
        _launch.run(k.kernel, k.grid, k.args, k.kwargs)  # recorded inside a launch.recording()


__all__ = ["launch", "launches", "launch_args", "conv_config", "interpreter_config",
           "forced_config", "arch_class", "taps_in_k", "k_steps", "effective_split", "Config",
           "Launch", "ARCHS", "INTERPRET"]
