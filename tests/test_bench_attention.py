"""CPU smoke test of benchmarks/bench_attention.py: the baselines compute area attention (so the
benchmark times the right thing), and the record/table code path works on fake timings."""
import json

import pytest
import torch

from benchmarks import bench_attention as BA
from yolov12.bench.records import REQUIRED_FIELDS, summarize, validate_record
from yolov12_kernels import reference


@pytest.mark.parametrize("area", [1, 4])
def test_eager_aattn_is_the_reference(area):
    heads, d, H, W = 2, 8, 4, 6
    C = heads * d
    qkv = torch.randn(2, 3 * C, H, W, dtype=torch.float64)
    w, b = torch.randn(C, 1, 7, 7, dtype=torch.float64), torch.randn(C, dtype=torch.float64)
    torch.testing.assert_close(BA.eager_aattn(qkv, heads, area, w, b),
                               reference.fused_area_attention(qkv, heads, area, w, b))


def test_sdpa_area_is_the_reference():
    q, k, v = (torch.randn(2, 24, 3, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(BA.sdpa_area(q, k, v, 4), reference.area_attention(q, k, v, 4))


def test_case_names_shapes_bytes():
    c = BA.Case("area_attention", "P4", "n", 8, torch.float16, "fwd")
    assert c.name == "area_attention/P4/n" and c.heads == 2 and c.shape == [8, 1600, 2, 32]
    assert c.bytes_moved() == 4 * 8 * 1600 * 64 * 2
    a = BA.Case("aattn", "P5", "x", 1, torch.bfloat16, "fwd+bwd")
    assert a.name == "aattn/P5/x" and a.shape == [1, 3 * 12 * 32, 20, 20]
    assert a.bytes_moved() == 12 * 400 * 384 * 2
    assert len(list(BA.cases(["area_attention", "aattn"], ["P4", "P5"], list(BA.HEADS),
                             [1, 8, 32], ["float16", "bfloat16"], BA.PASSES))) == 240
    # both memory formats of qkv for the fused core only: 120 more
    both = list(BA.cases(["area_attention", "aattn"], ["P4", "P5"], list(BA.HEADS), [1, 8, 32],
                         ["float16", "bfloat16"], BA.PASSES, BA.LAYOUTS))
    assert len(both) == 360
    assert {c.layout for c in both if c.family == "area_attention"} == {"contiguous"}


def test_channels_last_case_inputs_records_and_rows():
    """A channels-last aattn case times a channels-last qkv and says so in its record (what
    make_dispatch_table ranks the fused NHWC path's core from) and in the table."""
    case = BA.Case("aattn", "P5", "n", 1, torch.float16, "fwd", "channels_last")
    qkv, w, b = BA.make_inputs(case, "cpu")
    assert qkv.is_contiguous(memory_format=torch.channels_last) and not qkv.is_contiguous()
    rec, = BA.build_records(case, [BA.Result("triton", summarize([1.0, 1.1]))], "cpu", 1e12)
    validate_record(rec)
    assert rec["layout"] == "channels_last"
    assert BA.format_rows([rec])[0].startswith("aattn/P5/n [cl]")
    nchw, = BA.build_records(BA.Case("aattn", "P5", "n", 1, torch.float16, "fwd"),
                             [BA.Result("triton", summarize([1.0]))], "cpu", 1e12)
    assert nchw["layout"] == "contiguous"


def test_records_and_table_from_fake_timings(tmp_path):
    case = BA.Case("aattn", "P4", "n", 32, torch.float16, "fwd")
    results = [BA.Result("triton", summarize([1.0, 1.1, 0.9])),
               BA.Result("eager", summarize([2.5, 2.4, 2.6])),
               BA.Result("cuda", note="the CUDA extension is not built")]
    recs = BA.build_records(case, results, "cpu", copy_bw=1e12)
    assert [r["provider"] for r in recs] == ["triton", "eager"]
    for r in recs:
        validate_record(r)
        assert set(REQUIRED_FIELDS) <= set(r) and r["pass"] == "fwd" and r["dtype"] == "float16"
        json.dumps(r)
    tri, eager = recs
    assert tri["speedup_vs_best_other"] == 2.5 and eager["speedup_vs_best_other"] == 0.4
    assert tri["roofline_fraction"] == pytest.approx(case.bytes_moved() / 1e12 / 1e-3, rel=1e-3)
    lines = BA.format_rows(recs, [results[2]])
    assert lines[0].split()[4] == "triton" and "2.50x" in lines[0]
    assert "skipped: the CUDA extension is not built" in lines[-1]
    assert BA.providers_for("area_attention") == BA.DROP_IN_PROVIDERS


def test_timed_callable_fwd_bwd_does_not_accumulate():
    case = BA.Case("aattn", "P5", "n", 1, torch.float32, "fwd+bwd")
    ins = [tuple(t.requires_grad_() for t in (torch.randn(1, 96, 4, 4), torch.randn(32, 1, 7, 7),
                                               torch.randn(32)))]
    one = BA.timed_callable(lambda qkv, w, b: BA.eager_aattn(qkv, 1, 1, w, b), case, ins)
    grads = one()
    assert len(grads) == 3 and grads[0].shape == ins[0][0].shape
    assert all(t.grad is None for t in ins[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit")
def test_main_without_gpu(capsys, tmp_path):
    assert BA.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_gpu_memory_context_with_faked_cuda(monkeypatch, capsys):
    """The GPU-only helper both kernel benchmarks start with, run on a CPU with the CUDA queries
    faked: it once called itself (RecursionError on every GPU run)."""
    from types import SimpleNamespace

    from benchmarks import bench_pe
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda d: SimpleNamespace(L2_cache_size=50 << 20))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "fake GPU")
    monkeypatch.setattr(bench_pe, "copy_bandwidth", lambda d: 2e12)
    assert bench_pe.gpu_memory_context(torch.device("cuda")) == (50 << 20, 2e12)
    assert "fake GPU: copy bandwidth 2000 GB/s, L2 50 MiB" in capsys.readouterr().out


def test_flex_is_compiled_for_every_case(monkeypatch):
    """Every case compiles flex_attention's one code object again: past dynamo's recompile limit
    the later cases would run it uncompiled (the unfused fallback) and time the wrong thing. Here
    with the limit lowered to 2, a counting backend instead of inductor, and tiny CPU geometries."""
    from torch._dynamo.testing import CompileCounter
    cnt, compile_ = CompileCounter(), torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend=cnt, **kw))
    geometries = [(4, 4, 2), (4, 6, 2), (2, 4, 2), (4, 8, 4)]
    # dynamo's own context manager: a raw monkeypatch of the config module is undone by deleting
    # the attribute under pytest 9, which breaks every later torch.compile in the process
    with torch._dynamo.config.patch(recompile_limit=2):
        for geometry in geometries:
            monkeypatch.setitem(BA.LEVELS, "P5", geometry)
            case = BA.Case("area_attention", "P5", "n", 1, torch.float32, "fwd")
            q, k, v = BA.make_inputs(case, "cpu")
            out = BA.drop_in_fn("flex", case, "cpu")(q, k, v)
            torch.testing.assert_close(out, BA.sdpa_area(q, k, v, geometry[2]))
    assert cnt.frame_count == len(geometries)


def test_measure_case_machinery_on_cpu(monkeypatch):
    """measure_case end to end on a tiny geometry with the providers that run on a CPU: the
    result check, the ring of inputs, time_ms, and a skip with its reason."""
    monkeypatch.setitem(BA.LEVELS, "P5", (4, 6, 2))
    case = BA.Case("area_attention", "P5", "n", 2, torch.float32, "fwd+bwd")
    res = BA.measure_case(case, torch.device("cpu"), rep=2, l2_bytes=1 << 12, graph=False,
                          providers=("sdpa-math", "flash-attn"))
    by = {r.provider: r for r in res}
    assert by["sdpa-math"].timing is not None and by["sdpa-math"].timing["median_ms"] > 0
    assert by["flash-attn"].timing is None and by["flash-attn"].note
    case = BA.Case("aattn", "P5", "n", 1, torch.float32, "fwd")
    res = BA.measure_case(case, torch.device("cpu"), rep=2, l2_bytes=1 << 12, graph=False,
                          providers=("eager",))
    assert res[0].timing is not None, res[0].note
