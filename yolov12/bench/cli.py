"""``python -m yolov12 bench``: the latency suite — the paper's tables measured on this device.

Suites (``--suite``, comma-separated, or ``all``):
  baselines  every scale at --batch: the eager reference model, torch.compile of it (default and
             max-autotune), our fast path (``model.optimize``) and, on CUDA, the fast path replayed
             from a CUDA graph; on a CPU also the model exported to ONNX and run in onnxruntime —
             side by side, with speed-ups; feeds Tables 1 and 4 and the plot
  ablations  area vs global attention at P4, fused vs unfused attention, position-perceiver
             kernel 1..9 and MLP ratio 1.0..4.0 as latency / params / GFLOPs rows
  batch      batch sweep (--batches) with images/s and peak GPU memory
  predict    (not in 'all') what `yolov12 predict` delivers end to end on a folder of images
             (--source DIR; default: synthetic 1080p JPEGs it makes): images/s through the
             one-image loop, through Predictor.stream and through the command with saving on,
             each stage's time and how much decode hides behind inference, beside model-only
             latency (yolov12/bench/predict_suite.py); records in <out>/predict.jsonl

Method (like the paper's forward-only latency): random input already in the model's dtype and
layout, eval mode under ``torch.inference_mode``; ``--warmup`` untimed calls per provider, then
``--runs`` timed single calls per provider interleaved over ``--rounds`` rounds (CUDA events on a
GPU, ``perf_counter`` on the CPU); median and 20th/80th percentiles. No pre/post-processing and no
NMS are timed. A run prints a few lines first (each scale's latency and images/s with the fast
path, against the reference model), then the tables. Records go to ``<--out>/e2e.jsonl``, by
default a new ``runs/bench/<date-time>`` directory (``--out benchmarks/results`` adds them to the
committed records); ``--report`` re-renders the tables and the plot from records without timing
anything. The default on a CPU (every scale at 640, eager vs fast, 3 warm-up and 10 timed calls
each, and the exported model in onnxruntime) takes about 3.5 minutes on 2 cores. See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..architecture import SCALES
from ..cli_args import pick_device
from ..cli_info import parse_scales
from ..outputs import check_dir, check_file
from . import e2e, tables
from .plot import plot_latency_vs_params
from .records import TRACKED_RESULTS, append_records, load_records, new_run_dir

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
          "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
SUITES = ("baselines", "ablations", "batch")
EXTRA_SUITES = ("predict",)  # run only when named: minutes of decoding, not of the model
PLOT_NAME = "latency_vs_params.png"


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency suite: the paper's tables measured on this device",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--scale", dest="scales", default=None,
                   help="scales, comma-separated, or 'all' (default: all; n with --quick); or an "
                        "exported FILE.onnx: the file in onnxruntime beside our fast path of its "
                        "scale, at the file's input shape")
    p.add_argument("--suite", default=None,
                   help=f"comma-separated from {','.join(SUITES)}, or 'all' "
                        "(default: baselines; all with --quick), or predict (named alone or "
                        "beside others; not part of all)")
    p.add_argument("--source", default=None, metavar="DIR",
                   help="suite predict: a folder of images (default: synthetic 1920x1080 JPEGs "
                        "made for the run)")
    p.add_argument("--workers", type=int, default=None,
                   help="suite predict: decode threads of the pipeline (default: predict's, "
                        "pipeline.auto_workers: on a CPU the cores the model's threads leave "
                        "free, at most 2; 2 on a GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or N (default: cuda when "
                   "present)")
    p.add_argument("--dtype", default=None,
                   help="float32, float16, bfloat16 (or fp32/fp16/bf16), comma-separated to run "
                        "several, e.g. float32,float16 for Table 4 (default: float16 on CUDA, "
                        "float32 on CPU)")
    p.add_argument("--batch", type=int, default=1, help="batch for baselines/ablations (default 1)")
    p.add_argument("--batches", default=None,
                   help="batch sweep sizes, comma-separated (default 1,2,4,8,16,32,64 on CUDA, "
                        "1,2,4,8 on CPU, 1,2,4 with --quick)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None,
                   help="image size: one value (square) or H W; multiples of 32 "
                        "(default 640; 160 with --quick)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed calls per provider (default 3 CPU / 50 GPU)")
    p.add_argument("--runs", type=int, default=None,
                   help="timed calls per provider (default 10 CPU / 200 GPU)")
    p.add_argument("--rounds", type=int, default=5,
                   help="the runs are interleaved across providers in this many rounds (default 5)")
    p.add_argument("--providers", default=None,
                   help="baseline providers, comma-separated from eager,eager-graph,compile,"
                        "compile-max-autotune,fast-noconv,fast-noconv-graph,fast,fast-graph,"
                        "onnxruntime (default: all that run here: the -graph and -noconv ones "
                        "need CUDA, compile the --compile switch, onnxruntime is a CPU default; "
                        "fast-noconv = the fast path without the fused conv kernels, "
                        "onnxruntime = the model exported to ONNX and run in onnxruntime)")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="time the torch.compile baselines (default on CUDA; off on CPU, where "
                        "inductor's C++ build takes minutes)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the torch.compile baselines")
    p.add_argument("--ablations", default="attention,pe,mlp",
                   help="ablation groups to run, comma-separated (default attention,pe,mlp): "
                        "attention = area vs global at P4 and fused vs unfused attention")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend of the compile baselines (default inductor; "
                        "'eager' or 'aot_eager' check tracing only, e.g. in tests)")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="memory format of the fast path (default auto: on for CPU, off for CUDA)")
    p.add_argument("--fast-compile", default=None,
                   choices=("default", "reduce-overhead", "max-autotune",
                            "max-autotune-no-cudagraphs"),
                   help="also torch.compile the fast path with this mode (recorded as "
                        "fast_compile; fast-graph is then skipped)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for PyTorch (torch.set_num_threads; default: PyTorch's). "
                        "On a busy machine fewer threads than cores avoids OpenMP threads waiting "
                        "on each other; recorded in every record")
    p.add_argument("--quick", action="store_true",
                   help="about a minute on a CPU: scale n, 160x160, every suite, few runs")
    p.add_argument("--label", default="", help="free text stored in every record")
    p.add_argument("--out", default=None, help="directory for the JSONL records and the plot "
                   "(default: a new runs/bench/<date-time>; benchmarks/results adds to the "
                   "committed records; 'none' writes nothing, also with --report)")
    p.add_argument("--plot", default=None,
                   help=f"PNG path for latency vs params (default <out>/{PLOT_NAME})")
    p.add_argument("--report", action="store_true",
                   help="no timing: render the tables and the plot from the records in --out "
                        "(default: the repository's benchmarks/results, wherever this runs from) "
                        "and any --results files; the plot goes beside them unless --out none")
    p.add_argument("--results", nargs="*", default=[],
                   help="extra .jsonl files or directories to merge into --report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------------------

def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def resolve(args):
    """Validated settings from the parsed arguments (SystemExit naming the option at fault)."""
    device = pick_device(args.device)  # cpu or an existing CUDA device, else one line
    gpu = device.type == "cuda"
    if args.dtype:
        bad = [d for d in _csv(args.dtype) if d not in DTYPES]
        if bad or not _csv(args.dtype):
            raise SystemExit(f"--dtype: unknown {bad or args.dtype!r}; choose from "
                             f"{', '.join(sorted(DTYPES))}")
        dtypes = list(dict.fromkeys(DTYPES[d] for d in _csv(args.dtype)))
    else:
        dtypes = [torch.float16 if gpu else torch.float32]
    if not gpu and any(d == torch.float16 for d in dtypes):
        print("note: float16 on the CPU is emulated and slow; it is measured as asked",
              file=sys.stderr)
    imgsz = args.imgsz or ([160] if args.quick else [640])
    if len(imgsz) not in (1, 2):
        raise SystemExit("--imgsz: give one size (square) or two (H W)")
    h, w = (imgsz * 2)[:2]
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise SystemExit(f"--imgsz: sides must be positive multiples of 32, got {h}x{w}")
    if args.batch < 1:
        raise SystemExit(f"--batch: must be >= 1, got {args.batch}")
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 50 if gpu else 3)
    runs = args.runs if args.runs is not None else (5 if args.quick else 200 if gpu else 10)
    if runs < 1 or warmup < 0:
        raise SystemExit("--runs must be >= 1 and --warmup >= 0")
    if args.rounds < 1:
        raise SystemExit(f"--rounds: must be >= 1, got {args.rounds}")
    onnx_file = None
    if args.scales and args.scales.lower().endswith(".onnx"):
        onnx_file = Path(args.scales)
        if not onnx_file.is_file():
            raise SystemExit(f"--model: no such file {args.scales!r}")
        if args.suite or args.providers:
            raise SystemExit(f"--model {onnx_file.name}: an ONNX file is timed against our fast "
                             "path alone; drop " + ("--suite" if args.suite else "--providers"))
        if args.imgsz:
            _check_onnx_size(onnx_file, (h, w))
    suites = _csv(args.suite or ("all" if args.quick else "baselines"))
    suites = [x for s in suites for x in (SUITES if s == "all" else [s])]
    bad = [s for s in suites if s not in SUITES + EXTRA_SUITES]
    if bad or not suites:
        raise SystemExit(f"--suite: unknown {bad or args.suite!r}; choose from "
                         f"{','.join(SUITES + EXTRA_SUITES)} or 'all'")
    only_predict = suites == ["predict"]
    scales = [] if onnx_file else parse_scales(
        args.scales or ("n" if args.quick or only_predict else "all"))
    if args.source is not None and not Path(args.source).is_dir():
        raise SystemExit(f"--source: not a folder of images: {args.source!r}")
    if args.workers is not None and args.workers < 0:
        raise SystemExit(f"--workers: must be >= 0, got {args.workers}")
    compile_ok = gpu if args.compile is None else args.compile
    if args.providers:  # as asked: one that cannot run here is skipped with its reason
        providers = _csv(args.providers)
        bad = [p for p in providers if p not in e2e.PROVIDERS]
        if bad or not providers:
            raise SystemExit(f"--providers: unknown {bad or args.providers!r}; choose from "
                             f"{','.join(e2e.PROVIDERS)}")
    else:  # only what runs here, so that the progress bar's total (and its ETA) is the work
        providers = [p for p in e2e.PROVIDERS
                     if (gpu or p not in e2e.GRAPH_PROVIDERS + e2e.NOCONV_PROVIDERS)
                     and (not gpu or p not in e2e.CPU_ONLY_DEFAULTS)
                     and (compile_ok or not p.startswith("compile"))]
    batch_providers = [p for p in e2e.BATCH_PROVIDERS if gpu or p not in e2e.GRAPH_PROVIDERS]
    if args.batches:
        try:
            batches = [int(b) for b in _csv(args.batches)]
        except ValueError:
            raise SystemExit(f"--batches: expected comma-separated ints, got {args.batches!r}")
        if not batches or min(batches) < 1:
            raise SystemExit(f"--batches: sizes must be >= 1, got {args.batches!r}")
    else:
        batches = [1, 2, 4] if args.quick else list(e2e.DEFAULT_BATCHES) if gpu else [1, 2, 4, 8]
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads: must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    ablations = _csv(args.ablations)
    bad = [a for a in ablations if a not in e2e.ABLATION_GROUPS]
    if bad or not ablations:
        raise SystemExit(f"--ablations: unknown {bad or args.ablations!r}; choose from "
                         f"{','.join(e2e.ABLATION_GROUPS)}")
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    return dict(device=device, dtypes=dtypes, size=(h, w), warmup=warmup, runs=runs,
                onnx_file=onnx_file,
                scales=scales, suites=suites, providers=providers, batches=batches,
                batch_providers=batch_providers,
                compile_ok=compile_ok, channels_last=channels_last, ablations=ablations)


def _check_onnx_size(path: Path, size: tuple[int, int]) -> None:
    """A static file takes one input shape: an --imgsz that differs is refused (as predict does)
    instead of timing the file's own size under a bar that says another."""
    from ..onnx_model import OnnxModel
    try:
        fixed = OnnxModel(path).fixed_shape
    except (ImportError, ValueError) as e:
        raise SystemExit(f"--model: {str(e).removeprefix('model: ')}") from e
    if fixed and tuple(fixed) != tuple(size):
        raise SystemExit(f"--imgsz: {path.name} takes exactly {fixed[0]}x{fixed[1]} inputs (a "
                         f"static export), not {size[0]}x{size[1]}; drop --imgsz, or export with "
                         "--dynamic")


