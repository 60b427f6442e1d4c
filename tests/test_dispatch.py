"""Backend selection: explicit choice, environment override, auto fall-back, clear errors."""
import logging
import os
from unittest import mock

import pytest
import torch

import yolov12_kernels as yk
from yolov12_kernels import dispatch


def qkv_inputs(B=2, N=32, H=2, d=16, dtype=torch.float32):
    return [torch.randn(B, N, H, d, dtype=dtype) for _ in range(3)]


def test_available_backends_reports_reasons():
    avail = yk.available_backends()
    assert set(avail) == set(yk.BACKENDS)
    assert avail["reference"] is None and avail["sdpa"] is None
    assert all(v is None or isinstance(v, str) and v for v in avail.values())


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_cpu_backends_match_reference(backend):
    q, k, v = qkv_inputs(dtype=torch.float64)
    want = yk.reference.area_attention(q, k, v, 4)
    torch.testing.assert_close(yk.area_attention(q, k, v, 4, backend=backend), want)


def test_unknown_backend_is_a_value_error():
    q, k, v = qkv_inputs()
    with pytest.raises(ValueError, match="^backend: unknown backend 'tpu'"):
        yk.area_attention(q, k, v, backend="tpu")


def test_environment_variable_forces_a_backend(monkeypatch):
    calls = []
    import yolov12_kernels.reference_backend as ref_backend
    real = ref_backend.area_attention
    monkeypatch.setattr(ref_backend, "area_attention",
                        lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv(dispatch.ENV_VAR, "reference")
    q, k, v = qkv_inputs()
    yk.area_attention(q, k, v, 2)
    assert calls == [1]


def test_a_bad_environment_variable_is_named_in_the_error():
    q, k, v = qkv_inputs()
    with mock.patch.dict(os.environ, {dispatch.ENV_VAR: "bogus"}):
        with pytest.raises(ValueError, match=r"^YOLOV12_BACKEND='bogus' is not a backend"):
            yk.area_attention(q, k, v, 2)
    with mock.patch.dict(os.environ, {dispatch.ENV_VAR: "flash"}):
        with pytest.raises(RuntimeError, match=r"^YOLOV12_BACKEND='flash' cannot run"):
            yk.area_attention(q, k, v, 2)
        # an explicit argument wins over the variable, and is what an error then names
        with pytest.raises(RuntimeError, match=r"^backend='flash' cannot run"):
            yk.area_attention(q, k, v, 2, backend="flash")


def test_requesting_an_unusable_backend_raises_with_reason():
    q, k, v = qkv_inputs()
    with pytest.raises(RuntimeError, match="backend='flash' cannot run area_attention"):
        yk.area_attention(q, k, v, backend="flash")


def test_auto_skips_unusable_backends_and_logs_once(monkeypatch, caplog):
    monkeypatch.setitem(dispatch.FALLBACK_ORDER, "cpu", ("flash", "sdpa"))
    dispatch._logged.clear()
    q, k, v = qkv_inputs()
    with caplog.at_level(logging.WARNING, logger="yolov12_kernels"):
        yk.area_attention(q, k, v)
        yk.area_attention(q, k, v)
    msgs = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(msgs) == 1 and "'flash'" in msgs[0] and "using 'sdpa'" in msgs[0]


def test_position_perceiver_public_op():
    v = torch.randn(2, 8, 9, 11)
    w, b = torch.randn(8, 1, 7, 7), torch.randn(8)
    torch.testing.assert_close(yk.position_perceiver(v, w, b),
                               yk.reference.position_perceiver(v, w, b))
    with pytest.raises(ValueError, match="^bias: expected shape"):
        yk.position_perceiver(v, w, torch.randn(3))


def test_fused_public_op_checks_arguments():
    qkv = torch.randn(1, 3 * 64, 4, 4)
    with pytest.raises(ValueError, match="^area: 3 does not divide"):
        yk.fused_area_attention(qkv, 2, 3, torch.randn(64, 1, 7, 7))
    with pytest.raises(ValueError, match="^pe_weight"):
        yk.fused_area_attention(qkv, 2, 1, torch.randn(64, 1, 7, 5))


def test_select_returns_the_backend_and_its_functions():
    impl = dispatch.select("area_attention", "sdpa", torch.device("cpu"), torch.float32, 16, False)
    from yolov12_kernels import sdpa_backend
    assert impl.name == "sdpa" and impl.area_attention is sdpa_backend.area_attention
    assert impl.position_perceiver is None  # the SDPA backend has no pe of its own
    with pytest.raises(RuntimeError, match="sdpa has no position_perceiver"):
        dispatch.select("position_perceiver", "sdpa", torch.device("cpu"), torch.float32, None,
                        False)


def test_arguments_are_checked_once(monkeypatch):
    """The public op validates; the backend it picks gets the tensors and a float scale as they
    are and checks nothing again (no second pass over the arguments, no stand-in tensors)."""
    from yolov12_kernels import _checks, attention
    calls = []
    for name in ("check_drop_in_qkv", "check_area", "check_model_qkv", "check_pe_params"):
        real = getattr(_checks, name)
        wrapped = (lambda real, name: lambda *a, **kw: calls.append(name) or real(*a, **kw))(
            real, name)
        monkeypatch.setattr(attention, name, wrapped)
    seen = {}
    import yolov12_kernels.reference_backend as ref_backend
    real_fused = ref_backend.fused_area_attention
    monkeypatch.setattr(ref_backend, "fused_area_attention",
                        lambda *a: seen.setdefault("args", a) and real_fused(*a))
    qkv, w, b = torch.randn(1, 3 * 64, 4, 4), torch.randn(64, 1, 7, 7), torch.randn(64)
    yk.fused_area_attention(qkv, 2, 2, w, b, backend="reference")
    assert sorted(calls) == ["check_area", "check_model_qkv", "check_pe_params"]
    assert seen["args"][:5] == (qkv, 2, 2, w, b) and seen["args"][5] == 32 ** -0.5
    assert isinstance(seen["args"][5], float)


def _cuda_cap(monkeypatch, cap):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)


