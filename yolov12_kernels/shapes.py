"""The attention shapes YOLOv12 runs: one table, imported by the tests, benchmarks and dispatch.

At a 640x640 input the two attention levels are P4 (stride 16: a 40x40 map cut into 4 areas of
400 tokens) and P5 (stride 32: 20x20, one area of 400 tokens, i.e. global attention). head_dim is
32 at every scale; the head count is the A2C2f hidden width / 32.
"""
from __future__ import annotations

from typing import NamedTuple

HEAD_DIM = 32
SCALES = ("n", "s", "m", "l", "x")

# heads at (P4, P5) per scale
HEADS = {"n": (2, 4), "s": (4, 8), "m": (8, 8), "l": (8, 8), "x": (12, 12)}

# level: (map side at 640, areas)
LEVELS = {"P4": (40, 4), "P5": (20, 1)}


class AttentionShape(NamedTuple):
    """One YOLOv12 attention call at ``imgsz`` 640 and batch 1: (B, N, heads, head_dim) tokens
    split into ``area`` stripes; the model layout is qkv (B, 3 * heads * head_dim, side, side)."""
    scale: str
    level: str
    heads: int
    side: int
    area: int
    head_dim: int = HEAD_DIM

    @property
    def tokens(self) -> int:
        return self.side * self.side

    @property
    def channels(self) -> int:
        return self.heads * self.head_dim


def attention_shape(scale: str, level: str, imgsz: int = 640) -> AttentionShape:
    """The attention call of ``scale`` at ``level`` ("P4" or "P5") for a square ``imgsz`` input."""
    if scale not in HEADS:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {tuple(LEVELS)}, got {level!r}")
    side640, area = LEVELS[level]
    stride = 640 // side640
    if imgsz % 32 or imgsz <= 0:
        raise ValueError(f"imgsz: expected a positive multiple of 32, got {imgsz}")
    heads = HEADS[scale][0 if level == "P4" else 1]
    return AttentionShape(scale, level, heads, imgsz // stride, area)


def all_shapes(imgsz: int = 640) -> list[AttentionShape]:
    """Every (scale, level) attention call of YOLOv12 at ``imgsz``."""
    return [attention_shape(s, lvl, imgsz) for s in SCALES for lvl in LEVELS]
