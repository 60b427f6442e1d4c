"""End-to-end latency suite: baselines, ablations and a batch sweep of the YOLOv12 model.

Every experiment builds its providers (the same network run different ways, see ``PROVIDERS``),
warms each up, then times them *interleaved*: ``rounds`` rounds, each timing every provider in turn
for ``runs / rounds`` single calls. A slow spell of the machine (another process, clock or thermal
change) then hits every provider alike instead of whichever happened to run during it, which is
what "measured side by side in one run" has to mean on a shared machine. Each call is timed alone
by ``records.time_ms`` (CUDA events around one call, synchronised before and after, so
launch overhead counts as it does for one image at a time; ``perf_counter`` on the CPU).

The input is made once, already in the provider's dtype and memory format: conversion, letterbox,
decoding to boxes beyond the head, and NMS are not timed (the paper's forward-only latency).
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch._inductor.config  # noqa: F401  (torch._inductor.config.patch below)

from ..architecture import SCALES, VARIANTS
from ..export import export_onnx
from ..fast import CapturedForward, FastYOLOv12, fused_convs_unsupported, optimize
from ..model import YOLOv12
from ..onnx_model import OnnxModel, import_onnxruntime
from .ablations import MLP_RATIOS, PE_KERNELS, build_variant
from .records import make_record, summarize, time_ms

PROVIDERS = ("eager", "eager-graph", "compile", "compile-max-autotune", "fast-noconv",
             "fast-noconv-graph", "fast", "fast-graph", "onnxruntime")
# replayed from a CUDA graph: CUDA only
GRAPH_PROVIDERS = ("eager-graph", "fast-noconv-graph", "fast-graph")
# the ablation "fast path without the fused conv kernels": it differs from fast only where fast
# runs them (a GPU); elsewhere it is skipped, not timed as a copy of fast
NOCONV_PROVIDERS = ("fast-noconv", "fast-noconv-graph")
BATCH_PROVIDERS = ("eager", "eager-graph", "fast", "fast-graph")
# the model exported to ONNX (yolov12 export) and run in onnxruntime: a default on the CPU, where
# it is a real alternative to our fast path; on a GPU only when asked for (--providers)
CPU_ONLY_DEFAULTS = ("onnxruntime",)
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)


class Skip(Exception):
    """A provider that cannot run here (the message says why); the suite goes on without it."""


@dataclass
class Config:
    device: torch.device
    dtype: torch.dtype
    size: tuple[int, int] = (640, 640)
    batch: int = 1
    warmup: int = 10
    runs: int = 20
    rounds: int = 5
    compile_ok: bool = True          # False: skip the torch.compile providers (slow on CPU)
    channels_last: bool | None = None  # fast path's layout; None: per device (yolov12.fast)
    fast_compile: str | None = None  # torch.compile mode for the fast path itself, or None
    compile_backend: str = "inductor"  # "eager"/"aot_eager" only check tracing (tests)
    progress: Callable[[int], object] | None = None
    log: Callable[[str], object] = print
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    label: str = ""                  # free text carried in every record (e.g. "CPU figure")


# --------------------------------------------------------------------------------------------
# timing

def interleaved(fns: dict[str, Callable[[], object]], device, warmup: int, runs: int,
                rounds: int = 5, progress: Callable[[int], object] | None = None) -> dict:
    """Timings (``records.summarize`` dicts) of each fn, ``runs`` calls each, interleaved in rounds.

    Warm-up: ``warmup`` untimed calls of each fn first. Returns {name: summary}.
    """
    if runs < 1 or warmup < 0 or rounds < 1:
        raise ValueError(f"runs/warmup/rounds: expected runs >= 1, warmup >= 0, rounds >= 1, got "
                         f"{runs}/{warmup}/{rounds}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    rounds = min(rounds, runs)
    per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    times: dict[str, list[float]] = {name: [] for name in fns}
    for n in per_round:
        for name, fn in fns.items():
            for _ in range(n):
                times[name].append(time_ms(fn, device, warmup=0, rep=1)["median_ms"])
                if progress:
                    progress(1)
    return {name: summarize(t) for name, t in times.items()}


# --------------------------------------------------------------------------------------------
# providers

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(provider: str, model, cfg: Config, batch: int | None = None,
          attention: str = "auto"):
    """(fn, extra record fields) timing ``provider`` on ``model`` (a CPU YOLOv12, left untouched).

    ``attention`` is the fast path's attention backend ("auto"; "reference" for the unfused row).

    Raises ``Skip`` when the provider cannot run here.
    """
    dev, dtype = cfg.device, cfg.dtype
    batch = batch or cfg.batch
    h, w = cfg.size
    x = torch.randn(batch, 3, h, w, device=dev).to(dtype)
    extra: dict = {}
    if provider in GRAPH_PROVIDERS and dev.type != "cuda":
        raise Skip(f"{provider} needs CUDA (CUDA graphs); skipped on CPU")
    if provider == "eager":
        # the reference model as users run it: BN unfolded, reference attention, NCHW
        m = copy.deepcopy(model).to(device=dev, dtype=dtype).eval().requires_grad_(False)
        # AAttn's backend defaults to "auto", which is SDPA on a CPU and the fused Triton kernel on
        # an sm_80+ GPU: pin the reference attention the record (and README) says this row runs.
        m.set_attention_backend("reference")
        extra["attention_backend"] = "reference"
        return (lambda: m(x)), extra
    if provider == "eager-graph":
        # the fair baseline for a graph-replayed fast path: the public code path (reference
        # attention, the model's own convs, NCHW) with BN fused, replayed from a CUDA graph too
        m = FastYOLOv12(model, dev, dtype, backend="reference", channels_last=False,
                        fold_bn=True, fp32_decode=False, fused_convs=False)
        g = m.capture(batch, (h, w))
        g.static_input.copy_(x)
        extra.update(attention_backend="reference", graph=True)
        return g.replay, extra
    if provider in ("compile", "compile-max-autotune"):
        if not cfg.compile_ok:
            raise Skip("torch.compile skipped (pass --compile; inductor's C++ build is slow on CPU)")
        # The reference computation (BN unfolded, reference attention, decode in the model's
        # dtype), wrapped so that dynamo sees one graph: compiling the reference model as is would
        # break at every attention (the dispatcher) and at the decode, one graph per layer — a
        # weaker baseline than torch.compile deserves. On a GPU the compiled model is replayed
        # from a CUDA graph like ours (inductor's own cudagraphs are off: max-autotune runs as
        # "max-autotune-no-cudagraphs", and we capture), so both sides pay no launch overhead.
        m = FastYOLOv12(model, dev, dtype, backend="reference", channels_last=False,
                        fold_bn=False, fp32_decode=False, fused_convs=False)
        max_autotune = provider == "compile-max-autotune"
        mode = ("max-autotune-no-cudagraphs" if dev.type == "cuda" else "max-autotune"
                ) if max_autotune else None
        cm, compile_s = _compile(m, cfg, mode, x)
        extra.update(attention_backend="reference", compile_s=round(compile_s, 1))
        if mode:
            extra["compile_mode"] = mode
        if cfg.compile_backend != "inductor":
            extra["compile_backend"] = str(cfg.compile_backend)
        if dev.type == "cuda":
            g = CapturedForward(cm, x.clone())
            extra["graph"] = True
            return g.replay, extra
        return (lambda: cm(x)), extra
    if provider == "onnxruntime":
        return _onnxruntime(model, cfg, x)
    if provider in ("fast", "fast-graph", *NOCONV_PROVIDERS):
        noconv = provider in NOCONV_PROVIDERS
        if noconv and fused_convs_absent(dev, dtype):
            raise Skip(f"{provider}: the fast path runs no fused conv kernels here "
                       f"({fused_convs_absent(dev, dtype)}), so it would time fast again")
        f = optimize(model, dev, dtype, backend=attention, channels_last=cfg.channels_last,
                     fused_convs=False if noconv else None)
        extra.update(attention_backend=f.attention_backend, channels_last=f.channels_last,
                     fused_convs=f.fused_convs)
        xf = x.contiguous(memory_format=f.memory_format)
        fn = f
        if cfg.fast_compile:
            fn, compile_s = _compile(
                f, cfg, None if cfg.fast_compile == "default" else cfg.fast_compile, xf)
            extra.update(fast_compile=cfg.fast_compile, compile_s=round(compile_s, 1))
        if provider in ("fast", "fast-noconv"):
            # the default call: on CUDA a CUDA-graph replay of each shape, prepared by the first
            # (untimed) call, with the copy-in and the output's copy; without graphs on the CPU
            extra["prepared"] = ("cuda-graph" if dev.type == "cuda" and not cfg.fast_compile
                                 else "launch-plan" if f.fused_convs and not cfg.fast_compile
                                 else "none")
            return (lambda: fn(xf)), extra
        if cfg.fast_compile:
            raise Skip("fast-graph of a compiled fast path: use a compile mode without CUDA graphs")
        g = f.capture(batch, (h, w))
        g.static_input.copy_(xf)
        extra["graph"] = True
        return g.replay, extra
    raise ValueError(f"provider: expected one of {PROVIDERS}, got {provider!r}")


def _onnxruntime(model, cfg: Config, x: torch.Tensor):
    """``model`` exported as ``yolov12 export`` writes it (BN folded, reference attention as
    standard ops; static shape: this batch and size) into a temporary directory, and run in
    onnxruntime on as many threads as PyTorch uses: what a user deploying the .onnx file gets.
    The export's time is recorded as ``export_s``; the timed call is the session's run on a numpy
    array made once."""
    if cfg.dtype != torch.float32:
        raise Skip(f"onnxruntime runs the exported float32 file; measured with --dtype float32, "
                   f"not {str(cfg.dtype).replace('torch.', '')}")
    try:
        import onnx  # noqa: F401  (torch's exporter writes the file with it)
    except ImportError:
        raise Skip("onnxruntime: exporting the model needs onnx (pip install onnx onnxruntime)"
                   ) from None
    try:
        ort = import_onnxruntime()
    except ImportError as e:
        raise Skip(str(e)) from None
    if cfg.device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (pip install "
                   "onnxruntime-gpu)")
    with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph once it is built
        t0 = time.perf_counter()
        path = export_onnx(copy.deepcopy(model), Path(tmp) / "model.onnx",
                           imgsz=tuple(x.shape[-2:]), batch=x.shape[0])
        export_s = time.perf_counter() - t0
        engine = OnnxModel(path, cfg.device)
    feed = {engine.input_name: x.float().cpu().numpy()}
    extra = {"onnxruntime": engine.onnxruntime_version,
             "execution_provider": engine.execution_provider, "export_s": round(export_s, 1)}
    return (lambda: engine.session.run(None, feed)), extra


def fused_convs_absent(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the default fast path runs no fused conv kernels on ``device`` in ``dtype``, or None
    (yolov12.fast: they run by default on GPUs that can run them)."""
    if device.type != "cuda":
        return "not on a GPU"
    return fused_convs_unsupported(device, dtype)


