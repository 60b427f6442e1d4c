"""Argument checks of the fused conv ops (``conv``, ``dwconv``, ``mlp``, ``box_decode``).

Shared by their reference functions and their public ops, so both reject the same inputs with the
same message. Each raises ``ValueError`` naming the argument at fault (``TypeError`` for a value of
the wrong kind). ``unsupported`` says why the Triton kernels cannot run a call on this machine.
"""
from __future__ import annotations

import torch

from ._checks import FLOAT_DTYPES
# device_guard: imported from here by the conv, dwconv, mlp and box-decode ops
from .triton.devices import device_guard, unsupported_device  # noqa: F401

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_INT32_MAX = 2 ** 31 - 1


def check_activation(t, name: str, dtypes=FLOAT_DTYPES) -> None:
    """A (B, C, H, W) floating tensor, any strides, nothing empty."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D (B, C, H, W) tensor, got shape "
                         f"{tuple(t.shape)}")
    if t.dtype not in dtypes:
        raise ValueError(f"{name}: expected dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name}: empty shape {tuple(t.shape)}")


def check_like(t, name: str, shape, like: torch.Tensor, like_name: str,
               allow_fp32: bool = False) -> None:
    """``t`` has ``shape`` and ``like``'s device and dtype (or float32 where ``allow_fp32``: a
    bias or scale kept in float32 is only more precise)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or None, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.device != like.device:
        raise ValueError(f"{name}: device {t.device} does not match {like_name}'s {like.device}")
    if t.dtype != like.dtype and not (allow_fp32 and t.dtype == torch.float32):
        raise ValueError(f"{name}: dtype {t.dtype} does not match {like_name}'s {like.dtype}"
                         + (" (float32 is also accepted)" if allow_fp32 else ""))


