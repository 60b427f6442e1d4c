"""Triton kernels for area attention: forward (online softmax), backward (flash-attention-2 style).

One *problem* is one (batch, area, head): softmax(q k^T * scale) v over the ``n = N / area``
contiguous tokens of that area. All problems of a call run in ONE launch: grid axis 0 enumerates
(problem, row block) pairs, so the count may go far past 65,535 (axis 0 allows 2^31 - 1 programs;
the other axes would stop at 65,535). Row blocks of one problem are neighbours on the grid, so their
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

Precision: loads in the input dtype (fp32/fp16/bf16), ``tl.dot`` accumulating in fp32 (fp32 inputs
use IEEE fp32, not TF32, so fp32 stays an accurate reference-grade path), softmax statistics in fp32
and in base 2 (``exp2``, with log2(e) folded into the scale). The logsumexp saved for backward is in
that base-2 unit.

The fused model path adds the position perceiver pe(v) — a depthwise k x k conv of v with zero
padding at the IMAGE border (areas are stripes of rows, and pe looks across their borders) — in the
forward epilogue, reading v's neighbours straight from qkv, so no intermediate tensor exists. Its
input gradient (the same conv with the kernel flipped, applied to dOut) is fused into the dK/dV
kernel's epilogue the same way.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

# triton.jit decides between compiling and interpreting when the decorator runs (at import), so
# what counts is the environment at import time, not later.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

HEAD_DIMS = (16, 32, 64, 128)
LOG2E = 1.4426950408889634

# Environment switch for the GPU autotuner (see _launch). "0" = use the fixed heuristic config.
AUTOTUNE_ENV = "YOLOV12_TRITON_AUTOTUNE"


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
def _dw_conv_tile(X, W_ptr, B_ptr, h, tok, row_mask, offs_d, sxy, sxx, sxd, swc, swy, swx,
                  IMG_H, IMG_W, ROWS: tl.constexpr, HEAD_DIM: tl.constexpr,
                  HAS_BIAS: tl.constexpr, KS: tl.constexpr, TOKENS_2D: tl.constexpr):
    """Depthwise KS x KS conv ('same', zero padding at the image border) of the (tok, dim) tile of
    head h. X points at (batch b, head h, dim 0, y 0, x 0); channel = h*HEAD_DIM + dim. fp32 out.

    Neighbours are gathered straight from X: 49 small loads per tile for 7x7, of data the
    attention loop has just streamed through L1/L2. A neighbour's address is the token's own
    offset plus a constant shift (dy*sy + dx*sx), so with collapsed token strides the pointers stay
    provably contiguous along tokens (coalesced, vectorisable loads); (y, x) only enter the
    border masks."""
    c = h * HEAD_DIM + offs_d
    y = tok // IMG_W
    x = tok % IMG_W
    base = _tile(X, tok, sxy, sxx, sxd, offs_d, IMG_W, TOKENS_2D)
    w_base = W_ptr + c * swc
    acc = tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(B_ptr + c).to(tl.float32)[None, :]
    for ky in range(KS):  # row tests and shifts once per kernel row, not per tap
        dy = ky - KS // 2
        yy = y + dy
        row_ok = row_mask & (yy >= 0) & (yy < IMG_H)
        row_base = base + dy * sxy
        for kx in range(KS):
            dx = kx - KS // 2
            xx = x + dx
            ok = row_ok & (xx >= 0) & (xx < IMG_W)
            xv = tl.load(row_base + dx * sxx, mask=ok[:, None], other=0.0)
            w = tl.load(w_base + ky * swy + kx * swx)
            acc += xv.to(tl.float32) * w.to(tl.float32)[None, :]
    return acc


# ------------------------------------------------------------------------------------------------
# forward
# ------------------------------------------------------------------------------------------------
@triton.jit
def _fwd_kernel(Q, K, V, O, Out, Lse, Wpe, Bpe,
                sqb, sqh, sqd, sqy, sqx,
                skb, skh, skd, sky, skx,
                svb, svh, svd, svy, svx,
                sob, soh, sod, soy, sox,
                sub, suh, sud, suy, sux,
                swc, swy, swx,
                HEADS, AREA, N_AREA, IMG_H, IMG_W, qk_scale, P_BUCKET,
                HEAD_DIM: tl.constexpr, TOKENS_2D: tl.constexpr, STORE_O: tl.constexpr,
                STORE_LSE: tl.constexpr, FUSE_PE: tl.constexpr, HAS_BIAS: tl.constexpr,
                KS: tl.constexpr, PREC: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program = BLOCK_M query rows of one problem; streams the area's keys BLOCK_N at a time
    with the online softmax (running max m_i, running sum l_i, rescaled accumulator)."""
    prob, mblk, b, h, tok0 = _decode(tl.program_id(0), tl.cdiv(N_AREA, BLOCK_M), HEADS, AREA,
                                     N_AREA)
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
        s = tl.dot(q, kt, input_precision=PREC) * qk_scale  # base-2 logits
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
        acc += _dw_conv_tile(v_base, Wpe, Bpe, h, tok_m, m_mask, offs_d, svy, svx, svd,
                             swc, swy, swx, IMG_H, IMG_W, BLOCK_M, HEAD_DIM, HAS_BIAS, KS,
                             TOKENS_2D)
        tl.store(_tile(Out + b * sub + h * suh, tok_m, suy, sux, sud, offs_d, IMG_W, TOKENS_2D),
                 acc.to(Out.dtype.element_ty),
                 mask=m_mask[:, None])