# max-autotune's compile time is mostly benchmarking candidate kernels (inductor's default: 25
# warm-up + 100 timed runs of each); fewer runs keep the baseline within the GPU check's time and
# still rank candidates whose times differ by more than noise. Only names this torch has.
_AUTOTUNE_BOUNDS = {k: v for k, v in (("inductor_default_autotune_warmup", 5),
                                      ("inductor_default_autotune_rep", 20))
                    if hasattr(torch._inductor.config, k)}


def _compile(module, cfg: Config, mode: str | None, x: torch.Tensor):
    """torch.compile with the suite's settings, compiled by one first call on ``x``; returns the
    compiled module and the seconds that first call took.

    Every compiled instance of FastYOLOv12 adds a cache entry to the same forward code object; past
    dynamo's recompile limit (8) further models would silently run uncompiled, so the limit is
    raised for this compilation (a group compiles at most 3, and each group starts from a reset
    cache, see ``_measure``). ``config.patch`` scopes it: nothing leaks to later code."""
    if cfg.compile_backend != "inductor":  # mode applies to inductor only
        compiled = torch.compile(module, backend=cfg.compile_backend)
    else:
        compiled = torch.compile(module, mode=mode)
    conf = torch._dynamo.config
    limits = {name: max(getattr(conf, name), 64)  # the name differs across torch versions
              for name in ("recompile_limit", "cache_size_limit") if hasattr(conf, name)}
    t0 = time.perf_counter()
    with conf.patch(limits), torch._inductor.config.patch(_AUTOTUNE_BOUNDS), \
            torch.inference_mode():
        compiled(x)
    _sync(x.device)
    return compiled, time.perf_counter() - t0


