"""Fused conv/MLP kernel variants that spill registers today, each with the reason it may.

``conv_check`` fails on a spill in a variant not listed here (a NEW spill). Keys are the variant
descriptions ``conv_check`` prints: "sm_<cc> <kernel> <dtype> <constexprs> <tile> w<warps>s<stages>
<flags>". Started from the full matrix measured on 2026-12-03 (every scale, batch 1 and 32,
float16/bfloat16/float32, sm_80 and sm_90) under Triton 3.6.0 and 3.9.0, from ptxas' report of
Triton's own compile (a second plain ``ptxas -v`` run on the PTX reports fewer): 24 variants of
the configurations before issue 21. The configurations of issue 21 (``conv_config``,
``mlp_config``) spill in none of the full matrix under either version, so nothing is allowed:
a variant that spills needs a configuration that does not, or an entry here with its reason.
"""
from __future__ import annotations

ALLOWED: dict[str, str] = {}