def test_auto_order_follows_the_measured_table_on_a_gpu(monkeypatch):
    """"auto" puts the measured backends of the call's (arch, op, pass, size class, memory
    format) in their measured order; anything not measured keeps the fixed order. A ranking of the
    NCHW core says nothing about the channels-last one (the fused NHWC path's)."""
    from yolov12_kernels import dispatch_table
    gpu = torch.device("cuda", 0)
    _cuda_cap(monkeypatch, (9, 0))
    n_b1 = 1 * 64 * 1600           # YOLOv12-N P4, batch 1: batch x channels x tokens
    x_b32 = 32 * 384 * 1600        # YOLOv12-X P4, batch 32
    assert dispatch_table.size_class(n_b1) == "S" and dispatch_table.size_class(x_b32) == "L"
    made_up = {("sm90", "fused_area_attention", "fwd", "S", "channels_last"): ("cuda", "triton"),
               ("sm90", "fused_area_attention", "fwd", "L", "contiguous"): ("sdpa", "triton"),
               ("sm90", "area_attention", "fwd+bwd", "S", "contiguous"): ("sdpa", "triton")}
    fixed = dispatch.FALLBACK_ORDER["sm80+"]
    with mock.patch.dict(dispatch_table.RANKINGS, made_up, clear=True):
        assert dispatch.auto_order(gpu, "fused_area_attention", False, n_b1, True)[:2] == \
            ("cuda", "triton")
        assert dispatch.auto_order(gpu, "fused_area_attention", False, n_b1) == fixed
        assert dispatch.auto_order(gpu, "fused_area_attention", False, x_b32, True) == fixed
        order = dispatch.auto_order(gpu, "fused_area_attention", False, x_b32)
        assert order.index("sdpa") < order.index("triton") and set(order) == set(fixed)
        order = dispatch.auto_order(gpu, "area_attention", True, n_b1)
        assert order.index("sdpa") < order.index("triton") and set(order) == set(fixed)
        # an architecture without measurements: the fixed order
        _cuda_cap(monkeypatch, (8, 6))
        assert dispatch.auto_order(gpu, "fused_area_attention", False, n_b1, True) == fixed
        _cuda_cap(monkeypatch, (7, 5))
        assert dispatch.auto_order(gpu, "area_attention", False, n_b1) == \
            dispatch.FALLBACK_ORDER["sm75"]


def test_committed_table_holds_no_eager_ranking(monkeypatch):
    """The committed records are eager timings only (the H100 run of 2026-11-23), which the
    table no longer ranks from: "auto" is the fixed order there, Triton first from sm_80."""
    from yolov12_kernels import dispatch_table
    assert dispatch_table.RANKINGS == {}
    _cuda_cap(monkeypatch, (9, 0))
    assert dispatch.auto_order(torch.device("cuda", 0), "fused_area_attention", False,
                               64 * 1600, True) == dispatch.FALLBACK_ORDER["sm80+"]