def _peak_memory(device: torch.device, make: Callable[[], tuple]) -> tuple[tuple, float | None]:
    """(make(), MiB allocated at the peak while building it and running it once) on CUDA.

    Measured from what was allocated before, so other providers alive at the time do not count:
    weights + workspace + activations (+ the CUDA graph's pool) of this provider. On CPU PyTorch
    offers no per-allocation peak, so None ("not measured").
    """
    if device.type != "cuda":
        return make(), None
    gc.collect()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    built = make()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)  # building (incl. a CUDA graph's capture)
    with torch.inference_mode():
        # First call untimed and outside the peak: Triton's autotuner benchmarks every kernel
        # configuration once per new shape with a 256 MiB L2-flush buffer of its own
        # (triton.testing.do_bench), which would otherwise count as the provider's memory — and
        # only for the first provider of a batch size (the others reuse the tuned configs).
        built[0]()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        built[0]()
    torch.cuda.synchronize(device)
    peak = max(peak, torch.cuda.max_memory_allocated(device))
    return built, (peak - base) / 2**20


# --------------------------------------------------------------------------------------------
# experiments

_FLOPS_CACHE: dict = {}


def model_info(model, key) -> dict:
    """params and GFLOPs at 640 (convs, attention, total) of a YOLOv12, cached by ``key``.

    Counted at 64x64 and scaled: for input sides that are multiples of 32 every conv's output grid
    scales with H*W, so conv FLOPs scale by (640/64)^2; attention FLOPs scale with tokens^2 / areas,
    i.e. by (640/64)^4 (exact; a test checks it against a count at 640/5 = 128). Counting at 640
    directly costs seconds per model on a CPU.
    """
    if key not in _FLOPS_CACHE:
        gf = model.gflops(64)
        conv, att = gf["conv"] * 100, gf["attention"] * 10_000
        _FLOPS_CACHE[key] = {"params": model.num_params(), "gflops": conv + att,
                             "gflops_conv": conv, "gflops_attention": att}
    return dict(_FLOPS_CACHE[key])


