"""Compile the Triton kernels a model needs before its first call: all of them at once, in
parallel, into Triton's own cache (issue 27).

A first call of a new input shape used to compile every kernel variant its plan launches one
after another inside the forward (YOLOv12-N at batch 1: 52 variants, 0.3 CPU-s each for sm_90
under Triton 3.6, plus 3.6's 8 C launchers), with nothing on screen. Here:

* ``variants(scale, imgsz, batch, dtype, arch)``: the distinct variants the fast path launches for
  input (batch, 3, imgsz, imgsz), found by running the model's own fused forward
  (``yolov12.fused.FusedForward``) with every kernel launch collected instead of run. Each fused
  op's launches come from its kernel family's ``launches`` — the function its op runs, which
  picks the configuration for the arch — and the attention core's from its backend under
  ``launch.dry_run``; Triton's binder then tells the variants apart as its JIT does
  (``yolov12_kernels.triton.jit_variants``). On the GPU itself every tensor is real; for an
  ``arch`` without its GPU the model runs on the CPU (nothing is computed but the PyTorch steps
  between launches) with the configurations of that arch.
* ``precompile(scale, imgsz, batches, dtype, arch, workers)``: those of them missing from Triton's
  cache compiled by ``workers`` processes — this one and fresh interpreters started for the
  purpose (``python -c``, not multiprocessing: a caller's script is never re-run), which take the
  variants from the two ends of one queue — then, under Triton 3.6, the launchers of their
  signatures. Returns a ``PrecompileReport``; a second run compiles nothing.
* ``for_first_call(fast, x)``: what ``FastYOLOv12`` runs on a GPU before it records (or captures)
  a new input shape: the same, for the model at hand, with one progress line on stderr when
  compiling takes more than about a second, and nothing at all on a warm cache.
  ``optimize(..., compile_workers=N)`` or ``YOLOV12_COMPILE_WORKERS=N`` sizes it; 0 or 1 turns
  it off (the kernels then compile one by one inside the first forward, and no process starts).
* ``python -m yolov12 compile scale=n imgsz=640 batch=1,32 half=True [arch=sm_90] [workers=N]
  [dry_run=True]``: ahead of time, for an image build or a fleet; ``arch`` compiles for a GPU this
  machine does not have (sm_80, sm_86, sm_89, sm_90).

The variants cover the fused path (fused convs and Triton attention: the default on sm_80+); a
PyTorch step of the forward that launches Triton kernels itself (a layer the fused forward leaves
to its module) compiles them at the first call, as before.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from typing import NamedTuple

import torch

from .cores import usable_cores

WORKERS_ENV = "YOLOV12_COMPILE_WORKERS"
# the arches a variant set can be compiled for without their GPU: (arch class of the
# configuration tables, compute capability Triton targets)
ARCHS = {"sm_80": ("sm80", 80), "sm_86": ("sm86", 86), "sm_89": ("sm86", 89),
         "sm_90": ("sm90", 90)}
COMPILE_S = 0.4  # CPU-s a variant, about (0.29-0.58 measured: Triton 3.6 / 3.9, sm_90, a CPU)
PROGRESS_AFTER_S = 1.0  # a compile expected to take longer says so on one line

log = logging.getLogger("yolov12")
_logged: set = set()


class PrecompileReport(NamedTuple):
    """What ``precompile`` did: ``variants`` distinct kernel variants, of which ``compiled`` were
    compiled now and ``cached`` found in Triton's cache; ``seconds`` of wall time in all (the
    enumeration included); ``workers`` processes that compiled; the target ``arch`` ("sm_90");
    ``launchers`` Triton 3.6 C launchers built; ``failed`` variants that did not compile;
    ``busy``: the CPU seconds each process spent (its compiler subprocesses and, for a pool
    process, its start-up included), most first: on free cores the wall time is the first."""
    variants: int
    compiled: int
    cached: int
    seconds: float
    workers: int
    arch: str
    launchers: int = 0
    failed: int = 0
    busy: tuple = ()  # CPU seconds of each compiling process, a pool process's start-up included


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------
def target(arch: str | None = None, device=None) -> tuple[str, str, int]:
    """(name "sm_90", arch class "sm90", compute capability 90) of ``arch``, or of ``device``'s
    GPU (this machine's first one) when ``arch`` is None."""
    if arch is not None:
        if arch not in ARCHS:
            raise ValueError(f"arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
        return (arch, *ARCHS[arch])
    if device is None:
        if not torch.cuda.is_available():
            raise ValueError("arch: no CUDA GPU here to compile for; name the target GPU: "
                             f"arch={'|'.join(ARCHS)}")
        device = torch.device("cuda")
    from yolov12_kernels.triton.conv import arch_class
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}", arch_class(device), 10 * major + minor


def compile_workers(workers: int | None = None, name: str = "compile_workers") -> int:
    """How many processes compile: ``workers``, else ``YOLOV12_COMPILE_WORKERS``, else every
    core (this process and a pool of the others); 0 and 1 both mean this process alone.
    ``name``: the argument's, for the error."""
    if workers is None:
        text = os.environ.get(WORKERS_ENV, "").strip()
        if not text:
            return usable_cores()
        name = WORKERS_ENV
        try:
            workers = int(text)
        except ValueError:
            raise ValueError(f"{WORKERS_ENV}: expected a number of processes (0 or 1: no pool), "
                             f"got {text!r}") from None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"{name}: expected None or a number of processes >= 0 (0 or 1: no "
                         f"pool), got {workers!r}")
    return max(1, workers)


