"""Launching the Triton kernels with the least host work per call.

Triton's ``kernel[grid](*args)`` binds ~50 arguments, computes a specialisation key from every one
of them and looks the compiled kernel up on every call (tens of microseconds of Python). Our calls
repeat: the same layout, dtype and shape class again and again. So a launch goes through a
:class:`Plan`, cached per *plan key* (everything that fixes the launch but the data pointers and the
scale: kernel, flags, dtype, device, shapes and strides, pointer alignment, configuration):

* the first call of a key goes through Triton's JIT once (which compiles, or finds the kernel in its
  own caches when only runtime sizes changed: those are ``do_not_specialize``), and keeps the
  ``CompiledKernel`` it returns;
* every later call hands the pointers, the scale and the precomputed rest straight to that kernel's
  launcher, the same call ``JITFunction.run`` ends with in Triton 3.6 and 3.9.

The plan key holds the exact strides and shapes, so it is finer than Triton's own specialisation
key (stride divisibility and ==1, pointer alignment): reusing the compiled kernel for every call of
one plan key is always what the JIT would have done. If a Triton version lacks the attributes this
relies on, the plan falls back to the JIT call (slower, same result).

Under the interpreter (``TRITON_INTERPRET=1``) plans run the JIT call each time, with tensor views
as pointers (the interpreter needs tensors).

Recording (``recording()``): every launch of the package — a :class:`Plan`'s and the fused conv
ops' (``run``, which their ``launch`` functions go through) — is run and, while a recording is
active in the thread, also kept as a :class:`FixedLaunch`: the compiled kernel's launcher with every
argument precomputed (data pointers as ints, the constexprs in the kernel's signature order, as
``JITFunction.run`` passes them in Triton 3.6 and 3.9), so replaying it is one call into the
launcher. Under the interpreter (or when the compiled kernel lacks what the direct launch needs)
the recorded launch is the JIT call itself with its tensors (:class:`JitLaunch`). The model's launch
plan (``yolov12.plan``) is such a recording of one forward.

Configuration: one block configuration per (head_dim, dtype class) from a small table (no
autotuning: a new N or batch compiles nothing). ``pinned_config`` overrides it in a ``with`` block
(tests); ``YOLOV12_TRITON_AUTOTUNE=1`` times a few candidates once per plan key instead (offline
tuning only, off by default, never in tests).
"""
from __future__ import annotations

import contextlib
import inspect
import os
import threading
from typing import NamedTuple

import torch
import triton

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

AUTOTUNE_ENV = "YOLOV12_TRITON_AUTOTUNE"
MAX_PLANS = 512  # plan keys kept; past that the cache starts over (a plan is cheap to rebuild)


class Config(NamedTuple):
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


# Interpreter: few large blocks (every program runs in numpy).
INTERPRETER_CONFIG = Config(64, 64, 4, 1)

# The candidates YOLOV12_TRITON_AUTOTUNE=1 times (offline tuning of the table below).
TUNING_CANDIDATES = (Config(32, 32, 2, 2), Config(32, 64, 4, 2), Config(64, 32, 4, 2),
                     Config(64, 64, 4, 2), Config(64, 64, 4, 3), Config(128, 32, 8, 2),
                     Config(128, 64, 8, 2))

_pinned: Config | None = None


def default_config(head_dim: int, fp32: bool, backward: bool = False) -> Config:
    """The block configuration of a call: a function of head_dim, the dtype class and the pass
    only, so the YOLOv12 shape set needs one configuration per variant (see the tests' variant
    budget). Chosen so that no variant spills under Triton 3.6 (the GPU machine's) and 3.9 on
    sm_80 and sm_90, as ``compile_check`` reports registers and spills; the variants that still
    spill, and why, are ``compile_check.SPILL_ALLOWED``."""
    if _pinned is not None:
        return _pinned
    if INTERPRET:
        return INTERPRETER_CONFIG
    if fp32:
        # IEEE fp32 dots are FMA loops with 4-byte operands: 32 x 32 tiles and 8 warps at every
        # head_dim (64 x 64 spilled 4-5 KB in the head_dim-32 backward under Triton 3.6, and
        # 0.5-0.7 KB in the fused forward with 2-D token strides under 3.9; 128 dims at 64 x 32
        # need ~105 KB of shared memory in the backward, over the 99 KB of sm_86/sm_89). One
        # stage in the backward and at head_dim 128: with two, the fused backward with 2-D token
        # strides spills (56 B, sm_80, Triton 3.9), and so does the head_dim-128 forward (16 B,
        # sm_80); the head_dim-32 forward keeps two (with one its fused pe spills 44 B, 3.6)
        return Config(32, 32, 8, 1 if backward or head_dim >= 128 else 2)
    # 8 warps everywhere: with 4, the fused pe epilogue (7 row-shifted tile loads in flight per
    # kernel row) reaches 255 registers and spills, and so does the head_dim-32 drop-in forward
    # (16 B, sm_80, Triton 3.9) and the head_dim-64 backward (88-128 B, sm_80). 64-row tiles at
    # head_dim <= 64: a 400-token area (YOLOv12) is 7 blocks, 12.5% padding; 64-key blocks at
    # head_dim 32, 32 at 64; at 128, 32 x 64 (64 x 32 spills 8-40 B in the forward, sm_80, 3.6)
    if head_dim >= 128:
        return Config(32, 64, 8, 2)
    return Config(64, 64 if head_dim <= 32 else 32, 8, 2)


