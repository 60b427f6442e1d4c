"""The CUDA C++ backend (csrc/): tensor-core area attention for sm_75+ and the depthwise conv.

Forward only. Where the extension comes from, in order:

1. the ahead-of-time build ``yolov12_kernels._C`` (``pip install --no-build-isolation .`` on a
   machine with a CUDA torch and nvcc; see docs/cuda.md);
2. a JIT build from csrc/ (``_cuda_build.load``: ninja, cached under
   ``~/.cache/yolov12_kernels``, file-locked), controlled by ``YOLOV12_CUDA_JIT``:
   ``auto`` (default) builds when a GPU is visible, ``1`` always tries, ``0`` never does,
   ``force`` skips the AOT module and always JIT-builds (e.g. ``YOLOV12_CUDA_ARCHS=compute_75``).

The first use of the backend may therefore take a minute or two on a GPU machine without the AOT
build (the compile is cached afterwards). Supported: CUDA tensors; attention in float16 (any GPU
from sm_75) and bfloat16 (code compiled for sm_80+), head_dim 32 or 64; the depthwise conv in
float32/float16/bfloat16 with odd kernel sizes up to 31. Everything else is reported by
``unsupported`` so that "auto" moves on to another backend.
"""
from __future__ import annotations

import os

import torch

from ._checks import check_area, check_drop_in_qkv, check_model_qkv

ENV_JIT = "YOLOV12_CUDA_JIT"
ENV_ARCHS_HINT = ("YOLOV12_CUDA_ARCHS including this GPU (or ending in '+PTX'), or set "
                  "YOLOV12_CUDA_JIT=force for a JIT build for the GPUs visible now")

_state: dict = {"loaded": False, "ext": None, "reason": None, "source": None}
_arch_cache: dict = {}


def _load() -> None:
    if _state["loaded"]:
        return
    _state["loaded"] = True
    import importlib
    import importlib.util

    jit = os.environ.get(ENV_JIT, "auto").strip().lower() or "auto"
    if jit == "force":  # ignore an AOT build (e.g. to test a compute_75 PTX-only JIT build)
        aot = "ignored (YOLOV12_CUDA_JIT=force)"
    elif importlib.util.find_spec(__package__ + "._C") is None:
        aot = "not built"
    else:
        try:
            _state.update(ext=importlib.import_module(__package__ + "._C"), source="aot")
            return
        except ImportError as e:  # built, but does not load (e.g. built against another torch)
            aot = f"failed to load ({e})"
    if torch.version.cuda is None:
        _state["reason"] = (f"CUDA extension yolov12_kernels._C {aot}, and torch "
                            f"{torch.__version__} has no CUDA, so it cannot be JIT-built either")
        return
    if jit in ("0", "false", "no", "off"):
        _state["reason"] = f"CUDA extension yolov12_kernels._C {aot}, and {ENV_JIT}={jit}"
        return
    if jit == "auto" and not torch.cuda.is_available():
        _state["reason"] = (f"CUDA extension yolov12_kernels._C {aot}, and no GPU is visible "
                            f"(the JIT build runs only with a GPU, or with {ENV_JIT}=1)")
        return
    from . import _cuda_build

    try:
        _state.update(ext=_cuda_build.load(), source="jit")
    except Exception as e:  # a failed build: say why, let "auto" fall back
        _state["reason"] = f"CUDA extension yolov12_kernels._C {aot}, and the JIT build failed: {e}"


def extension():
    """The loaded extension module (AOT or JIT); RuntimeError with the reason if there is none."""
    _load()
    if _state["ext"] is None:
        raise RuntimeError(_state["reason"])
    return _state["ext"]


def source() -> str | None:
    """"aot" or "jit" (where the extension came from), None if unavailable."""
    _load()
    return _state["source"]


def unavailable():
    _load()
    return _state["reason"] if _state["ext"] is None else None


def _ptx_arch(device: torch.device) -> int | str:
    """The PTX arch the kernels run as on ``device`` (e.g. 75, 90), or why they cannot run there
    at all (an AOT build whose arch list has no SASS or PTX for this GPU, e.g. the default list
    on a GPU newer than sm_90): a reason string, so that "auto" moves on instead of raising."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _arch_cache:
        try:
            _arch_cache[index] = int(extension().attention_ptx_arch(index, True))
        except RuntimeError as e:
            _arch_cache[index] = (f"the {_state['source']} build of the extension has no code "
                                  f"for GPU {index} ({e}); rebuild with {ENV_ARCHS_HINT}")
    return _arch_cache[index]


def unsupported(op, device, dtype, head_dim, needs_grad):
    device = torch.device(device)
    if device.type != "cuda":
        return f"tensors are on {device}; the CUDA kernels need tensors on a CUDA device"
    if needs_grad:
        return ("forward only (no backward); run under torch.no_grad() / inference_mode, or use "
                "the triton/sdpa backend for training")
    if _state["ext"] is not None:  # (without it, unavailable() already gave the reason)
        arch = _ptx_arch(device)
        if isinstance(arch, str):
            return arch
    if op == "position_perceiver":
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            return f"dtype {dtype} not supported (float32, float16 or bfloat16)"
        return None
    if op not in ("area_attention", "fused_area_attention"):
        return f"op {op!r} is not implemented by the CUDA backend"
    if head_dim not in (32, 64):
        return f"head_dim {head_dim} not supported (32 or 64)"
    if dtype == torch.float32:
        # a tf32/fp16 path would not meet the float32 tolerance; say so rather than round silently
        return "float32 attention is not implemented (float16/bfloat16 tensor-core kernels only)"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {dtype} not supported (float16 or bfloat16)"
    if dtype == torch.bfloat16:
        arch = _ptx_arch(device)
        if isinstance(arch, str):
            return arch
        if arch < 80:
            return (f"bfloat16 needs kernels compiled for sm_80+, but this GPU runs the "
                    f"compute_{arch} code of the extension")
    return None


def _scale(head_dim: int, scale) -> float:
    return float(head_dim ** -0.5 if scale is None else scale)


def area_attention(q, k, v, area=1, scale=None):
    B, N, heads, d = check_drop_in_qkv(q, k, v)
    check_area(area, N)
    return extension().area_attention_fwd(q, k, v, area, _scale(d, scale))


def _flat_tokens(qkv):
    # the kernels read the H*W tokens as one axis; a view whose rows are not evenly spaced is copied
    if qkv.size(2) == 1 or qkv.stride(2) == qkv.size(3) * qkv.stride(3):
        return qkv
    return qkv.contiguous()


def area_attention_qkv(qkv, num_heads, area=1, scale=None):
    """Area attention on the model layout (B, 3C, H, W) -> (B, C, H, W), without pe."""
    B, C, H, W, d = check_model_qkv(qkv, num_heads)
    check_area(area, H * W)
    return extension().area_attention_qkv_fwd(_flat_tokens(qkv), num_heads, area, _scale(d, scale))


def fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias=None, scale=None):
    B, C, H, W, d = check_model_qkv(qkv, num_heads)
    check_area(area, H * W)
    return extension().fused_area_attention_fwd(_flat_tokens(qkv), num_heads, area, pe_weight,
                                                pe_bias, _scale(d, scale))


def position_perceiver(v, weight, bias=None):
    return extension().position_perceiver_fwd(v, weight, bias, None, False)
