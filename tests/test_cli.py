"""The command line end to end on CPU (tiny sizes)."""
import json
import subprocess
import sys
from unittest import mock

import pytest
import torch

from yolov12.__main__ import main
from yolov12_kernels import dispatch


def test_info_prints_params_and_paper_figures(capsys):
    assert main(["info", "--model", "n"]) == 0
    out = capsys.readouterr().out
    assert "| n | 2,602,288 | 2.6 M | 6.5 | 6.5 |" in out
    assert "multiply-add = 2 FLOPs" in out


def test_bench_runs_end_to_end_and_writes_records(tmp_path, capsys):
    # --device cpu: on a GPU machine the default would add the torch.compile baselines (minutes of
    # inductor and max-autotune compiling); tests/test_bench_suite.py runs the GPU defaults
    assert main(["bench", "--model", "n", "--device", "cpu", "--imgsz", "64", "--runs", "2",
                 "--warmup", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| n | 2.60 M | 2.6 M |" in out
    recs = [json.loads(line) for line in (tmp_path / "e2e.jsonl").read_text().splitlines()]
    assert len(recs) >= 1
    rec = next(r for r in recs if r["name"] == "n")
    assert rec["suite"] == "e2e" and rec["batch"] == 1 and rec["shape"][-2:] == [64, 64]
    assert rec["median_ms"] > 0 and rec["p20_ms"] <= rec["median_ms"] <= rec["p80_ms"]


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--imgsz", "100", "--model", "n"], "--imgsz: sides must be positive multiples of 32"),
    (["bench", "--model", "q"], "--model: unknown scale"),
])
def test_bad_options_give_clear_errors(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert msg in str(e.value)


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "yolov12", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "bench" in r.stdout and "info" in r.stdout


def test_ultralytics_style_arguments_translate_to_options():
    from yolov12.__main__ import translate
    assert translate(["predict", "model=yolo12n.pt", "source=bus.jpg", "conf=0.25",
                      "half=True", "max_det=5"]) == [
        "predict", "--model", "yolo12n.pt", "--source", "bus.jpg", "--conf", "0.25", "--half",
        "--max-det", "5"]
    assert translate(["detect", "val", "model=w.pt", "data=coco.yaml", "half=false"]) == [
        "val", "--model", "w.pt", "--data", "coco.yaml"]
    assert translate(["export", "model=w.pt", "format=onnx", "imgsz=640,480", "dynamic=True"]) == [
        "export", "--model", "w.pt", "--format", "onnx", "--imgsz", "640", "480", "--dynamic"]
    assert translate(["predict", "source=a.jpg", "project=runs", "name=exp"])[-2:] == [
        "--out", "runs/exp"]
    # every command, the same grammar: info and bench too; switches both ways
    assert translate(["info", "model=all", "imgsz=320"]) == ["info", "--model", "all",
                                                             "--imgsz", "320"]
    assert translate(["bench", "model=n", "compile=False", "quick=True", "imgsz=64,96"]) == [
        "bench", "--model", "n", "--no-compile", "--quick", "--imgsz", "64", "96"]
    # the value of an option is never read as a key
    assert translate(["predict", "--out", "a=b"]) == ["predict", "--out", "a=b"]
    # flags pass through untouched, and so do other commands
    assert translate(["predict", "a.jpg", "--conf", "0.5"]) == ["predict", "a.jpg", "--conf", "0.5"]
    assert translate(["info", "--model", "n"]) == ["info", "--model", "n"]
    with pytest.raises(SystemExit, match=r"^agnostic_nms=: not an argument of `yolov12 predict`"):
        translate(["predict", "agnostic_nms=True"])
    with pytest.raises(SystemExit, match="half=: expected True or False"):
        translate(["predict", "half=maybe"])


def test_version_and_usage_name_the_console_script(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("yolov12-kernels ")
    with pytest.raises(SystemExit):
        main([])
    assert capsys.readouterr().err.startswith("usage: yolov12 ")


def test_model_option_takes_a_file_or_a_scale(tmp_path):
    import argparse
    from yolov12.cli_args import weights_and_scale
    ns = dict(weights=None, scale=None, variant=None)
    assert weights_and_scale(argparse.Namespace(model="n", **ns)) == (None, "n")
    assert weights_and_scale(argparse.Namespace(model="w.pt", **ns)) == ("w.pt", None)
    a = argparse.Namespace(model="yolov12s.yaml", **ns)
    assert weights_and_scale(a) == (None, "s") and a.variant == "turbo"
    a = argparse.Namespace(model="yolo12s.yaml", **ns)
    assert weights_and_scale(a) == (None, "s") and a.variant == "yolo12"
    with pytest.raises(SystemExit, match="contradicts --scale"):
        weights_and_scale(argparse.Namespace(model="n", weights=None, scale="s", variant=None))
    with pytest.raises(SystemExit, match="name two checkpoints"):
        weights_and_scale(argparse.Namespace(model="a.pt", weights="b.pt", scale=None,
                                             variant=None))


def test_predict_the_ultralytics_way(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")
    import torch
    from yolov12 import YOLOv12
    weights = tmp_path / "yolo12n.pt"
    torch.save(YOLOv12("n").state_dict(), weights)
    img = tmp_path / "bus.jpg"
    Image.new("RGB", (80, 60), (120, 40, 200)).save(img)
    rc = main(["predict", f"model={weights}", f"source={img}", "conf=0.0", "imgsz=64",
               "device=cpu", f"project={tmp_path}", "name=exp"])
    assert rc == 0
    assert (tmp_path / "exp" / "bus.jpg").is_file()
    assert json.loads((tmp_path / "exp" / "predictions.json").read_text())[0]["detections"]


# ---------------------------------------------------------------------------------------------
# the real command in a subprocess: one line, no traceback (each costs a torch import, ~3-5 s)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")
    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.new("RGB", (48, 40), (120, 40, 200)).save(path)
    return path


def test_a_backend_that_cannot_run_here_is_one_line(tiny_image, tmp_path):
    from _utils import assert_one_line_error, run_cli
    if torch.cuda.is_available():
        pytest.skip("checks the CPU's answer to --backend triton")
    # Triton runs on a CPU only in its interpreter, which the tests switch on: off here
    r = run_cli("predict", tiny_image, "--model", "n", "--imgsz", "32", "--device", "cpu",
                "--backend", "triton", "--out", tmp_path / "o", env={"TRITON_INTERPRET": None})
    assert_one_line_error(r, "--backend: backend='triton' cannot run fused_area_attention here: "
                             "CPU tensors run only in Triton's interpreter")
    assert "on cpu these run: auto, sdpa, reference" in r.stderr
    r = run_cli("val", "--images", tmp_path, "--annotations", tmp_path / "a.json", "--model", "n",
                "--device", "cpu", env={dispatch.ENV_VAR: "bogus"})
    assert_one_line_error(r, "YOLOV12_BACKEND='bogus' is not a backend")
    assert "unset YOLOV12_BACKEND" in r.stderr


@pytest.mark.parametrize("command", ["predict", "val"])
@pytest.mark.parametrize("backend", ["cuda", "flash"])
def test_backends_that_need_a_gpu_are_one_line_in_predict_and_val(command, backend, tiny_image,
                                                                  tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU's answer")
    where = ([str(tiny_image)] if command == "predict"
             else ["--images", str(tmp_path), "--annotations", str(tmp_path / "a.json")])
    with pytest.raises(SystemExit) as e:
        main([command, *where, "--model", "n", "--device", "cpu", "--backend", backend])
    msg = str(e.value)
    assert msg.startswith(f"--backend: backend='{backend}' cannot run") and "\n" not in msg
    assert msg.endswith("on cpu these run: auto, sdpa, reference")


def test_bench_report_from_another_folder_with_out_none_writes_nothing(tmp_path):
    """--report finds the committed records from the package, not the current folder, and
    --out none leaves every file as it was (it used to overwrite the committed plot)."""
    from _utils import assert_clean_exit, run_cli
    from yolov12.bench.records import TRACKED_RESULTS
    if not TRACKED_RESULTS.is_dir():
        pytest.skip("no committed benchmarks/results beside this package")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in TRACKED_RESULTS.rglob("*")}
    r = run_cli("bench", "--report", "--out", "none", cwd=tmp_path)
    assert_clean_exit(r, 0, "| YOLOv12-N |")
    assert "plot:" not in r.stdout
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in TRACKED_RESULTS.rglob("*")} \
        == before
    assert not any(tmp_path.iterdir())


def test_bench_report_without_records_says_where_it_looked(tmp_path):
    with pytest.raises(SystemExit, match=r"^--report: no such records: .*nowhere; give --out"):
        main(["bench", "--report", "--out", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match=r"^--report: no e2e records in "):
        main(["bench", "--report", "--out", str(tmp_path)])


def test_bench_unsupported_device_is_one_line():
    from _utils import assert_one_line_error, run_cli
    r = run_cli("bench", "--device", "mps", "--model", "n")
    assert_one_line_error(r, "--device: 'mps' is not supported by this command; use cpu, cuda")


@pytest.mark.parametrize("argv,msg", [
    (["--imgsz", "100"], "--imgsz: expected a positive multiple of 32"),
    (["--imgsz", "0"], "--imgsz: expected a positive multiple of 32"),
    (["--nc", "0"], "--nc: expected a positive number of classes, got 0"),
])
def test_info_bad_options_are_one_line(argv, msg):
    with pytest.raises(SystemExit) as e:
        main(["info", *argv])
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)


def test_every_option_of_every_command_is_also_a_key():
    """One grammar: a command's keys are exactly its --options (``_`` for ``-``)."""
    from yolov12.__main__ import _keys, _subcommands, build_parser, translate
    parser = build_parser()
    subs = _subcommands(parser)
    assert set(subs) == {"info", "bench", "predict", "val", "export", "compile"}
    for name, sub in subs.items():
        for key, (opt, action) in _keys(sub).items():
            switch = action.nargs == 0
            got = translate([name, f"{key}={'True' if switch else '1'}"], parser)
            assert got == [name, opt] + ([] if switch else ["1"]), (name, key, got)
        with pytest.raises(SystemExit, match=rf"^bogus=: not an argument of `yolov12 {name}`"):
            translate([name, "bogus=1"], parser)
    # the keys the docs give for export are its options
    keys = _keys(subs["export"])
    assert {"half", "device", "backend", "batch", "opset", "dynamic", "format"} <= set(keys)


def test_key_value_on_info_and_a_doubled_source_in_the_real_command(tiny_image, tmp_path):
    from _utils import assert_clean_exit, assert_one_line_error, run_cli
    r = run_cli("info", "model=n", "imgsz=64", "nc=3")
    assert_clean_exit(r, 0, "At 64x64, nc=3")
    r = run_cli("predict", tiny_image, f"source={tiny_image}", "model=n", "device=cpu",
                f"project={tmp_path}")
    assert_one_line_error(r, "both name the images; give them one way")


def test_export_takes_its_documented_keys(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    base = ["export", "model=n", "imgsz=32", f"out={out}", "check=False"]
    with pytest.raises(SystemExit, match=r"^check=: not an argument"):
        main(base)
    base[-1] = "no_check=True"
    with pytest.raises(SystemExit) as e:
        main(base + ["half=True"])
    assert str(e.value).startswith("--half: export writes a float32 ONNX file")
    with pytest.raises(SystemExit) as e:
        main(base + ["backend=sdpa"])
    assert str(e.value).startswith("--backend sdpa: the ONNX file computes area attention with "
                                   "standard ONNX ops")
    import yolov12.export as E
    asked = {}

    def fake_export(model, path, imgsz, **kw):  # the options as write_onnx receives them
        asked.update(kw, imgsz=imgsz)
        path = E.Path(path)
        path.write_bytes(b"onnx")
        return path
    with mock.patch.object(E, "write_onnx", fake_export):
        assert main(base + ["device=cpu", "backend=reference", "batch=2", "half=False",
                            "opset=12", "dynamic_batch=True"]) == 0
    assert asked == dict(imgsz=(32, 32), batch=2, dynamic_batch=True, opset=12,
                         exporter="torchscript", dynamic=False)
    assert "input: images (batch, 3, 32, 32) exactly" in capsys.readouterr().out


def test_nc_with_a_checkpoint_must_match_it(tmp_path, tiny_image):
    from yolov12 import YOLOv12
    weights = tmp_path / "w.pt"
    torch.save(YOLOv12("n", nc=5).state_dict(), weights)
    base = ["predict", str(tiny_image), "--weights", str(weights), "--imgsz", "32", "--device",
            "cpu", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        main(base + ["--nc", "3"])
    assert str(e.value) == f"--nc 3 contradicts {weights}, which holds 5 classes; drop --nc"
    assert main(base + ["nc=5"]) == 0  # the same number is no contradiction
