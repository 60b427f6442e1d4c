"""The fast path under every autograd mode, with the GPU's choices (issue 25, item 2).

A model is held for inference built, called and reloaded under ``torch.inference_mode()``,
``torch.no_grad()`` or neither, in any mix: tensors made under inference mode are inference
tensors (no version counter; written in place only in inference mode), which crashed the default
GPU path in three places (the pe tap table keyed on the weight's version, the fused forward's
prepared copies rewritten after a load, a graph's static input written by a later call). The
matrix: build under each mode x call under each x load_state_dict under each, on the launch plan
and on the (recorded) CUDA-graph path, float32 and float16; every output equals the direct
forward of the weights loaded, bit for bit (the same kernels run).

Cost: interpreted forwards (~1.5 s each for the small network of ``_tiny``), so one model per
build mode serves its cells in a sequence — first call (the shape is prepared), then three
loads, alternating two weight sets and the three forms of state dict ``load_state_dict`` takes,
each followed by a call — arranged so that the three build modes together meet every (load
mode, call mode) pair and each build mode a different prepare mode. float32 runs that whole
matrix on both paths; float16 (which the interpreter runs: its tl.dot is exact) on the graph
path, the GPU's default, one load per build mode (the plan path handles the modes with the same
code in either dtype: CI time).
"""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from _tiny import images, tiny_yolo
from yolov12.fast import CapturedForward, optimize
from yolov12.plan import LaunchPlan

MODES = {"inference": torch.inference_mode, "no_grad": torch.no_grad,
         "plain": contextlib.nullcontext}
ORDER = tuple(MODES)


def _steps(i: int, loads: int = 3):
    """Build mode ORDER[i]: (prepare mode, [(load mode, call mode), ...]). Over i = 0, 1, 2 the
    pairs meet all nine (load, call) combinations, and the prepare modes all three."""
    return ORDER[(i + 2) % 3], [(ORDER[j], ORDER[(i + j) % 3]) for j in range(loads)]


@pytest.fixture(scope="module")
def weights():
    """Two weight sets (the tiny network's, seeds 0 and 1), each in the three forms
    FastYOLOv12.load_state_dict takes: the model's own state dict (BatchNorm unfolded), the
    BN-folded net's, and the fast model's own (``net.`` keys)."""
    sets = []
    for seed in (0, 1):
        model = tiny_yolo(seed)
        fast = optimize(model, "cpu", torch.float32, fused_convs=False)
        sets.append((model.state_dict(), fast.net.state_dict(), fast.state_dict()))
    return sets


@pytest.fixture(scope="module")
def direct_outputs():
    """dtype -> the direct forward of each weight set on X (what every cell must equal), made
    once per dtype for both paths."""
    cache = {}

    def get(dtype):
        if dtype not in cache:
            with torch.inference_mode():
                cache[dtype] = [optimize(tiny_yolo(seed), "cpu", dtype, fused_convs=True,
                                         backend="triton").direct(X) for seed in (0, 1)]
            assert not torch.equal(*cache[dtype])
        return cache[dtype]
    return get


X = images(5)[0]


def _run_matrix(weights, refs, dtype, path: str, loads: int) -> None:
    x, graphs = X, path == "graph"

    def build(seed):
        fast = optimize(tiny_yolo(seed), "cpu", dtype, graphs=graphs)  # the GPU's choices
        assert fast.fused_convs and fast.attention_backend == "triton" and fast.channels_last
        return fast
    kind = CapturedForward if graphs else LaunchPlan
    for i, mode in enumerate(ORDER):
        prepare, steps = _steps(i, loads)
        with MODES[mode]():
            fast = build(0)
        with MODES[prepare]():
            out = fast(x)
        assert isinstance(fast._replays[tuple(x.shape)], kind)
        assert torch.equal(out, refs[0]), (path, dtype, mode, prepare)
        assert out.is_inference() == (prepare == "inference") and not out.requires_grad
        now = 0
        for j, (load, call) in enumerate(steps):
            now = 1 - now
            with MODES[load]():
                fast.load_state_dict(weights[now][(i + j) % 3])
            with MODES[call]():
                out = fast(x)
            cell = dict(path=path, dtype=dtype, build=mode, prepare=prepare, load=load,
                        call=call, form=("model", "net", "fast")[(i + j) % 3])
            assert torch.equal(out, refs[now]), cell
            assert out.is_inference() == (call == "inference"), cell
        if graphs:
            assert fast._replays[tuple(x.shape)].graph.replays == len(steps)