def _sides(imgsz) -> tuple[int, int]:
    from .model import STRIDE
    sides = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    if (len(sides) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < STRIDE
                               or s % STRIDE for s in sides)):
        raise ValueError(f"imgsz: expected a positive multiple of {STRIDE} (or two: height, "
                         f"width), got {imgsz!r}")
    return sides


def _batches(batches) -> list[int]:
    out = [batches] if isinstance(batches, int) else list(batches)
    if not out or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in out):
        raise ValueError(f"batch: expected positive integers, got {batches!r}")
    return out


def _check_dtype(dtype) -> None:
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"dtype: expected torch.float16, bfloat16 or float32, got {dtype!r}")


def _scales(scale) -> list[str]:
    from .model import SCALES
    out = [scale] if isinstance(scale, str) else list(scale)
    if not out or any(s not in SCALES for s in out):
        raise ValueError(f"scale: expected one of {', '.join(SCALES)}, got {scale!r}")
    return out


# ------------------------------------------------------------------------------------------------
# the variants a forward launches
# ------------------------------------------------------------------------------------------------
def _op_launches():
    """{public op: (arch, *its arguments) -> (its output, its launches)}: what each fused op's
    custom op does on a GPU — the output allocated as the op allocates it, the launches of its
    kernel family's ``launches`` (the function the op's ``launch`` runs) — with the arch given."""
    from yolov12_kernels import box_decode as bd
    from yolov12_kernels import conv, dwconv, mlp
    from yolov12_kernels._conv_checks import empty_nhwc
    from yolov12_kernels.triton import box_decode as TB
    from yolov12_kernels.triton import conv as TC
    from yolov12_kernels.triton import dwconv as TD
    from yolov12_kernels.triton import mlp as TM

    def conv2d(arch, x, w, b=None, stride=1, *, silu=False, residual=None, gamma=None, out=None):
        out = empty_nhwc(conv._out_shape(x, w, stride), x) if out is None else out
        return out, TC.launches(x, w, b, residual, gamma, out, stride, silu, arch=arch)

    def depthwise(arch, x, w, b=None, stride=1, *, silu=False, out=None):
        out = empty_nhwc(dwconv._out_shape(x, w, stride), x) if out is None else out
        return out, TD.launches(x, w, b, out, stride, silu, arch=arch)

    def mlp_pair(arch, x, w1, b1, w2, b2, *, residual=True, out=None):
        out = empty_nhwc(x.shape, x) if out is None else out
        return out, TM.launches(x, w1, b1, w2, b2, out, residual, arch=arch)

    def decode(arch, feats, level_shapes, strides, reg_max=16):
        out = bd._new_out(feats, feats.shape[1] - 4 * reg_max)
        grid, args, kwargs = TB.launch_args(feats, out, [tuple(s) for s in level_shapes],
                                            [float(s) for s in strides], reg_max)
        return out, [TC.Launch(TB._box_decode_kernel, grid, args, kwargs)]

    return {conv.fused_conv2d: conv2d, dwconv.fused_depthwise_conv2d: depthwise,
            mlp.fused_mlp: mlp_pair, bd.box_decode: decode}


