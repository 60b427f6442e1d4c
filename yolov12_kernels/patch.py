"""Drop-in speed-up for YOLO12 models from other code bases (ultralytics): ``patch(model)``.

Example (ultralytics installed; it is not a dependency of this package)::

    from ultralytics import YOLO; import yolov12_kernels
    model = YOLO("yolo12n.pt")
    yolov12_kernels.patch(model.model)   # every AAttn now runs fused_area_attention

``patch`` recognises area-attention modules by their attribute layout, not their class, so it
works on any module shaped like the public ``AAttn``: ``qkv``, ``proj`` and ``pe`` each a Conv
wrapper with ``.conv`` (``nn.Conv2d``) and optionally ``.bn`` (absent or None once fused), integers
``num_heads``, ``head_dim`` and ``area``, and ``pe`` a depthwise conv. Each match gets an instance
``forward`` that runs ``yolov12_kernels.aattn.aattn_forward`` (the fused op; with a training-mode
BN in pe, attention from the op and pe through the module); weights are untouched, so
``state_dict()`` and saving are unchanged, and ``unpatch`` restores the original forward.
"""
from __future__ import annotations

import types

from torch import nn

from .aattn import aattn_forward
from .dispatch import BACKENDS

_MARK = "_yolov12_kernels_patched"  # the backend a module was patched with


def _conv_of(m):
    conv = getattr(m, "conv", None)
    return conv if isinstance(conv, nn.Conv2d) else None


def is_area_attention(m: nn.Module) -> bool:
    """True if ``m`` has the AAttn attribute layout that ``patch`` knows how to run."""
    try:
        qkv, proj, pe = (_conv_of(getattr(m, a, None)) for a in ("qkv", "proj", "pe"))
        heads, d, area = m.num_heads, m.head_dim, m.area
    except AttributeError:
        return False
    if qkv is None or proj is None or pe is None:
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (heads, d, area)):
        return False
    C = heads * d
    return (qkv.kernel_size == (1, 1) and qkv.out_channels == 3 * C
            and pe.in_channels == pe.out_channels == pe.groups == C  # depthwise, on v
            and pe.stride == (1, 1) and pe.kernel_size[0] == pe.kernel_size[1]
            and pe.padding == (pe.kernel_size[0] // 2,) * 2 and pe.dilation == (1, 1))


def _fused_forward(self, x):
    return aattn_forward(self, x, backend=getattr(self, _MARK))


def _root(model):
    # accept wrappers that hold the network in ``.model`` (ultralytics' YOLO object)
    if not isinstance(model, nn.Module) and isinstance(getattr(model, "model", None), nn.Module):
        return model.model
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected an nn.Module (or an object with one in .model), got "
                         f"{type(model).__name__}")
    return model


def patch(model, backend: str = "auto") -> int:
    """Run every area-attention module of ``model`` on ``fused_area_attention`` (in place).

    ``backend``: as for ``fused_area_attention`` ("auto", "triton", "cuda", "sdpa", "reference").
    Returns how many modules were patched (0 means none has the AAttn layout). Patching twice
    just updates the backend.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend: expected 'auto' or one of {BACKENDS}, got {backend!r}")
    count = 0
    for m in _root(model).modules():
        if not is_area_attention(m):
            continue
        if not hasattr(m, _MARK):  # an instance attribute: the class's forward stays for unpatch
            m.forward = types.MethodType(_fused_forward, m)
        setattr(m, _MARK, backend)
        count += 1
    return count


def unpatch(model) -> int:
    """Undo ``patch``: restore each patched module's own forward. Returns how many."""
    count = 0
    for m in _root(model).modules():
        if hasattr(m, _MARK):
            del m.forward  # the instance attribute; the class's forward shows through again
            delattr(m, _MARK)
            count += 1
    return count