@contextlib.contextmanager
def pinned_config(config: Config):
    """Run every launch inside the block with ``config`` (tests: one block shape, no tuning)."""
    global _pinned
    saved, _pinned = _pinned, Config(*config)
    _plans.clear()  # plans remember their configuration (cleared in place: modules hold it)
    try:
        yield
    finally:
        _pinned = saved
        _plans.clear()


def autotune_requested() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "0") == "1" and not INTERPRET and _pinned is None


def current_stream(device: torch.device) -> int:
    """The raw CUDA stream torch would launch on (what Triton's own launch path reads)."""
    if device.type != "cuda":
        return 0
    return torch._C._cuda_getCurrentRawStream(device.index)


def _pointer_view(base: torch.Tensor | None, offset: int):
    """A tensor whose data_ptr is ``offset`` elements past ``base``'s (the JIT and the
    interpreter need tensors: they read dtype, alignment and, interpreted, the data)."""
    if base is None or offset == 0:
        return base
    start = base.storage_offset() + offset
    return base.as_strided((base.untyped_storage().nbytes() // base.element_size() - start,),
                           (1,), start)


class Bound(NamedTuple):
    """What a plan's direct launch needs from the compiled kernel, published in one assignment
    (``Plan.bound``): a thread that finds it finds all of it."""
    launcher: object
    function: object
    packed: object
    compiled: object
    byte_offsets: tuple  # pointer i's offset in bytes from the tensor passed for it


class Plan:
    """One launch of one kernel, all arguments fixed but the data pointers and the scale.

    ``offsets[i]`` is pointer i's offset in elements from the tensor passed for it; ``tail`` is
    every argument after the scale (strides, sizes, constexprs) in the kernel's order; ``bound``
    the direct launch (a ``Bound``), None until the first call has bound it (or for good where
    it cannot: ``jit_only``)."""

    __slots__ = ("kernel", "grid", "offsets", "tail", "config", "bound", "jit_only")

    def __init__(self, kernel, grid: int, offsets, tail: tuple, config: Config):
        self.kernel, self.grid, self.offsets, self.tail, self.config = (kernel, grid,
                                                                        tuple(offsets), tail,
                                                                        config)
        self.bound = None
        self.jit_only = INTERPRET

    def _jit(self, ptrs, scale):
        views = [_pointer_view(p, o) for p, o in zip(ptrs, self.offsets)]
        return self.kernel[(self.grid,)](*views, scale, *self.tail,
                                         num_warps=self.config.num_warps,
                                         num_stages=self.config.num_stages)

    def run(self, ptrs, scale: float) -> None:
        """Launch on ``ptrs`` (tensors or None, in the kernel's pointer order)."""
        bound = self.bound  # read once: another thread may publish it meanwhile
        if bound is None:
            compiled = self._jit(ptrs, scale)
            if not self.jit_only:
                self.jit_only = not _bind_compiled(self, compiled, ptrs)
            if _recording.active is not None:
                _recording.active.steps.append(self._recorded(ptrs, scale))
            return
        first = ptrs[0]
        args = [None if p is None else p.data_ptr() + o
                for p, o in zip(ptrs, bound.byte_offsets)]
        hooks = triton.knobs.runtime
        enter, leave = _hook(hooks.launch_enter_hook), _hook(hooks.launch_exit_hook)
        stream = current_stream(first.device)
        meta = None if enter is None else bound.compiled.launch_metadata(
            (self.grid, 1, 1), stream, *args, scale, *self.tail)
        bound.launcher(self.grid, 1, 1, stream, bound.function, bound.packed, meta, enter,
                       leave, *args, scale, *self.tail)
        if _recording.active is not None:
            _recording.active.steps.append(self._recorded(ptrs, scale))

    def _recorded(self, ptrs, scale: float):
        """This launch on ``ptrs`` as a recorded step (see ``recording``)."""
        bound = self.bound
        if bound is None:  # interpreted, or a Triton without the direct launch
            return JitLaunch(lambda: self._jit(ptrs, scale), ptrs)
        args = tuple(None if p is None else p.data_ptr() + o
                     for p, o in zip(ptrs, bound.byte_offsets))
        return FixedLaunch(bound.launcher, bound.function, bound.packed, bound.compiled,
                           (self.grid, 1, 1), (*args, scale, *self.tail), ptrs)


def _hook(hook):
    """A launch hook, or None when there is none: Triton 3.9 keeps an (often empty) HookChain
    where 3.6 keeps None; an empty chain would cost a launch-metadata dict per call for nothing."""
    return None if hook is None or not getattr(hook, "calls", True) else hook


def _direct_launch(compiled):
    """(launcher, function handle, packed metadata) of Triton's CompiledKernel: what
    ``JITFunction.run`` hands its launcher; None if ``compiled`` lacks them (interpreted: None)."""
    try:
        launcher = compiled.run  # initialises the module and function handles
        return launcher, compiled.function, compiled.packed_metadata
    except AttributeError:
        return None


def _bind_compiled(plan: Plan, compiled, ptrs) -> bool:
    """Keep what a direct launch needs from Triton's CompiledKernel; False if it lacks it (the
    plan then runs the JIT call every time). Published in one assignment, everything computed
    first: two threads on a cold plan may both bind it, and neither sees half of it."""
    direct = _direct_launch(compiled)
    if direct is None:
        return False
    byte_offsets = tuple(0 if p is None else o * p.element_size()
                         for p, o in zip(ptrs, plan.offsets))
    plan.bound = Bound(*direct, compiled, byte_offsets)
    return True


# ------------------------------------------------------------------------------------------------
# recorded launches
# ------------------------------------------------------------------------------------------------
class Recording:
    """What one ``recording()`` collects: ``steps``, the launches in order (and the steps the
    recording code adds itself: :class:`CallStep`), each called as ``step(stream, enter, leave)``;
    ``tensors``, the tensors the recording code registers as its own (``own``: allocated while
    recording, written by the steps)."""

    __slots__ = ("steps", "tensors")

    def __init__(self):
        self.steps, self.tensors = [], []

    def own(self, t):
        """Register ``t`` (a tensor, or None) as allocated by the recorded code; returns it."""
        if t is not None:
            self.tensors.append(t)
        return t


class _Recording(threading.local):
    active: Recording | None = None  # this thread's recording, None when not recording


_recording = _Recording()


@contextlib.contextmanager
def recording():
    """Inside the block, every launch this thread makes runs as usual and is also recorded in the
    :class:`Recording` it yields, in launch order. Recorded launches keep their tensors alive:
    they replay on the same memory."""
    saved, _recording.active = _recording.active, Recording()
    try:
        yield _recording.active
    finally:
        _recording.active = saved


def recorded() -> Recording | None:
    """This thread's active ``recording``, or None outside one."""
    return _recording.active


class CallStep:
    """A recorded step that is no Triton launch: ``fn(*args, **kwargs)`` called again, and a new
    tensor it returns copied into ``result`` (what it returned when recorded, the tensor later
    steps read). For the PyTorch operations between launches."""

    __slots__ = ("fn", "args", "kwargs", "result")

    def __init__(self, fn, args: tuple, kwargs: dict, result):
        self.fn, self.args, self.kwargs, self.result = fn, args, kwargs, result

    def __call__(self, stream: int, enter=None, leave=None) -> None:
        y = self.fn(*self.args, **self.kwargs)
        if y is not self.result and self.result is not None:
            self.result.copy_(y)


class FixedLaunch:
    """One recorded launch with every argument fixed: ``step(stream, enter, leave)`` is one call
    of the compiled kernel's launcher — the call ``JITFunction.run`` ends with — on ``stream``,
    with the launch hooks given (None: none, see ``launch_hooks``). ``tensors``: what the pointers
    point into, kept alive."""

    __slots__ = ("launcher", "function", "packed", "compiled", "grid", "args", "tensors")

    def __init__(self, launcher, function, packed, compiled, grid, args: tuple, tensors):
        self.launcher, self.function, self.packed, self.compiled = (launcher, function, packed,
                                                                    compiled)
        self.grid, self.args, self.tensors = tuple(grid), args, tensors

    def __call__(self, stream: int, enter=None, leave=None) -> None:
        g0, g1, g2 = self.grid
        meta = None if enter is None else self.compiled.launch_metadata(self.grid, stream,
                                                                         *self.args)
        self.launcher(g0, g1, g2, stream, self.function, self.packed, meta, enter, leave,
                      *self.args)


class JitLaunch:
    """A recorded launch that goes through Triton's JIT call again when replayed (the interpreter
    needs tensors, not pointers): ``call()`` makes it; ``tensors`` are its arguments."""

    __slots__ = ("call", "tensors")

    def __init__(self, call, tensors):
        self.call, self.tensors = call, tensors

    def __call__(self, stream: int, enter=None, leave=None) -> None:
        self.call()


def launch_hooks():
    """Triton's (launch_enter_hook, launch_exit_hook), each None when unset: read once per
    replay of recorded launches, as ``JITFunction.run`` reads them once per launch."""
    hooks = triton.knobs.runtime
    return _hook(hooks.launch_enter_hook), _hook(hooks.launch_exit_hook)


def run(kernel, grid: tuple, args: tuple, kwargs: dict) -> None:
    """``kernel[grid](*args, **kwargs)`` (the fused conv ops' launches), recorded while a
    ``recording`` is active."""
    compiled = kernel[grid](*args, **kwargs)
    if _recording.active is not None:
        _recording.active.steps.append(_recorded_call(kernel, compiled, grid, args, kwargs))


_TAILS: dict = {}


def _signature_tail(kernel, n_args: int) -> tuple:
    """(name, default) of the kernel's parameters after its first ``n_args``, in signature order
    (``inspect.Parameter.empty`` where there is no default)."""
    key = (kernel, n_args)
    tail = _TAILS.get(key)
    if tail is None:
        params = list(inspect.signature(kernel.fn).parameters.values())[n_args:]
        tail = _TAILS[key] = tuple((p.name, p.default) for p in params)
    return tail


def _recorded_call(kernel, compiled, grid, args, kwargs):
    """The launch ``kernel[grid](*args, **kwargs)`` made (returning ``compiled``) as a recorded
    step. The launcher takes every parameter of the kernel's signature in order — positional
    ones, then the keyword ones (constexprs) by name, defaults where absent — which is
    ``bound_args.values()`` in ``JITFunction.run`` (Triton 3.6 and 3.9); the other keywords
    (num_warps, num_stages) are compile options, already in the compiled kernel."""
    direct = _direct_launch(compiled)
    if direct is None:
        return JitLaunch(lambda: kernel[grid](*args, **kwargs), args)
    tail = []
    for name, default in _signature_tail(kernel, len(args)):
        value = kwargs.get(name, default)
        if value is inspect.Parameter.empty:
            raise TypeError(f"kwargs: {kernel.fn.__name__} launched without its argument {name}")
        tail.append(value)
    values = tuple(v.data_ptr() if isinstance(v, torch.Tensor) else v for v in (*args, *tail))
    return FixedLaunch(*direct, compiled, (*grid, 1, 1)[:3], values, args)


# ------------------------------------------------------------------------------------------------
_plans: dict = {}
_dry_runs: list | None = None


class _DryRun:
    """Stands for a plan inside ``dry_run()``: records what would be launched."""

    def __init__(self, build):
        self.build = build

    def run(self, ptrs, scale):
        _dry_runs.append((self.build(), ptrs, scale))


@contextlib.contextmanager
def dry_run():
    """Inside the block, launches are recorded, not run: yields the list of (plan, pointers,
    scale) the calls made. For compile_check and the tests that count compiled variants: the
    backend's own code builds the launches, on CPU tensors, with no GPU."""
    global _dry_runs
    saved, _dry_runs = _dry_runs, []
    try:
        yield _dry_runs
    finally:
        _dry_runs = saved


def get_plan(key, build) -> Plan:
    """The cached plan of ``key``, or ``build()``'s (then cached)."""
    if _dry_runs is not None:
        return _DryRun(build)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= MAX_PLANS:
            _plans.clear()
        plan = _plans[key] = build()
    return plan


def tune(make_plan, ptrs, scale) -> Config:
    """Offline tuning (YOLOV12_TRITON_AUTOTUNE=1): the fastest of TUNING_CANDIDATES for one call,
    timed with ``triton.testing.do_bench`` after a compile each. Printed, for the table above."""
    from triton.testing import do_bench
    best = None
    for cfg in TUNING_CANDIDATES:
        plan = make_plan(cfg)
        try:
            ms = do_bench(lambda: plan._jit(ptrs, scale), warmup=5, rep=20)
        except triton.runtime.errors.OutOfResources:
            continue
        if best is None or ms < best[0]:
            best = (ms, cfg)
    print(f"yolov12_kernels triton autotune: {make_plan(best[1]).kernel.__name__} {best[1]} "
          f"{best[0] * 1e3:.1f} us", flush=True)
    return best[1]