# ------------------------------------------------------------------------------------------------
# backward (flash-attention-2 scheme: recompute P from the saved logsumexp; dK/dV per key block,
# dQ per query block, so no atomics and deterministic results)
# ------------------------------------------------------------------------------------------------
@triton.jit
def _bwd_dq_kernel(Q, K, V, O, dO, Lse, Delta, dQ,
                   sqb, sqh, sqd, sqy, sqx,
                   skb, skh, skd, sky, skx,
                   svb, svh, svd, svy, svx,
                   sob, soh, sod, soy, sox,
                   sdob, sdoh, sdod, sdoy, sdox,
                   sdqb, sdqh, sdqd, sdqy, sdqx,
                   HEADS, AREA, N_AREA, IMG_W, qk_scale, sm_scale, P_BUCKET,
                   HEAD_DIM: tl.constexpr, TOKENS_2D: tl.constexpr, PREC: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dQ for BLOCK_M rows. Also the 'preprocess' step: Delta = rowsum(dO * O) for its own rows is
    computed and stored here (one launch fewer), and the dK/dV kernel, launched after, reads it."""
    prob, mblk, b, h, tok0 = _decode(tl.program_id(0), tl.cdiv(N_AREA, BLOCK_M), HEADS, AREA,
                                     N_AREA)
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
    tl.store(Delta + prob * N_AREA + offs_m, delta, mask=m_mask)
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
    dq = dq * sm_scale
    tl.store(_tile(dQ + b * sdqb + h * sdqh, tok_m, sdqy, sdqx, sdqd, offs_d, IMG_W, TOKENS_2D),
             dq.to(dQ.dtype.element_ty),
             mask=m_mask[:, None])


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, dO, Lse, Delta, dK, dV, Wpe,
                     sqb, sqh, sqd, sqy, sqx,
                     skb, skh, skd, sky, skx,
                     svb, svh, svd, svy, svx,
                     sdob, sdoh, sdod, sdoy, sdox,
                     sdkb, sdkh, sdkd, sdky, sdkx,
                     sdvb, sdvh, sdvd, sdvy, sdvx,
                     swc, swy, swx,
                     HEADS, AREA, N_AREA, IMG_H, IMG_W, qk_scale, sm_scale, P_BUCKET,
                     HEAD_DIM: tl.constexpr, TOKENS_2D: tl.constexpr, FUSE_PE: tl.constexpr,
                     KS: tl.constexpr, PREC: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dK and dV for BLOCK_N keys of one problem, looping over the area's queries.

    FUSE_PE: dV also receives pe's input gradient, the depthwise conv of dO with the flipped
    kernel (Wpe points at the flipped weights), gathered from dO, so the fused path's dV is
    complete when written."""
    prob, nblk, b, h, tok0 = _decode(tl.program_id(0), tl.cdiv(N_AREA, BLOCK_N), HEADS, AREA,
                                     N_AREA)
    offs_n = nblk * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N_AREA
    tok_n = tok0 + offs_n
    offs_d = tl.arange(0, HEAD_DIM)

    k = tl.load(_tile(K + b * skb + h * skh, tok_n, sky, skx, skd, offs_d, IMG_W, TOKENS_2D),
                mask=n_mask[:, None], other=0.0)
    v = tl.load(_tile(V + b * svb + h * svh, tok_n, svy, svx, svd, offs_d, IMG_W, TOKENS_2D),
                mask=n_mask[:, None], other=0.0)
    q_base = Q + b * sqb + h * sqh
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
        lse = tl.load(Lse + prob * N_AREA + offs_m, mask=m_mask, other=0.0)
        delta = tl.load(Delta + prob * N_AREA + offs_m, mask=m_mask, other=0.0)
        st = tl.dot(k, qt, input_precision=PREC) * qk_scale  # S^T: (keys, queries)
        pt = tl.where(m_mask[None, :], tl.exp2(st - lse[None, :]), 0.0)
        dv = tl.dot(pt.to(do.dtype), do, dv, input_precision=PREC)
        dpt = tl.dot(v, tl.trans(do), input_precision=PREC)
        dst = pt * (dpt - delta[None, :])
        dk = tl.dot(dst.to(qt.dtype), tl.trans(qt), dk, input_precision=PREC)
    dk = dk * sm_scale
    if FUSE_PE:
        dv += _dw_conv_tile(do_base, Wpe, Wpe, h, tok_n, n_mask, offs_d, sdoy, sdox, sdod,
                            swc, swy, swx, IMG_H, IMG_W, BLOCK_N, HEAD_DIM, False, KS, TOKENS_2D)
    tl.store(_tile(dK + b * sdkb + h * sdkh, tok_n, sdky, sdkx, sdkd, offs_d, IMG_W, TOKENS_2D),
             dk.to(dK.dtype.element_ty),
             mask=n_mask[:, None])
    tl.store(_tile(dV + b * sdvb + h * sdvh, tok_n, sdvy, sdvx, sdvd, offs_d, IMG_W, TOKENS_2D),
             dv.to(dV.dtype.element_ty),
             mask=n_mask[:, None])


# ------------------------------------------------------------------------------------------------
# launch configuration
# ------------------------------------------------------------------------------------------------
def _gpu_configs():
    # Small problems (100-1600 tokens, head_dim 32) and few of them at batch 1: small row blocks
    # give enough programs to fill the SMs; larger ones win at batch 32. The autotuner decides.
    # 128-row blocks get 8 warps: with 4, the fused kernels spill (cuobjdump, sm_90, Triton 3.9:
    # 255 registers + 640 B stack for the fused forward). With 8, only the fused dK/dV kernel at
    # 128 x 32 still spills a little (200 B); the autotuner drops it if that costs time. All other
    # configurations fit in 128-255 registers without spilling.
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w in ((16, 32, 2), (32, 32, 2), (32, 64, 4), (64, 32, 4), (64, 64, 4),
                              (128, 32, 8), (128, 64, 8))
            for s in (2, 3)]


