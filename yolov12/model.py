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

from . import fast, weights
from .architecture import LAYERS, PAPER, SCALES, STRIDE, VARIANTS, build_layers  # noqa: F401
from .modules import AAttn, Conv
from .turbo import README as TURBO_PAPER
from .turbo import convert as to_turbo


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
            to_turbo(self)
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
        checkpoint = weights.read_checkpoint(path)
        model = cls(checkpoint.scale, checkpoint.nc, variant=checkpoint.variant)
        if checkpoint.fused:
            model.eval().fuse()  # the file's modules: convs with bias, no BN
        weights.load_into(model, checkpoint.state_dict)
        model.names = checkpoint.names
        return model.to(map_location).eval()

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
                 channels_last: bool | None = None, fused_convs: bool | None = None,
                 graphs: bool = True, max_shapes: int = 8):
        """A fast inference copy of this model (``yolov12.fast.FastYOLOv12``); this one is unchanged.

        Conv+BN folded, attention on the fastest backend (``backend``), weights in ``dtype``
        (default float16 on CUDA, float32 on CPU) with the box decode in float32, channels-last
        where it helps (``channels_last=None``: always with the fused conv kernels, else on the
        CPU only). Calling the result prepares each input shape once and replays it: a CUDA graph
        on CUDA (``graphs=False``: none), the fused path's launch plan elsewhere; ``max_shapes``
        shapes stay prepared (``yolov12.fast``). ``.capture(batch, size)`` gives a CUDA-graph
        replay whose static buffers the caller manages; ``torch.compile`` takes it without graph
        breaks.

        ``fused_convs``: run the convs as the fused NHWC kernels of ``yolov12_kernels``
        (``yolov12/fused.py``). None (default): on a GPU where they run (sm_80+), else the
        PyTorch convs with one log line; True: required (RuntimeError with the reason where they
        cannot run); False: never (the ablation "fast path without the conv kernels").
        """
        return fast.optimize(self, device, dtype, backend=backend, channels_last=channels_last,
                             fused_convs=fused_convs, graphs=graphs, max_shapes=max_shapes)

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
        # turbo: the official README's table
        paper = (TURBO_PAPER if self.variant == "turbo" else PAPER)[self.scale]
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