@pytest.mark.parametrize("path", ["plan", "graph"])
def test_every_autograd_mode_float32(gpu_choices, weights, direct_outputs, path):
    _run_matrix(weights, direct_outputs(torch.float32), torch.float32, path, loads=3)


def test_every_autograd_mode_float16_graph_diagonal(gpu_choices, weights, direct_outputs):
    """float16 on the GPU's default path (float16, graphs): one load per build mode (the modes
    act on the copy-in and the weights, the same in either dtype; the cast at build differs)."""
    _run_matrix(weights, direct_outputs(torch.float16), torch.float16, "graph", loads=1)


def test_issue_reproduction_built_and_called_in_inference_mode(gpu_choices):
    """The issue's case, the most common way to hold a model for inference: the default GPU
    path built and called inside ``torch.inference_mode()`` (the pe tap table keyed on the
    version counter of the pe weight, an inference tensor, and crashed)."""
    x = images(6)[0]
    with torch.inference_mode():
        fast = optimize(tiny_yolo(0), "cpu", torch.float32, graphs=False)
        out = fast(x)
        assert torch.equal(out, fast.direct(x))


def test_pe_tap_table_of_inference_tensors():
    """pe weights made under inference mode have no version counter: the table is built, and
    rewritten in place (the same tensor: a plan or graph reads its address) on the next call
    after an in-place change; the public op computes the reference's result on them."""
    import yolov12_kernels
    from yolov12_kernels import reference
    from yolov12_kernels.triton import area_attention as K
    with torch.inference_mode():
        w, b = torch.randn(32, 1, 7, 7) / 7, torch.randn(32)
        table = K.pe_taps(w, b)
        assert torch.equal(table, K._taps_table(w, b))
        w.mul_(2)
        assert K.pe_taps(w, b) is table and torch.equal(table, K._taps_table(w, b))
        qkv = torch.randn(1, 96, 4, 4)
        out = yolov12_kernels.fused_area_attention(qkv, 1, 2, w, b, backend="triton")
        torch.testing.assert_close(out, reference.fused_area_attention(qkv, 1, 2, w, b),
                                   rtol=1e-5, atol=1e-5)
    normal = torch.randn(32, 1, 7, 7)  # a normal tensor: keyed on its version, as before
    first = K.pe_taps(normal, None)
    with torch.no_grad():
        normal.add_(1)
    assert K.pe_taps(normal, None) is first and torch.equal(first, K._taps_table(normal, None))


def test_built_in_inference_mode_loads_and_runs_in_any_mode():
    """A fast model built inside inference mode holds normal tensors (its parameters, the fused
    forward's prepared copies): load_state_dict and calls work outside inference mode too. The
    CPU's modules path, no interpreter: what the build does, not the kernels."""
    x = images(9)[0]
    with torch.inference_mode():
        fast = optimize(tiny_yolo(0), "cpu", torch.float32)
        want = optimize(tiny_yolo(1), "cpu", torch.float32)(x)
    assert not any(p.is_inference() for p in fast.state_dict().values())
    for mode in ("plain", "no_grad", "inference"):
        with MODES[mode]():
            fast.load_state_dict(tiny_yolo(1).state_dict())
            assert torch.equal(fast(x), want), mode


def test_prepared_copies_of_inference_tensors_are_refreshed_in_any_mode():
    """FusedForward on a net whose tensors are inference tensors (built by hand inside
    inference mode): refresh() after new weights rewrites its prepared copies (the packed MLP
    weight) in place from outside inference mode as well."""
    from yolov12.fused import FusedForward
    from yolov12.modules import A2C2f
    with torch.inference_mode():
        net = optimize(tiny_yolo(0), "cpu", torch.float32, fused_convs=False).net
        net = copy.deepcopy(net)  # every tensor an inference tensor
        fused = FusedForward(net)
        mlp = next(m for m in net.modules() if isinstance(m, A2C2f)).m[0][0].mlp
        packed = mlp.fused_mlp[2]
        assert packed.is_inference()
        mlp[1].conv.weight.mul_(2)
    fused.refresh()
    assert mlp.fused_mlp[2] is packed
    with torch.inference_mode():
        from yolov12_kernels.triton.mlp import pack_w2
        assert torch.equal(packed, pack_w2(mlp[1].conv.weight))
