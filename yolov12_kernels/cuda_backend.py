"""The CUDA C++ backend (csrc/): tensor-core area attention for sm_75+ and the depthwise conv.

Forward only. The kernels are ``torch.library`` operators in the ``yolov12`` namespace:

* ``cuda_area_attention(q, k, v, area, scale) -> out``, drop-in (B, N, heads, d) layout;
* ``cuda_fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale) -> out``: the
  model layout (B, 3C, H, W) -> (B, C, H, W), attention + pe(v) (attention alone without
  ``pe_weight``);
* ``cuda_position_perceiver(v, weight, bias) -> out``: depthwise k x k conv + bias;
* ``*_out`` variants of the three writing into a given ``out`` (``cuda_position_perceiver_out``
  can add onto it), and ``cuda_attention_ptx_arch(device_probe, bf16) -> int``.

Their schemas and fake (meta) kernels are defined here, in Python, so they exist on every machine:
``torch.compile`` traces them as single ops and FakeTensor / meta tensors give output shapes
without the library. The CUDA kernels are registered by the compiled library (csrc/bindings.cpp,
``TORCH_LIBRARY_IMPL(yolov12, CUDA, ...)``), loaded with ``torch.ops.load_library``; its errors
come back through the dispatcher like any aten op's. Where the library comes from, in order:

1. the ahead-of-time build ``yolov12_kernels/_C*.so`` (``pip install --no-build-isolation .`` on a
   machine with a CUDA torch and nvcc; see docs/cuda.md);
2. a JIT build from csrc/ (``_cuda_build.load``: a content-addressed cache under
   ``~/.cache/yolov12_kernels``), controlled by ``YOLOV12_CUDA_JIT``: ``auto`` (default) builds when
   a GPU is visible, ``1`` always tries, ``0`` never does, ``force`` skips the AOT library and always
   JIT-builds (e.g. ``YOLOV12_CUDA_ARCHS=compute_75``).

The library is looked for on the first call of ``unavailable()`` (what the dispatcher asks before
it picks this backend), never at import. The first use may therefore take a minute or two on a GPU
machine without the AOT build (the build is cached afterwards). Supported: CUDA tensors; attention
in float16 (any GPU from sm_75) and bfloat16 (code compiled for sm_80+), head_dim 32 or 64; the
depthwise conv in float32/float16/bfloat16 with odd kernel sizes up to 31. Everything else is
reported by ``unsupported`` so that "auto" moves on to another backend.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ._layout import empty_like_qkv

ENV_JIT = "YOLOV12_CUDA_JIT"
ENV_ARCHS_HINT = ("YOLOV12_CUDA_ARCHS including this GPU (or ending in '+PTX'), or set "
                  "YOLOV12_CUDA_JIT=force for a JIT build for the GPUs visible now")

# ------------------------------------------------------------------------------------------------
# The operators (schemas and fake kernels; the CUDA kernels come from the library)
SCHEMAS = {
    "cuda_area_attention": "(Tensor q, Tensor k, Tensor v, int area, float scale) -> Tensor",
    "cuda_area_attention_out":
        "(Tensor q, Tensor k, Tensor v, int area, float scale, Tensor(a!) out) -> ()",
    "cuda_fused_area_attention": "(Tensor qkv, int num_heads, int area, Tensor? pe_weight, "
                                 "Tensor? pe_bias, float scale) -> Tensor",
    "cuda_fused_area_attention_out": "(Tensor qkv, int num_heads, int area, Tensor? pe_weight, "
                                     "Tensor? pe_bias, float scale, Tensor(a!) out) -> ()",
    "cuda_position_perceiver": "(Tensor v, Tensor weight, Tensor? bias) -> Tensor",
    "cuda_position_perceiver_out":
        "(Tensor v, Tensor weight, Tensor? bias, Tensor(a!) out, bool accumulate) -> ()",
    "cuda_attention_ptx_arch": "(Tensor device_probe, bool bf16) -> int",
}
for _name, _schema in SCHEMAS.items():
    torch.library.define(f"yolov12::{_name}", _schema)
ops = torch.ops.yolov12

# A library registers its kernels when it is loaded, and the dispatcher aborts the process if a
# kernel's C++ signature does not match the schema above (an exception in a static initializer).
# So the file is checked before it is loaded: it must contain this tag (y12_ops_schema_tag in
# csrc/bindings.cpp), the hash of SCHEMAS; a stale build without it is reported, never loaded.
SCHEMA_TAG = "yolov12-cuda-ops-schemas:" + hashlib.sha256(
    json.dumps(SCHEMAS, sort_keys=True).encode()).hexdigest()[:16]


# The fakes allocate what the C++ kernels allocate: a new contiguous tensor, and for the fused op
# one in qkv's memory format (the same rule as csrc/bindings.cpp).
@torch.library.register_fake("yolov12::cuda_area_attention")
def _(q, k, v, area, scale):
    return q.new_empty(q.shape)


@torch.library.register_fake("yolov12::cuda_fused_area_attention")
def _(qkv, num_heads, area, pe_weight, pe_bias, scale):
    B, C3, H, W = qkv.shape
    return empty_like_qkv(qkv, (B, C3 // 3, H, W))


@torch.library.register_fake("yolov12::cuda_position_perceiver")
def _(v, weight, bias):
    return v.new_empty(v.shape)


for _name in ("cuda_area_attention_out", "cuda_fused_area_attention_out",
              "cuda_position_perceiver_out"):
    torch.library.register_fake(f"yolov12::{_name}", lambda *args: None)


def _forward_only(ctx, grad):
    raise RuntimeError("the yolov12 CUDA kernels are forward only (no backward); run under "
                       "torch.no_grad() / inference_mode, or use the triton/sdpa backend")


for _name in ("cuda_area_attention", "cuda_fused_area_attention", "cuda_position_perceiver"):
    torch.library.register_autograd(f"yolov12::{_name}", _forward_only)


# ------------------------------------------------------------------------------------------------
# Loading the library
_state: dict = {"loaded": False, "path": None, "reason": None, "source": None}
_arch_cache: dict = {}


def _aot_library() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec(__package__ + "._C")
    return spec.origin if spec is not None else None


def _load_library(path: str) -> str | None:
    """Load the library at ``path``; why it is unusable, or None."""
    try:
        if SCHEMA_TAG.encode() not in Path(path).read_bytes():
            return ("was built for other operator schemas (a stale build, without "
                    f"{SCHEMA_TAG!r}): rebuild it")
        torch.ops.load_library(path)
    except Exception as e:  # OSError from dlopen, or a schema mismatch from the dispatcher
        return f"failed to load ({type(e).__name__}: {e})"
    for name in SCHEMAS:
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"yolov12::{name}", "CUDA"):
            return (f"registers no CUDA kernel for yolov12::{name} (built from other sources? "
                    "rebuild it)")
    return None


def _load() -> None:
    if _state["loaded"]:
        return
    _state["loaded"] = True

    jit = os.environ.get(ENV_JIT, "auto").strip().lower() or "auto"
    aot_path = _aot_library()
    if jit == "force":  # ignore an AOT build (e.g. to test a compute_75 PTX-only JIT build)
        aot = "ignored (YOLOV12_CUDA_JIT=force)"
    elif aot_path is None:
        aot = "not built"
    else:
        problem = _load_library(aot_path)
        if problem is None:
            _state.update(path=aot_path, source="aot")
            return
        aot = problem
    what = f"CUDA library yolov12_kernels._C {aot}"
    if torch.version.cuda is None:
        _state["reason"] = (f"{what}, and torch {torch.__version__} has no CUDA, so it cannot be "
                            "JIT-built either")
        return
    if jit in ("0", "false", "no", "off"):
        _state["reason"] = f"{what}, and {ENV_JIT}={jit}"
        return
    if jit == "auto" and not torch.cuda.is_available():
        _state["reason"] = (f"{what}, and no GPU is visible (the JIT build runs only with a GPU, "
                            f"or with {ENV_JIT}=1)")
        return
    from . import _cuda_build

    try:
        path = _cuda_build.load()
    except Exception as e:  # a failed build: say why, let "auto" fall back
        _state["reason"] = f"{what}, and the JIT build failed: {e}"
        return
    problem = _load_library(path)
    if problem is not None:
        _state["reason"] = f"{what}, and the JIT-built library {path} {problem}"
        return
    _state.update(path=path, source="jit")


def unavailable():
    _load()
    return _state["reason"] if _state["path"] is None else None


def source() -> str | None:
    """"aot" or "jit" (where the library came from), None if unavailable."""
    _load()
    return _state["source"]


class _Kernels:
    """Direct calls of the operators with an optional preallocated ``out`` (what the tests use to
    NaN-poison outputs, and bench_pe to time ``x + pe(v)`` in place). No dispatch, no checks
    beyond the C++ ones."""

    @staticmethod
    def area_attention_fwd(q, k, v, area, scale, out=None):
        if out is None:
            return ops.cuda_area_attention(q, k, v, area, scale)
        ops.cuda_area_attention_out(q, k, v, area, scale, out)
        return out

    @staticmethod
    def fused_area_attention_fwd(qkv, num_heads, area, pe_weight, pe_bias, scale, out=None):
        if out is None:
            return ops.cuda_fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale)
        ops.cuda_fused_area_attention_out(qkv, num_heads, area, pe_weight, pe_bias, scale, out)
        return out

    @staticmethod
    def position_perceiver_fwd(v, weight, bias=None, out=None, accumulate=False):
        if out is None:
            if accumulate:
                raise ValueError("out: accumulate=True needs an output to add onto")
            return ops.cuda_position_perceiver(v, weight, bias)
        ops.cuda_position_perceiver_out(v, weight, bias, out, accumulate)
        return out

    @staticmethod
    def attention_ptx_arch(device, bf16=False) -> int:
        probe = torch.empty(0, device=torch.device("cuda", device))
        return ops.cuda_attention_ptx_arch(probe, bf16)


def extension() -> _Kernels:
    """The kernels, once the library is loaded; RuntimeError with the reason if there is none."""
    _load()
    if _state["path"] is None:
        raise RuntimeError(_state["reason"])
    return _Kernels()


# ------------------------------------------------------------------------------------------------
# Backend interface (see yolov12_kernels.dispatch)
def _ptx_arch(device: torch.device) -> int | str:
    """The PTX arch the kernels run as on ``device`` (e.g. 75, 90), or why they cannot run there
    at all (a library whose arch list has no SASS or PTX for this GPU, e.g. the default AOT list
    on a GPU newer than sm_90): a reason string, so that "auto" moves on instead of raising."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _arch_cache:
        try:
            _arch_cache[index] = int(extension().attention_ptx_arch(index, True))
        except RuntimeError as e:
            _arch_cache[index] = (f"the {_state['source']} build of the library has no code "
                                  f"for GPU {index} ({e}); rebuild with {ENV_ARCHS_HINT}")
    return _arch_cache[index]


def unsupported(op, device, dtype, head_dim, needs_grad):
    device = torch.device(device)
    if device.type != "cuda":
        return f"tensors are on {device}; the CUDA kernels need tensors on a CUDA device"
    if needs_grad:
        return ("forward only (no backward); run under torch.no_grad() / inference_mode, or use "
                "the triton/sdpa backend for training")
    if _state["path"] is not None:  # (without it, unavailable() already gave the reason)
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
                    f"compute_{arch} code of the library")
    return None


# The ops: arguments already validated by the public ops, scale already resolved to a float.
def area_attention(q, k, v, area, scale):
    return ops.cuda_area_attention(q, k, v, area, scale)


def fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale):
    return ops.cuda_fused_area_attention(qkv, num_heads, area, pe_weight, pe_bias, scale)


def position_perceiver(v, weight, bias):
    return ops.cuda_position_perceiver(v, weight, bias)
