"""Area-attention benchmark at the YOLOv12 shapes (640x640 input, head_dim 32).

    python -m benchmarks.bench_attention [--out DIR] [--quick] [--scales n s ...]
                                         [--batches 1 8 32] [--dtypes float16 bfloat16]
                                         [--passes fwd fwd+bwd] [--graph] [--kernel-time]
                                         [--layouts contiguous channels_last]

Two families, named as in docs/design.md (records appended to <out>/kernel.jsonl):

* ``area_attention/<P4|P5>/<scale>`` — the drop-in op on q, k, v of shape (B, N, heads, 32):
  ``triton`` and ``cuda`` (our public op with that backend), ``sdpa-flash``, ``sdpa-efficient``,
  ``sdpa-cudnn``, ``sdpa-math`` (F.scaled_dot_product_attention pinned with
  ``torch.nn.attention.sdpa_kernel`` on the same inputs split into areas, a free reshape),
  ``flex`` (compiled FlexAttention over all N tokens with a block-diagonal mask) and ``flash-attn``
  (``flash_attn_func``, if installed);
* ``aattn/<P4|P5>/<scale>`` — AAttn's attention core on the model layout, qkv (B, 3C, H, W) ->
  attention + pe(v) in (B, C, H, W): ``triton``, ``cuda`` and ``eager``, the public YOLO12 AAttn
  code path (flatten/transpose/reshape, q^T k * scale, softmax, v @ attn^T, permutes,
  ``.contiguous()``, the 7x7 depthwise conv, the add). Each case in both memory formats of qkv
  (``--layouts``): ``contiguous`` (NCHW, the model without the fused convs) and ``channels_last``
  (the fused NHWC path's; the name column shows ``[cl]``); the record's ``layout`` says which,
  and ``make_dispatch_table`` ranks each format from its own records.

P4 is 40x40 tokens in 4 areas, P5 20x20 in one; heads per scale as in yolov12_facts.md. Each row
prints the median (p20, p80) in ms, the speed-up over the best *other* provider of the same row
group, and the fraction of the memory-bandwidth roofline: the bytes the op must move (forward:
read q, k, v, write the output; forward+backward adds reading q, k, v, o, dO and writing dq, dk, dv:
12 tensors of the output's size in all) over the measured device-to-device copy bandwidth, divided
by the measured time. Inputs rotate over a ring of copies larger than the L2 cache, so small
batches are not flattered by a warm cache; ``--graph`` instead replays each call from a CUDA graph
(no host launch overhead counted, one input set); ``--kernel-time`` times each row both ways and
prints the graph-replayed (kernel-only) median and its roofline fraction beside the eager one,
so host overhead and kernel time are read off one table. A provider that cannot run (backend missing,
SDPA kernel refusing the shape/dtype) is skipped with a note, never silently replaced.

Without a GPU the script prints one line and exits with status 0.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from yolov12.bench.records import (
    append_records,
    cuda_graph_replay,
    make_record,
    new_run_dir,
    time_ms,
)
from yolov12_kernels import shapes
from yolov12_kernels.shapes import HEAD_DIM, HEADS

LEVELS = {lvl: (side, side, area) for lvl, (side, area) in shapes.LEVELS.items()}  # (H, W, area)
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
PASSES = ("fwd", "fwd+bwd")
DROP_IN_PROVIDERS = ("triton", "cuda", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math",
                     "flex", "flash-attn")
AATTN_PROVIDERS = ("triton", "cuda", "eager")
LAYOUTS = ("contiguous", "channels_last")  # qkv's memory format (aattn family)


@dataclass
class Case:
    family: str  # "area_attention" or "aattn"
    level: str
    scale: str
    batch: int
    dtype: torch.dtype
    passname: str
    layout: str = "contiguous"  # qkv's memory format (aattn); the drop-in tensors are (B, N, h, d)

    @property
    def heads(self) -> int:
        return HEADS[self.scale][0 if self.level == "P4" else 1]

    @property
    def geometry(self):
        return LEVELS[self.level]

    @property
    def name(self) -> str:
        return f"{self.family}/{self.level}/{self.scale}"

    @property
    def shape(self) -> list:
        H, W, _ = self.geometry
        if self.family == "aattn":
            return [self.batch, 3 * self.heads * HEAD_DIM, H, W]
        return [self.batch, H * W, self.heads, HEAD_DIM]

    def bytes_moved(self) -> int:
        """Minimum traffic of the op in bytes (see the module docstring)."""
        H, W, _ = self.geometry
        es = torch.empty((), dtype=self.dtype).element_size()
        unit = self.batch * H * W * self.heads * HEAD_DIM * es  # one (B, C, H, W) tensor
        return (4 if self.passname == "fwd" else 12) * unit


@dataclass
class Result:
    provider: str
    timing: dict | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# the baselines' math (also used by tests/test_bench_attention.py on CPU)
# ------------------------------------------------------------------------------------------------
def sdpa_area(q, k, v, area: int):
    """SDPA per area on (B, N, heads, d): areas are a free reshape to (B*area, heads, n, d)."""
    B, N, heads, d = q.shape
    n = N // area

    def chunks(t):
        return t.reshape(B * area, n, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(chunks(q), chunks(k), chunks(v))
    return out.transpose(1, 2).reshape(B, N, heads, d)


def eager_aattn(qkv, num_heads: int, area: int, pe_weight, pe_bias):
    """The public YOLO12 AAttn forward between the qkv and proj convs (its non-flash path)."""
    B, C3, H, W = qkv.shape
    C = C3 // 3
    N = H * W
    head_dim = C // num_heads
    qkv = qkv.flatten(2).transpose(1, 2)
    if area > 1:
        qkv = qkv.reshape(B * area, N // area, C3)
        B, N, _ = qkv.shape
    q, k, v = (qkv.view(B, N, num_heads, head_dim * 3).permute(0, 2, 3, 1)
               .split([head_dim, head_dim, head_dim], dim=2))
    attn = (q.transpose(-2, -1) @ k) * (head_dim ** -0.5)
    attn = attn.softmax(dim=-1)
    x = v @ attn.transpose(-2, -1)
    x = x.permute(0, 3, 1, 2)
    v = v.permute(0, 3, 1, 2)
    if area > 1:
        x = x.reshape(B // area, N * area, C)
        v = v.reshape(B // area, N * area, C)
        B, N, _ = x.shape
    x = x.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
    v = v.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
    ks = pe_weight.shape[-1]
    return x + F.conv2d(v, pe_weight, pe_bias, padding=ks // 2, groups=C)


# ------------------------------------------------------------------------------------------------
# providers: each builder returns (fn(inputs) -> output tensor) or raises _Skip(reason)
# ------------------------------------------------------------------------------------------------
class _Skip(Exception):
    pass


def _our_backend(name: str, op: str, case: Case, device):
    from yolov12_kernels import dispatch
    mod, reason = dispatch.load(name)
    if mod is None:
        raise _Skip(reason)
    reason = mod.unsupported(op, torch.device(device), case.dtype, HEAD_DIM,
                             case.passname != "fwd")
    if reason:
        raise _Skip(reason)


def drop_in_fn(provider: str, case: Case, device="cuda") -> Callable:
    import yolov12_kernels
    area = case.geometry[2]
    if provider in ("triton", "cuda"):
        _our_backend(provider, "area_attention", case, device)
        return lambda q, k, v: yolov12_kernels.area_attention(q, k, v, area, backend=provider)
    if provider.startswith("sdpa-"):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = {"sdpa-flash": SDPBackend.FLASH_ATTENTION,
                   "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
                   "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
                   "sdpa-math": SDPBackend.MATH}[provider]

        def run(q, k, v):
            with sdpa_kernel(backend):
                return sdpa_area(q, k, v, area)
        return run
    if provider == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        H, W, _ = case.geometry
        N = H * W
        n = N // area

        def same_area(b, h, q_idx, kv_idx):
            return q_idx // n == kv_idx // n
        mask = create_block_mask(same_area, None, None, N, N, device=str(device))
        # Every case compiles flex_attention's one code object again (new shape/dtype/grad mode);
        # past dynamo's recompile limit (8) further cases would silently run it uncompiled, i.e.
        # the unfused scores-materialising fallback. Each case starts from an empty cache instead.
        torch._dynamo.reset()
        flex = torch.compile(flex_attention, dynamic=False)

        def run(q, k, v):  # flex takes (B, heads, N, d): transposed views, no copies
            out = flex(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask)
            return out.transpose(1, 2)
        return run
    if provider == "flash-attn":
        try:
            from flash_attn import flash_attn_func
        except ImportError as e:
            raise _Skip(f"flash-attn is not installed ({e})")
        if case.dtype not in (torch.float16, torch.bfloat16):
            raise _Skip("flash-attn takes float16/bfloat16 only")

        def run(q, k, v):
            B, N, heads, d = q.shape
            n = N // area
            def chunks(t):
                return t.reshape(B * area, n, heads, d)
            out = flash_attn_func(chunks(q), chunks(k), chunks(v))
            return out.reshape(B, N, heads, d)
        return run
    raise ValueError(f"provider: unknown drop-in provider {provider!r}")


def aattn_fn(provider: str, case: Case, device="cuda") -> Callable:
    import yolov12_kernels
    heads, area = case.heads, case.geometry[2]
    if provider in ("triton", "cuda"):
        _our_backend(provider, "fused_area_attention", case, device)
        return lambda qkv, w, b: yolov12_kernels.fused_area_attention(qkv, heads, area, w, b,
                                                                      backend=provider)
    if provider == "eager":
        return lambda qkv, w, b: eager_aattn(qkv, heads, area, w, b)
    raise ValueError(f"provider: unknown aattn provider {provider!r}")


def make_inputs(case: Case, device) -> tuple:
    """One input set; requires_grad on everything differentiable for the fwd+bwd pass."""
    grad = case.passname != "fwd"
    H, W, _ = case.geometry
    C = case.heads * HEAD_DIM

    def rnd(*shape, scale=1.0, fmt=torch.contiguous_format):
        t = torch.randn(*shape, device=device, dtype=case.dtype) * scale
        return t.contiguous(memory_format=fmt).requires_grad_(grad)
    if case.family == "aattn":
        fmt = torch.channels_last if case.layout == "channels_last" else torch.contiguous_format
        return (rnd(case.batch, 3 * C, H, W, fmt=fmt), rnd(C, 1, 7, 7, scale=1 / 7), rnd(C))
    return tuple(rnd(*case.shape) for _ in range(3))


def timed_callable(fn: Callable, case: Case, input_sets: list) -> Callable[[], object]:
    """A no-argument callable running one pass on the next input set of the ring."""
    state = {"i": 0}
    grads = {}

    def one():
        state["i"] = (state["i"] + 1) % len(input_sets)
        ins = input_sets[state["i"]]
        out = fn(*ins)
        if case.passname == "fwd":
            return out
        g = grads.get(out.shape)
        if g is None:
            g = grads[out.shape] = torch.randn_like(out)
        # autograd.grad, not .backward(): no accumulation into .grad (and CUDA-graph safe)
        return torch.autograd.grad(out, ins, g)
    return one


# ------------------------------------------------------------------------------------------------
# records and table (pure functions; tested on CPU with fake timings)
# ------------------------------------------------------------------------------------------------
def providers_for(family: str) -> tuple:
    return DROP_IN_PROVIDERS if family == "area_attention" else AATTN_PROVIDERS


def build_records(case: Case, results: list[Result], device, copy_bw: float,
                  graph: bool = False) -> list[dict]:
    """Records (docs/design.md) for one row group, with speed-up vs the best other provider and the
    roofline fraction."""
    timed = [r for r in results if r.timing is not None]
    moved = case.bytes_moved()
    records = []
    for r in timed:
        others = [o.timing["median_ms"] for o in timed if o.provider != r.provider]
        best_other = min(others) if others else None
        speedup = best_other / r.timing["median_ms"] if best_other else None
        roof = moved / copy_bw / (r.timing["median_ms"] * 1e-3) if copy_bw else None
        graph_ms = r.extra.get("graph_median_ms")
        extra = dict(r.extra)
        if graph_ms and copy_bw:
            extra["graph_roofline_fraction"] = round(moved / copy_bw / (graph_ms * 1e-3), 4)
        records.append(make_record(
            suite="kernel", name=case.name, provider=r.provider, device=device,
            dtype=case.dtype, batch=case.batch, shape=case.shape, timing=r.timing,
            **{"pass": case.passname}, area=case.geometry[2], heads=case.heads,
            head_dim=HEAD_DIM, bytes_moved=moved,
            **({"layout": case.layout} if case.family == "aattn" else {}),
            copy_bw_gbs=round(copy_bw / 1e9, 1) if copy_bw else None,
            roofline_fraction=round(roof, 4) if roof is not None else None,
            speedup_vs_best_other=round(speedup, 3) if speedup is not None else None,
            cuda_graph=graph, **extra))
    return records


HEADER = (f"{'name':<24} {'dtype':<9} {'batch':>5} {'pass':<8} {'provider':<15} {'median':>8} "
          f"{'p20':>8} {'p80':>8} {'speedup':>8} {'roof':>6}")


KERNEL_TIME_HEADER = f" {'graph':>8} {'roof(g)':>7}"


def _kernel_time_columns(rec: dict) -> str:
    """The kernel-only (CUDA-graph) median and its roofline fraction, when measured."""
    if rec.get("graph_median_ms") is None:
        return ""
    roof = rec.get("graph_roofline_fraction")
    return (f" {rec['graph_median_ms']:>8.4f} "
            f"{(f'{100 * roof:.0f}%' if roof is not None else '-'):>7}")


def format_rows(records: list[dict], skipped: list[Result] = ()) -> list[str]:
    """Table lines for one row group (records as from build_records), fastest first."""
    lines = []
    for rec in sorted(records, key=lambda r: r["median_ms"]):
        sp = rec.get("speedup_vs_best_other")
        roof = rec.get("roofline_fraction")
        name = rec["name"] + (" [cl]" if rec.get("layout") == "channels_last" else "")
        lines.append(
            f"{name:<24} {rec['dtype']:<9} {rec['batch']:>5} {rec['pass']:<8} "
            f"{rec['provider']:<15} {rec['median_ms']:>8.4f} {rec['p20_ms']:>8.4f} "
            f"{rec['p80_ms']:>8.4f} {(f'{sp:.2f}x' if sp else '-'):>8} "
            f"{(f'{100 * roof:.0f}%' if roof is not None else '-'):>6}"
            + _kernel_time_columns(rec))
    for r in skipped:
        lines.append(f"{'':<24} {'':<9} {'':>5} {'':<8} {r.provider:<15} skipped: {r.note}")
    return lines


# ------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------
def _check(case: Case, out, ref) -> str | None:
    """A provider that computes something else must not be timed: compare with the reference."""
    tol = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 1e-1}[case.dtype]
    err = (out.float() - ref.float()).abs().max().item()
    return None if err <= tol else f"wrong result (max error {err:.3g} > {tol})"


def measure_case(case: Case, device, rep: int, l2_bytes: int, graph: bool,
                 providers=None, kernel_time: bool = False) -> list[Result]:
    """Time each provider of ``case`` (eager, rotated inputs; ``graph``: replayed from a CUDA
    graph instead; ``kernel_time``: both, the graph median in ``extra["graph_median_ms"]``)."""
    from yolov12_kernels import reference
    names = providers_for(case.family) if providers is None else providers
    build = drop_in_fn if case.family == "area_attention" else aattn_fn
    # one input set = qkv's worth of bytes: 3 of the 4 (fwd) or 12 (fwd+bwd) units moved
    set_bytes = case.bytes_moved() // (4 if case.passname == "fwd" else 12) * 3
    n_sets = 1 if graph else max(1, min(64, math.ceil(4 * l2_bytes / set_bytes)))
    input_sets = [make_inputs(case, device) for _ in range(n_sets)]
    ins = input_sets[0]
    with torch.no_grad():
        if case.family == "aattn":
            ref = reference.fused_area_attention(ins[0].float(), case.heads, case.geometry[2],
                                                 ins[1].float(), ins[2].float())
        else:
            ref = reference.area_attention(*(t.float() for t in ins), case.geometry[2])
    results = []
    for name in names:
        try:
            fn = build(name, case, device)
            with torch.no_grad():
                bad = _check(case, fn(*ins), ref)
            if bad:
                raise _Skip(bad)
            one = timed_callable(fn, case, input_sets)
            for _ in range(3):  # compiles, autotuning
                one()
            if graph:
                one = cuda_graph_replay(one)
            result = Result(name, time_ms(one, device, warmup=10, rep=rep))
            if kernel_time and not graph and torch.device(device).type == "cuda":
                replay = cuda_graph_replay(timed_callable(fn, case, [ins]))
                result.extra["graph_median_ms"] = time_ms(replay, device, warmup=10,
                                                          rep=rep)["median_ms"]
            results.append(result)
        except _Skip as e:
            results.append(Result(name, note=str(e)))
        except (RuntimeError, NotImplementedError, AssertionError, ValueError) as e:
            # e.g. an SDPA kernel refusing this shape/dtype ("No available kernel")
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            results.append(Result(name, note=f"{type(e).__name__}: {msg[:160]}"))
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
    return results


def cases(families, levels, scales, batches, dtypes, passes, layouts=("contiguous",)):
    for family in families:
        for level in levels:
            for scale in scales:
                for dtype in dtypes:
                    for passname in passes:
                        for batch in batches:
                            for layout in (layouts if family == "aattn" else ("contiguous",)):
                                yield Case(family, level, scale, batch, DTYPES[dtype], passname,
                                           layout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None,
                    help="results directory (default: a new runs/attention/<date-time>; "
                         "--out benchmarks/results updates the committed records)")
    ap.add_argument("--quick", action="store_true",
                    help="scale n only, batches 1 and 32, float16, fewer repetitions")
    ap.add_argument("--families", nargs="+", default=["area_attention", "aattn"],
                    choices=["area_attention", "aattn"])
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    ap.add_argument("--scales", nargs="+", default=list(HEADS), choices=list(HEADS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"], choices=list(DTYPES))
    ap.add_argument("--passes", nargs="+", default=list(PASSES), choices=list(PASSES))
    ap.add_argument("--rep", type=int, default=100)
    ap.add_argument("--graph", action="store_true",
                    help="replay each call from a CUDA graph (kernel time, no host overhead)")
    ap.add_argument("--kernel-time", action="store_true",
                    help="time each row eagerly AND from a CUDA graph, both printed")
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS),
                    help="qkv's memory formats for the aattn family (default: both)")
    args = ap.parse_args(argv)
    if args.quick:
        args.scales, args.batches, args.dtypes, args.rep = ["n"], [1, 32], ["float16"], 30

    if not torch.cuda.is_available():
        print("bench_attention: no CUDA GPU visible; nothing to measure")
        return 0
    from benchmarks.bench_pe import gpu_memory_context

    device = torch.device("cuda")
    l2, bw = gpu_memory_context(device)
    print("timing: " + ("CUDA graphs" if args.graph else "eager calls, rotated inputs"))
    print(HEADER + (KERNEL_TIME_HEADER if args.kernel_time else ""))
    all_records = []
    for case in cases(args.families, args.levels, args.scales, args.batches, args.dtypes,
                      args.passes, args.layouts):
        results = measure_case(case, device, args.rep, l2, args.graph,
                               kernel_time=args.kernel_time)
        recs = build_records(case, results, device, bw, args.graph)
        all_records += recs
        for line in format_rows(recs, [r for r in results if r.timing is None]):
            print(line)
        sys.stdout.flush()
    if all_records:
        path = append_records(all_records, "kernel", args.out or new_run_dir("attention"))
        print(f"{len(all_records)} records appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