def _records(results: dict, specs: dict, cfg: Config, experiment: str, batch: int) -> list[dict]:
    recs = []
    h, w = cfg.size
    for key, t in results.items():
        name, provider, extra = specs[key]
        rec_extra = dict(extra)
        rec_extra.update(experiment=experiment, run_id=cfg.run_id, imgsz=[h, w], runs=t["runs"],
                         warmup=cfg.warmup, rounds=cfg.rounds,
                         images_per_s=batch * 1e3 / t["median_ms"])
        if cfg.device.type == "cpu":
            rec_extra["threads"] = torch.get_num_threads()
        if cfg.label:
            rec_extra["label"] = cfg.label
        recs.append(make_record(suite="e2e", name=name, provider=provider, device=cfg.device,
                                dtype=cfg.dtype, batch=batch, shape=[batch, 3, h, w], timing=t,
                                **rec_extra))
    return recs


def _measure(group: list[tuple[str, str, str, str]], cfg: Config, experiment: str,
             batch: int | None = None, memory: bool = False) -> list[dict]:
    """Build and time side by side a group of (name, scale, variant, provider[:attention]) rows."""
    batch = batch or cfg.batch
    fns, specs = {}, {}
    base_models: dict = {}
    if cfg.fast_compile or any(p.startswith("compile") for *_, p in group):
        torch._dynamo.reset()  # the previous group's compiled models are gone: drop their caches
    for name, scale, variant, provider in group:
        provider, _, attention = provider.partition(":")
        if (scale, variant) not in base_models:
            base_models[(scale, variant)] = build_variant(scale, variant).eval()
        model = base_models[(scale, variant)]
        try:
            (fn, extra), mem = _peak_memory(
                cfg.device, lambda: build(provider, model, cfg, batch, attention or "auto"))
        except Skip as e:
            cfg.log(f"  skipped {name} {provider}: {e}")
            if cfg.progress:
                cfg.progress(cfg.runs)
            continue
        extra.update(model_info(model, (scale, variant)), variant=variant)
        if memory:
            extra["peak_mem_mb"] = mem
            extra["peak_mem_note"] = ("torch.cuda.max_memory_allocated while building and running "
                                      "once, minus what was allocated before" if mem is not None
                                      else "not measured on CPU")
        key = f"{name}|{provider}"
        fns[key], specs[key] = fn, (name, provider, extra)
    if not fns:
        return []
    with torch.inference_mode():
        results = interleaved(fns, cfg.device, cfg.warmup, cfg.runs, cfg.rounds, cfg.progress)
    recs = _records(results, specs, cfg, experiment, batch)
    del fns
    gc.collect()
    if cfg.device.type == "cuda":
        torch.cuda.empty_cache()
    return recs


def baseline_rows(scale: str, providers=PROVIDERS) -> list[tuple]:
    return [(scale, scale, "", p) for p in providers]


ABLATION_GROUPS = ("attention", "pe", "mlp")


