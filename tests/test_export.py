"""ONNX export: the exported fused model, run in onnxruntime, equals the PyTorch model."""
from __future__ import annotations

import copy
from pathlib import Path
from unittest import mock

import pytest
import torch

pytest.importorskip("onnx", reason="onnx not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed")

from yolov12 import YOLOv12  # noqa: E402
from yolov12.__main__ import main  # noqa: E402
from yolov12.export import check_onnx, export_onnx, fp32_runs, onnx_session  # noqa: E402
from _lively import lively  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(unfused original model, ONNX file of it) — exported once, it takes seconds. Its own seed:
    a module fixture is built after whichever test ran before it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = lively(YOLOv12("n"))  # outputs that depend on the input, or equality proves little
    original = copy.deepcopy(model)  # unfused, the model's own attention backend
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "n.onnx", imgsz=(64, 96),
                       dynamic_batch=True)
    return original, path


@pytest.mark.slow
def test_onnx_equals_pytorch_dynamic_batch(exported):
    original, path = exported
    sess = onnx_session(path)
    for batch in (1, 3):
        x = torch.rand(batch, 3, 64, 96)
        got = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
        assert got.shape == (batch, 84, 2 * 3 + 4 * 6 + 8 * 12)
        # ONNX vs a float64 run of the original (unfused) model: within 2x the largest error of
        # PyTorch's equally valid fp32 computations (export.fp32_runs)
        report = check_onnx(original, path, x, print_fn=lambda *_: None)
        assert all(err <= allowed for err, allowed in report.values()), report
    # no custom ops: everything is standard ONNX
    import onnx
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Softmax" in ops and "MatMul" in ops
    assert all(n.domain in ("", "ai.onnx") for n in onnx.load(str(path)).graph.node)


def test_check_onnx_passes_and_fails_loudly_on_a_wrong_file(exported):
    original, path = exported
    x = torch.rand(1, 3, 64, 96)
    other = copy.deepcopy(original)
    with torch.no_grad():  # every class logit of every anchor moves by 1: a well-conditioned change
        for head in other.model[-1].cv3:
            head[-1].bias.add_(1.0)
    with pytest.raises(RuntimeError, match="beyond fp32 tolerance"):
        check_onnx(other, path, x, print_fn=lambda *_: None)


def test_check_onnx_refuses_to_judge_against_an_unstable_model(exported):
    """When PyTorch's own float32 runs are far from its float64 run, "twice PyTorch's own error"
    would allow a wrong file: the check says so instead of passing. The instability is made
    deterministic: a hook moves every class probability by 0.2 in float32 runs only."""
    original, path = exported
    other = copy.deepcopy(original)

    def float32_only_error(module, inputs, out):
        return torch.cat((out[:, :4], out[:, 4:] + 0.2), 1) if out.dtype == torch.float32 else out
    other.model[-1].register_forward_hook(float32_only_error)
    with pytest.raises(RuntimeError, match="numerically unstable"):
        check_onnx(other, path, torch.rand(1, 3, 64, 96), print_fn=lambda *_: None)


def test_fp32_runs_are_distinct_valid_computations(exported):
    """The yardstick's runs really differ (different kernels, different rounding), each is a
    correct fp32 computation of the model, and the model itself is left untouched."""
    original, _ = exported
    before = {k: v.clone() for k, v in original.state_dict().items()}
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ref = copy.deepcopy(original).double()(x.double())
        runs = dict(fp32_runs(original, x))
    assert len(runs) == 8 and len({n.split(",")[0] for n in runs}) == 2  # as given and folded
    outs = list(runs.values())
    assert any(not torch.equal(outs[0], o) for o in outs[1:]), "all runs rounded alike"
    for name, out in runs.items():  # the same function (boxes within a fraction of a pixel)
        err = (out.double() - ref).abs()
        assert err[:, :4].max() < 0.25 and err[:, 4:].max() < 1e-3, (name, err.max().item())
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert original.model[0].bn is not None and {m.backend for m in original.modules()
                                                 if hasattr(m, "backend")} == {"auto"}


def test_export_cli(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(YOLOv12("n").state_dict(), weights)
    out = tmp_path / "model.onnx"
    assert main(["export", "--format", "onnx", "--weights", str(weights), "--imgsz", "64",
                 "--out", str(out)]) == 0
    assert out.is_file()
    assert "max abs diff" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="multiples of 32"):
        main(["export", "--weights", str(weights), "--imgsz", "70", "--out", str(out)])