def _predict_suite(args, s, out) -> None:
    from .predict_suite import render, run_predict_suite
    recs = []
    for scale in s["scales"]:
        try:
            recs += run_predict_suite(scale, s["device"], args.source, imgsz=max(s["size"]),
                                      batch=args.batch, workers=args.workers,
                                      rounds=args.rounds, log=print, label=args.label)
        except ValueError as e:
            raise SystemExit(f"--{e}") from e
    print(render(recs))
    if out is not None and recs:
        path = append_records(recs, "predict", out, stem="predict")
        print(f"\n{len(recs)} records written to {path}")


def _out_dir(args) -> Path | None:
    if args.out == "none":
        return None
    return Path(args.out) if args.out else new_run_dir("bench")


def _alone(records: list[dict]) -> str:
    """Rows the tables do not show: a file whose metadata names no YOLOv12 scale is timed alone,
    under its own name."""
    rows = [r for r in records if r.get("name") not in SCALES]
    return "\n".join(
        f"  {r['name']} ({r['provider']}, {r['dtype']}, input {'x'.join(map(str, r['shape']))}): "
        f"{r['median_ms']:.2f} ms per batch (median; p20 {r['p20_ms']:.2f}, p80 "
        f"{r['p80_ms']:.2f}), {r['batch'] * 1e3 / r['median_ms']:.1f} images/s" for r in rows)