def ablation_groups(scale: str, which=ABLATION_GROUPS) -> list[list[tuple]]:
    """Side-by-side groups: attention (area vs global, fused vs unfused), pe kernel, MLP ratio."""
    attention = [(scale, scale, "", "eager"), (scale, scale, "", "fast"),
                 (f"{scale}/p4-global", scale, "p4-global", "eager"),
                 (f"{scale}/p4-global", scale, "p4-global", "fast"),
                 (f"{scale}/attn-reference", scale, "", "fast:reference")]
    pe = [(f"{scale}/pe{k}", scale, f"pe{k}", "fast") for k in PE_KERNELS]
    mlp = [(f"{scale}/mlp{r:g}", scale, f"mlp{r:g}", "fast") for r in MLP_RATIOS]
    groups = {"attention": attention, "pe": pe, "mlp": mlp}
    return [groups[w] for w in which]


def run_baselines(scales, cfg: Config, providers=PROVIDERS) -> list[dict]:
    recs = []
    for scale in scales:
        cfg.log(f"baselines {scale}: {', '.join(providers)}")
        recs += _measure(baseline_rows(scale, providers), cfg, "baseline")
    return recs


def run_onnx_file(path, cfg: Config) -> list[dict]:
    """``yolov12 bench model=FILE.onnx``: the file in onnxruntime, beside our fast path of the
    scale its metadata names (``yolov12 export`` writes it; latency does not depend on the
    weights, so a random-init model of that scale stands in), at the file's own input shape
    (a ``--dynamic`` file: ``cfg.size`` and ``cfg.batch``). Records as the baselines write them,
    with ``model_file``; a file without a scale is timed alone."""
    engine = OnnxModel(path, cfg.device)
    size = engine.fixed_shape or cfg.size
    batch = engine.fixed_batch or cfg.batch
    if engine.fixed_batch and cfg.batch not in (1, engine.fixed_batch):
        raise ValueError(f"--batch: {Path(path).name} takes batches of exactly "
                         f"{engine.fixed_batch} (a static export), not {cfg.batch}")
    cfg = dataclasses.replace(cfg, size=tuple(size), batch=batch)
    scale = engine.metadata.get("scale")
    name = scale if scale in SCALES else Path(path).stem
    x = torch.rand(batch, 3, *size)
    feed = {engine.input_name: x.numpy().astype(engine.input_type)}
    fns = {f"{name}|onnxruntime": lambda: engine.session.run(None, feed)}
    specs = {f"{name}|onnxruntime": (name, "onnxruntime", {
        "onnxruntime": engine.onnxruntime_version, "execution_provider": engine.execution_provider,
        "model_file": str(path)})}
    if scale in SCALES:
        variant = engine.metadata.get("variant")
        model = YOLOv12(scale, engine.nc, variant if variant in VARIANTS else "yolo12").eval()
        fn, extra = build("fast", model, cfg, batch)
        fns[f"{name}|fast"] = fn
        specs[f"{name}|fast"] = (name, "fast", dict(
            extra, variant="", **model_info(model, (scale, f"file:{engine.nc}:{variant}"))))
    else:
        cfg.log(f"  {Path(path).name} names no YOLOv12 scale in its metadata: timed alone")
    with torch.inference_mode():
        results = interleaved(fns, cfg.device, cfg.warmup, cfg.runs, cfg.rounds, cfg.progress)
    return _records(results, specs, cfg, "baseline", batch)


def run_ablations(scales, cfg: Config, which=ABLATION_GROUPS) -> list[dict]:
    recs = []
    for scale in scales:
        for group in ablation_groups(scale, which):
            cfg.log(f"ablation {scale}: {', '.join(sorted({g[0] for g in group}))}")
            recs += _measure(group, cfg, "ablation")
    return recs


def run_batch_sweep(scales, cfg: Config, batches=DEFAULT_BATCHES,
                    providers=BATCH_PROVIDERS) -> list[dict]:
    recs = []
    for scale in scales:
        for b in batches:
            cfg.log(f"batch sweep {scale}: batch {b}")
            recs += _measure(baseline_rows(scale, providers), cfg, "batch", batch=b, memory=True)
    return recs


def count_runs(scales, runs: int, suites, providers=PROVIDERS, batches=DEFAULT_BATCHES,
               batch_providers=BATCH_PROVIDERS, ablations=ABLATION_GROUPS) -> int:
    """Timed calls the suites will make (for the progress bar's total)."""
    n = 0
    for _ in scales:
        if "baselines" in suites:
            n += len(providers)
        if "ablations" in suites:
            n += sum(len(g) for g in ablation_groups("n", ablations))
        if "batch" in suites:
            n += len(batches) * len(batch_providers)
    return n * runs