def _collector(fused, arch: str, attention=None):
    """A FusedForward on ``fused``'s prepared network whose ops collect their launches
    (``.launches``: (kernel, args, kwargs) in launch order) instead of running them."""
    from yolov12_kernels.triton import launch
    from yolov12_kernels.triton.compile_check import jit_call

    from .fused import FusedForward

    class Collector(FusedForward):
        def __init__(self):
            self.__dict__.update(fused.__dict__)  # the same network, weights and concat plan
            self.poison, self.launches, self._ops = False, [], _op_launches()

        def _recording(self):
            return None

        def op(self, fn, *args, **kwargs):
            of = self._ops.get(fn)
            if of is not None:
                out, runs = of(arch, *args, **kwargs)
                self.launches += [(r.kernel, r.args, r.kwargs) for r in runs]
                return out
            # the attention core (the fused ops' one door besides the kernel ops): Triton's
            # records its launches under a dry run; another backend's launches none of ours
            with launch.dry_run() as runs:
                out = (attention or fn)(*args, **kwargs)
            self.launches += [jit_call(r) for r in runs]
            return out

    return Collector()


def launches(fused, shape, arch: str, *, device, dtype, memory_format=torch.channels_last,
             attention=None) -> list[tuple]:
    """(kernel, args, kwargs) of every Triton launch of ``fused`` (a ``FusedForward``) on an
    input of ``shape``, with the configurations of arch class ``arch`` ("sm90"); ``attention``
    replaces the network's attention core (None: its own)."""
    collector = _collector(fused, arch, attention)
    with torch.inference_mode():
        x = torch.empty(shape, device=device, dtype=dtype, memory_format=memory_format)
        collector(x)
    return collector.launches


def distinct(runs, cc: int) -> list:
    """The distinct variants (``jit_variants.Variant``) of launches, in first-launch order."""
    from yolov12_kernels.triton.jit_variants import bind
    out: dict = {}
    for kernel, args, kwargs in runs:
        v = bind(kernel, args, kwargs, cc, known=out)
        if v is not None:
            out[v.key] = v
    return list(out.values())


@functools.lru_cache(maxsize=2)
def _cpu_forward(scale: str, dtype: torch.dtype, nc: int):
    """A randomly initialised YOLOv12 prepared as ``optimize`` prepares it (folded, cast,
    channels-last, float32 decode), as a FusedForward on the CPU: what the variants of a scale
    are enumerated on where its GPU is not."""
    from .fast import FastYOLOv12
    from .fused import FusedForward
    from .model import YOLOv12
    fast = FastYOLOv12(YOLOv12(scale, nc=nc), "cpu", dtype, backend="reference",
                       fused_convs=False, channels_last=True, graphs=False)
    return FusedForward(fast.net)


def variants(scale: str, imgsz, batch: int, dtype: torch.dtype, arch: str | None = None, *,
             nc: int = 80) -> list:
    """The distinct Triton kernel variants the default fast path (``optimize()``: fused convs,
    Triton attention) launches for input (batch, 3, imgsz, imgsz) of YOLOv12-``scale`` in
    ``dtype``, for GPU ``arch`` ("sm_90"; None: this machine's). ``imgsz``: a side or (h, w).
    A list of ``jit_variants.Variant``."""
    from yolov12_kernels.triton import launch
    name, arch_class, cc = target(arch)
    h, w = _sides(imgsz)
    (batch,) = _batches([batch])
    _check_dtype(dtype)
    (scale,) = _scales([scale])
    if launch.INTERPRET:
        raise RuntimeError("variants: this process imported the Triton kernels interpreted "
                           "(TRITON_INTERPRET=1), whose attention configuration is the "
                           "interpreter's, not a GPU's; run it where TRITON_INTERPRET is unset")
    from yolov12_kernels.triton.backend import fused_area_attention
    runs = launches(_cpu_forward(scale, dtype, nc), (batch, 3, h, w), arch_class,
                    device=torch.device("cpu"), dtype=dtype, attention=fused_area_attention)
    return distinct(runs, cc)


# ------------------------------------------------------------------------------------------------
# compiling
# ------------------------------------------------------------------------------------------------
def _cpu_seconds() -> float:
    """CPU time of this process and of its finished subprocesses (ptxas, gcc)."""
    import resource
    own, sub = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + sub.ru_utime + sub.ru_stime


def _job(job) -> tuple:
    """Run one job: ("kernel", Variant) or ("launcher", C source). (kind, True if compiled or
    built, False if found in the cache, an error line or None, the process id, the job's CPU
    seconds, the process's CPU seconds before it)."""
    from yolov12_kernels.triton import jit_variants as J
    before = _cpu_seconds()
    kind, what = job
    try:
        done, err = (J.compile_variant(what)[1] if kind == "kernel"
                     else J.build_launcher(what)), None
    except Exception as e:  # noqa: BLE001 — reported by the caller, who decides
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        done, err = False, f"{type(e).__name__}: {first[:300]}"
    return kind, done, err, os.getpid(), _cpu_seconds() - before, before


