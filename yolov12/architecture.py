"""The YOLOv12 architecture as data: the scales, the layer table of the public YOLO12 configuration,
the paper's figures, and ``build_layers`` that turns them into modules.

Separate from ``model.py`` so that the weight reader (``weights.py``), which needs the table to tell
a file's scale, does not import the model, and the model can import the weight reader.
"""
from __future__ import annotations

import math

from torch import nn

from .modules import A2C2f, C3k2, Concat, Conv, Detect

# scale: (depth multiple, width multiple, max channels)
SCALES = {
    "n": (0.50, 0.25, 1024),
    "s": (0.50, 0.50, 1024),
    "m": (0.50, 1.00, 512),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.50, 512),
}

# (from, repeats, module, args) — the YOLO12 configuration; channels before width scaling.
LAYERS = [
    (-1, 1, Conv, [64, 3, 2]),             # 0  P1/2
    (-1, 1, Conv, [128, 3, 2]),            # 1  P2/4
    (-1, 2, C3k2, [256, False, 0.25]),     # 2
    (-1, 1, Conv, [256, 3, 2]),            # 3  P3/8
    (-1, 2, C3k2, [512, False, 0.25]),     # 4
    (-1, 1, Conv, [512, 3, 2]),            # 5  P4/16
    (-1, 4, A2C2f, [512, True, 4]),        # 6  area attention, 4 areas
    (-1, 1, Conv, [1024, 3, 2]),           # 7  P5/32
    (-1, 4, A2C2f, [1024, True, 1]),       # 8  global attention
    (-1, 1, nn.Upsample, [None, 2, "nearest"]),  # 9
    ([-1, 6], 1, Concat, [1]),             # 10 cat backbone P4
    (-1, 2, A2C2f, [512, False, -1]),      # 11
    (-1, 1, nn.Upsample, [None, 2, "nearest"]),  # 12
    ([-1, 4], 1, Concat, [1]),             # 13 cat backbone P3
    (-1, 2, A2C2f, [256, False, -1]),      # 14 (P3/8 out)
    (-1, 1, Conv, [256, 3, 2]),            # 15
    ([-1, 11], 1, Concat, [1]),            # 16 cat head P4
    (-1, 2, A2C2f, [512, False, -1]),      # 17 (P4/16 out)
    (-1, 1, Conv, [512, 3, 2]),            # 18
    ([-1, 8], 1, Concat, [1]),             # 19 cat head P5
    (-1, 2, C3k2, [1024, True]),           # 20 (P5/32 out)
    ([14, 17, 20], 1, Detect, ["nc"]),     # 21
]

# Figures from the paper (Table 1, T4 TensorRT FP16, batch 1, 640) printed beside ours.
PAPER = {
    "n": {"mAP": 40.6, "t4_ms": 1.64, "params_M": 2.6, "gflops": 6.5},
    "s": {"mAP": 48.0, "t4_ms": 2.61, "params_M": 9.3, "gflops": 21.4},
    "m": {"mAP": 52.5, "t4_ms": 4.86, "params_M": 20.2, "gflops": 67.5},
    "l": {"mAP": 53.7, "t4_ms": 6.77, "params_M": 26.4, "gflops": 88.9},
    "x": {"mAP": 55.2, "t4_ms": 11.79, "params_M": 59.1, "gflops": 199.0},
}

STRIDE = 32  # the largest downsampling: input sides must be multiples of it

# "yolo12": the table above (the paper, ultralytics' YOLO12); "turbo": the official repository's
# default checkpoints, four changes to it (yolov12/turbo.py)
VARIANTS = ("yolo12", "turbo")


def make_divisible(x: float, divisor: int = 8) -> int:
    """The smallest multiple of ``divisor`` that is >= ``x`` (channel widths after scaling)."""
    return math.ceil(x / divisor) * divisor


def build_layers(scale: str, nc: int, in_ch: int = 3):
    """The layer list for ``scale`` and, per layer, the indices it reads from."""
    depth, width, max_ch = SCALES[scale]
    layers, froms, ch = [], [], [in_ch]
    for i, (f, n, m, args) in enumerate(LAYERS):
        n = max(round(n * depth), 1) if n > 1 else n
        if m in (Conv, C3k2, A2C2f):
            c1, c2 = ch[f], make_divisible(min(args[0], max_ch) * width, 8)
            args = [c1, c2, *args[1:]]
            if m in (C3k2, A2C2f):
                args.insert(2, n)  # repeats go inside the block
                n = 1
            if m is C3k2 and scale in "mlx":
                args[3] = True  # C3k blocks for the larger scales
            if m is A2C2f and scale in "lx":
                args.extend((True, 1.2))  # residual with gamma, MLP ratio 1.2
        elif m is Concat:
            c2 = sum(ch[x] for x in f)
        elif m is Detect:
            args = [nc, [ch[x] for x in f]]
        else:
            c2 = ch[f]
        module = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
        layers.append(module)
        froms.append(f)
        if i == 0:
            ch = []  # from here on, ch[j] is the output width of layer j
        ch.append(c2)
    return layers, froms
