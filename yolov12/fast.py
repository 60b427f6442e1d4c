"""The fast inference path: ``YOLOv12.optimize(device, dtype)`` -> ``FastYOLOv12``.

What ``optimize`` does to a *copy* of the model (the original is left untouched, so it stays the
reference to compare against):

1. eval mode, every Conv+BN folded into one conv (``YOLOv12.fuse``, in the model's fp32);
2. attention on the fastest backend that supports the call (``backend="auto"``; the one that ran is
   reported by ``attention_backend``);
3. weights cast to ``dtype`` (float16 by default on CUDA). The box decode stays in float32: boxes are
   in input pixels (up to 640 and more) where float16 has a step of 0.5 px, and the DFL softmax over
   16 bins then a weighted sum loses the sub-bin precision the boxes need. The decode is a few
   element-wise ops on (B, 144, 8400), so fp32 there costs nothing measurable;
4. channels-last memory format where it helps (``channels_last=None`` picks per device, see
   ``default_channels_last``), and autograd switched off on every parameter;
5. on a GPU where the fused NHWC conv kernels can run (``yolov12_kernels._conv_checks.unsupported``
   says None: sm_80+, float16/bfloat16/float32), the forward is ``yolov12.fused.FusedForward``:
   every conv with its bias, SiLU and residual in one kernel, concat buffers filled in place, one
   box decode kernel (docs/fusion.md). Elsewhere the modules above run, with one log line saying
   why. ``fused_convs=False`` asks for that path everywhere (the benchmark's ablation "fast path
   without the new conv kernels"); ``fused_convs=True`` for the fused one, also on the CPU under
   ``TRITON_INTERPRET=1`` (Triton's interpreter: how the tests check it without a GPU).

What ``fast(x)`` runs, per input shape (batch, H, W) — prepared on the first call of that shape:

* on CUDA (``graphs=True``, the default): the forward recorded into a CUDA graph (the first call
  runs it eagerly, once more as a warm-up on the capture stream, then captures it), replayed: a call copies ``x`` into the graph's input
  (casting it: any device, dtype, memory format or strides), replays, and returns a copy of the
  output (the next call does not overwrite what a caller keeps). A capture that fails logs one
  line and the shape runs as below instead;
* elsewhere, with the fused conv path (the CPU's interpreter, ``graphs=False``, a failed capture):
  the launch plan of that shape (``yolov12.plan.LaunchPlan``), replayed eagerly;
* the modules' path without graphs (``fused_convs=False`` on the CPU, ``graphs=False``): the
  modules, as before.

Before a new shape is prepared on a GPU, the kernel variants its forward will launch and Triton's
cache lacks are compiled in parallel (``yolov12.precompile.for_first_call``; one progress line when
that takes more than a second, nothing on a warm cache): ``compile_workers`` processes (None:
``YOLOV12_COMPILE_WORKERS``, else every core; 0 or 1: none, the forward compiles them one by one).

Prepared shapes are kept, least recently used first out past ``max_shapes`` (8; their memory
goes with them); one lock serialises callers of one model across threads. While anything traces
the call (``torch.compile``, ``torch.jit.trace``, ONNX export, a ``TorchDispatchMode``, a CUDA graph
being captured around the call) the forward runs the ops directly instead, so
``torch.compile(fast)`` traces them in one graph (tested with ``fullgraph=True``).
``fast.capture(batch, size)`` records the direct forward into a CUDA graph whose static buffers
the caller manages (the benchmark's ``fast-graph``).

Modes and weights: the model is built outside inference mode whatever the caller's mode (its
parameters and prepared copies are normal tensors), so building, calling and ``load_state_dict``
work under ``torch.inference_mode()``, ``torch.no_grad()`` or neither, in any mix.
``load_state_dict`` updates the weights in place (what graphs and plans read) and takes this
model's state dict or the YOLOv12's it was built from (BatchNorm folded as at build). Autocast is
switched off inside ``forward`` and ``capture``: the model runs in the dtype it was built for. A
bare ``cuda`` device gets its index at build (``device_with_index``).

The device's kind and capability come from ``yolov12_kernels.target.target``: inside
``rehearse_gpu()`` (the tests' ``gpu_choices``) a CPU takes an sm_90 GPU's choices — fused convs,
Triton attention, float16 by default, graphs — with the kernels in Triton's interpreter and
``RecordedGraphs`` standing in for ``CudaGraphs`` (docs/testing.md).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import logging
import sys
import threading
from collections import OrderedDict

import torch
from torch import nn

from yolov12_kernels import _conv_checks, dispatch, dispatch_table
from yolov12_kernels.target import RecordedGraphs, target
from yolov12_kernels.aattn import aattn_forward, pe_weight_bias
from yolov12_kernels.conv import fused_conv2d

from .modules import AAttn, Detect

_DEFAULT_DTYPE = {"cuda": torch.float16, "cpu": torch.float32}

log = logging.getLogger("yolov12")
_logged: set = set()


def _log_once(msg: str, level: int = logging.WARNING) -> None:
    if msg not in _logged:
        _logged.add(msg)
        log.log(level, msg)


def fused_convs_unsupported(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the fused conv path cannot run on ``device`` in ``dtype``, or None."""
    return _conv_checks.unsupported(torch.device(device), dtype)