def _busy(results) -> tuple:
    """CPU seconds per process from the jobs' results (a pool process's start-up: what it had
    spent before its first job), most first."""
    busy: dict = {}
    for *_, pid, cpu, before in results:
        spent, start = busy.get(pid, (0.0, before))
        busy[pid] = (spent + cpu, min(start, before))
    return tuple(sorted((round(spent + (start if pid != os.getpid() else 0.0), 2)
                         for pid, (spent, start) in busy.items()), reverse=True))


class _Queue:
    """Jobs numbered in order; the workers take from the front, this process from the back."""

    def __init__(self, jobs):
        import collections
        import threading
        self.jobs, self.lock = collections.deque(enumerate(jobs)), threading.Lock()

    def take(self, front: bool):
        with self.lock:
            if not self.jobs:
                return None
            return self.jobs.popleft() if front else self.jobs.pop()

    def clear(self) -> None:
        with self.lock:
            self.jobs.clear()


def _serve() -> None:
    """A compile worker (``_run_jobs`` starts it as ``python -c``): a pickled job in on stdin, its
    pickled result out on the original stdout, until stdin closes; whatever else prints goes to
    stderr."""
    import pickle
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    while True:
        try:
            job = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        pickle.dump(_job(job), results)
        results.flush()


def _start_worker(log):
    """A worker process: a fresh interpreter running ``_serve`` — not multiprocessing, which
    re-runs the caller's main script in every child — with the compiled kernels (no
    TRITON_INTERPRET), this process's import path and Triton cache; its stderr into ``log``."""
    import subprocess

    from triton import knobs
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path),
               TRITON_CACHE_DIR=str(knobs.cache.dir), PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-c", "from yolov12.precompile import _serve; "
                             "_serve()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log, env=env)


def _feed(worker, log, queue: _Queue, results: dict) -> None:
    """Hand ``worker`` the jobs from the front of the queue one by one; if it dies, its job
    fails with the last line it wrote and the others go to the rest."""
    import pickle
    try:
        while (item := queue.take(front=True)) is not None:
            i, job = item
            try:
                pickle.dump(job, worker.stdin)
                worker.stdin.flush()
                results[i] = pickle.load(worker.stdout)
            except Exception as e:  # noqa: BLE001 — a dead or garbled worker fails its job only
                log.seek(0)
                last = (log.read().decode(errors="replace").strip().splitlines() or [""])[-1]
                results[i] = (job[0], False, f"compile worker exited ({type(e).__name__}): "
                                             f"{last[:300]}", worker.pid, 0.0, 0.0)
                return
    finally:
        with contextlib.suppress(OSError):
            worker.stdin.close()


def _run_jobs(jobs: list, processes: int, here: bool) -> list:
    """``_job(j)`` for every job, on ``processes`` processes: this one (``here``: it can compile)
    taking jobs from the back of the queue while worker processes take them from the front (so
    their start-up costs this process nothing), or the workers alone."""
    if processes <= 1 and here:
        return [_job(j) for j in jobs]
    import tempfile
    import threading
    queue, results, workers = _Queue(jobs), {}, []
    size = min(len(jobs), processes - 1 if here else processes)
    def reap():  # every worker ended and waited for (no zombie), its pipes closed
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait()
            for pipe in (w.stdin, w.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()
    with contextlib.ExitStack() as stack:
        stack.callback(reap)
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(size)]
        for log in logs:
            workers.append(_start_worker(log))
        feeds = [threading.Thread(target=_feed, args=(w, log, queue, results), daemon=True)
                 for w, log in zip(workers, logs)]
        for t in feeds:
            t.start()
        try:
            while here and (item := queue.take(front=False)) is not None:
                results[item[0]] = _job(item[1])
            for t in feeds:
                t.join()
        except BaseException:
            queue.clear()  # the workers take no more; the exit kills them
            raise
        for w in workers:
            w.wait()  # stdin closed by its feeder: it ends by itself
    return [results[i] if i in results else ("kernel", False, "not run", 0, 0.0, 0.0)
            for i in range(len(jobs))]


def _cost(v) -> tuple:
    """Longest compiles first (the attention kernels, then the deepest pipelines)."""
    return (not v.name.startswith("_fwd") and not v.name.startswith("_bwd"),
            -v.options.get("num_stages", 1) * v.options.get("num_warps", 4))