def run(args) -> int:
    if args.report:
        return report(args)
    s = resolve(args)
    out = _out_dir(args)
    if out is not None:  # before any timing: a file there, or a folder that takes no files
        check_dir(out, "--out")
    if args.plot:
        check_file(args.plot, "--plot", PLOT_NAME)
    records: list[dict] = []
    if "predict" in s["suites"]:
        _predict_suite(args, s, out)
        s["suites"] = [x for x in s["suites"] if x != "predict"]
        if not s["suites"]:
            return 0
    n_runs = 2 * s["runs"] if s["onnx_file"] else e2e.count_runs(
        s["scales"], s["runs"], s["suites"], s["providers"], s["batches"], s["batch_providers"],
        ablations=s["ablations"])
    bar = tqdm(total=n_runs * len(s["dtypes"]), desc="bench", unit="run",
               disable=args.no_progress)
    log = (lambda msg: bar.write(msg)) if not args.no_progress else print
    run_id = None
    for dtype in s["dtypes"]:
        cfg = e2e.Config(device=s["device"], dtype=dtype, size=s["size"], batch=args.batch,
                         warmup=s["warmup"], runs=s["runs"], rounds=args.rounds,
                         compile_ok=s["compile_ok"], channels_last=s["channels_last"],
                         fast_compile=args.fast_compile, compile_backend=args.compile_backend,
                         progress=bar.update, log=log,
                         label=args.label)
        if run_id:
            cfg.run_id = run_id  # one id for the whole invocation
        run_id = cfg.run_id
        bar.set_postfix_str(f"{str(dtype).replace('torch.', '')} {s['size'][0]}x{s['size'][1]}")
        if s["onnx_file"]:
            try:
                records += e2e.run_onnx_file(s["onnx_file"], cfg)
            except (ImportError, ValueError) as e:
                msg = str(e).removeprefix("model: ")
                raise SystemExit(msg if msg.startswith("--") else f"--model: {msg}") from e
            continue
        if "baselines" in s["suites"]:
            records += e2e.run_baselines(s["scales"], cfg, s["providers"])
        if "ablations" in s["suites"]:
            records += e2e.run_ablations(s["scales"], cfg, s["ablations"])
        if "batch" in s["suites"]:
            records += e2e.run_batch_sweep(s["scales"], cfg, s["batches"], s["batch_providers"])
    bar.close()
    summary = "\n\n".join(filter(None, [tables.summary(records), _alone(records)]))
    print(("\n" + summary + "\n") if summary else "")
    print(tables.render_all(records, with_table4=False))
    if out is not None and records:
        path = append_records(records, "e2e", out, stem="e2e")
        print(f"\n{len(records)} records written to {path}")
        _merged_outputs(args, out)
    return 0