@functools.lru_cache(maxsize=None)
def fused_convs_probe(device: torch.device, dtype: torch.dtype) -> str | None:
    """Run one small fused conv on ``device``: None if it builds and runs, else why not. What
    ``fused_convs_unsupported`` cannot see from the outside (Triton unable to compile or launch
    on this machine: no C compiler for its launcher, a Triton too old for the GPU) then falls
    back at ``optimize`` time with one log line, instead of failing at the first forward. Once
    per process, device and dtype (a compile of about a second)."""
    try:
        x = torch.randn(1, 16, 8, 8, device=device, dtype=dtype).to(
            memory_format=torch.channels_last)
        w = torch.randn(16, 16, 1, 1, device=device, dtype=dtype).to(
            memory_format=torch.channels_last)
        y = fused_conv2d(x, w, None, 1, silu=True)
        want = torch.nn.functional.silu(torch.nn.functional.conv2d(x.float(), w.float()))
        if not torch.allclose(y.float(), want, rtol=2e-2, atol=2e-2):
            return "a probe of the fused conv kernel computed wrong values on this device"
    except Exception as e:  # noqa: BLE001 — any failure to build or run means: do not use them
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"a probe of the fused conv kernel failed ({type(e).__name__}: {first[:200]})"
    return None


def device_with_index(device: torch.device) -> torch.device:
    """``device`` with its index: a bare ``cuda`` is the current CUDA device, fixed now (a model
    built on it stays there, whatever device is current when it is called later)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def default_channels_last(device: torch.device, dtype: torch.dtype) -> bool:
    """The default memory format of the fast path *without* the fused conv kernels (with them it
    is always channels-last, the layout they are written for): channels-last on the CPU, NCHW on
    CUDA.

    CPU (measured, YOLOv12-N at 640, fp32): channels-last is ~25% faster end to end. oneDNN's convs
    prefer NHWC, and with NHWC activations the q/k/v views of the qkv conv output have a contiguous
    head dimension, which SDPA's CPU kernel needs (from NCHW it copies every q, k and v first).
    CUDA: NCHW until a GPU measurement says otherwise (``bench --channels-last on`` measures it):
    the attention kernels read the NCHW conv output in place. (The device's kind is
    ``target(device)``'s: a GPU's inside ``yolov12_kernels.target.rehearse_gpu``.)
    """
    return target(device).type == "cpu"


# "auto" ranks backends per problem-size class (dispatch_table): the smallest size of each class
SIZE_CLASS_REPRESENTATIVES = {dispatch_table.size_class(s): s
                              for s in (1, *dispatch_table.SIZE_BOUNDS)}


class FastAAttn(nn.Module):
    """AAttn for inference with its attention backend resolved once, when the model is optimized.

    The public op ``fused_area_attention(..., backend=...)`` validates and asks the dispatcher on
    every call; this module calls the chosen backend's function directly (the Triton and CUDA
    backends' are ``torch.library`` custom ops, one node in a compiled graph). "auto"'s choice
    depends on the problem size (``yolov12_kernels.dispatch_table``), so one backend is resolved
    per size class and the call's size picks among them. Submodule names (``qkv``, ``proj``,
    ``pe``) are AAttn's, so state-dict keys do not change.
    """

    def __init__(self, attn: AAttn, cores: dict[str, dispatch.Backend]):
        super().__init__()
        self.qkv, self.proj, self.pe = attn.qkv, attn.proj, attn.pe
        self.num_heads, self.head_dim, self.area = attn.num_heads, attn.head_dim, attn.area
        self._cores = {cls: b.fused_area_attention for cls, b in cores.items()}
        self.backend = "+".join(sorted({b.name for b in cores.values()}))

    def core_for(self, numel: int):
        """The attention core for an input of ``numel`` elements (its size class's backend)."""
        return self._cores[dispatch_table.size_class(numel)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return aattn_forward(self, x, core=self.core_for(x.numel()))  # qkv's C = x's C

    def refresh_pe_taps(self) -> None:
        """Rewrite in place the Triton kernels' pe tap tables built from this module's pe weights
        (its own and the fused forward's prepared ones), if any exist: a launch plan or a CUDA
        graph reads a table's address, and only a Python call of the kernels would rewrite it."""
        K = sys.modules.get("yolov12_kernels.triton.area_attention")
        if K is None:  # never imported: no table exists
            return
        for wb in (getattr(self, "fused_pe", None), pe_weight_bias(self.pe)):
            if wb is not None:
                K.refresh_pe_taps(*wb)


def resolve_attention(net: nn.Module, backend: str = "auto", device=None, dtype=None,
                      channels_last: bool = False) -> nn.Module:
    """Replace, in place, every AAttn of ``net`` (in eval mode) by a FastAAttn calling ``backend``
    directly; returns ``net``. Device, dtype and memory format (``channels_last``: the qkv conv's
    output is channels-last, as in the fused path) default to the model's device and dtype and
    NCHW: give the ones it will run with, since the backend is chosen for them."""
    if net.training:
        raise ValueError("net: put the model in eval mode first (FastAAttn is inference-only)")
    p = next(net.parameters())
    device = torch.device(device) if device is not None else p.device
    dtype = dtype or p.dtype
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, AAttn):
                cores = {cls: dispatch.select("fused_area_attention", backend, device, dtype,
                                              child.head_dim, False, size, channels_last)
                         for cls, size in SIZE_CLASS_REPRESENTATIVES.items()}
                setattr(parent, child_name, FastAAttn(child, cores))
    return net


class FastYOLOv12(nn.Module):
    """Inference-only YOLOv12 (see the module docstring). Build it with ``YOLOv12.optimize``.

    ``fold_bn=False, fp32_decode=False, backend="reference", channels_last=False`` compute exactly
    what the reference model does, with the attention backend resolved once up front, so
    torch.compile traces it as one graph even when a backend module would be first imported inside
    the compiled region (an import breaks the graph): the benchmark's torch.compile baseline.

    ``forward(x)`` takes (B, 3, H, W), H and W multiples of 32, any float dtype (cast to the model's
    dtype and memory format, a no-op when already right) and returns float32 (B, 4 + nc, anchors)
    like the reference model in eval mode (in the model's dtype with ``fp32_decode=False``).

    ``fused_convs``: None (default) runs the fused conv kernels (``yolov12.fused``) on a GPU where
    they can run, else the modules with one log line; False never; True wherever they can run,
    the CPU's Triton interpreter included (a ``RuntimeError`` saying why where they cannot). The
    fused path needs ``fold_bn`` and ``fp32_decode``; its default memory format is channels-last
    on every device. ``fused_convs`` (the attribute) says which path runs.

    ``graphs``: replay each input shape's forward from a CUDA graph on CUDA (default True; False:
    the launch plan, or the modules, eagerly). ``max_shapes``: how many input shapes keep their
    graph or plan (the least recently used goes first). ``compile_workers``: processes that
    compile a new shape's kernels ahead of its first call on a GPU (None: every core; 0 or 1:
    none). See the module docstring.
    """

    # built outside inference mode whatever the caller's mode: the net's parameters and prepared
    # copies must be normal tensors, which load_state_dict can update in place in any mode later
    @torch.inference_mode(False)
    def __init__(self, model, device=None, dtype=None, *, backend: str = "auto",
                 channels_last: bool | None = None, fold_bn: bool = True,
                 fp32_decode: bool = True, fused_convs: bool | None = None,
                 graphs: bool = True, max_shapes: int = 8, compile_workers: int | None = None):
        super().__init__()
        # a YOLOv12 (or a subclass): a network whose layer loop is ``run`` and whose last layer
        # is the Detect head (checked by what it has: this module sits below yolov12.model)
        if not (isinstance(model, nn.Module) and callable(getattr(model, "run", None))
                and isinstance(getattr(model, "model", None), nn.Sequential)):
            raise ValueError(f"model: expected a YOLOv12, got {type(model).__name__}")
        device = torch.device(device) if device is not None else next(model.parameters()).device
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: cuda requested but torch sees no CUDA device")
        device = device_with_index(device)
        chosen_for = target(device)  # a GPU's choices for a CPU inside rehearse_gpu()
        if dtype is None:
            dtype = _DEFAULT_DTYPE.get(chosen_for.type, torch.float32)
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype: expected torch.float32, float16 or bfloat16, got {dtype}")
        if fused_convs is not None and not isinstance(fused_convs, bool):
            raise ValueError(f"fused_convs: expected None, True or False, got {fused_convs!r}")
        if not isinstance(graphs, bool):
            raise ValueError(f"graphs: expected True or False, got {graphs!r}")
        if isinstance(max_shapes, bool) or not isinstance(max_shapes, int) or max_shapes < 1:
            raise ValueError(f"max_shapes: expected a positive int, got {max_shapes!r}")
        if compile_workers is not None:
            from .precompile import compile_workers as check_workers
            check_workers(compile_workers)
        use_fused = self._use_fused(fused_convs, device, dtype, fold_bn, fp32_decode)
        if channels_last is None:
            channels_last = True if use_fused else default_channels_last(device, dtype)
        self.device, self.dtype, self.channels_last = device, dtype, bool(channels_last)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

        net = copy.deepcopy(model).eval()
        # the model's layout without its memory (meta tensors), so that load_state_dict takes
        # the model's own state dict too, folded as here (a tuple: not a submodule)
        self._unfolded = (_meta_copy(model),) if fold_bn else None
        if fold_bn:
            net.fuse()  # in fp32, before any down-cast
        net = net.to(device=device, dtype=dtype)
        resolve_attention(net, backend, device, dtype, self.channels_last)
        head = net.model[-1]
        if not isinstance(head, Detect):
            raise ValueError("model: its last layer is not a Detect head")
        self.fp32_decode = fp32_decode
        if fp32_decode:  # the decode runs in fp32 (module docstring, point 3)
            head.dfl.float()
            head.decode_fp32 = True
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        net.requires_grad_(False)
        self.net = net
        self.backend = backend
        self.fused_convs = use_fused
        # a plain object (not a submodule): it holds the net's own tensors, the state dict stays
        self._fused = None
        if use_fused:
            from .fused import FusedForward
            self._fused = FusedForward(net)
        # replays read weights where they were found when prepared: a load_state_dict into this
        # model (or its net) updates what they read in place (a bound method, not a lambda: a
        # copy of this model then hooks the copy)
        net.register_load_state_dict_post_hook(self._weights_loaded)
        self.graphs, self.max_shapes = graphs, max_shapes
        self.compile_workers = compile_workers
        # on a GPU (or a CPU rehearsing one): graphs are CUDA's (the rehearsal's recorded ones)
        self._gpu = chosen_for.type == "cuda"
        self._graph_kit = RecordedGraphs if chosen_for.rehearsal else CudaGraphs
        self._init_replays()

    def _init_replays(self) -> None:
        # input shape -> its CUDA-graph replay or launch plan (None: the modules run), LRU order
        self._replays: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self):  # a lock cannot be copied or pickled; graphs and plans are rebuilt
        state = self.__dict__.copy()
        del state["_lock"], state["_replays"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_replays()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights in place, where prepared graphs and plans read them: this model's own
        state dict (keys ``net.model.0...``), the net's (``fast.net.state_dict()``, keys
        ``model.0...``), or the state dict of the model it was built from (keys ``model.0...``
        with BatchNorm entries: folded here as at build, then cast to this model's dtype)."""
        if assign:
            raise ValueError("assign: a FastYOLOv12 loads weights in place (its prepared graphs "
                             "and plans read them where they are); assign=True is not supported")
        if not state_dict or any(k.startswith("net.") for k in state_dict):
            return super().load_state_dict(state_dict, strict)
        if self._unfolded is None or not any(".bn." in k for k in state_dict):
            return self.net.load_state_dict(state_dict, strict)
        if not strict:
            raise ValueError("strict: a state dict with BatchNorm entries is folded whole; "
                             "strict=False is not supported for it")
        unfolded = copy.deepcopy(self._unfolded[0]).to_empty(device="cpu")
        unfolded.load_state_dict(state_dict)  # a wrong key fails here, named as the model has it
        return self.net.load_state_dict(unfolded.eval().fuse().state_dict())

    def _weights_loaded(self, module=None, incompatible_keys=None) -> None:
        """After load_state_dict: the fused forward's prepared weight copies and the pe tap
        tables, rewritten in place (graphs and plans keep reading the same addresses)."""
        if self._fused is not None:
            self._fused.refresh()
        for m in self.net.modules():
            if isinstance(m, FastAAttn):
                m.refresh_pe_taps()

    def reset_replays(self) -> None:
        """Drop every prepared shape (CUDA graphs, launch plans) and their memory; the next call
        of a shape prepares it again."""
        with self._lock:
            self._replays.clear()

    @staticmethod
    def _use_fused(requested, device, dtype, fold_bn, fp32_decode) -> bool:
        if requested is False:
            return False
        if not (fold_bn and fp32_decode):
            if requested:
                raise ValueError("fused_convs: the fused path needs fold_bn=True and "
                                 "fp32_decode=True")
            return False  # the reference computation, asked for explicitly
        reason = fused_convs_unsupported(device, dtype)
        if requested and reason is not None:
            raise RuntimeError(f"fused_convs=True cannot run on {device} with {dtype}: {reason}")
        gpu = target(device).type == "cuda"  # a CPU rehearsing a GPU takes the GPU's choice
        if requested is None and reason is None and gpu:
            reason = fused_convs_probe(device, dtype)
        if requested is None and reason is None and not gpu:
            # the interpreter checks the kernels' arithmetic; it is no inference engine (YOLOv12-N
            # at 64x64: seconds per forward where PyTorch's CPU convs take milliseconds)
            reason = ("on the CPU the conv kernels run only in Triton's interpreter, a "
                      "correctness check far slower than PyTorch's CPU convs; fused_convs=True "
                      "runs them")
        if reason is None:
            return True
        # a CPU has nothing to miss (no GPU kernels); on a GPU the fallback costs speed: warn
        _log_once(f"yolov12: fast path without the fused conv kernels on {device} ({dtype}): "
                  f"{reason}", logging.WARNING if gpu else logging.INFO)
        return False

    # ----------------------------------------------------------------------------------------
    @property
    def attention_backend(self) -> str:
        """The attention backend(s) that run in this model, e.g. "sdpa" or "triton"."""
        names = sorted({m.backend for m in self.net.modules() if isinstance(m, FastAAttn)})
        return "+".join(names) or "none"

    @property
    def scale(self) -> str:
        return self.net.scale

    def num_params(self) -> int:
        return self.net.num_params()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(self.device.type):
            # this model runs in its own dtype: autocast would change the eager ops and the
            # plans' PyTorch steps, and a graph would freeze whatever autocast its capture saw
            with torch.autocast(self.device.type, enabled=False):
                return self.forward(x)
        self.net.check_input(x)
        if not self._replayable(x):
            return self.direct(x)
        with self._lock:
            replay, out = self._prepared(x)
            if out is None:
                if replay is None:  # nothing to replay for this path: the modules
                    return self.direct(x)
                out = replay(x)
            return out.clone()  # the caller's: the next replay overwrites ``out``

    def direct(self, x: torch.Tensor) -> torch.Tensor:
        """The forward run op by op (no graph, no plan): what graphs and plans record, and what
        runs while anything traces the call."""
        x = x.to(device=self.device, dtype=self.dtype, memory_format=self.memory_format)
        if self._fused is not None:
            return self._fused(x)
        return self.net.run(x)

    def _replayable(self, x: torch.Tensor) -> bool:
        """Whether this call may use a prepared graph or plan: nothing traces it (torch.compile,
        jit tracing, a dispatch mode such as fake tensors or a counter, functorch, a CUDA graph
        captured around it), a plain tensor that needs no gradient, and a prepared form exists
        for this path (the modules without CUDA graphs have none)."""
        if torch.compiler.is_compiling() or torch._C._is_tracing():
            return False
        if (torch._C._len_torch_dispatch_stack() > 0
                or torch._C._functorch.peek_interpreter_stack() is not None):
            return False
        if type(x) is not torch.Tensor or (x.requires_grad and torch.is_grad_enabled()):
            return False
        if self._gpu:
            if self._graph_kit.is_capturing():
                return False
            return self.graphs or self._fused is not None
        return self._fused is not None

    def _prepared(self, x: torch.Tensor):
        """(the replay of x's shape, None), or (a new one, its output on x) when the shape is
        new: built (an evicted shape's memory goes with it), kept as the most recent."""
        key = tuple(x.shape)
        if key in self._replays:
            self._replays.move_to_end(key)
            return self._replays[key], None
        replay, out = self._prepare(x)
        self._replays[key] = replay
        while len(self._replays) > self.max_shapes:
            self._replays.popitem(last=False)
        return replay, out

    def _prepare(self, x: torch.Tensor):
        """(replay, its output on x, or None if not run yet) for a new input shape. On CUDA:
        one eager forward (the call's result), a warm-up on the capture stream, the capture."""
        from .precompile import for_first_call
        for_first_call(self, x)  # on a GPU: the shape's missing kernels compiled in parallel
        if self._gpu and self.graphs:
            with torch.inference_mode(False):  # a normal tensor: later calls copy in, any mode
                static_input = torch.empty(x.shape, device=self.device, dtype=self.dtype,
                                           memory_format=self.memory_format)
            static_input.copy_(x)
            with torch.inference_mode():
                out = self.direct(static_input)  # this call's result; a bad input fails here
            try:
                return CapturedForward(self.direct, static_input, warmup=1,
                                       graphs=self._graph_kit), out
            except Exception as e:  # noqa: BLE001 — any capture failure: run without a graph
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                _log_once(f"yolov12: CUDA graph capture of the fast path failed on {self.device} "
                          f"({type(e).__name__}: {first[:200]}); it runs without a graph",
                          logging.WARNING)
        if self._fused is None:
            return None, None
        from .plan import LaunchPlan
        plan = LaunchPlan(self._fused, x, self.device, self.dtype, self.memory_format)
        return plan, plan.output

    # ----------------------------------------------------------------------------------------
    def capture(self, batch: int = 1, size: int | tuple[int, int] = 640,
                warmup: int = 3) -> "CapturedForward":
        """This model's forward recorded into a CUDA graph for input (batch, 3, H, W).

        Returns a callable: ``graphed(x)`` copies ``x`` into the graph's static input, replays the
        graph and returns the static output (overwritten by the next call: ``.clone()`` it to keep
        it). Any other input shape raises ``ValueError``; capture another graph for it.
        """
        if not self._gpu:
            raise RuntimeError(f"capture: CUDA graphs need a CUDA model, this one is on "
                               f"{self.device}; optimize(device='cuda') first")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: expected a positive int, got {batch!r}")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        with torch.inference_mode(False):  # a normal tensor: callers copy in, in any mode
            static_input = torch.zeros((batch, 3, h, w), device=self.device, dtype=self.dtype
                                       ).contiguous(memory_format=self.memory_format)
        self.net.check_input(static_input)  # bad sizes fail here, not inside the capture
        with torch.autocast(self.device.type, enabled=False):  # this model's own dtype
            return CapturedForward(self.direct, static_input, warmup, graphs=self._graph_kit)


class CapturedForward:
    """``fn(static_input)`` recorded into a CUDA graph and replayed (``FastYOLOv12.capture``; the
    benchmark captures the torch.compile baselines with it too). ``graphs``: how to capture
    (default: ``graphs_for`` the input's device, CUDA's or a GPU rehearsal's stand-in)."""

    def __init__(self, fn, static_input: torch.Tensor, warmup: int = 3, graphs=None):
        self.shape = tuple(static_input.shape)
        self.static_input = static_input
        graphs = graphs or graphs_for(static_input.device)
        self.graph, self.static_output = graphs.capture(fn, static_input, warmup)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: this CUDA graph was captured for input shape {self.shape}, got "
                             f"{got}; call model.capture(batch, size) for that shape")
        static_input = self.static_input
        if static_input.is_inference() and not torch.is_inference_mode_enabled():
            with torch.inference_mode():  # an inference tensor is written in inference mode only
                static_input.copy_(x)
        else:
            static_input.copy_(x)
        self.graph.replay()
        return self.static_output

    def replay(self) -> torch.Tensor:
        """Replay on whatever is in ``static_input`` (no copy-in): what the benchmark times."""
        self.graph.replay()
        return self.static_output