def _launcher_jobs(vs) -> list[str]:
    """The C sources of Triton 3.6's launchers for ``vs`` not yet in the cache (none under 3.9,
    or where no libcuda.so.1 is found to link them against)."""
    from yolov12_kernels.triton import jit_variants as J
    sources = list(dict.fromkeys(s for s in map(J.launcher_source, vs) if s is not None))
    if not sources or J.can_build_launchers() is not None:
        return []
    return [s for s in sources if not J.launcher_in_cache(s)]


def compile_variants(vs: list, workers: int, arch: str, progress: bool = True, why: str = "",
                     started: float | None = None, launchers: bool = True) -> PrecompileReport:
    """Compile the variants of ``vs`` missing from Triton's cache (and, ``launchers``, their
    Triton 3.6 launchers) on ``workers`` processes; one line on stderr first when that should
    take more than about a second (``progress``), nothing when nothing is missing."""
    from yolov12_kernels.triton import jit_variants as J
    started = time.perf_counter() if started is None else started
    here = bool(vs) and J.compilable(vs[0])
    todo = [v for v in vs if not J.in_cache(v)] if here else list(vs)
    sources = _launcher_jobs(vs) if launchers else []
    jobs = [("kernel", v) for v in sorted(todo, key=_cost)] + [("launcher", s) for s in sources]
    if not jobs:
        return PrecompileReport(len(vs), 0, len(vs), time.perf_counter() - started, 0, arch)
    processes = max(1, min(workers, len(jobs)))
    line = progress and len(jobs) * COMPILE_S / processes > PROGRESS_AFTER_S
    if line:
        extra = f" and {len(sources)} launchers" if sources else ""
        print(f"yolov12: compiling {len(todo)} Triton kernels{extra} for {arch} on {processes} "
              f"process{'es' if processes > 1 else ''}{f' ({why})' if why else ''} ...",
              end="", file=sys.stderr, flush=True)
    try:
        results = _run_jobs(jobs, processes, here)
    finally:
        seconds = time.perf_counter() - started
        if line:  # the line ends, however the compiles did
            print(f" done in {seconds:.1f} s", file=sys.stderr, flush=True)
    errors = [err for _, _, err, *_ in results if err]
    kernels = [(done, err) for kind, done, err, *_ in results if kind == "kernel"]
    compiled = sum(done for done, _ in kernels)
    failed = sum(err is not None for _, err in kernels)
    built = sum(done for kind, done, *_ in results if kind == "launcher")
    for err in dict.fromkeys(errors):
        log.warning("yolov12: a compile ahead of the first call failed (the first call compiles "
                    "it again and says why): %s", err)
    return PrecompileReport(len(vs), compiled, len(vs) - compiled - failed, seconds, processes,
                            arch, built, failed, _busy(results))


def precompile(scale, imgsz=640, batches=(1,), dtype: torch.dtype = torch.float16,
               arch: str | None = None, workers: int | None = None, progress: bool = True, *,
               nc: int = 80, dry_run: bool = False) -> PrecompileReport:
    """Compile into Triton's cache every kernel variant the fast path of YOLOv12-``scale`` (a
    scale or a list of them) launches for (batch, 3, imgsz, imgsz) inputs, each batch of
    ``batches``, in ``dtype``, for GPU ``arch`` ("sm_90"; None: this machine's), on ``workers``
    processes (None: ``YOLOV12_COMPILE_WORKERS``, else every core). ``dry_run``: count the
    variants and those already cached, compile nothing."""
    started = time.perf_counter()
    name, _, _ = target(arch)
    scales, batches, sides = _scales(scale), _batches(batches), _sides(imgsz)
    _check_dtype(dtype)
    workers = compile_workers(workers, "workers")
    found: dict = {}
    for s in scales:
        for b in batches:
            for v in variants(s, sides, b, dtype, arch, nc=nc):
                found.setdefault(v.key, v)
    vs = list(found.values())
    if dry_run:
        from yolov12_kernels.triton.jit_variants import in_cache
        cached = sum(map(in_cache, vs))
        return PrecompileReport(len(vs), 0, cached, time.perf_counter() - started, 0, name)
    return compile_variants(vs, workers, name, progress, started=started)