def test_dynamic_export_takes_letterboxed_inputs_of_any_aspect_ratio(tmp_path):
    import onnxruntime as ort
    model = lively(YOLOv12("n"))
    original = copy.deepcopy(model)
    path = export_onnx(model, tmp_path / "dyn.onnx", imgsz=(64, 96), dynamic=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 96), (2, 3, 96, 64), (1, 3, 128, 160), (1, 3, 32, 64)]:
        x = torch.rand(shape)
        anchors = sum((shape[2] // s) * (shape[3] // s) for s in (8, 16, 32))
        assert sess.run(None, {"images": x.numpy()})[0].shape == (shape[0], 84, anchors)
    for shape in [(2, 3, 96, 64), (1, 3, 128, 160)]:  # values, at sizes other than the traced one
        report = check_onnx(original, path, torch.rand(shape), print_fn=lambda *_: None)
        assert all(err <= allowed for err, allowed in report.values()), (shape, report)


def test_export_cli_says_what_input_the_file_takes(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(YOLOv12("n").state_dict(), weights)
    out = tmp_path / "fixed.onnx"
    assert main(["export", "--weights", str(weights), "--imgsz", "64", "96", "--out", str(out),
                 "--no-check"]) == 0
    assert "input: images (1, 3, 64, 96) exactly" in capsys.readouterr().out
    # ultralytics-style, dynamic: checked in onnxruntime at two aspect ratios
    out = tmp_path / "dyn.onnx"
    assert main(["export", f"model={weights}", "format=onnx", "imgsz=64,96", "dynamic=True",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(batch, 3, height, width)" in text
    assert "on (2, 3, 64, 96)" in text and "on (1, 3, 96, 64)" in text


def test_opset_out_of_range_is_one_line_before_anything_is_built(tmp_path):
    from _utils import assert_one_line_error, run_cli
    from yolov12.export import opset_range
    lo, hi = opset_range("torchscript")
    out = tmp_path / "m.onnx"
    r = run_cli("export", "--model", "n", "--imgsz", "32", "--opset", "99", "--out", out)
    assert_one_line_error(r, f"--opset: the torchscript exporter of torch {torch.__version__} "
                             f"writes opsets {lo} to {hi} of this model, got 99")
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    for argv, msg in ((["--opset", "7"], "got 7"),
                      (["--exporter", "dynamo", "--opset", "17"], "dynamo exporter of torch"),
                      (["--exporter", "dynamo", "--dynamic-batch"], "--dynamic-batch: torch.export "
                                                                    "fixes this model's batch")):
        with pytest.raises(SystemExit) as e:
            main(["export", "--model", "n", "--imgsz", "32", "--out", str(out), *argv])
        assert msg in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="^opset: "):
        export_onnx(YOLOv12("n"), out, 32, opset=lo - 1)


def test_export_without_onnx_is_one_line_before_anything_is_built(tmp_path):
    """torch's exporter needs the onnx package and says so only after tracing, in a traceback:
    the command checks first. onnx is hidden from the subprocess by a stand-in that fails to
    import, first on its path."""
    from _utils import assert_one_line_error, run_cli
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "onnx.py").write_text("raise ImportError(\"No module named 'onnx' (hidden)\")\n")
    out = tmp_path / "m.onnx"
    r = run_cli("export", "model=n", "imgsz=64", f"out={out}", env={"PYTHONPATH": str(hide)})
    assert_one_line_error(r, "export: writing an ONNX file needs the onnx package (pip install "
                             "onnx")
    assert not out.exists()


def test_export_size_line_counts_the_weights_file_beside_the_graph(tmp_path, capsys):
    """The dynamo exporter writes the weights to <file>.data: the size printed includes them."""
    import yolov12.export as E

    def fake_export(model, path, *a, **k):
        path = Path(path)
        path.write_bytes(b"g" * 300_000)
        path.with_name(path.name + ".data").write_bytes(b"w" * 10_000_000)
        return path
    out = tmp_path / "m.onnx"
    with mock.patch.object(E, "write_onnx", fake_export):
        assert main(["export", "--model", "n", "--imgsz", "32", "--out", str(out),
                     "--no-check"]) == 0
    assert "(10.3 MB with its weights in m.onnx.data, opset 17" in capsys.readouterr().out
    # a new export to the same name removes the old weights file: it would be stale (torch's
    # exporter and the metadata writer stubbed: only the files around it matter here)
    with mock.patch.object(torch.onnx, "export", lambda m, x, f, **k: Path(f).write_bytes(b"g")), \
            mock.patch.object(E, "write_metadata", lambda *a: None):
        export_onnx(YOLOv12("n"), out, 32)
    assert E.onnx_files(out) == [out]


@pytest.mark.slow
def test_dynamo_exporter_works_on_this_torch(tmp_path):
    """The docs say the dynamo exporter works (torch 2.13): one fixed-size export, checked."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    from yolov12.export import onnx_files
    model = lively(YOLOv12("n"))
    original = copy.deepcopy(model)
    path = export_onnx(model, tmp_path / "dyn.onnx", imgsz=32, exporter="dynamo")
    assert [f.name for f in onnx_files(path)] == ["dyn.onnx", "dyn.onnx.data"]
    report = check_onnx(original, path, torch.rand(1, 3, 32, 32), print_fn=lambda *_: None)
    assert all(err <= allowed for err, allowed in report.values()), report
