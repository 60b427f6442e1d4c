"""Fused conv/MLP kernel variants that spill registers today, each with the reason it may.

``conv_check`` fails on a spill in a variant not listed here (a NEW spill). Keys are the variant
descriptions ``conv_check`` prints: "sm_<cc> <kernel> <dtype> <constexprs> <tile> w<warps>s<stages>
<flags>". Started from the full matrix measured on 2026-12-03 (every scale, batch 1 and 32,
float16/bfloat16/float32, sm_80 and sm_90) under Triton 3.6.0 and 3.9.0, from ptxas' report of
Triton's own compile (a second plain ``ptxas -v`` run on the PTX reports fewer); the configuration
work of issue 21 (``conv_config`` / ``mlp_config``) is to shrink it. Data only: the conv
configuration helper owns these entries.
"""
from __future__ import annotations

_CONFIG_HELPER = "placeholder: to be fixed by the config helper (issue 21, conv/MLP configs)"

ALLOWED = {
    'sm_80 _conv_kernel bfloat16 KS=1 STRIDE=1 64x128x64 w4s3 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 20 B at 168 registers under Triton 3.6.0",
    'sm_80 _conv_kernel bfloat16 KS=3 STRIDE=1 128x64x64 w4s3 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 80 B at 255 registers under Triton 3.6.0",
    'sm_80 _conv_kernel bfloat16 KS=3 STRIDE=1 128x64x64 w4s3 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 68 B at 255 registers under Triton 3.6.0",
    'sm_80 _conv_kernel bfloat16 KS=3 STRIDE=1 32x128x64 w4s3 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 8 B at 128 registers under Triton 3.6.0",
    'sm_80 _conv_kernel bfloat16 KS=3 STRIDE=2 128x64x64 w4s3 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 80 B at 255 registers under Triton 3.6.0",
    'sm_80 _conv_kernel float16 KS=1 STRIDE=1 64x128x64 w4s3 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 20 B at 168 registers under Triton 3.6.0",
    'sm_80 _conv_kernel float16 KS=3 STRIDE=1 128x64x64 w4s3 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 80 B at 255 registers under Triton 3.6.0",
    'sm_80 _conv_kernel float16 KS=3 STRIDE=1 128x64x64 w4s3 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 68 B at 255 registers under Triton 3.6.0",
    'sm_80 _conv_kernel float16 KS=3 STRIDE=1 32x128x64 w4s3 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 8 B at 128 registers under Triton 3.6.0",
    'sm_80 _conv_kernel float16 KS=3 STRIDE=2 128x64x64 w4s3 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 80 B at 255 registers under Triton 3.6.0",
    'sm_80 _conv_kernel float32 KS=3 STRIDE=1 128x16x32 w4s2 TAPS_IN_K HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 280 B at 255 registers under Triton 3.9.0",
    'sm_80 _conv_kernel float32 KS=3 STRIDE=2 128x16x32 w4s2 TAPS_IN_K HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 280 B at 255 registers under Triton 3.9.0",
    'sm_80 _conv_kernel float32 KS=3 STRIDE=2 128x64x32 w8s2 TAPS_IN_K HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 208 B at 255 registers under Triton 3.9.0",
    'sm_80 _mlp_kernel float32 C_PAD=128 32x32x32 w8s1 HAS_RES':
        f"{_CONFIG_HELPER}; spills 12 B at 80 registers under Triton 3.6.0",
    'sm_80 _mlp_kernel float32 C_PAD=256 32x32x32 w8s1 HAS_RES':
        f"{_CONFIG_HELPER}; spills 16 B at 128 registers under Triton 3.9.0",
    'sm_90 _conv_kernel bfloat16 KS=3 STRIDE=1 128x64x64 w4s4 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 8 B at 255 registers under Triton 3.9.0",
    'sm_90 _conv_kernel float16 KS=3 STRIDE=1 128x64x64 w4s4 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 8 B at 255 registers under Triton 3.9.0",
    'sm_90 _conv_kernel float32 KS=3 STRIDE=1 32x64x32 w4s2 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 12 B at 96 registers under Triton 3.6.0",
    'sm_90 _conv_kernel float32 KS=3 STRIDE=1 32x64x32 w4s2 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 12 B at 96 registers under Triton 3.6.0",
    'sm_90 _conv_kernel float32 KS=3 STRIDE=1 64x64x32 w8s2 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 16 B at 128 registers under Triton 3.9.0",
    'sm_90 _conv_kernel float32 KS=3 STRIDE=1 64x64x32 w8s2 HAS_BIAS SILU HAS_RES':
        f"{_CONFIG_HELPER}; spills 16 B at 128 registers under Triton 3.9.0",
    'sm_90 _conv_kernel float32 KS=3 STRIDE=2 32x64x32 w4s2 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 12 B at 96 registers under Triton 3.6.0",
    'sm_90 _conv_kernel float32 KS=3 STRIDE=2 64x64x32 w8s2 HAS_BIAS SILU':
        f"{_CONFIG_HELPER}; spills 16 B at 128 registers under Triton 3.9.0",
    'sm_90 _mlp_kernel float32 C_PAD=256 32x32x32 w8s1 HAS_RES':
        f"{_CONFIG_HELPER}; spills 32 B at 128 registers under Triton 3.6.0",
}
