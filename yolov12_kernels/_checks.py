"""Argument checks shared by the reference ops and the fast entry points.

Each raises ``ValueError`` whose message starts with the name of the argument at fault, so a user
sees at once which input is wrong and why.
"""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(t, name: str, ndim: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a floating dtype (float16/bfloat16/float32/float64), "
                         f"got {t.dtype}")


def check_drop_in_qkv(q, k, v):
    """q, k, v in (B, N, heads, head_dim), same shape/dtype/device. Returns (B, N, heads, d)."""
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        check_tensor(t, name, ndim=4)
    for t, name in ((k, "k"), (v, "v")):
        if t.shape != q.shape:
            raise ValueError(f"{name}: shape {tuple(t.shape)} does not match q's {tuple(q.shape)} "
                             "(expected (B, N, heads, head_dim) for all three)")
        if t.dtype != q.dtype:
            raise ValueError(f"{name}: dtype {t.dtype} does not match q's {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name}: device {t.device} does not match q's {q.device}")
    B, N, heads, d = q.shape
    if min(B, N, heads, d) == 0:
        raise ValueError(f"q: empty shape {tuple(q.shape)}")
    return B, N, heads, d


def check_area(area, N: int, name: str = "area") -> None:
    if isinstance(area, bool) or not isinstance(area, int):
        raise ValueError(f"{name}: expected an int, got {type(area).__name__}")
    if area < 1:
        raise ValueError(f"{name}: must be >= 1, got {area}")
    if N % area != 0:
        raise ValueError(f"{name}: {area} does not divide the number of tokens N={N} "
                         "(areas are equal contiguous chunks of the H*W tokens)")


def check_model_qkv(qkv, num_heads):
    """qkv in (B, 3C, H, W) with C = num_heads*head_dim. Returns (B, C, H, W, head_dim)."""
    check_tensor(qkv, "qkv", ndim=4)
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads: expected a positive int, got {num_heads!r}")
    B, C3, H, W = qkv.shape
    if C3 % (3 * num_heads) != 0:
        raise ValueError(f"qkv: channel count {C3} is not 3 * num_heads * head_dim "
                         f"for num_heads={num_heads}")
    if min(B, H, W) == 0:
        raise ValueError(f"qkv: empty shape {tuple(qkv.shape)}")
    C = C3 // 3
    return B, C, H, W, C // num_heads


def check_pe_params(channels: int, weight, bias, name: str = "weight", bias_name: str = "bias",
                    device: torch.device | None = None) -> None:
    """Depthwise conv weight (C, 1, k, k), odd k, for ``channels`` = C; bias (C,) or None; both on
    ``device`` when given. Any floating dtype: the ops compute pe in the input's precision (fp32
    accumulation in the kernels), as autocast would."""
    check_tensor(weight, name, ndim=4)
    C = channels
    if weight.shape[0] != C or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"{name}: expected a depthwise weight of shape ({C}, 1, k, k) for "
                         f"{C} channels, got {tuple(weight.shape)}")
    if weight.shape[2] % 2 != 1:
        raise ValueError(f"{name}: kernel size must be odd for 'same' padding, "
                         f"got {weight.shape[2]}")
    if device is not None and weight.device != device:
        raise ValueError(f"{name}: on {weight.device}, but the input is on {device}")
    if bias is not None:
        check_tensor(bias, bias_name, ndim=1)
        if bias.shape[0] != C:
            raise ValueError(f"{bias_name}: expected shape ({C},), got {tuple(bias.shape)}")
        if device is not None and bias.device != device:
            raise ValueError(f"{bias_name}: on {bias.device}, but the input is on {device}")
