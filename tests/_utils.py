"""Helpers for comparing a backend against the reference, with tolerances set by dtype."""
from __future__ import annotations

import torch

# Floor on the allowed absolute error per dtype: what one rounding of an O(1) value costs.
ATOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def poison_like(t: torch.Tensor) -> torch.Tensor:
    """An output buffer full of NaN: any element a kernel forgets to write shows up in the check."""
    return torch.full_like(t, float("nan"))


def assert_close_to_reference(out: torch.Tensor, ref_hi: torch.Tensor,
                              ref_lo: torch.Tensor | None = None, factor: float = 2.0,
                              name: str = "output") -> None:
    """``out`` (any dtype) against ``ref_hi`` (the reference in float64/float32).

    The allowed error is ``factor`` times the error the reference itself makes in ``out``'s dtype
    (``ref_lo``, the flash-attention rule), never below the dtype's floor ``ATOL``. No NaN allowed.
    """
    assert out.shape == ref_hi.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref_hi.shape)}"
    assert not torch.isnan(out).any(), f"{name}: contains NaN (an element was not written?)"
    err = (out.double() - ref_hi.double()).abs().max().item()
    allowed = ATOL[out.dtype]
    if ref_lo is not None:
        allowed = max(allowed, factor * (ref_lo.double() - ref_hi.double()).abs().max().item())
    assert err <= allowed, f"{name}: max abs error {err:.3g} > allowed {allowed:.3g} ({out.dtype})"


def randomize_bn(model):
    """Random, non-default BN statistics and affine parameters (returns ``model``).

    Fresh BNs are nearly the identity, which would hide a wrong fold or a buffer loaded into the
    wrong place; random ones make both change the output.
    """
    from torch import nn
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def full_fp32():
    """float32 convolutions in full float32 on the GPU, not TF32 (cuDNN's default for them): a
    float32 reference computed with TF32 errs ~1e-3 and would loosen every tolerance derived from
    it. cuDNN's own context manager; matmuls are full float32 by PyTorch's default already."""
    return torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False)


def attention_only(qkv: torch.Tensor, num_heads: int, area: int) -> torch.Tensor:
    """The reference attention of the model layout without the pe: qkv (B, 3C, H, W) ->
    (B, C, H, W), what a kernel computes when no pe weight is given."""
    from yolov12_kernels import reference
    return reference.attention_plus_pe(
        qkv, num_heads, lambda q, k, v: reference.area_attention(q, k, v, area), torch.zeros_like)


def run_cli(*argv, cwd=None, env=None, timeout=300):
    """``python -m yolov12 ARGV...`` in a subprocess, as a user runs it, with this checkout first
    on PYTHONPATH (so the copy under test runs, also from another folder). Returns the
    ``CompletedProcess`` (text stdout/stderr). ``env``: variables to set, None to unset one."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[1])
    full_env = {**os.environ, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None: unset it
    full_env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.run([sys.executable, "-m", "yolov12", *map(str, argv)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_clean_exit(r, code, *texts):
    """The command ended with exit ``code``, printed no traceback, and said each of ``texts``
    (on stdout or stderr)."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-3000:]
    assert r.returncode == code, (r.returncode, out[-3000:])
    for text in texts:
        assert text in out, (text, out[-3000:])


def assert_one_line_error(r, text):
    """A refused command: exit code 1 or 2, no traceback, and ``text`` in one line of stderr."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-3000:]
    assert r.returncode in (1, 2), (r.returncode, out[-3000:])
    lines = [line for line in r.stderr.splitlines() if text in line]
    assert lines, (text, r.stderr[-3000:])
