"""Model variants for the paper's ablations, and the paper's figures for them.

Each variant is the stock ``YOLOv12(scale)`` with one change made after construction (no change to
the model code): the P4 attention made global (area 1), the position perceiver's kernel size, or
the attention blocks' MLP ratio. Variant names are what the benchmark records carry: the record
``name`` is ``"<scale>/<variant>"`` (e.g. ``"n/pe5"``), the stock model is the bare scale.
"""
from __future__ import annotations

from torch import nn

from ..model import YOLOv12
from ..modules import AAttn, ABlock, Conv

P4_LAYER = 6  # the backbone A2C2f at stride 16 (area 4); layer 8 (P5) is global already
PE_KERNELS = (1, 3, 5, 7, 9)
MLP_RATIOS = (1.0, 1.2, 1.5, 2.0, 4.0)

# The paper's ablations (YOLOv12-N, arXiv 2502.12524; docs/paper.md lists the figures we use).
PAPER_PE = {1: {"t4_ms": 1.6, "mAP": 39.8}, 3: {"t4_ms": 1.6, "mAP": 40.2},
            5: {"t4_ms": 1.7, "mAP": 40.4}, 7: {"t4_ms": 1.7, "mAP": 40.6},
            9: {"t4_ms": 1.9, "mAP": 40.6}}
PAPER_MLP = {1.0: {"gflops": 6.3, "params_M": 2.5, "mAP": 40.2},
             1.2: {"gflops": 6.5, "params_M": 2.6, "mAP": 40.6},
             1.5: {"gflops": 6.7, "params_M": 2.6, "mAP": 40.4},
             2.0: {"gflops": 7.1, "params_M": 2.7, "mAP": 40.2},
             4.0: {"gflops": 9.0, "params_M": 3.1, "mAP": 39.5}}
PAPER_AREA = "area attention: ~25-30% less GPU latency, ~50% less CPU latency than global " \
             "(X on CPU 804.2 -> 512.5 ms)"
PAPER_FLASH = "FlashAttention: N 2.0 -> 1.7 ms (T4), S 3.4 -> 3.0 ms"


def set_p4_area(model: YOLOv12, area: int) -> YOLOv12:
    """Set the number of areas of every attention at P4 (area=1: global attention); in place."""
    if isinstance(area, bool) or not isinstance(area, int) or area < 1:
        raise ValueError(f"area: expected a positive int, got {area!r}")
    for m in model.model[P4_LAYER].modules():
        if isinstance(m, AAttn):
            m.area = area
    return model


def set_pe_kernel(model: YOLOv12, k: int) -> YOLOv12:
    """Give every attention's position perceiver a k x k depthwise kernel (fresh weights); in place."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"k: expected an odd positive int, got {k!r}")
    for m in model.modules():
        if isinstance(m, AAttn):
            dim = m.pe.conv.out_channels
            m.pe = Conv(dim, dim, k, 1, k // 2, g=dim, act=False)
    _bn_like_model(model)
    return model


def set_mlp_ratio(model: YOLOv12, ratio: float) -> YOLOv12:
    """Rebuild every attention block's MLP with hidden width int(dim * ratio); in place."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0:
        raise ValueError(f"ratio: expected a positive number, got {ratio!r}")
    for m in model.modules():
        if isinstance(m, ABlock):
            dim = m.mlp[0].conv.in_channels
            hidden = int(dim * ratio)
            m.mlp = nn.Sequential(Conv(dim, hidden, 1), Conv(hidden, dim, 1, act=False))
            m.mlp.apply(ABlock._init_weights)
    _bn_like_model(model)
    return model


def _bn_like_model(model: nn.Module) -> None:
    for m in model.modules():  # the public model's BN settings, as YOLOv12.__init__ sets them
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03


def variant_names(scale: str) -> list[str]:
    """Every ablation variant of a scale, in table order."""
    return (["p4-global"] + [f"pe{k}" for k in PE_KERNELS]
            + [f"mlp{r:g}" for r in MLP_RATIOS])


def build_variant(scale: str, variant: str = "", nc: int = 80) -> YOLOv12:
    """``YOLOv12(scale)`` with ``variant`` applied: "" (stock), "p4-global", "pe<k>", "mlp<r>"."""
    model = YOLOv12(scale, nc)
    if not variant:
        return model
    if variant == "p4-global":
        return set_p4_area(model, 1)
    if variant.startswith("pe") and variant[2:].isdigit():
        return set_pe_kernel(model, int(variant[2:]))
    if variant.startswith("mlp"):
        try:
            return set_mlp_ratio(model, float(variant[3:]))
        except ValueError:
            pass
    raise ValueError(f"variant: expected '', 'p4-global', 'pe<k>' or 'mlp<ratio>', got {variant!r}")