class CudaGraphs:
    """CUDA graph capture: ``capture(fn, static_input, warmup)`` -> (graph, static_output) and
    ``is_capturing()`` (whether this thread's current stream is capturing). The GPU rehearsal's
    stand-in (``yolov12_kernels.target.RecordedGraphs``) keeps the same contract."""

    is_capturing = staticmethod(torch.cuda.is_current_stream_capturing)

    @staticmethod
    def capture(fn, static_input: torch.Tensor, warmup: int = 3):
        device = static_input.device
        # Everything below on the input's device: torch.cuda.graph's default capture stream is
        # created once per process on whatever device was current then (and cached on the class),
        # so a model on cuda:1 would launch its kernels outside the capture. The warm-up stream,
        # made on the model's device, is therefore also handed to the capture explicitly.
        with torch.cuda.device(device), _capture_autocast():
            # Warm up on a side stream (PyTorch's recipe): lazy initialisation (cuDNN plans, JIT
            # compiles, torch.compile's first run, the dispatcher's first-call logging) must not
            # be captured (a device synchronisation inside would break the capture).
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(max(warmup, 1)):
                    fn(static_input)
            torch.cuda.current_stream(device).wait_stream(stream)
            torch.cuda.synchronize(device)
            graph = torch.cuda.CUDAGraph()
            # thread_local: another thread's CUDA calls (a second model, a data loader) neither
            # break this capture nor are broken by it; only this thread's unsafe calls fail it
            with torch.inference_mode(), torch.cuda.graph(graph, stream=stream,
                                                          capture_error_mode="thread_local"):
                static_output = fn(static_input)
        return graph, static_output