@pytest.mark.parametrize("backend", ["reference", "sdpa", "triton"])
def test_fused_core_returns_qkv_memory_format(backend):
    """Every backend's fused core gives a channels-last output for a channels-last qkv (the fused
    NHWC path's: its proj conv reads it next) and NCHW for NCHW. (The CUDA backend: its fake
    kernel and host build in test_cuda_backend.py, its kernels on a GPU.)"""
    if yk.available_backends()[backend]:
        pytest.skip(f"{backend}: {yk.available_backends()[backend]}")
    qkv = torch.randn(1, 96, 4, 6)
    w, b = torch.randn(32, 1, 3, 3), torch.randn(32)
    for fmt in (torch.channels_last, torch.contiguous_format):
        with torch.no_grad():
            out = yk.fused_area_attention(qkv.contiguous(memory_format=fmt), 1, 2, w, b,
                                          backend=backend)
        assert out.is_contiguous(memory_format=fmt), (fmt, out.stride())


def test_dispatch_table_is_what_the_committed_records_give():
    """The table is derived from benchmarks/results, not edited by hand: regenerate and compare."""
    from benchmarks import make_dispatch_table
    assert make_dispatch_table.main(["--check"]) == 0


def _record(name, provider, ms, batch=1, shape=(1, 192, 40, 40), **kw):
    return dict(suite="kernel", name=name, provider=provider, median_ms=ms, batch=batch,
                shape=list(shape), dtype="float16", device="NVIDIA H100 80GB HBM3",
                date="2026-01-01", **kw)


def test_dispatch_table_derivation():
    """Rankings by summed kernel median over a size class; sdpa credited with its slowest
    kernel."""
    from benchmarks.make_dispatch_table import derive
    rec = _record
    graph = {"cuda_graph": True}
    recs = [rec("aattn/P4/n", "cuda", 0.1, **graph), rec("aattn/P4/n", "triton", 0.3, **graph),
            rec("aattn/P4/n", "eager", 0.4, **graph),
            rec("area_attention/P4/n", "sdpa-flash", 0.2, shape=(1, 1600, 2, 32),
                **{"pass": "fwd"}, **graph),
            rec("area_attention/P4/n", "sdpa-cudnn", 0.1, shape=(1, 1600, 2, 32),
                **{"pass": "fwd"}, **graph),
            rec("area_attention/P4/n", "triton", 0.15, shape=(1, 1600, 2, 32),
                **{"pass": "fwd"}, **graph)]
    rankings, evidence = derive(recs)
    assert rankings[("sm90", "fused_area_attention", "fwd", "S", "contiguous")] == \
        ("cuda", "triton", "reference")
    # sdpa = max(0.2, 0.1) = 0.2 > triton's 0.15
    assert rankings[("sm90", "area_attention", "fwd", "S", "contiguous")] == ("triton", "sdpa")


def test_dispatch_table_ranks_kernel_times_only():
    """Eager records are not ranked (host overhead decides them at batch 1); a record replayed
    from a CUDA graph ranks by its median, one timed both ways (--kernel-time) by its
    graph_median_ms; each memory format of qkv from its own records."""
    from benchmarks.make_dispatch_table import derive, render
    rec = _record
    eager = [rec("aattn/P4/n", "cuda", 0.08), rec("aattn/P4/n", "triton", 0.33)]
    assert derive(eager) == ({}, {})
    assert "RANKINGS is\nempty" in render({}, {}, ["x"])
    cl = {"layout": "channels_last"}
    recs = eager + [
        # NCHW, replayed: CUDA faster
        rec("aattn/P4/n", "cuda", 0.05, cuda_graph=True),
        rec("aattn/P4/n", "triton", 0.07, cuda_graph=True),
        # channels-last, eager rows with their graph medians: Triton faster as kernels
        rec("aattn/P4/n", "cuda", 0.08, graph_median_ms=0.06, **cl),
        rec("aattn/P4/n", "triton", 0.33, graph_median_ms=0.04, **cl)]
    rankings, evidence = derive(recs)
    assert rankings == {("sm90", "fused_area_attention", "fwd", "S", "contiguous"):
                        ("cuda", "triton"),
                        ("sm90", "fused_area_attention", "fwd", "S", "channels_last"):
                        ("triton", "cuda")}
    assert evidence[("sm90", "fused_area_attention", "fwd", "S", "channels_last")] == \
        [("aattn/P4/n", "float16", 1, {"cuda": 0.06, "triton": 0.04})]
    # the rendered table answers with that order
    ns: dict = {}
    exec(render(rankings, evidence, ["x"]), ns)
    assert ns["ranking"]((9, 0), "fused_area_attention", False, 64 * 1600, True) == \
        ("triton", "cuda")
    assert ns["ranking"]((9, 0), "fused_area_attention", False, 64 * 1600) == ("cuda", "triton")
