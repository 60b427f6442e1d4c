"""Every convolution YOLOv12 runs, per scale and input size: one table for the fused conv kernels'
launch configurations, their compile check and the docs' per-layer table.

Derived from the public YOLO12 configuration (the same arithmetic as ``yolov12.model``; a test runs
the real model and checks that this table lists exactly its convs). Each row also says how the
fused path runs the conv: its epilogue (SiLU, residual, layer scale gamma) and, where its output is
one slice of a following concat, the channel offset and width of that concat buffer (``out_off``,
``out_total``) — and the same for an input read from a slice (``in_off``, ``in_total``).

The attention core (qkv -> attention + 7x7 pe -> ``out``) is not a conv row here: it is
``fused_area_attention``. The ABlock MLP pair appears as its two 1x1 rows, tagged ``mlp1``/``mlp2``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

SCALES = ("n", "s", "m", "l", "x")
# scale: (depth multiple, width multiple, max channels) — the public YOLO12 table
_SCALE = {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512),
          "l": (1.00, 1.00, 512), "x": (1.00, 1.50, 512)}
REG_MAX = 16


class ConvShape(NamedTuple):
    """One conv of the model. ``name`` is its module path in ``YOLOv12`` (``model.2.cv1``); the
    input is (B, cin, h, w); ``depthwise`` convs have groups = cin = cout."""
    name: str
    cin: int
    cout: int
    k: int
    stride: int
    h: int
    w: int
    silu: bool = True
    depthwise: bool = False
    residual: bool = False   # the fused epilogue adds a residual (Bottleneck, ABlock, A2C2f)
    gamma: bool = False      # ... scaled per channel (A2C2f of l/x: x + gamma * y)
    role: str = ""           # "mlp1"/"mlp2": the ABlock MLP pair; "head": Detect's last 1x1s
    in_off: int = 0          # the input is channels [in_off, in_off + cin) of in_total
    in_total: int = 0        # 0: the input is a tensor of its own
    out_off: int = 0
    out_total: int = 0       # 0: the output is a tensor of its own

    @property
    def ho(self) -> int:
        return (self.h + 2 * (self.k // 2) - self.k) // self.stride + 1

    @property
    def wo(self) -> int:
        return (self.w + 2 * (self.k // 2) - self.k) // self.stride + 1

    def gflops(self, batch: int = 1) -> float:
        """Multiply-adds x 2, as torch.utils.flop_counter counts them."""
        red = self.k * self.k * (1 if self.depthwise else self.cin)
        return 2 * batch * self.ho * self.wo * self.cout * red / 1e9


def _ch(c: int, scale: str) -> int:
    _, width, max_ch = _SCALE[scale]
    return math.ceil(min(c, max_ch) * width / 8) * 8


def _rep(n: int, scale: str) -> int:
    return max(round(n * _SCALE[scale][0]), 1) if n > 1 else n


class _Walker:
    """Walks the layer list the way the model builds it, appending ConvShape rows."""

    def __init__(self):
        self.rows: list[ConvShape] = []

    def conv(self, name, cin, cout, k, s, h, w, **kw) -> tuple[int, int]:
        row = ConvShape(name, cin, cout, k, s, h, w, **kw)
        self.rows.append(row)
        return row.ho, row.wo

    def bottleneck(self, name, c1, c2, k, e, shortcut, h, w, inp=(0, 0), out=(0, 0)):
        c_ = int(c2 * e)
        self.conv(f"{name}.cv1", c1, c_, k[0], 1, h, w, in_off=inp[0], in_total=inp[1])
        self.conv(f"{name}.cv2", c_, c2, k[1], 1, h, w, residual=shortcut and c1 == c2,
                  out_off=out[0], out_total=out[1])

    def c3k(self, name, c1, c2, n, h, w, inp=(0, 0), out=(0, 0)):
        c_ = int(c2 * 0.5)
        # cat(m(cv1(x)), cv2(x)): cv2 writes the second half of cv3's input buffer
        self.conv(f"{name}.cv1", c1, c_, 1, 1, h, w, in_off=inp[0], in_total=inp[1])
        for j in range(n):
            last = j == n - 1
            self.bottleneck(f"{name}.m.{j}", c_, c_, (3, 3), 1.0, True, h, w,
                            out=(0, 2 * c_) if last else (0, 0))
        self.conv(f"{name}.cv2", c1, c_, 1, 1, h, w, in_off=inp[0], in_total=inp[1],
                  out_off=c_, out_total=2 * c_)
        self.conv(f"{name}.cv3", 2 * c_, c2, 1, 1, h, w, out_off=out[0], out_total=out[1])

    def c3k2(self, name, c1, c2, n, c3k, e, h, w, out=(0, 0)):
        c = int(c2 * e)
        tot = (2 + n) * c
        self.conv(f"{name}.cv1", c1, 2 * c, 1, 1, h, w, out_total=tot)
        for j in range(n):
            inp, o = ((1 + j) * c, tot), ((2 + j) * c, tot)
            if c3k:
                self.c3k(f"{name}.m.{j}", c, c, 2, h, w, inp=inp, out=o)
            else:
                self.bottleneck(f"{name}.m.{j}", c, c, (3, 3), 0.5, True, h, w, inp=inp, out=o)
        self.conv(f"{name}.cv2", tot, c2, 1, 1, h, w, out_off=out[0], out_total=out[1])

    def a2c2f(self, name, c1, c2, n, a2, residual, mlp_ratio, h, w, out=(0, 0)):
        c_ = int(c2 * 0.5)
        tot = (1 + n) * c_
        self.conv(f"{name}.cv1", c1, c_, 1, 1, h, w, out_total=tot)
        for j in range(n):
            inp, o = (j * c_, tot), ((j + 1) * c_, tot)
            if a2:
                hidden = int(c_ * mlp_ratio)
                for b in range(2):
                    blk = f"{name}.m.{j}.{b}"
                    self.conv(f"{blk}.attn.qkv", c_, 3 * c_, 1, 1, h, w, silu=False,
                              **(dict(in_off=inp[0], in_total=tot) if b == 0 else {}))
                    self.conv(f"{blk}.attn.proj", c_, c_, 1, 1, h, w, silu=False, residual=True)
                    self.conv(f"{blk}.mlp.0", c_, hidden, 1, 1, h, w, role="mlp1")
                    self.conv(f"{blk}.mlp.1", hidden, c_, 1, 1, h, w, silu=False, residual=True,
                              role="mlp2", **(dict(out_off=o[0], out_total=tot) if b else {}))
            else:
                self.c3k(f"{name}.m.{j}", c_, c_, 2, h, w, inp=inp, out=o)
        gamma = a2 and residual
        self.conv(f"{name}.cv2", tot, c2, 1, 1, h, w, residual=gamma, gamma=gamma,
                  out_off=out[0], out_total=out[1])

    def detect(self, name, chs, sides, nc):
        c2 = max(16, chs[0] // 4, REG_MAX * 4)
        c3 = max(chs[0], min(nc, 100))
        no = REG_MAX * 4 + nc
        for i, (x, (h, w)) in enumerate(zip(chs, sides)):
            self.conv(f"{name}.cv2.{i}.0", x, c2, 3, 1, h, w)
            self.conv(f"{name}.cv2.{i}.1", c2, c2, 3, 1, h, w)
            self.conv(f"{name}.cv2.{i}.2", c2, 4 * REG_MAX, 1, 1, h, w, silu=False, role="head",
                      out_total=no)
            self.conv(f"{name}.cv3.{i}.0.0", x, x, 3, 1, h, w, depthwise=True)
            self.conv(f"{name}.cv3.{i}.0.1", x, c3, 1, 1, h, w)
            self.conv(f"{name}.cv3.{i}.1.0", c3, c3, 3, 1, h, w, depthwise=True)
            self.conv(f"{name}.cv3.{i}.1.1", c3, c3, 1, 1, h, w)
            self.conv(f"{name}.cv3.{i}.2", c3, nc, 1, 1, h, w, silu=False, role="head",
                      out_off=4 * REG_MAX, out_total=no)


def model_convs(scale: str, imgsz: int | tuple[int, int] = 640, nc: int = 80) -> list[ConvShape]:
    """Every conv of YOLOv12-``scale`` on a (B, 3, H, W) input, in execution order."""
    if scale not in _SCALE:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")
    H, W = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    if H % 32 or W % 32 or H <= 0 or W <= 0:
        raise ValueError(f"imgsz: sides must be positive multiples of 32, got {H}x{W}")
    lx, mlx = scale in "lx", scale in "mlx"
    ratio = 1.2 if lx else 2.0
    c = {k: _ch(v, scale) for k, v in {64: 64, 128: 128, 256: 256, 512: 512, 1024: 1024}.items()}
    wk = _Walker()
    p = [(H // s, W // s) for s in (2, 4, 8, 16, 32)]  # P1..P5 sides
    wk.conv("model.0", 3, c[64], 3, 2, H, W)
    wk.conv("model.1", c[64], c[128], 3, 2, *p[0])
    wk.c3k2("model.2", c[128], c[256], _rep(2, scale), mlx, 0.25, *p[1])
    wk.conv("model.3", c[256], c[256], 3, 2, *p[1])
    c11 = c[512]
    c4 = c[512]
    cat13 = (c11, c11 + c4)  # layer 4 is the second part of concat 13 (up(11), 4)
    wk.c3k2("model.4", c[256], c4, _rep(2, scale), mlx, 0.25, *p[2], out=cat13)
    wk.conv("model.5", c4, c[512], 3, 2, *p[2], in_off=cat13[0], in_total=cat13[1])
    c8 = c[1024]
    cat10 = (c8, c8 + c[512])
    wk.a2c2f("model.6", c[512], c[512], _rep(4, scale), True, lx, ratio, *p[3], out=cat10)
    wk.conv("model.7", c[512], c[1024], 3, 2, *p[3], in_off=cat10[0], in_total=cat10[1])
    c18 = c[512]
    cat19 = (c18, c18 + c8)
    wk.a2c2f("model.8", c[1024], c8, _rep(4, scale), True, lx, ratio, *p[4], out=cat19)
    c15 = c[256]
    cat16 = (c15, c15 + c11)
    wk.a2c2f("model.11", cat10[1], c11, _rep(2, scale), False, lx, ratio, *p[3], out=cat16)
    wk.a2c2f("model.14", cat13[1], c[256], _rep(2, scale), False, lx, ratio, *p[2])
    wk.conv("model.15", c[256], c15, 3, 2, *p[2], out_total=cat16[1])
    wk.a2c2f("model.17", cat16[1], c[512], _rep(2, scale), False, lx, ratio, *p[3])
    wk.conv("model.18", c[512], c18, 3, 2, *p[3], out_total=cat19[1])
    wk.c3k2("model.20", cat19[1], c[1024], _rep(2, scale), True, 0.5, *p[4])
    wk.detect("model.21", (c[256], c[512], c[1024]), p[2:], nc)
    return wk.rows


__all__ = ["ConvShape", "model_convs", "SCALES", "REG_MAX"]
