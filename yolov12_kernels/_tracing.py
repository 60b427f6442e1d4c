"""Whether an op call is traced, or may bypass its ``torch.library`` custom op.

The package's Triton ops are ``torch.library`` custom ops so that tracers (``torch.compile``,
``make_fx``, fake tensors, functorch transforms, ``torch.jit.trace``) see one op with a fake
kernel. In a plain eager call the custom-op layers only cost host time, and the first call of any
custom op in a process imports ``torch._dynamo`` (about a second on the CPU machine, measured with
``python -X importtime``), which a model's first call then paid. So the public ops launch their
kernels directly when ``untraced(...)`` says nothing traces the call.
"""
from __future__ import annotations

import torch
from torch import Tensor

_PLAIN = (Tensor, torch.nn.Parameter)


def untraced(*tensors) -> bool:
    """True when nothing traces this call: plain tensors (or None), no dispatch mode (fake
    tensors, make_fx), no functorch transform, no dynamo, no jit tracing."""
    return (not torch.compiler.is_compiling()
            and torch._C._len_torch_dispatch_stack() == 0
            and torch._C._functorch.peek_interpreter_stack() is None
            and not torch._C._is_tracing()
            and all(t is None or type(t) in _PLAIN for t in tensors))
