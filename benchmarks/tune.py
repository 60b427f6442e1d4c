"""Tune the fused conv / MLP / depthwise launch configurations on this GPU, in one short run.

    python -m benchmarks.tune --out DIR [--scales n s m l x] [--batches 1 32] [--dtype float16]
                              [--budget-s 220] [--workers N] [--dry-run] [--install]

Every distinct layer-shape class (``config_tables`` keys) of YOLOv12-n..x at 640 and the given
batches is a sweep item; its candidates are the heuristic configuration and its neighbours (one
block size, the warps, the stages, the split changed at a time), filtered by shared memory and
tl.dot's limits. Each candidate runs the layer's real launches (``launches`` of its kernel
family, with its epilogue and concat slice) captured in a CUDA graph, and is timed as the median
of many graph replays (CUDA events, ``yolov12.bench.records.time_ms``). A candidate that fails to
compile, runs out of resources or spills registers is dropped with its reason. The fastest
candidate of each class goes into ``DIR/<arch>.json`` (``config_tables`` format, with the device,
versions, date and commit), rewritten whole after every class (a run cut short keeps the classes
it tuned); ``DIR/candidates.jsonl`` keeps every timing. ``--install`` also writes
the table into the package (``yolov12_kernels/triton/configs/``), where ``conv_config`` & co. read
it.

Budget (H100/H200, fp16, n..x at b1 and b32): ``--dry-run`` prints the count of classes and
candidates and the estimated time without a GPU. Per candidate: its launches' roofline time
(``plan_report``, times ``SLOWDOWN``) x (warm-up + capture + ``REPS`` replays of a graph of
``inner`` calls) + ``OVERHEAD_S`` of host work (graph capture and instantiation, events, Python).
Compiling is the larger cost: every candidate variant is first compiled for the GPU in a pool of
``--workers`` processes (no driver needed), which fills Triton's cache before the timing loop;
``COMPILE_S`` per variant is the estimate. Classes run biggest first (roofline time x how often
the model runs them), and the sweep stops at ``--budget-s`` and writes what it has: classes left
out keep the heuristics.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch

SCALES = ("n", "s", "m", "l", "x")
REPS = 15            # graph replays timed per candidate (median)
TARGET_US = 200.0    # calls per captured graph: enough that one replay takes about this long
MAX_INNER = 20
OVERHEAD_S = 0.012   # host time per candidate: capture, instantiate, events, launches' set-up
SLOWDOWN = 2.0       # the roofline is a lower bound: assume kernels take twice as long
COMPILE_S = 2.0      # one Triton compile (LLVM + ptxas) of a variant, on one core


class ShapeClass(NamedTuple):
    kind: str            # "conv", "mlp", "dwconv"
    key: str             # config_tables key
    row: object          # conv_shapes.ConvShape measured
    next_row: object     # the mlp2 row after an mlp1 row (where the pair writes), else None
    batch: int
    count: int           # layers of this class over the scales and batches swept
    est_us: float        # roofline estimate of one call (heuristic configuration)


# ------------------------------------------------------------------------------------------------
# what to sweep
# ------------------------------------------------------------------------------------------------
def class_key(kind: str, r, batch: int, dtype: torch.dtype) -> str:
    from yolov12_kernels.triton import config_tables as T
    m = batch * r.ho * r.wo
    if kind == "conv":
        return T.conv_key(dtype, m, r.cout, r.cin, r.k, r.stride)
    if kind == "mlp":
        return T.mlp_key(dtype, m, r.cin, r.cout)
    return T.dwconv_key(dtype, m, r.cin, r.k, r.stride)


def shape_classes(rows_by_batch, dtype: torch.dtype, arch: str) -> list[ShapeClass]:
    """Distinct shape classes of ``[(batch, [(row, next_row), ...]), ...]``, biggest first
    (estimated time of one call x how often it occurs)."""
    from yolov12_kernels.triton import plan_report as P
    from yolov12_kernels.triton.conv_check import row_kind, row_launches
    found: dict[str, ShapeClass] = {}
    for batch, rows in rows_by_batch:
        for r, nxt in rows:
            kind = row_kind(r)
            if kind is None:
                continue
            key = class_key(kind, r, batch, dtype)
            if key in found:
                found[key] = found[key]._replace(count=found[key].count + 1)
                continue
            with _heuristics_only():
                runs = row_launches(r, batch, dtype, arch, next_row=nxt)
            est = sum(P.roofline_us(x, arch) for x in P.launch_rows(r.name, runs,
                                                                     dtype == torch.float32))
            found[key] = ShapeClass(kind, key, r, nxt, batch, 1, est)
    return sorted(found.values(), key=lambda c: -c.est_us * c.count)


def model_rows(scales, batches, imgsz: int = 640):
    from yolov12_kernels.conv_shapes import model_convs
    out = []
    for batch in batches:
        rows = []
        for scale in scales:
            conv_rows = model_convs(scale, imgsz)
            rows += list(zip(conv_rows, conv_rows[1:] + [None]))
        out.append((batch, rows))
    return out


class _heuristics_only:
    """No table is read inside the block: the sweep starts from (and compares with) the
    heuristics, whatever table is installed."""

    def __enter__(self):
        from yolov12_kernels.triton import config_tables
        self._cm = config_tables.tables_from("none")
        self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _pow2s(lo: int, hi: int) -> list[int]:
    out, b = [], lo
    while b <= hi:
        out.append(b)
        b *= 2
    return out


def conv_candidates(arch: str, dtype: torch.dtype, r, batch: int) -> list:
    """The heuristic configuration and its neighbours, one field changed at a time."""
    import triton

    from yolov12_kernels.triton import conv as K
    m = batch * r.ho * r.wo
    h = K.heuristic_config(arch, dtype, m, r.cout, r.cin, r.k, r.stride)
    fp32 = dtype == torch.float32
    k_red = r.k * r.k * r.cin if K.taps_in_k(r.k, r.cin) else r.cin
    out = [h]
    for bm in (h.block_m * 2, h.block_m // 2):
        out.append(h._replace(block_m=bm))
    for bn in (h.block_n * 2, h.block_n // 2):
        out.append(h._replace(block_n=bn))
    for bk in (h.block_k * 2, h.block_k // 2):
        out.append(h._replace(block_k=bk))
    out.append(h._replace(num_warps=8 if h.num_warps == 4 else 4))
    for st in (h.num_stages - 1, h.num_stages + 1):
        out.append(h._replace(num_stages=st))
    tiles = triton.cdiv(m, h.block_m) * triton.cdiv(r.cout, h.block_n)
    if h.split_k > 1:
        out += [h._replace(split_k=1), h._replace(split_k=h.split_k * 2)]
    elif tiles < K.ARCHS[arch][0]:
        out += [h._replace(split_k=s) for s in (2, 4)]
    elem = 4 if fp32 else 2
    smem = K.ARCHS[arch][1]
    ok = []
    for c in out:
        if (c.block_m < 16 or c.block_n < 16 or c.block_k < 16 or c.block_m > 256
                or c.block_n > (64 if fp32 else 256) or c.block_k > (32 if fp32 else 128)
                or c.block_n > 2 * triton.next_power_of_2(r.cout)
                or c.block_k > 2 * triton.next_power_of_2(k_red)
                or c.num_stages < 1 or c.num_stages > 5
                or c.num_stages * (c.block_m * c.block_k + c.block_k * c.block_n) * elem > smem
                or c.split_k > K.k_steps(r.k, r.cin, c.block_k)):
            continue
        ok.append(K.Config(*c))
    return list(dict.fromkeys(ok))


def mlp_candidates(arch: str, dtype: torch.dtype, r, batch: int) -> list:
    from yolov12_kernels.triton import mlp as Mk
    m = batch * r.h * r.w
    h = Mk.heuristic_config(r.cin, dtype, m, r.cout, arch)
    fused = h._replace(two_gemms=False) if not h.two_gemms else Mk.Config(32, 32, 64, 8, 1)
    out = [h, h._replace(two_gemms=not h.two_gemms) if not h.two_gemms else fused]
    for bm in (fused.block_m * 2, fused.block_m // 2):
        out.append(fused._replace(block_m=bm))
    for bh in (fused.block_h * 2, fused.block_h // 2):
        out.append(fused._replace(block_h=bh))
    for st in (fused.num_stages - 1, fused.num_stages + 1):
        out.append(fused._replace(num_stages=st))
    if fused.split_h > 1:
        out.append(fused._replace(split_h=1))
    ok = [Mk.Config(*c) for c in out if c.two_gemms or (
        16 <= c.block_m <= 64 and 16 <= c.block_h <= 128 and 1 <= c.num_stages <= 3
        and c.block_m * max(16, 1 << (r.cin - 1).bit_length()) <= 64 * 256)]
    return list(dict.fromkeys(ok))


def dwconv_candidates(arch: str, dtype: torch.dtype, r, batch: int) -> list:
    from yolov12_kernels.triton import dwconv as D
    h = D.heuristic_config(r.cin, batch * r.ho * r.wo, arch)
    out = [h]
    for bm in (h.block_m * 2, h.block_m // 2):
        out.append(h._replace(block_m=bm))
    for bc in (h.block_c * 2, h.block_c // 2):
        out.append(h._replace(block_c=bc))
    out.append(h._replace(num_warps=8 if h.num_warps == 4 else 2))
    ok = [D.Config(*c) for c in out if 8 <= c.block_m <= 64 and 8 <= c.block_c <= 128
          and c.block_m * c.block_c <= 64 * 64]
    return list(dict.fromkeys(ok))


CANDIDATES = {"conv": conv_candidates, "mlp": mlp_candidates, "dwconv": dwconv_candidates}


def candidates(sc: ShapeClass, dtype: torch.dtype, arch: str, limit: int | None = None) -> list:
    cands = CANDIDATES[sc.kind](arch, dtype, sc.row, sc.batch)
    return cands[:limit] if limit else cands


# ------------------------------------------------------------------------------------------------
# budget
# ------------------------------------------------------------------------------------------------
def inner_calls(est_us: float) -> int:
    return max(1, min(MAX_INNER, round(TARGET_US / max(est_us * SLOWDOWN, 1e-3))))


def candidate_seconds(est_us: float) -> float:
    """Estimated seconds to time one candidate (see the module docstring)."""
    inner = inner_calls(est_us)
    calls = 3 + inner + (2 + REPS) * inner  # warm-up, capture's own 3 + capture, replays
    return OVERHEAD_S + calls * est_us * SLOWDOWN * 1e-6


def estimate(classes, dtype, arch, workers: int, limit: int | None = None) -> dict:
    """Classes, candidates, distinct compiled variants and the estimated seconds of a sweep."""
    n_cand, timing, variants = 0, 0.0, set()
    for sc in classes:
        cands = candidates(sc, dtype, arch, limit)
        n_cand += len(cands)
        timing += len(cands) * candidate_seconds(sc.est_us)
        for c in cands:
            for run in _meta_launches(sc, dtype, arch, c):
                variants.add(_variant_key(run))
    compile_s = len(variants) * COMPILE_S / max(1, workers)
    return {"classes": len(classes), "candidates": n_cand, "variants": len(variants),
            "timing_s": timing, "compile_s": compile_s, "total_s": timing + compile_s}


def _variant_key(run) -> tuple:
    """What makes Triton compile a launch separately, approximately (its binder is exact but
    slow): the kernel, its constexprs and launch options, the dtypes, which integers are 1 or
    divisible by 16, which pointers are 16-byte aligned."""
    args = []
    for a in run.args:
        if isinstance(a, torch.Tensor):
            args.append((a.dtype, a.storage_offset() * a.element_size() % 16 == 0))
        elif isinstance(a, int) and not isinstance(a, bool):
            args.append((a == 1, a % 16 == 0))
        else:
            args.append(a is None)
    return (getattr(run.kernel, "__name__", str(run.kernel)), tuple(args),
            tuple(sorted(run.kwargs.items())))


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def _meta_launches(sc: ShapeClass, dtype, arch, config):
    from yolov12_kernels.triton.conv_check import row_launches
    with _heuristics_only():
        return row_launches(sc.row, sc.batch, dtype, arch, config=config, next_row=sc.next_row)


def _device_tensor_maker(device):
    def new(*shape, dtype, nchw=False):
        fmt = torch.contiguous_format if nchw or len(shape) != 4 else torch.channels_last
        # random values (not zeros: some units are faster on zeros); no inf at fp16 outputs
        return torch.empty(*shape, dtype=dtype, device=device, memory_format=fmt).normal_(0, 0.1)
    return new


def graph_time_us(fn: Callable[[], None], est_us: float, device) -> float:
    """Median µs of one call of ``fn``: ``inner`` calls captured in a CUDA graph, the graph
    replayed ``REPS`` times, each replay timed with CUDA events."""
    from yolov12.bench.records import cuda_graph_replay, time_ms
    inner = inner_calls(est_us)
    fn()  # compile (or load from Triton's cache) before the capture
    replay = cuda_graph_replay(fn, inner)
    return time_ms(replay, device, warmup=2, rep=REPS)["median_ms"] * 1e3 / inner


def run_once(runs) -> int:
    """Run the launches once (compiling them, or loading them from Triton's cache); the most
    bytes any of their compiled kernels spills (0 where Triton does not say: the interpreter)."""
    spilled = 0
    for k in runs:
        compiled = k.kernel[k.grid](*k.args, **k.kwargs)
        spilled = max(spilled, int(getattr(compiled, "n_spills", 0) or 0))
    return spilled


def sweep(classes, dtype: torch.dtype, arch: str, device, time_fn=None, deadline: float | None
          = None, limit: int | None = None, log: Callable[[dict], None] = lambda rec: None,
          progress: Callable[[str], None] = print,
          on_entry: Callable[[dict], None] = lambda entries: None) -> dict:
    """{key: table entry} of the fastest candidate of each class, timed with ``time_fn(fn,
    est_us, device) -> µs`` (``graph_time_us`` by default; tests inject a stub). Stops at
    ``deadline`` (time.monotonic()) and returns what it has. ``on_entry(entries)`` after each
    class tuned (main writes the table there: a run cut short keeps what it tuned)."""
    from yolov12_kernels.triton.conv_check import family_launches, row_tensors
    time_fn = time_fn or graph_time_us
    entries = {}
    new = _device_tensor_maker(device)
    for i, sc in enumerate(classes):
        if deadline is not None and time.monotonic() > deadline:
            progress(f"[tune] budget spent: {i}/{len(classes)} classes tuned")
            break
        cands = candidates(sc, dtype, arch, limit)
        tensors = row_tensors(sc.row, sc.batch, dtype, new=new, next_row=sc.next_row)
        timed = []
        for cand in cands:
            rec = {"key": sc.key, "config": list(cand), "layer": sc.row.name, "batch": sc.batch}
            try:
                with _heuristics_only():
                    runs = family_launches(sc.kind, tensors, config=cand, arch=arch)

                def fn(runs=runs):
                    for k in runs:
                        k.kernel[k.grid](*k.args, **k.kwargs)
                spilled = run_once(runs)
                if spilled:
                    raise RuntimeError(f"spills {spilled} B of registers")
                us = float(time_fn(fn, sc.est_us, device))
                rec["us"] = us
                timed.append((us, cand))
            except Exception as e:  # a candidate that cannot run is dropped, with why
                rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            log(rec)
        if not timed:
            progress(f"[tune] {sc.key}: no candidate ran")
            continue
        best_us, best = min(timed, key=lambda t: t[0])
        heuristic_us = next((us for us, c in timed if c == cands[0]), None)
        entries[sc.key] = {"config": list(best), "us": round(best_us, 3),
                           "heuristic_us": None if heuristic_us is None else round(heuristic_us, 3),
                           "candidates": len(timed), "count": sc.count,
                           "example": {"row": sc.row._asdict(), "batch": sc.batch,
                                       "next_row": sc.next_row._asdict() if sc.next_row else None}}
        progress(f"[tune] {i + 1}/{len(classes)} {sc.key}: {best_us:.2f} µs "
                 f"(heuristic {heuristic_us if heuristic_us is None else f'{heuristic_us:.2f}'}"
                 f") of {len(timed)}/{len(cands)}")
        on_entry(entries)
    return entries


# ------------------------------------------------------------------------------------------------
# compiling ahead (fills Triton's cache from a process pool; no driver needed)
# ------------------------------------------------------------------------------------------------
def _compile_one(item) -> str | None:
    """Worker: compile one candidate's launches for sm_``cc`` (errors are the sweep's to see)."""
    sc, dtype_name, arch, config, cc = item
    os.environ.pop("TRITON_INTERPRET", None)
    try:
        from yolov12_kernels.triton.conv_check import jit_compile
        for run in _meta_launches(sc, getattr(torch, dtype_name), arch, config):
            jit_compile(run.kernel, run.args, run.kwargs, cc)
    except Exception as e:
        return f"{type(e).__name__}: {e}"[:200]
    return None


def precompile(classes, dtype, arch, cc: int, workers: int, limit=None, deadline=None) -> int:
    """Compile every candidate variant in ``workers`` processes; how many items failed."""
    import concurrent.futures as cf
    import multiprocessing as mp
    items = [(sc, str(dtype).removeprefix("torch."), arch, c, cc)
             for sc in classes for c in candidates(sc, dtype, arch, limit)]
    failed = 0
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_compile_one, it) for it in items]
        for f in cf.as_completed(futures):
            failed += f.result() is not None
            if deadline is not None and time.monotonic() > deadline:
                for g in futures:
                    g.cancel()
                break
    return failed


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def table_meta(device, dtype, args, started: float, complete: bool, tuned: int, total: int) -> dict:
    from yolov12.bench.records import environment
    env = environment(device)
    return {"source": "tune", "dtype": str(dtype).removeprefix("torch."),
            "scales": args.scales, "batches": args.batches, "budget_s": args.budget_s,
            "seconds": round(time.monotonic() - started, 1), "complete": complete,
            "classes_tuned": tuned, "classes": total,
            **{k: env.get(k) for k in ("device", "torch", "triton", "cuda", "driver", "date",
                                       "git")}}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tune",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for <arch>.json and candidates.jsonl")
    ap.add_argument("--scales", nargs="+", default=list(SCALES), choices=SCALES)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--budget-s", type=float, default=220.0,
                    help="stop timing after this many seconds (the table has what was timed)")
    ap.add_argument("--workers", type=int, default=None,
                    help="compile processes (default: the cores, at most 16)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many candidates each")
    ap.add_argument("--arch", default=None, choices=["sm80", "sm86", "sm90"],
                    help="arch class (default: the GPU's; needed with --dry-run)")
    ap.add_argument("--dry-run", action="store_true",
                    help="count classes and candidates, estimate the time; no GPU needed")
    ap.add_argument("--install", action="store_true",
                    help="also write the table into yolov12_kernels/triton/configs/")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.budget_s <= 0:
        raise SystemExit(f"--budget-s: must be > 0, got {args.budget_s}")
    started = time.monotonic()
    dtype = getattr(torch, args.dtype)
    workers = args.workers or max(1, min(16, os.cpu_count() or 1))
    if args.dry_run or not torch.cuda.is_available():
        if not args.dry_run:
            print("tune: no CUDA GPU visible; nothing to measure (--dry-run estimates)")
            return 0
        arch = args.arch or "sm90"
        classes = shape_classes(model_rows(args.scales, args.batches), dtype, arch)
        e = estimate(classes, dtype, arch, workers, args.limit)
        print(f"tune --dry-run ({arch}, {args.dtype}, scales {' '.join(args.scales)}, batches "
              f"{' '.join(map(str, args.batches))}): {e['classes']} shape classes, "
              f"{e['candidates']} candidates, {e['variants']} compiled variants; estimated "
              f"{e['compile_s']:.0f} s compiling on {workers} processes + {e['timing_s']:.0f} s "
              f"timing = {e['total_s']:.0f} s")
        return 0
    from yolov12.atomic import atomic_path
    from yolov12_kernels.triton import config_tables
    from yolov12_kernels.triton.conv import arch_class
    device = torch.device("cuda")
    arch = args.arch or arch_class(device)
    cc = 10 * torch.cuda.get_device_capability(device)[0] + torch.cuda.get_device_capability(
        device)[1]
    deadline = started + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = shape_classes(model_rows(args.scales, args.batches), dtype, arch)
    failed = precompile(classes, dtype, arch, cc, workers, args.limit,
                        deadline=started + 0.7 * args.budget_s)
    print(f"[tune] {len(classes)} classes; compiled ahead in {time.monotonic() - started:.0f} s "
          f"({failed} candidates did not compile)", flush=True)
    path = out / f"{arch}.json"

    def write_table(entries: dict) -> dict:
        """The table as it stands, written whole (a kill mid-write leaves the previous one:
        the steps after a cut tune run read it)."""
        meta = table_meta(device, dtype, args, started, len(entries) == len(classes),
                          len(entries), len(classes))
        with atomic_path(path) as tmp:
            config_tables.write(tmp, meta, entries)
        config_tables.load.cache_clear()
        return meta

    def log_line(rec: dict) -> None:
        log.write(json.dumps(rec) + "\n")
        log.flush()
    with open(out / "candidates.jsonl", "a") as log, torch.inference_mode():
        entries = sweep(classes, dtype, arch, device, deadline=deadline, limit=args.limit,
                        log=log_line, on_entry=write_table)
    meta = write_table(entries)
    if args.install:
        config_tables.write(config_tables.TABLE_DIR / f"{arch}.json", meta, entries)
    gain = sum(e["count"] * (e["heuristic_us"] - e["us"]) for e in entries.values()
               if e["heuristic_us"] is not None)
    print(f"tune: {len(entries)}/{len(classes)} classes in {meta['seconds']:.0f} s -> {path}; "
          f"sum over the layers of (heuristic - best) = {gain:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
