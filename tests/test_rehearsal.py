"""The GPU's choices on the CPU (``yolov12_kernels.target``, the ``gpu_choices`` fixture) and the
contracts its stand-ins keep (issue 25, items 1, 4 and 5).

* the seam: ``target(device)`` answers the device's own kind outside a rehearsal and an sm_90
  GPU's for a CPU device inside; a model built inside keeps its choices;
* the dispatcher under the GPU's order: a call its first backend refuses (float64, an odd
  head_dim) goes to the next one, with one log line saying why (a planted bug that skips the
  question passed the whole suite, since on a CPU every backend in "auto"'s order takes every
  call);
* the recorded graph against the real capture's contract, and the real capture's own arguments
  (thread-local capture errors, the side stream, inference mode), checked with torch.cuda faked;
* a device's index fixed at build; autocast does not reach a fast model (it runs in its dtype).
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from unittest import mock

import pytest
import torch

from yolov12.fast import CapturedForward, CudaGraphs, device_with_index, graphs_for, optimize
from yolov12.model import YOLOv12
from yolov12_kernels import dispatch
from yolov12_kernels.target import (CaptureRefused, RecordedGraph, RecordedGraphs, Target,
                                     rehearse_gpu, target)

CPU = torch.device("cpu")


def test_target_is_the_devices_own_outside_a_rehearsal():
    assert target(CPU) == Target("cpu", None, False)
    with rehearse_gpu((9, 0)) as t:
        assert t == target(CPU) == Target("cuda", (9, 0), True)
        assert target(torch.device("meta")) == Target("meta")  # only CPU devices stand in
        built = optimize(YOLOv12("n"), "cpu", torch.float32, fused_convs=False)
    assert target(CPU) == Target("cpu")
    assert built._gpu and built._graph_kit is RecordedGraphs  # it keeps the choices it made
    assert optimize(YOLOv12("n"), "cpu", torch.float32)._graph_kit is CudaGraphs


def test_rehearsal_refuses_what_it_cannot_stand_for(monkeypatch):
    with pytest.raises(ValueError, match="capability"):
        with rehearse_gpu((7, 5)):
            pass
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        with rehearse_gpu():
            pass


# ---------------------------------------------------------------------------------------------
# "auto" skipping a backend that refuses the call (issue 25, item 4)
@pytest.mark.parametrize("dtype,head_dim,why", [(torch.float64, 32, "float64"),
                                                (torch.float32, 24, "head_dim")])
def test_auto_skips_a_refusing_backend_and_says_why_once(gpu_choices, caplog, dtype, head_dim,
                                                         why):
    """The GPU's order starts with Triton, which takes neither float64 nor head_dim 24: "auto"
    goes on to the next backend that runs here (the CUDA kernels are not built on this machine;
    SDPA), logs the reason once, and the public op computes the reference's result."""
    import yolov12_kernels
    from yolov12_kernels import reference
    assert dispatch.auto_order(CPU, "area_attention")[0] == "triton"
    dispatch._logged.clear()
    q, k, v = (torch.randn(2, 16, 2, head_dim, dtype=dtype) for _ in range(3))
    with caplog.at_level(logging.WARNING, logger="yolov12_kernels"):
        for _ in range(2):
            chosen = dispatch.select("area_attention", "auto", CPU, dtype, head_dim, False)
            assert chosen.name == "sdpa"
            out = yolov12_kernels.area_attention(q, k, v, 2)
    torch.testing.assert_close(out, reference.area_attention(q, k, v, 2))
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and "'triton' skipped" in lines[0] and why in lines[0], lines