def _default_config(head_dim: int, n_area: int, fp32: bool = False) -> dict:
    """The fixed configuration used under the interpreter and with the autotuner switched off."""
    if INTERPRET:
        # the interpreter runs each program in numpy: few large blocks are much faster
        return {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 1}
    if fp32 and head_dim >= 128:
        # fp32 tiles of 128 dims at 64 x 32 need ~105 KB of shared memory in the backward kernels
        # (Triton 3.6, sm_80), over the 99 KB a block may have on sm_86/sm_89 (RTX 30xx/40xx, L4,
        # A10): OutOfResources there. 32 x 32 needs ~70 KB. (The autotuner skips such configs.)
        return {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
    bn = 32 if head_dim >= 128 else 64
    return {"BLOCK_M": 64, "BLOCK_N": bn, "num_warps": 4, "num_stages": 2}


_KEY = ["N_AREA", "P_BUCKET", "HEAD_DIM", "TOKENS_2D"]
_tuned = {}

# Tests can pin a configuration (dict as returned by _default_config); None = normal choice.
FORCE_CONFIG: dict | None = None


def _launch(kernel, name: str, n_problems: int, n_area: int, head_dim: int, block_key: str,
            args: tuple, meta: dict) -> None:
    """Launch ``kernel`` over n_problems x cdiv(n_area, block) programs on grid axis 0.

    On a GPU the Triton autotuner picks the block sizes (per token count, problem-count bucket,
    head_dim and flags; switch it off with YOLOV12_TRITON_AUTOTUNE=0); under the interpreter, with
    the switch off, or when a test pins FORCE_CONFIG, one fixed configuration runs."""
    fixed = FORCE_CONFIG
    if fixed is None and (INTERPRET or os.environ.get(AUTOTUNE_ENV, "1") == "0"):
        fixed = _default_config(head_dim, n_area, fp32=meta.get("PREC") == "ieee")
    if fixed is not None:
        cfg = dict(fixed)
        grid = (n_problems * triton.cdiv(n_area, cfg[block_key]),)
        kernel[grid](*args, **meta, **cfg)
        return
    tuned = _tuned.get(name)
    if tuned is None:
        tuned = _tuned[name] = triton.autotune(_gpu_configs(), key=_KEY + sorted(
            k for k in meta if k.isupper() and k not in _KEY))(kernel)

    def grid(m):
        return (n_problems * triton.cdiv(n_area, m[block_key]),)
    tuned[grid](*args, **meta)


# ------------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------------
class View(NamedTuple):
    """A tensor seen as (batch, head, dim, y, x): ``ptr`` is a tensor whose data_ptr is element
    (0, 0, 0, 0, 0), ``s`` the five strides in elements."""
    ptr: torch.Tensor
    s: tuple


def drop_in_view(t: torch.Tensor) -> View:
    """(B, N, heads, d) as an image of 1 x N tokens."""
    sb, sn, sh, sd = t.stride()
    return View(t, (sb, sh, sd, 0, sn))


def model_view(qkv: torch.Tensor, head_dim: int, part: int) -> View:
    """q (part 0), k (1) or v (2) of qkv (B, 3C, H, W), read in place."""
    sb, sc, sy, sx = qkv.stride()
    ptr = qkv.narrow(1, part * head_dim, qkv.shape[1] - part * head_dim)
    return View(ptr, (sb, 3 * head_dim * sc, sc, sy, sx))


def nchw_view(t: torch.Tensor, head_dim: int) -> View:
    """(B, C, H, W) with channel h*head_dim + j."""
    sb, sc, sy, sx = t.stride()
    return View(t, (sb, head_dim * sc, sc, sy, sx))


def _token_strides(views, img_h: int, img_w: int):
    """(views with token strides fixed up, TOKENS_2D). Tokens collapse to one stride sx when the
    image has one row, or sy == img_w * sx; a one-column image uses sy as the token stride."""
    out, two_d = [], False
    for v in views:
        sb, sh, sd, sy, sx = v.s
        if img_w == 1:
            sx = sy
        elif img_h > 1 and sy != img_w * sx:
            two_d = True
        out.append(View(v.ptr, (sb, sh, sd, sy, sx)))
    return out, two_d


def _prec(dtype: torch.dtype) -> str:
    # fp32 in: full IEEE products (TF32 would cost ~1e-3 relative error); fp16/bf16: tensor cores
    return "ieee" if dtype == torch.float32 else "tf32"


def _p_bucket(n: int) -> int:
    return 1 << max(0, min(n, 1 << 16) - 1).bit_length()


# ------------------------------------------------------------------------------------------------
# launchers (no autograd; ``backend`` wires them into custom ops)
# ------------------------------------------------------------------------------------------------
def forward(q: View, k: View, v: View, *, batch: int, heads: int, head_dim: int, area: int,
            img_h: int, img_w: int, scale: float, o: View | None = None,
            out: View | None = None, lse: torch.Tensor | None = None,
            pe_weight: torch.Tensor | None = None, pe_bias: torch.Tensor | None = None) -> None:
    """Run the forward kernel. Writes o (attention alone) if given, out = attention + pe(v) if
    given (then pe_weight is required), lse (float32, (batch*area*heads, N/area)) if given."""
    n_area = img_h * img_w // area
    n_problems = batch * area * heads
    (q, k, v, o2, out2), two_d = _token_strides(
        [q, k, v, o or q, out or q], img_h, img_w)
    if out is not None:
        w = pe_weight
        swc, _, swy, swx = w.stride()
        ks = w.shape[-1]
    else:
        w, swc, swy, swx, ks = None, 0, 0, 0, 1
    args = (q.ptr, k.ptr, v.ptr, o2.ptr if o is not None else None,
            out2.ptr if out is not None else None, lse, w,
            pe_bias if out is not None else None,
            *q.s, *k.s, *v.s, *o2.s, *out2.s, swc, swy, swx,
            heads, area, n_area, img_h, img_w, scale * LOG2E, _p_bucket(n_problems))
    meta = dict(HEAD_DIM=head_dim, TOKENS_2D=two_d, STORE_O=o is not None,
                STORE_LSE=lse is not None, FUSE_PE=out is not None,
                HAS_BIAS=out is not None and pe_bias is not None, KS=ks,
                PREC=_prec(q.ptr.dtype))
    _launch(_fwd_kernel, "fwd", n_problems, n_area, head_dim, "BLOCK_M", args, meta)


def backward(q: View, k: View, v: View, o: View, do: View, lse: torch.Tensor, dq: View,
             dk: View, dv: View, *, batch: int, heads: int, head_dim: int, area: int, img_h: int,
             img_w: int, scale: float, pe_weight: torch.Tensor | None = None) -> None:
    """Run the backward kernels: dq, then dk/dv (which reads the Delta dq's kernel stored).

    With ``pe_weight`` (the fused path), dv also gets pe's input gradient."""
    n_area = img_h * img_w // area
    n_problems = batch * area * heads
    delta = torch.empty((n_problems, n_area), device=lse.device, dtype=torch.float32)
    (q, k, v, o, do, dq, dk, dv), two_d = _token_strides(
        [q, k, v, o, do, dq, dk, dv], img_h, img_w)
    common = dict(HEAD_DIM=head_dim, TOKENS_2D=two_d, PREC=_prec(q.ptr.dtype))
    qk_scale = scale * LOG2E
    bucket = _p_bucket(n_problems)
    _launch(_bwd_dq_kernel, "bwd_dq", n_problems, n_area, head_dim, "BLOCK_M",
            (q.ptr, k.ptr, v.ptr, o.ptr, do.ptr, lse, delta, dq.ptr,
             *q.s, *k.s, *v.s, *o.s, *do.s, *dq.s,
             heads, area, n_area, img_w, qk_scale, scale, bucket), common)
    if pe_weight is not None:
        # the input gradient of a 'same' conv is the conv with the kernel flipped (tiny copy)
        w = pe_weight.flip(-1, -2)
        swc, _, swy, swx = w.stride()
        ks = w.shape[-1]
    else:
        w, swc, swy, swx, ks = None, 0, 0, 0, 1
    _launch(_bwd_dkdv_kernel, "bwd_dkdv", n_problems, n_area, head_dim, "BLOCK_N",
            (q.ptr, k.ptr, v.ptr, do.ptr, lse, delta, dk.ptr, dv.ptr, w,
             *q.s, *k.s, *v.s, *do.s, *dk.s, *dv.s, swc, swy, swx,
             heads, area, n_area, img_h, img_w, qk_scale, scale, bucket),
            dict(common, FUSE_PE=pe_weight is not None, KS=ks))


def default_scale(head_dim: int, scale: float | None) -> float:
    return float(head_dim ** -0.5) if scale is None else float(scale)


__all__ = ["forward", "backward", "drop_in_view", "model_view", "nchw_view", "View", "INTERPRET",
           "HEAD_DIMS", "default_scale"]