def check_flag(value, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")


def check_int(value, name: str, allowed) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {tuple(allowed)}, got {value}")
    return value


def check_weight(weight, name: str, cout: int | None, cin: int, kernel_sizes, like,
                 like_name: str = "x") -> tuple[int, int]:
    """A conv weight (Cout, cin, k, k) with k in ``kernel_sizes``; returns (Cout, k)."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"{name}: expected a (Cout, Cin, k, k) conv weight, got shape "
                         f"{tuple(weight.shape)}")
    co, ci, k, _ = weight.shape
    if k not in kernel_sizes:
        raise ValueError(f"{name}: kernel size {k} not supported, expected one of "
                         f"{tuple(kernel_sizes)}")
    if ci != cin:
        raise ValueError(f"{name}: takes {ci} input channels, {like_name} has {cin} "
                         "(grouped convs are not supported; depthwise ones: fused_depthwise_conv2d)")
    if cout is not None and co != cout:
        raise ValueError(f"{name}: has {co} output channels, expected {cout}")
    if co == 0:
        raise ValueError(f"{name}: empty shape {tuple(weight.shape)}")
    check_like(weight, name, weight.shape, like, like_name)
    return co, k


def check_optional(t, name: str, shape, like, like_name: str = "x",
                   allow_fp32: bool = False) -> None:
    if t is not None:
        check_like(t, name, shape, like, like_name, allow_fp32)


def _storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _extent(t: torch.Tensor) -> tuple[int, int]:
    """[first, last] element offsets of ``t`` inside its storage."""
    lo = t.storage_offset()
    return lo, lo + sum((n - 1) * s for n, s in zip(t.shape, t.stride()) if n > 0)


def may_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two views may share an element. Disjoint channel slices of one channels-last
    buffer (``buf[:, 0:c]`` and ``buf[:, c:2c]``, how a concat buffer is filled) do not."""
    if _storage_ptr(a) != _storage_ptr(b):
        return False
    (alo, ahi), (blo, bhi) = _extent(a), _extent(b)
    if ahi < blo or bhi < alo:
        return False
    sa, sb = a.stride(), b.stride()
    if (a.dim() == 4 and b.dim() == 4 and sa == sb and sa[1] == 1
            and a.shape[0] == b.shape[0] and a.shape[2:] == b.shape[2:]):
        # channel slices of one pixel grid: channel runs of the two, relative to a's base
        d = b.storage_offset() - a.storage_offset()
        lo, hi = min(0, d), max(a.shape[1], d + b.shape[1])
        pixel_steps = [s for n, s in zip(a.shape, sa) if n > 1 and s != 1]
        runs_disjoint = d >= a.shape[1] or d + b.shape[1] <= 0
        if runs_disjoint and all(hi - lo <= s for s in pixel_steps):
            return False
    return True


def check_out(out, name: str, shape, like: torch.Tensor, inputs: dict,
              may_equal: tuple = ()) -> None:
    """``out`` has ``shape``, ``like``'s dtype and device, and shares no element with any of
    ``inputs`` (name -> tensor or None) except by being exactly one of ``may_equal`` (an in-place
    residual: each element is read and then written by the same program)."""
    check_like(out, name, shape, like, "x")
    if torch.compiler.is_compiling():  # fake tensors have no storage to compare
        return
    for in_name, t in inputs.items():
        if t is None or not may_overlap(out, t):
            continue
        same = (t.data_ptr() == out.data_ptr() and t.shape == out.shape
                and t.stride() == out.stride())
        if not (same and in_name in may_equal):
            raise ValueError(f"{name}: overlaps {in_name} in memory (other programs still read "
                             f"{in_name} while one writes {name}); pass a separate buffer")


def check_offsets_int32(t: torch.Tensor, name: str) -> None:
    """The kernels index inside one image in int32 (the batch offset is int64)."""
    if sum((n - 1) * st for n, st in zip(t.shape[1:], t.stride()[1:])) > _INT32_MAX:
        raise ValueError(f"{name}: one image spans more than 2**31 elements "
                         f"(shape {tuple(t.shape)}, strides {t.stride()})")


def check_no_grad(name_tensors: dict) -> None:
    if torch.is_grad_enabled():
        for n, t in name_tensors.items():
            if t is not None and t.requires_grad:
                raise ValueError(f"{n}: requires grad; the fused conv ops are inference-only "
                                 "(run under torch.no_grad() or torch.inference_mode())")


def unsupported(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the Triton conv kernels cannot run on ``device`` in ``dtype`` here, or None."""
    if dtype not in KERNEL_DTYPES:
        return f"the fused conv kernels take float16/bfloat16/float32, got {dtype}"
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return f"triton is not installed ({e})"
    from .triton import conv as K
    return unsupported_device(device, dtype, K.INTERPRET, "the fused conv kernels")


def check_supported(t: torch.Tensor, op: str) -> None:
    reason = unsupported(t.device, t.dtype)
    if reason is not None:
        raise RuntimeError(f"{op}: cannot run here: {reason}")


def empty_nhwc(shape, like: torch.Tensor) -> torch.Tensor:
    """A new (B, C, H, W) output in channels-last memory, the kernels' native layout."""
    return torch.empty(shape, dtype=like.dtype, device=like.device,
                       memory_format=torch.channels_last)


def conv_out_hw(h: int, w: int, k: int, stride: int) -> tuple[int, int]:
    """Output size of a k x k conv with 'same' padding k // 2."""
    p = k // 2
    return (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1


def check_conv_args(x, weight, bias, stride, silu, residual, gamma,
                    dtypes=FLOAT_DTYPES) -> tuple:
    """Arguments of ``conv_bn_act``; returns the output shape (B, Cout, HO, WO)."""
    check_activation(x, "x", dtypes)
    B, cin, H, W = x.shape
    cout, k = check_weight(weight, "weight", None, cin, (1, 3), x)
    check_int(stride, "stride", (1, 2))
    check_flag(silu, "silu")
    check_optional(bias, "bias", (cout,), x, allow_fp32=True)
    shape = (B, cout, *conv_out_hw(H, W, k, stride))
    check_optional(residual, "residual", shape, x)
    if gamma is not None and residual is None:
        raise ValueError("gamma: scales the residual branch (residual + gamma * y); "
                         "give residual too")
    check_optional(gamma, "gamma", (cout,), x, allow_fp32=True)
    return shape


DW_KERNEL_SIZES = (3, 5, 7)


def check_dwconv_args(x, weight, bias, stride, silu, dtypes=FLOAT_DTYPES) -> tuple:
    """Arguments of ``depthwise_conv_bn_act``; returns the output shape (B, C, HO, WO)."""
    check_activation(x, "x", dtypes)
    B, C, H, W = x.shape
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight: expected a torch.Tensor, got {type(weight).__name__}")
    if (weight.dim() != 4 or weight.shape[0] != C or weight.shape[1] != 1
            or weight.shape[2] != weight.shape[3] or weight.shape[2] not in DW_KERNEL_SIZES):
        raise ValueError(f"weight: expected a depthwise weight ({C}, 1, k, k) with k in "
                         f"{DW_KERNEL_SIZES} for x's {C} channels, got {tuple(weight.shape)}")
    check_like(weight, "weight", weight.shape, x, "x")
    check_int(stride, "stride", (1, 2))
    check_flag(silu, "silu")
    check_optional(bias, "bias", (C,), x, allow_fp32=True)
    return (B, C, *conv_out_hw(H, W, weight.shape[2], stride))


def check_mlp_args(x, w1, b1, w2, b2, residual, dtypes=FLOAT_DTYPES) -> int:
    """Arguments of ``mlp_residual``; returns the hidden width."""
    check_activation(x, "x", dtypes)
    C = x.shape[1]
    hidden, _ = check_weight(w1, "w1", None, C, (1,), x)
    check_weight(w2, "w2", C, hidden, (1,), x, like_name="w1's output")
    check_optional(b1, "b1", (hidden,), x, allow_fp32=True)
    check_optional(b2, "b2", (C,), x, allow_fp32=True)
    check_flag(residual, "residual")
    return hidden


def check_box_decode_args(feats, level_shapes, strides, reg_max,
                          dtypes=FLOAT_DTYPES) -> tuple[int, int]:
    """Arguments of ``box_decode``; returns (number of classes, anchors)."""
    if not isinstance(feats, torch.Tensor):
        raise TypeError(f"feats: expected a torch.Tensor, got {type(feats).__name__}")
    if feats.dim() != 3:
        raise ValueError(f"feats: expected (B, 4 * reg_max + nc, anchors), got shape "
                         f"{tuple(feats.shape)}")
    if feats.dtype not in dtypes:
        raise ValueError(f"feats: expected dtype in {[str(d) for d in dtypes]}, got {feats.dtype}")
    if isinstance(reg_max, bool) or not isinstance(reg_max, int) or reg_max < 1:
        raise ValueError(f"reg_max: expected a positive int, got {reg_max!r}")
    if not isinstance(level_shapes, (list, tuple)) or not 1 <= len(level_shapes) <= 3 or any(
            not isinstance(s, (list, tuple)) or len(s) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in s)
            for s in level_shapes):
        raise ValueError(f"level_shapes: expected 1 to 3 (H, W) pairs of positive ints, got "
                         f"{level_shapes!r}")
    if (not isinstance(strides, (list, tuple)) or len(strides) != len(level_shapes)
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0
                   for s in strides)):
        raise ValueError(f"strides: expected {len(level_shapes)} positive numbers (one per "
                         f"level), got {strides!r}")
    anchors = sum(h * w for h, w in level_shapes)
    B, no, A = feats.shape
    if A != anchors:
        raise ValueError(f"feats: {A} anchors, but level_shapes {list(level_shapes)} have "
                         f"{anchors}")
    nc = no - 4 * reg_max
    if nc < 1 or B == 0:
        raise ValueError(f"feats: {no} channels leave no class scores after 4 * reg_max = "
                         f"{4 * reg_max} box bins (or the batch is empty)")
    return nc, anchors
