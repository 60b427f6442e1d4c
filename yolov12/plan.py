"""The fused forward of one input shape as a launch plan: recorded once, replayed.

``LaunchPlan(fused, x)`` runs the fused forward (``yolov12.fused.FusedForward``) once on its own
input buffer, filled from ``x``, inside a ``launch.recording()``: every check, configuration
choice, stride and allocation happens then, through the public ops, and what the forward did is
kept as a flat list of steps —

* each Triton launch as a fixed launch: the compiled kernel's launcher with every argument
  precomputed (``yolov12_kernels.triton.launch.FixedLaunch``; under the interpreter, the JIT call
  with its tensors);
* each PyTorch operation of the forward (layers the kernels do not take, upsample copies, an
  attention core of a backend other than Triton) as a call of it on the same tensors, writing the
  tensor it wrote then (``launch.CallStep``).

The steps hold every tensor they read or write, so the plan owns its buffers (allocated once) and
a replay allocates nothing but what a PyTorch step allocates for itself. ``replay(x)`` copies ``x``
into the input buffer (any device, dtype or memory format: cast by the copy), runs the steps in
order on the current stream and returns the output buffer, which the next replay overwrites.
Replays repeat none of the checks; they read the weights where the build found them, so a
``load_state_dict`` must update those in place (``FastYOLOv12`` does: prepared copies and pe tap
tables).

``FastYOLOv12`` keeps one plan per input shape where its forward is not a CUDA graph (the CPU,
``graphs=False``, a capture that failed); see ``yolov12.fast``.
"""
from __future__ import annotations

import torch

from yolov12_kernels.triton import launch
from yolov12_kernels.triton.devices import device_guard


class LaunchPlan:
    """One recorded forward of ``fused`` for input shape ``x.shape`` (see the module docstring).

    ``x``: the first input (its content is the build's input: ``output`` then holds its result);
    ``device``, ``dtype``, ``memory_format``: the model's, those of the input buffer.
    Attributes: ``input``, ``output`` (the buffers), ``steps`` (the replayed steps, in order), ``layer_outputs`` (each
    layer's output buffer, as ``FusedForward``'s ``layer_outputs`` gives them: after a replay
    they hold that replay's values), ``buffers`` (every tensor the plan allocated)."""

    def __init__(self, fused, x: torch.Tensor, device: torch.device, dtype: torch.dtype,
                 memory_format=torch.channels_last):
        with torch.inference_mode():
            self.input = torch.empty(x.shape, dtype=dtype, device=device,
                                     memory_format=memory_format)
            self.input.copy_(x)
            self.layer_outputs: list = []
            with launch.recording() as rec:
                rec.own(self.input)
                self.output = fused(self.input, self.layer_outputs)
        self.shape = tuple(x.shape)
        self.device = self.input.device  # with its index (the stream query needs one)
        self.steps = tuple(rec.steps)
        self.buffers = tuple(rec.tensors)

    def replay(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Copy ``x`` (if given) into the input buffer, run the steps, return the output buffer."""
        with torch.inference_mode(), device_guard(self.input):
            if x is not None:
                self.input.copy_(x)
            stream = launch.current_stream(self.device)
            enter, leave = launch.launch_hooks()
            for step in self.steps:
                step(stream, enter, leave)
        return self.output

    __call__ = replay

    def launches(self) -> int:
        """How many of the steps are Triton launches (the rest are PyTorch calls)."""
        return sum(not isinstance(s, launch.CallStep) for s in self.steps)

    def poison(self) -> None:
        """Fill every buffer of the plan with NaN (tests: a replay that does not rewrite all it
        reads then shows NaN in its output)."""
        with torch.inference_mode():
            for t in {t.untyped_storage().data_ptr(): t for t in self.buffers}.values():
                if t.is_floating_point():  # the whole storage, views' gaps included
                    storage = t.untyped_storage()
                    whole = torch.empty(0, dtype=t.dtype, device=t.device)
                    whole.set_(storage, 0, (storage.nbytes() // t.element_size(),))
                    whole.fill_(float("nan"))
