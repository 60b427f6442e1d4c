"""Triton kernel for the Detect head's eval-mode decode in one launch: DFL (softmax-expected bin of
each box side), anchor centres and strides computed from the anchor index, xywh in pixels, and
sigmoid class scores.

The unfused decode rebuilds the anchor grid with ~20 tiny kernels per call (arange, meshgrid,
stack, cat, full per level), then softmax, a 1x1 conv, chunk, adds, cat and sigmoid. Here a
program owns a block of anchors of one image: it finds each anchor's level by comparing its index
with the levels' offsets, reads the 4 x reg_max bin logits (contiguous when the head wrote
(B, anchors, channels) rows), and writes the (B, 4 + nc, anchors) float32 result. All arithmetic
is in float32 whatever the input dtype: boxes are in pixels, up to 640 and more, where float16's
step is 0.5 px.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

from . import launch as _launch  # the module; this one defines a function launch()

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _side(F, a_ptr, a_ok, side, sfc, bins, REG_MAX: tl.constexpr):
    """Expected bin of one box side: sum_i i * softmax(logits)_i, in fp32."""
    logit = tl.load(a_ptr[:, None] + (side * REG_MAX + bins)[None, :] * sfc,
                    mask=a_ok[:, None], other=0.0).to(tl.float32)
    e = tl.exp(logit - tl.max(logit, axis=1)[:, None])
    return tl.sum(e * bins.to(tl.float32)[None, :], axis=1) / tl.sum(e, axis=1)


@triton.jit
def _box_decode_kernel(F, Out, A, NC,
                       H0, W0, H1, W1, W2, S0, S1, S2,
                       sfb, sfc, sfa, sob, soc, soa,
                       REG_MAX: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    a_blocks = tl.cdiv(A, BLOCK_A)
    b = (pid // a_blocks).to(tl.int64)
    offs_a = (pid % a_blocks) * BLOCK_A + tl.arange(0, BLOCK_A)
    a_ok = offs_a < A
    # level of each anchor; levels past the last given one have W = 1 and are never reached
    end0 = H0 * W0
    end1 = end0 + H1 * W1
    lvl1 = offs_a >= end0
    lvl2 = offs_a >= end1
    i = offs_a - tl.where(lvl2, end1, tl.where(lvl1, end0, 0))
    w = tl.where(lvl2, W2, tl.where(lvl1, W1, W0))
    stride = tl.where(lvl2, S2, tl.where(lvl1, S1, S0))
    y = i // w
    cx = (i - y * w).to(tl.float32) + 0.5
    cy = y.to(tl.float32) + 0.5

    a_ptr = F + b * sfb + offs_a * sfa
    bins = tl.arange(0, REG_MAX)
    left = _side(F, a_ptr, a_ok, 0, sfc, bins, REG_MAX)
    top = _side(F, a_ptr, a_ok, 1, sfc, bins, REG_MAX)
    right = _side(F, a_ptr, a_ok, 2, sfc, bins, REG_MAX)
    bottom = _side(F, a_ptr, a_ok, 3, sfc, bins, REG_MAX)
    x1, y1, x2, y2 = cx - left, cy - top, cx + right, cy + bottom
    o_ptr = Out + b * sob + offs_a * soa
    tl.store(o_ptr, (x1 + x2) * 0.5 * stride, mask=a_ok)
    tl.store(o_ptr + soc, (y1 + y2) * 0.5 * stride, mask=a_ok)
    tl.store(o_ptr + 2 * soc, (x2 - x1) * stride, mask=a_ok)
    tl.store(o_ptr + 3 * soc, (y2 - y1) * stride, mask=a_ok)

    offs_c = tl.arange(0, BLOCK_C)
    for c0 in range(0, NC, BLOCK_C):
        c = c0 + offs_c
        ok = a_ok[:, None] & (c < NC)[None, :]
        logit = tl.load(a_ptr[:, None] + (4 * REG_MAX + c)[None, :] * sfc, mask=ok, other=0.0)
        tl.store(o_ptr[:, None] + (4 + c)[None, :] * soc, tl.sigmoid(logit.to(tl.float32)),
                 mask=ok)


def launch_args(feats, out, level_shapes, strides, reg_max: int, block_a: int = 64,
                block_c: int = 32):
    """(grid, positional args, constexpr/launch kwargs) of one launch; 1 to 3 levels."""
    B, no, A = feats.shape
    nc = no - 4 * reg_max
    shapes = list(level_shapes) + [(0, 1)] * (3 - len(level_shapes))
    scales = [float(s) for s in strides] + [1.0] * (3 - len(strides))
    (h0, w0), (h1, w1), (_, w2) = shapes
    args = (feats, out, A, nc, h0, w0, h1, w1, w2, *scales, *feats.stride(), *out.stride())
    kwargs = dict(REG_MAX=reg_max, BLOCK_A=block_a, BLOCK_C=block_c, num_warps=4)
    return (B * triton.cdiv(A, block_a),), args, kwargs


def launch(feats, out, level_shapes, strides, reg_max: int) -> None:
    grid, args, kwargs = launch_args(feats, out, level_shapes, strides, reg_max)
    _launch.run(_box_decode_kernel, grid, args, kwargs)  # recorded inside a launch.recording()


__all__ = ["launch", "launch_args", "INTERPRET"]
