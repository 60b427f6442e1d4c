"""Triton kernels for area attention: forward (online softmax) and a one-launch backward.

One *problem* is one (batch, area, head): softmax(q k^T * scale) v over the ``n = N / area``
contiguous tokens of that area. All problems of a call run in ONE launch: grid axis 0 enumerates
(problem, block) pairs, so the count may go far past 65,535 (axis 0 allows 2^31 - 1 programs;
the other axes would stop at 65,535). Blocks of one problem are neighbours on the grid, so their
K/V tiles are shared through L2.

Layouts: every kernel sees a tensor as a 5-D strided view (batch, head, dim, y, x) over an image of
IMG_H x IMG_W tokens, token ``t = y * IMG_W + x``:

* the drop-in layout (B, N, heads, d) is the image 1 x N;
* the model layout, qkv (B, 3C, H, W) with channel h*3d + part*d + j, is read in place: q, k and v
  are three pointer offsets into qkv with head stride 3d*sC and dim stride sC; the fused output
  (B, C, H, W) has head stride d*sC.

No ``.contiguous()`` anywhere: strides are passed as they are. When (y, x) collapse to one token
stride (sy == IMG_W * sx, the usual case, also for channels_last) the kernels use ``t * stride``;
otherwise (a cropped view, say) they split ``t`` into (y, x) — the TOKENS_2D switch.

Specialisation: the sizes (HEADS, AREA, N_AREA, IMG_H, IMG_W, KV_PROGRAMS) are ``do_not_specialize``
runtime ints, so a new sequence length or batch reuses the compiled kernel; strides keep Triton's
specialisation (==1, divisible by 16), which is what lets loads vectorise, and for the drop-in
layout does not change with N or batch.

Precision: loads in the input dtype (fp32/fp16/bf16), ``tl.dot`` accumulating in fp32 (fp32 inputs
use IEEE fp32, not TF32, so fp32 stays an accurate reference-grade path), softmax statistics in fp32
and in base 2 (``exp2``, with log2(e) folded into the scale). The logsumexp saved for backward is in
that base-2 unit.

The fused model path adds the position perceiver pe(v) — a depthwise k x k conv of v with zero
padding at the IMAGE border (areas are stripes of rows, and pe looks across their borders) — in the
forward epilogue, reading v's neighbours straight from qkv, so no intermediate tensor exists. The
taps are unrolled (``tl.static_range``) and their weights come as one fp32 (k*k [+1 bias row], C)
table, so each tap is one contiguous vector load. Its input gradient (the same conv with the taps
reversed, applied to dOut) is fused into the backward's dK/dV epilogue the same way.
"""
from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import launch
from .launch import INTERPRET, Config, default_config, get_plan, Plan, autotune_requested, tune

_plans = launch._plans


def _dry_runs_off() -> bool:
    return launch._dry_runs is None

HEAD_DIMS = (16, 32, 64, 128)
LOG2E = 1.4426950408889634

# Runtime sizes: never specialised (a new N, batch or image size must not compile anything).
RUNTIME_INTS = ["HEADS", "AREA", "N_AREA", "IMG_H", "IMG_W", "KV_PROGRAMS"]


