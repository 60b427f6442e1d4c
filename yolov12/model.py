"""The YOLOv12 detector, all five scales from one config table (the public YOLO12 configuration).

``YOLOv12("n", nc=80)`` builds a scale. Layers live in ``self.model`` (an ``nn.Sequential``) under the
same indices as the public model, so state-dict keys match: ``model.0.conv.weight``,
``model.6.m.0.0.attn.qkv.conv.weight``, ... and ``load_state_dict(sd, strict=True)`` takes a public
YOLO12 state dict as is.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from yolov12_kernels.dispatch import BACKENDS

from . import fast
from .modules import A2C2f, AAttn, C3k2, Concat, Conv, Detect

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


def _make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


def build_layers(scale: str, nc: int, in_ch: int = 3):
    """The layer list for ``scale`` and, per layer, the indices it reads from."""
    depth, width, max_ch = SCALES[scale]
    layers, froms, ch = [], [], [in_ch]
    for i, (f, n, m, args) in enumerate(LAYERS):
        n = max(round(n * depth), 1) if n > 1 else n
        if m in (Conv, C3k2, A2C2f):
            c1, c2 = ch[f], _make_divisible(min(args[0], max_ch) * width, 8)
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


class YOLOv12(nn.Module):
    """YOLOv12 detector. ``YOLOv12(scale="n", nc=80)``.

    Input (B, 3, H, W) with H and W multiples of 32 (letterbox/pad other sizes). Output in eval mode:
    (B, 4 + nc, anchors), boxes as xywh in input pixels then class probabilities; in train mode the
    raw per-level maps.
    """

    def __init__(self, scale: str = "n", nc: int = 80, variant: str = "yolo12"):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale: expected one of {list(SCALES)}, got {scale!r}")
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
            raise ValueError(f"nc: expected a positive int, got {nc!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {list(VARIANTS)}, got {variant!r}")
        self.scale, self.nc, self.variant = scale, nc, variant
        layers, self._froms = build_layers(scale, nc)
        self.model = nn.Sequential(*layers)
        if variant == "turbo":
            from .turbo import convert
            convert(self)
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self._save = {x for f in self._froms if isinstance(f, list) for x in f if x != -1}
        self.model[-1].bias_init()
        for m in self.modules():  # the public model's BN settings
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03

    # ----------------------------------------------------------------------------------------
    def check_input(self, x, match_model: bool = False) -> None:
        """Raise a clear error for anything the model cannot take: not a tensor (``TypeError``),
        not a float image batch (``TypeError`` for integer pixels: scale them to [0, 1]), an
        empty batch, a shape other than (B, 3, H, W) with sides multiples of 32 (``ValueError``).
        ``match_model``: also the model's own dtype (``TypeError``) and device (``ValueError``)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected an image batch, a torch.Tensor (B, 3, H, W), got "
                            f"{type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"x: expected an image batch (B, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point image batch with values in [0, 1], "
                            f"got {x.dtype}" + (" (8-bit pixels: use x.float() / 255)"
                                                if x.dtype == torch.uint8 else ""))
        if x.shape[0] == 0:
            raise ValueError(f"x: empty batch (B=0) in shape {tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(f"x: expected 3 channels (RGB), got {x.shape[1]} in shape "
                             f"{tuple(x.shape)}")
        H, W = x.shape[2:]
        if H % STRIDE or W % STRIDE or H == 0 or W == 0:
            raise ValueError(f"x: image sides must be multiples of {STRIDE}, got {H}x{W}; "
                             f"letterbox or pad the image to e.g. "
                             f"{math.ceil(max(H, 1) / STRIDE) * STRIDE}x"
                             f"{math.ceil(max(W, 1) / STRIDE) * STRIDE}")
        if match_model:
            p = next(self.parameters())
            if x.dtype != p.dtype:
                raise TypeError(f"x: dtype {x.dtype} does not match the model's {p.dtype}; "
                                f"cast the input (x.to({p.dtype})) or the model "
                                f"(model.to({x.dtype}))")
            if x.device != p.device:
                raise ValueError(f"x: on {x.device} but the model is on {p.device}")

    def forward(self, x):
        self.check_input(x, match_model=True)
        return self.run(x)

    def run(self, x):
        """The layer loop on a checked input: each layer reads the outputs it names (``froms``)."""
        outputs = []
        for i, (layer, f) in enumerate(zip(self.model, self._froms)):
            if f != -1:
                x = outputs[f] if isinstance(f, int) else [x if j == -1 else outputs[j] for j in f]
            x = layer(x)
            outputs.append(x if i in self._save else None)
        return x

    @classmethod
    def load(cls, path, map_location="cpu") -> "YOLOv12":
        """A model with the weights in ``path`` (public YOLO12 .pt, our .safetensors, or a state
        dict); scale and nc are read from the file. Never executes code from the file."""
        from .weights import load_model
        return load_model(path, map_location=map_location)

    # ----------------------------------------------------------------------------------------
    def fuse(self) -> "YOLOv12":
        """Fold every Conv+BN into one conv with bias (for inference; outputs unchanged)."""
        for m in self.modules():
            if isinstance(m, Conv):
                m.fuse()
        return self

    def set_attention_backend(self, backend: str) -> "YOLOv12":
        """Run every AAttn's core on ``backend`` ("auto", "triton", "cuda", "sdpa", "reference"...)."""
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"backend: expected 'auto' or one of {BACKENDS}, got {backend!r}")
        for m in self.modules():
            if isinstance(m, AAttn):
                m.backend = backend
        return self

    def optimize(self, device=None, dtype=None, *, backend: str = "auto",
                 channels_last: bool | None = None):
        """A fast inference copy of this model (``yolov12.fast.FastYOLOv12``); this one is unchanged.

        Conv+BN folded, attention on the fastest backend (``backend``), weights in ``dtype``
        (default float16 on CUDA, float32 on CPU) with the box decode in float32, channels-last
        where it helps (``channels_last=None``: per device). ``.capture(batch, size)`` on the result
        gives a CUDA-graph replay for a fixed shape; ``torch.compile`` takes it without graph breaks.
        """
        return fast.optimize(self, device, dtype, backend=backend, channels_last=channels_last)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def gflops(self, imgsz: int | tuple[int, int] = 640) -> dict:
        """GFLOPs of one forward pass at ``imgsz``, counted by ``torch.utils.flop_counter``.

        FlopCounterMode counts a multiply-add as 2 FLOPs. Returns ``{"total", "conv",
        "attention"}``: "conv" counts convolutions only, which is what the paper's (thop-based)
        figures count; "attention" is the q k^T and attn v matmuls they leave out.
        """
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        p = next(self.parameters())
        x = torch.zeros(1, 3, h, w, device=p.device, dtype=p.dtype)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self(x)
        finally:
            self.train(was_training)
        by_op = counter.get_flop_counts().get("Global", {})
        conv = sum(v for op, v in by_op.items() if "convolution" in str(op))
        total = counter.get_total_flops()
        return {"total": total / 1e9, "conv": conv / 1e9, "attention": (total - conv) / 1e9}

    def info(self, imgsz: int = 640, print_fn=print) -> dict:
        """Params and GFLOPs at ``imgsz`` beside the paper's figures; returns them as a dict."""
        params, gf = self.num_params(), self.gflops(imgsz)
        if self.variant == "turbo":  # the official README's turbo table
            from .turbo import README as paper_figures
        else:
            paper_figures = PAPER
        paper = paper_figures[self.scale]
        print_fn(f"YOLOv12-{self.scale.upper()}{'-turbo' if self.variant == 'turbo' else ''} "
                 f"(nc={self.nc}): {params:,} params "
                 f"(paper {paper['params_M']} M); at {imgsz}: {gf['conv']:.1f} GFLOPs in convs "
                 f"(paper {paper['gflops']}, which counts convs only) + {gf['attention']:.2f} in "
                 f"attention matmuls = {gf['total']:.1f} total "
                 "(torch.utils.flop_counter, a multiply-add = 2 FLOPs)")
        return {"scale": self.scale, "nc": self.nc, "variant": self.variant, "params": params,
                "imgsz": imgsz,
                "gflops": gf["total"], "gflops_conv": gf["conv"],
                "gflops_attention": gf["attention"], "paper": paper}