# ---------------------------------------------------------------------------------------------
# graphs: the recorded stand-in and the real capture's arguments
def test_recorded_graph_keeps_the_captures_contract(gpu_choices):
    """Capture runs fn once on the static input, under inference mode, with is_capturing()
    true; each replay reads the static input as it is then and writes the same static output
    tensor in place; a host sync inside the capture is refused, as CUDA refuses it."""
    seen = []

    def fn(x):
        seen.append((torch.is_inference_mode_enabled(), RecordedGraphs.is_capturing()))
        return x * 2 + 1

    static_input = torch.zeros(2, 3)
    graphed = CapturedForward(fn, static_input, warmup=3)
    assert graphs_for(CPU) is RecordedGraphs and isinstance(graphed.graph, RecordedGraph)
    assert seen == [(True, True)] and not RecordedGraphs.is_capturing()
    out = graphed.static_output
    for value in (1.0, 5.0):
        assert graphed(torch.full((2, 3), value)) is out
        assert torch.equal(out, torch.full((2, 3), 2 * value + 1))
    static_input.fill_(-1.0)
    assert torch.equal(graphed.replay(), torch.full((2, 3), -1.0))
    assert seen[1:] == [(True, False)] * 3
    with pytest.raises(ValueError, match="captured for input shape"):
        graphed(torch.zeros(1, 3))
    with pytest.raises(CaptureRefused, match="synchronises"):
        CapturedForward(lambda x: x * x.sum().item(), torch.ones(2))


def test_graph_input_made_in_inference_mode_takes_calls_in_any_mode(gpu_choices):
    with torch.inference_mode():
        graphed = CapturedForward(lambda x: x + 1, torch.zeros(3))
    for mode in (torch.no_grad, nullcontext, torch.inference_mode):
        with mode():
            assert torch.equal(graphed(torch.ones(3)), torch.full((3,), 2.0))


def test_cuda_capture_is_thread_local_on_the_warm_up_stream():
    """CudaGraphs.capture with torch.cuda faked (no GPU here): warm-up calls on a side stream,
    then the capture on that same stream with capture_error_mode="thread_local" (another thread's
    CUDA calls must neither break this capture nor be broken by it), both in inference mode."""
    calls, graphs = [], []

    class Stream:
        def wait_stream(self, other):
            pass

    class Graph:
        def __init__(self, *a, **k):
            graphs.append(k)

    stream = Stream()
    fake = dict(device=lambda d: nullcontext(), Stream=lambda d=None: stream,
                current_stream=lambda d=None: Stream(), stream=lambda s: nullcontext(),
                synchronize=lambda d=None: None, CUDAGraph=lambda: "graph",
                graph=lambda *a, **k: (graphs.append((a, k)), nullcontext())[1])
    fn = lambda x: calls.append(torch.is_inference_mode_enabled()) or x  # noqa: E731
    with mock.patch.multiple(torch.cuda, **fake):
        graph, out = CudaGraphs.capture(fn, torch.zeros(1), warmup=2)
    assert graph == "graph" and calls == [True, True, True]
    (args, kwargs), = graphs
    assert args == ("graph",) and kwargs == {"stream": stream,
                                             "capture_error_mode": "thread_local"}


# ---------------------------------------------------------------------------------------------
def test_a_bare_cuda_device_gets_its_index_at_build():
    """``cuda`` becomes ``cuda:N`` (the current device when the model is built), so the direct
    forward does not follow whatever device is current later."""
    with mock.patch.object(torch.cuda, "current_device", return_value=1):
        assert device_with_index(torch.device("cuda")) == torch.device("cuda", 1)
        assert device_with_index(torch.device("cuda", 0)) == torch.device("cuda", 0)
        assert device_with_index(CPU) == CPU


@pytest.mark.parametrize("graphs", [False, True], ids=["plain", "graph"])
def test_autocast_does_not_reach_a_fast_model(request, graphs):
    """A fast model runs in the dtype it was built for: under autocast its eager ops, plans and
    graphs compute what they compute without it (a graph would otherwise freeze the autocast
    state of its capture). The modules path (PyTorch convs, which CPU autocast turns bfloat16);
    graph: the GPU's choices, the first call (the capture) under autocast."""
    from _tiny import images, tiny_yolo
    if graphs:
        request.getfixturevalue("gpu_choices")
    fast = optimize(tiny_yolo(0), "cpu", torch.float32, fused_convs=False, backend="sdpa")
    x = images(3)[0]
    with torch.inference_mode():
        want = fast.direct(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            first = fast(x)
        later = fast(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            again = fast(x)
    assert first.dtype == torch.float32
    for got in (first, later, again):
        assert torch.equal(got, want)
    assert graphs == isinstance(fast._replays.get(tuple(x.shape)), CapturedForward)
