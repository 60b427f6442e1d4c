"""Triton kernels for YOLOv12's area attention (forward and backward).

* ``area_attention`` — the ``@triton.jit`` kernels and their launchers (no autograd);
* ``backend`` — the dispatch backend: ``torch.library`` custom ops with autograd and fake
  registrations, so ``torch.compile`` sees one op.

Nothing is imported here on purpose: ``import yolov12_kernels.triton`` must not need Triton, so the
dispatcher can ask ``backend.unavailable()`` why Triton cannot run instead of failing on import.
"""