# ------------------------------------------------------------------------------------------------
# jit helpers
# ------------------------------------------------------------------------------------------------
@triton.jit
def _tok(t, sy, sx, IMG_W, TOKENS_2D: tl.constexpr):
    """Offset (in elements, int64) of token t: t*sx when y/x collapse, else y*sy + x*sx."""
    if TOKENS_2D:
        return (t // IMG_W).to(tl.int64) * sy + (t % IMG_W).to(tl.int64) * sx
    else:
        return t.to(tl.int64) * sx


@triton.jit
def _tile(base, tok, sy, sx, sd, offs_d, IMG_W, TOKENS_2D: tl.constexpr):
    """Pointers of a (tokens, dims) tile: ``base`` + token offsets (rows) + dim offsets (cols)."""
    return base + _tok(tok, sy, sx, IMG_W, TOKENS_2D)[:, None] + offs_d[None, :] * sd


@triton.jit
def _tile_t(base, tok, sy, sx, sd, offs_d, IMG_W, TOKENS_2D: tl.constexpr):
    """The same tile transposed, (dims, tokens): the k^T / v^T / q^T operands of ``tl.dot``."""
    return base + _tok(tok, sy, sx, IMG_W, TOKENS_2D)[None, :] + offs_d[:, None] * sd


@triton.jit
def _decode(pid, n_blocks, HEADS, AREA, N_AREA):
    """pid -> (problem, block, batch, head, first token of the area)."""
    prob = pid // n_blocks
    blk = pid % n_blocks
    h = (prob % HEADS).to(tl.int64)
    ba = prob // HEADS
    tok0 = (ba % AREA) * N_AREA
    b = (ba // AREA).to(tl.int64)
    return prob.to(tl.int64), blk, b, h, tok0


@triton.jit
def _dw_conv_tile(X, Taps, h, tok, row_mask, offs_d, sxy, sxx, sxd, HEADS, IMG_H, IMG_W,
                  ROWS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_BIAS: tl.constexpr,
                  KS: tl.constexpr, FLIP: tl.constexpr, TOKENS_2D: tl.constexpr):
    """Depthwise KS x KS conv ('same', zero padding at the image border) of the (tok, dim) tile of
    head h, fp32. X points at (batch b, head h, dim 0, y 0, x 0); channel = h*HEAD_DIM + dim.
    Taps: fp32 (KS*KS [+ 1 bias row], C) weights, tap ky*KS + kx in row ky*KS + kx (FLIP: the
    kernel rotated by 180 degrees, i.e. the rows read backwards: the conv's input gradient).

    The 49 taps are unrolled: each is one contiguous weight-vector load and one masked tile load
    at a constant shift (dy*sy + dx*sx) of the token's own offset, so with collapsed token strides
    the pointers stay provably contiguous along tokens (vectorisable); (y, x) enter only the border
    masks, row tests once per kernel row."""
    C = HEADS * HEAD_DIM
    c = h * HEAD_DIM + offs_d
    y = tok // IMG_W
    x = tok % IMG_W
    base = _tile(X, tok, sxy, sxx, sxd, offs_d, IMG_W, TOKENS_2D)
    acc = tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(Taps + KS * KS * C + c)[None, :]
    for ky in range(KS):  # a loop: unrolling all KS*KS taps makes ptxas hoist every load (spills)
        yy = y + (ky - KS // 2)
        row_ok = row_mask & (yy >= 0) & (yy < IMG_H)
        row_base = base + (ky - KS // 2) * sxy
        for kx in tl.static_range(KS):
            xx = x + (kx - KS // 2)
            ok = row_ok & (xx >= 0) & (xx < IMG_W)
            xv = tl.load(row_base + (kx - KS // 2) * sxx, mask=ok[:, None], other=0.0)
            if FLIP:
                w = tl.load(Taps + (KS * KS - 1 - ky * KS - kx) * C + c)
            else:
                w = tl.load(Taps + (ky * KS + kx) * C + c)
            acc += xv.to(tl.float32) * w[None, :]
    return acc


# ------------------------------------------------------------------------------------------------
# forward
# ------------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=RUNTIME_INTS)
def _fwd_kernel(Q, K, V, O, Out, Lse, Taps, scale,
                sqb, sqh, sqd, sqy, sqx,
                skb, skh, skd, sky, skx,
                svb, svh, svd, svy, svx,
                sob, soh, sod, soy, sox,
                sub, suh, sud, suy, sux,
                HEADS, AREA, N_AREA, IMG_H, IMG_W,
                HEAD_DIM: tl.constexpr, TOKENS_2D: tl.constexpr, STORE_O: tl.constexpr,
                STORE_LSE: tl.constexpr, FUSE_PE: tl.constexpr, HAS_BIAS: tl.constexpr,
                KS: tl.constexpr, PREC: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program = BLOCK_M query rows of one problem; streams the area's keys BLOCK_N at a time
    with the online softmax (running max m_i, running sum l_i, rescaled accumulator)."""
    prob, mblk, b, h, tok0 = _decode(tl.program_id(0), tl.cdiv(N_AREA, BLOCK_M), HEADS, AREA,
                                     N_AREA)
    qk_scale = scale * 1.4426950408889634  # base-2 logits
    offs_m = mblk * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < N_AREA
    tok_m = tok0 + offs_m
    offs_d = tl.arange(0, HEAD_DIM)

    q = tl.load(_tile(Q + b * sqb + h * sqh, tok_m, sqy, sqx, sqd, offs_d, IMG_W, TOKENS_2D),
                mask=m_mask[:, None], other=0.0)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, N_AREA, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < N_AREA  # the area's tail: any n, not only multiples of the block
        tok_n = tok0 + offs_n
        kt = tl.load(_tile_t(k_base, tok_n, sky, skx, skd, offs_d, IMG_W, TOKENS_2D),
                     mask=n_mask[None, :], other=0.0)
        s = tl.dot(q, kt, input_precision=PREC) * qk_scale
        s = tl.where(n_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every block has >= 1 valid key
        alpha = tl.exp2(m_i - m_new)  # 0 on the first block (m_i = -inf)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(_tile(v_base, tok_n, svy, svx, svd, offs_d, IMG_W, TOKENS_2D),
                    mask=n_mask[:, None], other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PREC)
        m_i = m_new
    acc = acc / l_i[:, None]

    if STORE_LSE:  # only when a backward will follow
        tl.store(Lse + prob * N_AREA + offs_m, m_i + tl.log2(l_i), mask=m_mask)
    if STORE_O:  # the attention output alone (drop-in result, or saved for the fused backward)
        tl.store(_tile(O + b * sob + h * soh, tok_m, soy, sox, sod, offs_d, IMG_W, TOKENS_2D),
                 acc.to(O.dtype.element_ty),
                 mask=m_mask[:, None])
    if FUSE_PE:  # epilogue: + pe(v), written once to the (B, C, H, W) output
        acc += _dw_conv_tile(v_base, Taps, h, tok_m, m_mask, offs_d, svy, svx, svd, HEADS,
                             IMG_H, IMG_W, BLOCK_M, HEAD_DIM, HAS_BIAS, KS, False, TOKENS_2D)
        tl.store(_tile(Out + b * sub + h * suh, tok_m, suy, sux, sud, offs_d, IMG_W, TOKENS_2D),
                 acc.to(Out.dtype.element_ty),
                 mask=m_mask[:, None])


# ------------------------------------------------------------------------------------------------
# backward: ONE launch, two kinds of programs, no atomics, deterministic.
#   programs [0, KV_PROGRAMS): dK and dV of BLOCK_N keys, looping over the area's queries;
#   programs [KV_PROGRAMS, ...): dQ of BLOCK_M queries, looping over the area's keys.
# P is recomputed from the saved logsumexp (flash-attention 2). Delta = rowsum(dO * O) is computed
# where it is needed (each dQ program for its rows, each dK/dV program per query block) instead of
# in a preprocessing launch, so neither kind waits for the other.
# ------------------------------------------------------------------------------------------------
@triton.jit
def _bwd_dkdv(Q, K, V, O, dO, dK, dV, Lse, Taps, pid, qk_scale, scale,
              sqb, sqh, sqd, sqy, sqx, skb, skh, skd, sky, skx, svb, svh, svd, svy, svx,
              sob, soh, sod, soy, sox, sdob, sdoh, sdod, sdoy, sdox,
              sdkb, sdkh, sdkd, sdky, sdkx, sdvb, sdvh, sdvd, sdvy, sdvx,
              HEADS, AREA, N_AREA, IMG_H, IMG_W,
              HEAD_DIM: tl.constexpr, TOKENS_2D: tl.constexpr, FUSE_PE: tl.constexpr,
              KS: tl.constexpr, PREC: tl.constexpr, BLOCK_M: tl.constexpr,
              BLOCK_N: tl.constexpr):
    prob, nblk, b, h, tok0 = _decode(pid, tl.cdiv(N_AREA, BLOCK_N), HEADS, AREA, N_AREA)
    offs_n = nblk * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N_AREA
    tok_n = tok0 + offs_n
    offs_d = tl.arange(0, HEAD_DIM)

    k = tl.load(_tile(K + b * skb + h * skh, tok_n, sky, skx, skd, offs_d, IMG_W, TOKENS_2D),
                mask=n_mask[:, None], other=0.0)
    v = tl.load(_tile(V + b * svb + h * svh, tok_n, svy, svx, svd, offs_d, IMG_W, TOKENS_2D),
                mask=n_mask[:, None], other=0.0)
    q_base = Q + b * sqb + h * sqh
    o_base = O + b * sob + h * soh
    do_base = dO + b * sdob + h * sdoh
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    for start_m in range(0, N_AREA, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_mask = offs_m < N_AREA
        tok_m = tok0 + offs_m
        qt = tl.load(_tile_t(q_base, tok_m, sqy, sqx, sqd, offs_d, IMG_W, TOKENS_2D),
                     mask=m_mask[None, :], other=0.0)
        do = tl.load(_tile(do_base, tok_m, sdoy, sdox, sdod, offs_d, IMG_W, TOKENS_2D),
                     mask=m_mask[:, None], other=0.0)
        o = tl.load(_tile(o_base, tok_m, soy, sox, sod, offs_d, IMG_W, TOKENS_2D),
                    mask=m_mask[:, None], other=0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
        lse = tl.load(Lse + prob * N_AREA + offs_m, mask=m_mask, other=0.0)
        st = tl.dot(k, qt, input_precision=PREC) * qk_scale  # S^T: (keys, queries)
        pt = tl.where(m_mask[None, :], tl.exp2(st - lse[None, :]), 0.0)
        dv = tl.dot(pt.to(do.dtype), do, dv, input_precision=PREC)
        dpt = tl.dot(v, tl.trans(do), input_precision=PREC)
        dst = pt * (dpt - delta[None, :])
        dk = tl.dot(dst.to(qt.dtype), tl.trans(qt), dk, input_precision=PREC)
    dk = dk * scale
    if FUSE_PE:  # pe's input gradient: the conv of dO with the kernel rotated by 180 degrees
        dv += _dw_conv_tile(do_base, Taps, h, tok_n, n_mask, offs_d, sdoy, sdox, sdod, HEADS,
                            IMG_H, IMG_W, BLOCK_N, HEAD_DIM, False, KS, True, TOKENS_2D)
    tl.store(_tile(dK + b * sdkb + h * sdkh, tok_n, sdky, sdkx, sdkd, offs_d, IMG_W, TOKENS_2D),
             dk.to(dK.dtype.element_ty),
             mask=n_mask[:, None])
    tl.store(_tile(dV + b * sdvb + h * sdvh, tok_n, sdvy, sdvx, sdvd, offs_d, IMG_W, TOKENS_2D),
             dv.to(dV.dtype.element_ty),
             mask=n_mask[:, None])


@triton.jit
def _bwd_dq(Q, K, V, O, dO, dQ, Lse, pid, qk_scale, scale,
            sqb, sqh, sqd, sqy, sqx, skb, skh, skd, sky, skx, svb, svh, svd, svy, svx,
            sob, soh, sod, soy, sox, sdob, sdoh, sdod, sdoy, sdox, sdqb, sdqh, sdqd, sdqy, sdqx,
            HEADS, AREA, N_AREA, IMG_W,
            HEAD_DIM: tl.constexpr, TOKENS_2D: tl.constexpr, PREC: tl.constexpr,
            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    prob, mblk, b, h, tok0 = _decode(pid, tl.cdiv(N_AREA, BLOCK_M), HEADS, AREA, N_AREA)
    offs_m = mblk * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < N_AREA
    tok_m = tok0 + offs_m
    offs_d = tl.arange(0, HEAD_DIM)

    q = tl.load(_tile(Q + b * sqb + h * sqh, tok_m, sqy, sqx, sqd, offs_d, IMG_W, TOKENS_2D),
                mask=m_mask[:, None], other=0.0)
    do = tl.load(_tile(dO + b * sdob + h * sdoh, tok_m, sdoy, sdox, sdod, offs_d, IMG_W, TOKENS_2D),
                 mask=m_mask[:, None], other=0.0)
    o = tl.load(_tile(O + b * sob + h * soh, tok_m, soy, sox, sod, offs_d, IMG_W, TOKENS_2D),
                mask=m_mask[:, None], other=0.0)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
    lse = tl.load(Lse + prob * N_AREA + offs_m, mask=m_mask, other=0.0)

    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, N_AREA, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < N_AREA
        tok_n = tok0 + offs_n
        kt = tl.load(_tile_t(k_base, tok_n, sky, skx, skd, offs_d, IMG_W, TOKENS_2D),
                     mask=n_mask[None, :], other=0.0)
        vt = tl.load(_tile_t(v_base, tok_n, svy, svx, svd, offs_d, IMG_W, TOKENS_2D),
                     mask=n_mask[None, :], other=0.0)
        s = tl.dot(q, kt, input_precision=PREC) * qk_scale
        p = tl.where(n_mask[None, :], tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, vt, input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(kt.dtype), tl.trans(kt), dq, input_precision=PREC)
    dq = dq * scale
    tl.store(_tile(dQ + b * sdqb + h * sdqh, tok_m, sdqy, sdqx, sdqd, offs_d, IMG_W, TOKENS_2D),
             dq.to(dQ.dtype.element_ty),
             mask=m_mask[:, None])


@triton.jit(do_not_specialize=RUNTIME_INTS)
def _bwd_kernel(Q, K, V, O, dO, Lse, dQ, dK, dV, Taps, scale,
                sqb, sqh, sqd, sqy, sqx,
                skb, skh, skd, sky, skx,
                svb, svh, svd, svy, svx,
                sob, soh, sod, soy, sox,
                sdob, sdoh, sdod, sdoy, sdox,
                sdqb, sdqh, sdqd, sdqy, sdqx,
                sdkb, sdkh, sdkd, sdky, sdkx,
                sdvb, sdvh, sdvd, sdvy, sdvx,
                HEADS, AREA, N_AREA, IMG_H, IMG_W, KV_PROGRAMS,
                HEAD_DIM: tl.constexpr, TOKENS_2D: tl.constexpr, FUSE_PE: tl.constexpr,
                KS: tl.constexpr, PREC: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dQ, dK and dV in one launch (see above). FUSE_PE: dV also receives pe's input gradient,
    gathered from dO, so the fused path's dV is complete when written."""
    pid = tl.program_id(0)
    qk_scale = scale * 1.4426950408889634
    if pid < KV_PROGRAMS:
        _bwd_dkdv(Q, K, V, O, dO, dK, dV, Lse, Taps, pid, qk_scale, scale,
                  sqb, sqh, sqd, sqy, sqx, skb, skh, skd, sky, skx, svb, svh, svd, svy, svx,
                  sob, soh, sod, soy, sox, sdob, sdoh, sdod, sdoy, sdox,
                  sdkb, sdkh, sdkd, sdky, sdkx, sdvb, sdvh, sdvd, sdvy, sdvx,
                  HEADS, AREA, N_AREA, IMG_H, IMG_W,
                  HEAD_DIM, TOKENS_2D, FUSE_PE, KS, PREC, BLOCK_M, BLOCK_N)
    else:
        _bwd_dq(Q, K, V, O, dO, dQ, Lse, pid - KV_PROGRAMS, qk_scale, scale,
                sqb, sqh, sqd, sqy, sqx, skb, skh, skd, sky, skx, svb, svh, svd, svy, svx,
                sob, soh, sod, soy, sox, sdob, sdoh, sdod, sdoy, sdox,
                sdqb, sdqh, sdqd, sdqy, sdqx,
                HEADS, AREA, N_AREA, IMG_W,
                HEAD_DIM, TOKENS_2D, PREC, BLOCK_M, BLOCK_N)


# ------------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------------
class View(NamedTuple):
    """A tensor seen as (batch, head, dim, y, x): ``base`` the tensor the pointer is taken from,
    ``offset`` the element offset of element (0, 0, 0, 0, 0) from base's data_ptr, ``s`` the five
    strides in elements."""
    base: torch.Tensor | None
    offset: int
    s: tuple


_NO_VIEW = View(None, 0, (0, 0, 0, 0, 0))


def drop_in_view(t: torch.Tensor) -> View:
    """(B, N, heads, d) as an image of 1 x N tokens."""
    sb, sn, sh, sd = t.stride()
    return View(t, 0, (sb, sh, sd, 0, sn))


def model_view(qkv: torch.Tensor, head_dim: int, part: int) -> View:
    """q (part 0), k (1) or v (2) of qkv (B, 3C, H, W), read in place."""
    sb, sc, sy, sx = qkv.stride()
    return View(qkv, part * head_dim * sc, (sb, 3 * head_dim * sc, sc, sy, sx))


def nchw_view(t: torch.Tensor, head_dim: int) -> View:
    """(B, C, H, W) with channel h*head_dim + j."""
    sb, sc, sy, sx = t.stride()
    return View(t, 0, (sb, head_dim * sc, sc, sy, sx))


def _token_strides(views, img_h: int, img_w: int):
    """(strides with the token strides fixed up, TOKENS_2D). Tokens collapse to one stride sx
    when the image has one row, or sy == img_w * sx; a one-column image uses sy as the token
    stride."""
    out, two_d = [], False
    for v in views:
        sb, sh, sd, sy, sx = v.s
        if img_w == 1:
            sx = sy
        elif img_h > 1 and sy != img_w * sx:
            two_d = True
        out.append((sb, sh, sd, sy, sx))
    return out, two_d


def _prec(dtype: torch.dtype) -> str:
    # fp32 in: full IEEE products (TF32 would cost ~1e-3 relative error); fp16/bf16: tensor cores
    return "ieee" if dtype == torch.float32 else "tf32"


def _aligned(t: torch.Tensor | None) -> bool:
    return t is None or t.data_ptr() & 15 == 0


# ------------------------------------------------------------------------------------------------
# pe weights as a tap table
# ------------------------------------------------------------------------------------------------
_taps_cache: dict = {}


def pe_taps(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The depthwise weight (C, 1, k, k) [+ bias (C,)] as one fp32 (k*k [+1], C) table: the kernels
    load tap t for a head's channels as one contiguous vector, and the bias as the last row.

    Cached per (weight, bias) object while both live: inference with fixed weights builds the
    table once. An in-place update of either (optimizer step, load_state_dict) bumps its version
    and the table is rewritten in place. An inference tensor has no version counter (weights
    made under ``torch.inference_mode``): its table is rewritten in place on every call, a copy of
    k*k+1 rows. A table is never freed while its weight lives: a captured CUDA graph keeps reading
    its address (a size-capped cache that dropped tables would hand that memory to other tensors
    under a graph's feet). The entry goes when the weight or bias does."""
    key = (id(weight), id(bias))
    hit = _taps_cache.get(key)
    version = (_version(weight), _version(bias))
    if hit is not None and hit[3].shape[0] == _taps_rows(weight, bias):
        w_ref, b_ref, ver, taps = hit
        if w_ref() is weight and (b_ref() if b_ref else None) is bias:
            if ver != version or _UNVERSIONED in version:
                with torch.inference_mode():  # the table may be an inference tensor
                    taps.copy_(_taps_table(weight, bias))
                _taps_cache[key] = (w_ref, b_ref, version, taps)
            return taps
    taps = _taps_table(weight, bias)
    _taps_cache[key] = (weakref.ref(weight), weakref.ref(bias) if bias is not None else None,
                        version, taps)
    for t in (weight, bias):
        if t is not None:
            weakref.finalize(t, _forget_taps, key, taps)
    return taps


_UNVERSIONED = "unversioned"  # the "version" of an inference tensor: never equal to a count


def _version(t: torch.Tensor | None):
    """``t``'s version counter (None for no tensor, ``_UNVERSIONED`` for an inference tensor)."""
    if t is None:
        return None
    return _UNVERSIONED if t.is_inference() else t._version


def refresh_pe_taps(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Rewrite in place the table of (weight, bias) if one exists and either changed since it was
    written; never builds one. For ``load_state_dict`` into a model whose forward is replayed (a
    launch plan, a CUDA graph): the replay reads the table's address, and ``pe_taps`` rewrites it
    only when Python calls it."""
    if (id(weight), id(bias)) in _taps_cache:
        pe_taps(weight, bias)


def _taps_rows(weight: torch.Tensor, bias: torch.Tensor | None) -> int:
    return weight.shape[-1] * weight.shape[-2] + (bias is not None)


def _taps_table(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    C, ks = weight.shape[0], weight.shape[-1]
    with torch.no_grad():
        rows = [weight.detach().reshape(C, ks * ks).t()]
        if bias is not None:
            rows.append(bias.detach().reshape(1, C))
        return torch.cat(rows).to(torch.float32).contiguous()


def _forget_taps(key, taps) -> None:
    """Drop the entry of ``key`` if it still holds ``taps`` (a new weight may reuse the id)."""
    hit = _taps_cache.get(key)
    if hit is not None and hit[3] is taps:
        del _taps_cache[key]


# ------------------------------------------------------------------------------------------------
# launchers (no autograd; ``backend`` wires them into the autograd Function and custom ops)
# ------------------------------------------------------------------------------------------------
def _config(head_dim, dtype, backward, make_plan, ptrs, scale) -> Config:
    if autotune_requested():
        return tune(make_plan, ptrs, scale)
    return default_config(head_dim, dtype == torch.float32, backward)


def _forward_builder(q, k, v, o, out, ptrs, scale, batch, heads, head_dim, area, img_h, img_w,
                     ks, has_bias):
    """The function that builds the forward's Plan (called once per plan key)."""
    def make_plan(cfg=None):
        views = (q, k, v, o or _NO_VIEW, out or _NO_VIEW)
        strides, two_d = _token_strides(views, img_h, img_w)
        n_area = img_h * img_w // area
        dtype = q.base.dtype
        cfg = cfg or _config(head_dim, dtype, False, make_plan, ptrs, scale)
        tail = (*(s for st in strides for s in st),
                heads, area, n_area, img_h, img_w,
                head_dim, two_d, o is not None, ptrs[5] is not None, out is not None, has_bias,
                ks, _prec(dtype), cfg.block_m, cfg.block_n)
        grid = batch * area * heads * triton.cdiv(n_area, cfg.block_m)
        return Plan(_fwd_kernel, grid, (q.offset, k.offset, v.offset, 0, 0, 0, 0), tail, cfg)
    return make_plan


def forward(q: View, k: View, v: View, *, batch: int, heads: int, head_dim: int, area: int,
            img_h: int, img_w: int, scale: float, o: View | None = None,
            out: View | None = None, lse: torch.Tensor | None = None,
            taps: torch.Tensor | None = None, ks: int = 1, has_bias: bool = False) -> None:
    """Run the forward kernel on any views. Writes o (attention alone) if given, out =
    attention + pe(v) if given (then ``taps`` from ``pe_taps`` and the kernel size ``ks`` are
    required), lse (float32, (batch*area*heads, N/area)) if given."""
    ptrs = (q.base, k.base, v.base, o and o.base, out and out.base, lse, taps)
    key = ("fwd", q.base.dtype, q.base.device, batch, heads, head_dim, area, img_h, img_w,
           q.s, k.s, v.s, o and o.s, out and out.s, q.offset, k.offset, v.offset,
           lse is None, ks, has_bias, *map(_aligned, ptrs))
    get_plan(key, _forward_builder(q, k, v, o, out, ptrs, scale, batch, heads, head_dim, area,
                                   img_h, img_w, ks, has_bias)).run(ptrs, scale)


def _all_aligned(a, b, c, d) -> bool:
    return (a.data_ptr() | b.data_ptr() | c.data_ptr() | d.data_ptr()) & 15 == 0


def forward_drop_in(q, k, v, out, lse, area: int, scale: float) -> None:
    """The drop-in forward, (B, N, heads, d) tensors: out, and lse if not None. The hot path of
    inference: the plan key is built from the tensors directly (views only when a plan is new)."""
    key = ("fwd-drop-in", q.dtype, q.device, q.shape, q.stride(), k.stride(), v.stride(),
           out.stride(), area, lse is None,
           _all_aligned(q, k, v, out) or tuple(map(_aligned, (q, k, v, out))))
    plan = _plans.get(key) if _dry_runs_off() else None
    if plan is None:
        B, N, heads, d = q.shape
        V = drop_in_view
        plan = get_plan(key, _forward_builder(V(q), V(k), V(v), V(out), None,
                                              (q, k, v, out, None, lse, None), scale, B, heads,
                                              d, area, 1, N, 1, False))
    plan.run((q, k, v, out, None, lse, None), scale)


def forward_fused(qkv, heads: int, area: int, out, o, lse, taps, ks: int, has_bias: bool,
                  scale: float) -> None:
    """The fused forward on the model layout: out = attention + pe(v) (B, C, H, W); o and lse
    (for a backward) if not None. The hot path of the model's inference, as forward_drop_in."""
    key = ("fwd-fused", qkv.dtype, qkv.device, qkv.shape, qkv.stride(), out.stride(),
           o is None or o.stride(), lse is None, heads, area, ks, has_bias,
           _all_aligned(qkv, out, o if o is not None else qkv, taps)
           or tuple(map(_aligned, (qkv, out, o, taps))))
    plan = _plans.get(key) if _dry_runs_off() else None
    ptrs = (qkv, qkv, qkv, o, out, lse, taps)
    if plan is None:
        B, C3, H, W = qkv.shape
        d = C3 // 3 // heads
        plan = get_plan(key, _forward_builder(
            model_view(qkv, d, 0), model_view(qkv, d, 1), model_view(qkv, d, 2),
            None if o is None else nchw_view(o, d), nchw_view(out, d), ptrs, scale, B, heads, d,
            area, H, W, ks, has_bias))
    plan.run(ptrs, scale)


def _backward_builder(views, ptrs, scale, batch, heads, head_dim, area, img_h, img_w, ks):
    """The function that builds the backward's Plan (called once per plan key)."""
    q, dq, dk, dv = views[0], views[5], views[6], views[7]

    def make_plan(cfg=None):
        strides, two_d = _token_strides(views, img_h, img_w)
        n_area = img_h * img_w // area
        dtype = q.base.dtype
        cfg = cfg or _config(head_dim, dtype, True, make_plan, ptrs, scale)
        n_problems = batch * area * heads
        kv_programs = n_problems * triton.cdiv(n_area, cfg.block_n)
        tail = (*(s for st in strides for s in st),
                heads, area, n_area, img_h, img_w, kv_programs,
                head_dim, two_d, ptrs[9] is not None, ks, _prec(dtype), cfg.block_m, cfg.block_n)
        grid = kv_programs + n_problems * triton.cdiv(n_area, cfg.block_m)
        return Plan(_bwd_kernel, grid, (*(x.offset for x in views[:5]), 0, dq.offset,
                                        dk.offset, dv.offset, 0), tail, cfg)
    return make_plan


def backward(q: View, k: View, v: View, o: View, do: View, lse: torch.Tensor, dq: View,
             dk: View, dv: View, *, batch: int, heads: int, head_dim: int, area: int, img_h: int,
             img_w: int, scale: float, taps: torch.Tensor | None = None, ks: int = 1) -> None:
    """Run the backward kernel on any views (one launch: dq, dk, dv). With ``taps`` (the fused
    path's pe table) dv also gets pe's input gradient."""
    views = (q, k, v, o, do, dq, dk, dv)
    ptrs = (q.base, k.base, v.base, o.base, do.base, lse, dq.base, dk.base, dv.base, taps)
    key = ("bwd", q.base.dtype, q.base.device, batch, heads, head_dim, area, img_h, img_w,
           *(x.s for x in views), *(x.offset for x in views), taps is None, ks,
           *map(_aligned, ptrs))
    get_plan(key, _backward_builder(views, ptrs, scale, batch, heads, head_dim, area, img_h,
                                    img_w, ks)).run(ptrs, scale)


def backward_drop_in(dout, q, k, v, out, lse, dq, dk, dv, area: int, scale: float) -> None:
    """The drop-in backward, (B, N, heads, d) tensors (as forward_drop_in: a cheap plan key)."""
    key = ("bwd-drop-in", q.dtype, q.device, q.shape, q.stride(), k.stride(), v.stride(),
           out.stride(), dout.stride(), dq.stride(), dk.stride(), dv.stride(), area,
           _all_aligned(q, k, v, out) and _all_aligned(dout, dq, dk, dv)
           or tuple(map(_aligned, (q, k, v, out, dout, dq, dk, dv))))
    ptrs = (q, k, v, out, dout, lse, dq, dk, dv, None)
    plan = _plans.get(key) if _dry_runs_off() else None
    if plan is None:
        B, N, heads, d = q.shape
        views = tuple(map(drop_in_view, (q, k, v, out, dout, dq, dk, dv)))
        plan = get_plan(key, _backward_builder(views, ptrs, scale, B, heads, d, area, 1, N, 1))
    plan.run(ptrs, scale)


def backward_fused(dout, qkv, o, lse, dqkv, taps, ks: int, heads: int, area: int,
                   scale: float) -> None:
    """The fused backward: dq, dk, dv (+ pe's input gradient) into dqkv (B, 3C, H, W)."""
    key = ("bwd-fused", qkv.dtype, qkv.device, qkv.shape, qkv.stride(), o.stride(),
           dout.stride(), dqkv.stride(), heads, area, ks,
           _all_aligned(qkv, o, dout, dqkv) and _aligned(taps)
           or tuple(map(_aligned, (qkv, o, dout, dqkv, taps))))
    ptrs = (qkv, qkv, qkv, o, dout, lse, dqkv, dqkv, dqkv, taps)
    plan = _plans.get(key) if _dry_runs_off() else None
    if plan is None:
        B, C3, H, W = qkv.shape
        d = C3 // 3 // heads
        views = (*(model_view(qkv, d, p) for p in range(3)), nchw_view(o, d), nchw_view(dout, d),
                 *(model_view(dqkv, d, p) for p in range(3)))
        plan = get_plan(key, _backward_builder(views, ptrs, scale, B, heads, d, area, H, W, ks))
    plan.run(ptrs, scale)


def default_scale(head_dim: int, scale: float | None) -> float:
    return float(head_dim ** -0.5) if scale is None else float(scale)


__all__ = ["forward", "forward_drop_in", "forward_fused", "backward", "backward_drop_in",
           "backward_fused", "drop_in_view", "model_view", "nchw_view", "View", "INTERPRET",
           "HEAD_DIMS", "default_scale", "pe_taps", "refresh_pe_taps", "RUNTIME_INTS"]