def _merged_outputs(args, out: Path) -> None:
    """Table 4 and the plot from this run's records beside the committed ones (other devices)."""
    sources = [out] + [p for p in (TRACKED_RESULTS, *map(Path, args.results))
                       if p.exists() and p.resolve() != out.resolve()]
    recs = load_records(sources)
    t4 = tables.table4(recs)
    if t4:
        print(f"\nThis run beside the records in {', '.join(map(str, sources[1:])) or '-'}:"
              f"\n\n{t4}")
    path = plot_latency_vs_params(recs, args.plot or out / PLOT_NAME)
    if path:
        print(f"\nplot: {path}")


def report(args) -> int:
    """Tables and plot from recorded results only: the records in ``--out`` (default: the
    repository's committed ones, found from the package, not the current folder) and
    ``--results``; the plot goes beside them, or to ``--plot``. ``--out none`` reads the committed
    records and writes nothing (unless ``--plot`` names a file)."""
    write = args.out != "none"
    out = Path(args.out) if args.out and write else TRACKED_RESULTS
    missing = [p for p in [out, *map(Path, args.results)] if not p.exists()]
    if missing:
        where = ("the repository's benchmarks/results, which this installation does not have"
                 if out == TRACKED_RESULTS and out in missing else ", ".join(map(str, missing)))
        raise SystemExit(f"--report: no such records: {where}; give --out DIR (a folder of "
                         ".jsonl records) or --results FILE")
    if args.plot:
        check_file(args.plot, "--plot", PLOT_NAME)
    try:
        recs = load_records([out, *map(Path, args.results)])
    except ValueError as e:
        raise SystemExit(f"--report: {e}") from None
    if not any(r.get("suite") == "e2e" for r in recs):
        raise SystemExit(f"--report: no e2e records in {', '.join(map(str, [out, *args.results]))}")
    print(tables.render_all(recs))
    plot = args.plot or (out / PLOT_NAME if write else None)
    path = plot_latency_vs_params(recs, plot) if plot else None
    if path:
        print(f"\nplot: {path}")
    return 0
