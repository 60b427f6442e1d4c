"""Backend selection: explicit choice, environment override, auto fall-back, clear errors."""
import logging

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


def test_requesting_an_unusable_backend_raises_with_reason():
    q, k, v = qkv_inputs()
    with pytest.raises(RuntimeError, match="backend='flash' cannot run area_attention"):
        yk.area_attention(q, k, v, backend="flash")


def test_auto_skips_unusable_backends_and_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(dispatch, "auto_order", lambda device: ("flash", "sdpa"))
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