def _capture_autocast():
    """Autocast as the caller has it, without its cast cache: a graph replays the casts it
    captured (autocast's state is frozen at capture), and cached casts made outside the graph's
    memory pool would be freed under it when the autocast block ends (PyTorch's advice)."""
    if not torch.is_autocast_enabled("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)


def graphs_for(device: torch.device):
    """How graphs are captured for ``device``: ``CudaGraphs``, or the stand-in of a GPU rehearsal
    (``yolov12_kernels.target.rehearse_gpu``) for a CPU device."""
    return RecordedGraphs if target(device).rehearsal else CudaGraphs


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are on the meta device (no memory)."""
    memo = {}
    for t in (*model.parameters(), *model.buffers()):
        meta = t.detach().to("meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def optimize(model, device=None, dtype=None, *, backend: str = "auto",
             channels_last: bool | None = None, fused_convs: bool | None = None,
             graphs: bool = True, max_shapes: int = 8,
             compile_workers: int | None = None) -> FastYOLOv12:
    """``model``'s fast inference path; see the module docstring. The model itself is unchanged."""
    return FastYOLOv12(model, device, dtype, backend=backend, channels_last=channels_last,
                       fused_convs=fused_convs, graphs=graphs, max_shapes=max_shapes,
                       compile_workers=compile_workers)