def for_first_call(fast, x: torch.Tensor, arch: str | None = None) -> PrecompileReport | None:
    """Before ``fast`` (a FastYOLOv12) prepares input shape ``x.shape`` on a GPU: compile what its
    forward will launch that Triton's cache lacks, on ``fast.compile_workers`` processes (see the
    module docstring). None where nothing runs: not on a GPU, not the fused path, one worker. A
    failure here costs nothing but the time: one log line, and the forward compiles as before.
    ``arch`` ("sm_90"): compile for that GPU whatever the model's device (the cold-start
    benchmark times this on a CPU)."""
    from yolov12_kernels.triton import launch
    if ((fast.device.type != "cuda" and arch is None) or fast._fused is None
            or launch.INTERPRET):
        return None
    try:
        workers = compile_workers(fast.compile_workers)
        if workers <= 1:
            return None
        started = time.perf_counter()
        name, arch_class, cc = target(arch, fast.device)
        runs = launches(fast._fused, tuple(x.shape), arch_class, device=fast.device,
                        dtype=fast.dtype, memory_format=fast.memory_format)
        shape = "x".join(map(str, x.shape))
        return compile_variants(distinct(runs, cc), workers, name,
                                why=f"first call of a {shape} input on this machine",
                                started=started)
    except Exception as e:  # noqa: BLE001 — compiling ahead is an optimisation, never a failure
        msg = (f"yolov12: compiling ahead of the first call failed ({type(e).__name__}: "
               f"{str(e).strip()[:200]}); the first call compiles its kernels one by one")
        if msg not in _logged:
            _logged.add(msg)
            log.warning(msg)
        return None


# ------------------------------------------------------------------------------------------------
# command line: yolov12 compile
# ------------------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "compile", help="compile the Triton kernels a model needs ahead of its first call",
        description="Compile into Triton's cache every kernel variant the fast path launches for "
                    "the given scales, image size, batches and dtype: for this machine's GPU, or "
                    "for arch=sm_90 (sm_80, sm_86, sm_89) on a machine without it. A second run "
                    "compiles nothing.")
    p.add_argument("--model", "--scale", dest="scale", nargs="+", default=["n"],
                   help="scales n s m l x (default n; scale=n,s)")
    p.add_argument("--imgsz", type=int, nargs="+", default=[640],
                   help="input side, or height width (multiples of 32; default 640)")
    p.add_argument("--batch", type=int, nargs="+", default=[1],
                   help="batch sizes (default 1; batch=1,32)")
    p.add_argument("--half", action="store_true", help="float16 (default float32)")
    p.add_argument("--arch", default=None,
                   help=f"target GPU without it: {', '.join(ARCHS)} (default: this machine's)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"compiling processes (default {WORKERS_ENV}, else every core)")
    p.add_argument("--nc", type=int, default=80, help="classes (default 80)")
    p.add_argument("--dry-run", action="store_true",
                   help="count the variants and those already cached; compile nothing")
    p.error = _one_line_error  # usage errors: one line, exit 2, like the ones run() reports
    p.set_defaults(func=run)


def _one_line_error(message: str):
    print(f"yolov12 compile: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(args) -> int:
    dtype = torch.float16 if args.half else torch.float32
    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz)
    try:
        if args.nc < 1:
            raise ValueError(f"nc: expected a positive number of classes, got {args.nc}")
        r = precompile(args.scale, imgsz, args.batch, dtype, args.arch, args.workers,
                       nc=args.nc, dry_run=args.dry_run)
    except ValueError as e:
        print(f"yolov12 compile: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"yolov12 compile: error: {e}", file=sys.stderr)
        return 1
    import triton
    h, w = _sides(imgsz)
    what = (f"YOLOv12-{','.join(args.scale)} {h}x{w} batch {','.join(map(str, args.batch))} "
            f"{str(dtype).removeprefix('torch.')} for {r.arch}")
    where = f"Triton {triton.__version__}, cache {triton.knobs.cache.dir}"
    if args.dry_run:
        print(f"compile (dry run): {what}: {r.variants} kernel variants, {r.cached} cached, "
              f"{r.variants - r.cached} to compile; nothing compiled ({where})")
        return 0
    launchers = f", {r.launchers} launchers built" if r.launchers else ""
    failed = f", {r.failed} FAILED" if r.failed else ""
    how = (f"on {r.workers} process{'es' if r.workers > 1 else ''}" if r.workers
           else "nothing to compile")
    print(f"compile: {what}: {r.variants} kernel variants, {r.compiled} compiled, {r.cached} "
          f"cached{failed}{launchers} in {r.seconds:.1f} s, {how} ({where})")
    return 1 if r.failed else 0
