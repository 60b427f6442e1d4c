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

Launch configurations are fixed per (arch class, layer-shape class) by ``conv_config`` — no
autotuning at start-up or in tests; ``YOLOV12_CONV_CONFIG`` pins one for offline tuning.
"""
from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import launch as _launch  # the module; this one defines a function launch()

# triton.jit decides between compiling and interpreting at import time
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# "BM,BN,BK,warps,stages": every launch of this module uses that configuration (offline tuning)
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
def _conv_kernel(X, Wt, Bias, Res, Gamma, Out,
                 H, W, CIN, HO, WO, COUT, M,
                 sxb, sxc, sxy, sxx,
                 swn, swc, swy, swx,
                 srb, src, sry, srx,
                 sob, soc, soy, sox,
                 KS: tl.constexpr, STRIDE: tl.constexpr, TAPS_IN_K: tl.constexpr,
                 HAS_BIAS: tl.constexpr, SILU: tl.constexpr, HAS_RES: tl.constexpr,
                 HAS_GAMMA: tl.constexpr, PREC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # one program per (pixel block, channel block); channel blocks of one pixel block are
    # neighbours on the grid, so they share the activation tiles through L2
    pid = tl.program_id(0)
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
        for k0 in range(0, K_TOTAL, BLOCK_K):
            kk = k0 + offs_k
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
        for k0 in range(0, CIN, BLOCK_K):
            c = k0 + offs_k
            c_ok = c < CIN
            a = tl.load(a_row[:, None] + c[None, :] * sxc, mask=m_ok[:, None] & c_ok[None, :],
                        other=0.0)
            w = tl.load(w_col[None, :] + (c * swc)[:, None], mask=c_ok[:, None] & n_ok[None, :],
                        other=0.0)
            acc = tl.dot(a, w, acc, input_precision=PREC)
    else:
        k_blocks = tl.cdiv(CIN, BLOCK_K)
        for i in range(0, KS * KS * k_blocks):
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


def conv_config(arch: str, dtype: torch.dtype, m: int, cout: int, cin: int, ks: int) -> Config:
    """The fixed launch configuration of one conv: a function of the arch class and the layer's
    shape class (pixel count m = B*HO*WO, widths, kernel size), recorded here, never tuned at run
    time. ``python -m yolov12_kernels.triton.conv_table`` prints it for every YOLOv12 layer.

    * BLOCK_N covers Cout up to 128 (next power of two, >= 16 for tl.dot);
    * BLOCK_M 128 when that still gives two waves of programs on the arch's SMs, else 64, else 32
      (small late layers at batch 1: more programs beat bigger tiles there);
    * BLOCK_K 64 for 16-bit inputs with >= 64 reduction columns, else 32 (fp32 tiles are twice
      the bytes, so fp32 keeps 32; so do taps folded into K, whose addresses are per element);
    * warps: 8 for 128 x 128 tiles, else 4; fp32 (exact IEEE products, no tensor cores) caps
      BLOCK_N at 64 and takes 8 warps from 64 x 64 up — 4 warps spilled there (conv_check);
    * stages: as many as fit the arch's shared memory (<= 4 on sm90, <= 3 elsewhere; fp32: 2).
    """
    fp32 = dtype == torch.float32
    k_red = ks * ks * cin if taps_in_k(ks, cin) else cin
    sms, smem = ARCHS[arch]
    bn = min(128, _pow2_at_least(cout, 16))
    n_blocks = triton.cdiv(cout, bn)
    bm = 32
    for cand in (128, 64):
        if triton.cdiv(m, cand) * n_blocks >= 2 * sms:
            bm = cand
            break
    # taps folded into K build every (pixel, k) address in registers: 32-wide K blocks keep
    # that at half the registers of 64 (168 and a spill on Triton 3.6 for 8 -> 16 channels)
    bk = 64 if (not fp32 and k_red >= 64 and not taps_in_k(ks, cin)) else 32
    if ks > 1 and arch != "sm90" and bm * bn >= 128 * 128:
        bk = 32  # mma.sync 3x3 at 128 x 128 x 64 + residual: 255 registers and spills on sm_80
    if fp32:  # IEEE fp32 products run on FMA units, operands in registers: smaller tiles
        bn = min(bn, 64)
        warps = 8 if bm * bn >= 64 * 64 else 4
    else:
        warps = 8 if bm * bn >= 128 * 128 else 4
    elem = 4 if fp32 else 2
    stage_bytes = (bm * bk + bk * bn) * elem
    stages = max(2, min(4 if arch == "sm90" else 3, smem // stage_bytes))
    if fp32:
        stages = 2  # 3-stage fp32 3x3 spilled on sm_80 (ptxas), 2 stages did not (conv_check)
    return Config(bm, bn, bk, warps, stages)


def interpreter_config(cout: int, cin: int, ks: int) -> Config:
    """Under the interpreter numpy runs each program: few large blocks are much faster."""
    k_red = ks * ks * cin if taps_in_k(ks, cin) else cin
    return Config(64, min(64, _pow2_at_least(cout, 16)), 64 if k_red > 32 else 32, 4, 1)


def _config_from_env() -> Config | None:
    spec = os.environ.get(CONFIG_ENV)
    if not spec:
        return None
    return Config(*(int(v) for v in spec.split(",")))


_forced: list[Config] = []


@contextlib.contextmanager
def forced_config(config: Config):
    """Every launch inside the block uses ``config`` (tests: several tiles, K tails)."""
    _forced.append(config)
    try:
        yield
    finally:
        _forced.pop()


# ------------------------------------------------------------------------------------------------
# launcher
# ------------------------------------------------------------------------------------------------
def _prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # 16-bit inputs: plain tensor-core MMA


def launch_args(x, weight, bias, residual, gamma, out, stride: int, silu: bool,
                config: Config | None = None, arch: str | None = None):
    """(grid, positional args, constexpr/launch kwargs) of one conv launch; the compile check
    lowers exactly these, so what it checks is what ``launch`` runs."""
    B, cin, H, W = x.shape
    cout, _, ks, _ = weight.shape
    _, _, HO, WO = out.shape
    m = B * HO * WO
    if config is None:
        config = _forced[-1] if _forced else _config_from_env()
    if config is None and arch is None and INTERPRET:
        config = interpreter_config(cout, cin, ks)
    if config is None:
        config = conv_config(arch or arch_class(x.device), x.dtype, m, cout, cin, ks)
    res_strides = residual.stride() if residual is not None else (0, 0, 0, 0)
    # strides in the kernel's order: activations (b, c, y, x), weight (cout, cin, ky, kx)
    args = (x, weight, bias, residual, gamma, out, H, W, cin, HO, WO, cout, m,
            *x.stride(), *weight.stride(), *res_strides, *out.stride())
    kwargs = dict(KS=ks, STRIDE=stride, TAPS_IN_K=taps_in_k(ks, cin), HAS_BIAS=bias is not None,
                  SILU=bool(silu), HAS_RES=residual is not None, HAS_GAMMA=gamma is not None,
                  PREC=_prec(x.dtype), BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                  BLOCK_K=config.block_k, num_warps=config.num_warps,
                  num_stages=config.num_stages)
    grid = (triton.cdiv(m, config.block_m) * triton.cdiv(cout, config.block_n),)
    return grid, args, kwargs


def launch(x, weight, bias, residual, gamma, out, stride: int, silu: bool) -> None:
    """Run the conv into ``out`` (already validated tensors; see ``yolov12_kernels.conv``)."""
    grid, args, kwargs = launch_args(x, weight, bias, residual, gamma, out, stride, silu)
    _launch.run(_conv_kernel, grid, args, kwargs)  # recorded inside a launch.recording()


__all__ = ["launch", "launch_args", "conv_config", "interpreter_config", "forced_config",
           "arch_class", "taps_in_k", "Config", "ARCHS", "INTERPRET"]
