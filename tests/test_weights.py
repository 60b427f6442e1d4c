"""Checkpoint loading: round trips, realistic fake ultralytics checkpoints, wrong layouts, and
malicious pickles (refused, nothing runs)."""
from __future__ import annotations

import copy
import os
import pathlib
import sys
import types
from collections import OrderedDict

import pytest
import torch
from torch import nn

from _utils import randomize_bn
from yolov12 import YOLOv12
from yolov12 import modules as M
from yolov12.weights import (
    infer_layout,
    load_state_dict_file,
    save_safetensors,
)


@pytest.fixture(scope="module")
def model_n():
    return randomize_bn(YOLOv12("n", nc=80)).eval()


def _out(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------
def test_state_dict_pt_round_trip(tmp_path, model_n):
    path = tmp_path / "sd.pt"
    torch.save(model_n.state_dict(), path)
    loaded = YOLOv12.load(path)
    assert (loaded.scale, loaded.nc) == ("n", 80)
    _assert_same_weights(loaded, model_n)
    x = torch.rand(2, 3, 64, 96)
    assert torch.equal(_out(loaded, x), _out(model_n, x))


def test_safetensors_round_trip_keeps_scale_nc_names(tmp_path):
    pytest.importorskip("safetensors", reason="safetensors not installed")
    model = randomize_bn(YOLOv12("n", nc=3)).eval()
    model.names = {0: "cat", 1: "dog", 2: "bird"}
    path = tmp_path / "m.safetensors"
    save_safetensors(model, path)
    loaded = YOLOv12.load(path)
    assert (loaded.scale, loaded.nc, loaded.names) == ("n", 3, model.names)
    _assert_same_weights(loaded, model)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(_out(loaded, x), _out(model, x))
    assert set(load_state_dict_file(path)) == set(model.state_dict())


def test_save_safetensors_refuses_fused_model(tmp_path):
    pytest.importorskip("safetensors", reason="safetensors not installed")
    model = YOLOv12("n").eval().fuse()
    with pytest.raises(ValueError, match="fused"):
        save_safetensors(model, tmp_path / "f.safetensors")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        YOLOv12.load(tmp_path / "nope.pt")


# ---------------------------------------------------------------------------------------------
# fake ultralytics checkpoints: the same pickle globals as the public files
# ---------------------------------------------------------------------------------------------
_ULTRA_NAMES = {  # our class -> where ultralytics defines it
    M.Conv: "ultralytics.nn.modules.conv.Conv", M.DWConv: "ultralytics.nn.modules.conv.DWConv",
    M.Concat: "ultralytics.nn.modules.conv.Concat",
    M.Bottleneck: "ultralytics.nn.modules.block.Bottleneck",
    M.C3k: "ultralytics.nn.modules.block.C3k", M.C3k2: "ultralytics.nn.modules.block.C3k2",
    M.A2C2f: "ultralytics.nn.modules.block.A2C2f", M.ABlock: "ultralytics.nn.modules.block.ABlock",
    M.AAttn: "ultralytics.nn.modules.block.AAttn", M.DFL: "ultralytics.nn.modules.block.DFL",
    M.Detect: "ultralytics.nn.modules.head.Detect",
}


@pytest.fixture
def fake_ultralytics(monkeypatch):
    """Register modules named like ultralytics' with stand-in nn.Module classes, so that pickles
    written by torch.save name exactly the globals a public checkpoint names. Returns a factory
    turning a YOLOv12 into the object ultralytics would pickle."""
    classes = {}

    def cls_for(full):
        if full not in classes:
            mod_name, _, name = full.rpartition(".")
            parts = mod_name.split(".")
            for i in range(1, len(parts) + 1):  # ultralytics, ultralytics.nn, ...
                sub = ".".join(parts[:i])
                if sub not in sys.modules:
                    monkeypatch.setitem(sys.modules, sub, types.ModuleType(sub))
            c = type(name, (nn.Module,), {"__module__": mod_name, "__qualname__": name})
            setattr(sys.modules[mod_name], name, c)
            classes[full] = c
        return classes[full]

    def make(model: YOLOv12, half=True):
        seq = copy.deepcopy(model.model)
        for m in seq.modules():
            full = _ULTRA_NAMES.get(type(m))
            if full is not None:
                m.__class__ = cls_for(full)
        ns_cls = cls_for("ultralytics.utils.IterableSimpleNamespace")
        det = cls_for("ultralytics.nn.tasks.DetectionModel")()
        det.model = seq
        det.yaml = {"nc": model.nc, "scale": model.scale, "backbone": [[-1, 1, "Conv", [64, 3, 2]]]}
        det.names = {i: f"class{i}" for i in range(model.nc)}
        det.stride = torch.tensor([8.0, 16.0, 32.0])
        det.save = [4, 6, 8, 11, 14, 17, 20]
        det.args = {"imgsz": 640, "data": pathlib.PurePosixPath("coco.yaml")}
        det.pt_ns = ns_cls()  # an ultralytics namespace object, as older checkpoints carry
        if half:
            det.half()
        return det

    return make


def _ultra_ckpt(det, ema=None):
    import numpy as np
    return {"date": "2025-02-18T00:00:00", "version": "8.3.78", "license": "AGPL-3.0",
            "docs": "https://docs.ultralytics.com", "epoch": -1, "best_fitness": None,
            "model": det, "ema": ema, "updates": None, "optimizer": None,
            "train_args": {"model": "yolo12n.yaml", "epochs": 600, "imgsz": 640},
            "train_metrics": {"metrics/mAP50-95(B)": np.float64(0.406),
                              "fitness": np.float64(0.43)},
            "train_results": None}


def test_fake_ultralytics_checkpoint_loads_and_equals(tmp_path, model_n, fake_ultralytics):
    path = tmp_path / "yolo12n.pt"
    torch.save(_ultra_ckpt(fake_ultralytics(model_n, half=True)), path)
    for name in list(sys.modules):  # loading must not need (or import) anything named ultralytics
        if name.split(".")[0] == "ultralytics":
            del sys.modules[name]
    loaded = YOLOv12.load(path)
    assert "ultralytics" not in sys.modules
    assert (loaded.scale, loaded.nc) == ("n", 80)
    assert loaded.names[7] == "class7"
    # the public files are float16: the result equals our model with float16-rounded weights
    expected = copy.deepcopy(model_n)
    expected.load_state_dict({k: v.half().to(v.dtype) for k, v in model_n.state_dict().items()})
    _assert_same_weights(loaded, expected)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(_out(loaded, x), _out(expected, x))
    sd = load_state_dict_file(path)
    assert set(sd) == set(model_n.state_dict())
    assert all(v.dtype == torch.float16 for k, v in sd.items() if v.is_floating_point())


def test_fake_ultralytics_prefers_ema(tmp_path, model_n, fake_ultralytics):
    other = randomize_bn(YOLOv12("n", nc=80)).eval()
    path = tmp_path / "last.pt"
    torch.save(_ultra_ckpt(fake_ultralytics(model_n, half=False),
                           ema=fake_ultralytics(other, half=False)), path)
    _assert_same_weights(YOLOv12.load(path), other)


def test_dict_with_model_state_dict(tmp_path, model_n):
    path = tmp_path / "ck.pth"
    torch.save({"model": model_n.state_dict(), "epoch": 3}, path)
    _assert_same_weights(YOLOv12.load(path), model_n)


# ---------------------------------------------------------------------------------------------
# wrong layouts
# ---------------------------------------------------------------------------------------------
def test_official_v1_layout_is_a_clear_error(tmp_path, model_n):
    sd = OrderedDict()
    for k, v in model_n.state_dict().items():
        if ".attn.qkv." in k:  # v1.0: qk (2C) and v (C) convs, YOLO12's 7x7 pe and plain convs
            c = v.shape[0] // 3 if v.dim() else None
            sd[k.replace(".attn.qkv.", ".attn.qk.")] = v[: 2 * c] if c else v
            sd[k.replace(".attn.qkv.", ".attn.v.")] = v[2 * c:] if c else v
        else:
            sd[k] = v
    path = tmp_path / "v1.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"attn.qk \+ attn.v, position perceiver 7x7.*v1.0 "
                                         r"layout, which is not supported"):
        YOLOv12.load(path)


def test_5x5_pe_is_a_clear_error(tmp_path, model_n):
    sd = {k: (torch.zeros(v.shape[0], 1, 5, 5) if k.endswith("attn.pe.conv.weight") else v)
          for k, v in model_n.state_dict().items()}
    path = tmp_path / "pe5.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"position perceiver 5x5, layer 1 conv with 1 group"
                                         r"\(s\), which matches neither"):
        YOLOv12.load(path)


def test_scale_and_nc_inferred_and_unknown_width_refused(model_n):
    sd = model_n.state_dict()
    assert infer_layout(sd) == ("n", 80)
    assert infer_layout(YOLOv12("s", nc=5).state_dict()) == ("s", 5)
    bad = dict(sd)
    bad["model.0.conv.weight"] = torch.zeros(24, 3, 3, 3)
    with pytest.raises(ValueError, match="24 channels"):
        infer_layout(bad)
    with pytest.raises(ValueError, match="model.0.conv.weight"):
        infer_layout({"backbone.conv.weight": torch.zeros(1)})


def test_missing_and_unexpected_keys_listed(tmp_path, model_n):
    sd = dict(model_n.state_dict())
    del sd["model.2.cv1.conv.weight"]
    sd["model.99.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"missing 1.*model\.2\.cv1\.conv\.weight.*unexpected 1"):
        YOLOv12.load(path)


# ---------------------------------------------------------------------------------------------
# malicious pickles: refused, nothing runs
# ---------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvilExec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("kind", ["os.system", "exec"])
def test_malicious_checkpoint_refused_and_runs_nothing(tmp_path, model_n, zip_format, kind,
                                                       protocol):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = _Evil(f"touch {marker}")
    else:
        payload = _EvilExec(f"open({str(marker)!r}, 'w').write('x')")
    ckpt = {"model": model_n.state_dict(), "train_args": payload}
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format, pickle_protocol=protocol)
    with pytest.raises(ValueError, match="Refused as unsafe") as e:
        YOLOv12.load(path)
    # protocol 4's STACK_GLOBAL is read too: torch's unpickler fails on it before it can refuse,
    # which used to be reported as a damaged file
    assert "truncated" not in str(e.value) and ("system" in str(e.value) or "exec" in str(e.value))
    with pytest.raises(ValueError):
        load_state_dict_file(path)
    assert not marker.exists(), "loading the checkpoint executed code from it"


# ---------------------------------------------------------------------------------------------
# damaged files, whole-model saves, fused state dicts
# ---------------------------------------------------------------------------------------------
def _never_advises_unsafe_loading(msg: str):
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    assert "add_safe_globals" not in msg and "safe_globals(" not in msg


@pytest.mark.parametrize("damage", ["truncated", "random", "random-pickle", "cut-zip-head",
                                    "text"])
def test_damaged_pt_files_are_called_damaged_not_unsafe(tmp_path, model_n, damage):
    good = tmp_path / "good.pt"
    torch.save(model_n.state_dict(), good)
    data = good.read_bytes()
    path = tmp_path / f"{damage}.pt"
    path.write_bytes({
        "truncated": data[: len(data) // 2],
        "random": b"\x13\x37" + os.urandom(4000),
        "random-pickle": b"\x80\x02" + os.urandom(4000),  # a pickle's header, then noise
        "cut-zip-head": data[:30],
        "text": b"<html>404 Not Found</html>",
    }[damage])
    with pytest.raises(ValueError) as e:
        YOLOv12.load(path)
    msg = str(e.value)
    assert msg.startswith(f"path: {path} is not a readable PyTorch checkpoint")
    assert "truncated" in msg and "Refused" not in msg and "could run code" not in msg
    _never_advises_unsafe_loading(msg)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_bare_malicious_pickle_is_refused_as_unsafe(tmp_path, protocol):
    import pickle
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": _Evil(f"touch {marker}")}, protocol=protocol))
    with pytest.raises(ValueError, match=r"refers to \['(posix|nt|os)\.system'\].*Refused as "
                                         r"unsafe") as e:
        YOLOv12.load(path)
    assert "truncated" not in str(e.value) and not marker.exists()
    _never_advises_unsafe_loading(str(e.value))


def test_a_checkpoint_without_attention_is_not_described_as_one(tmp_path, model_n):
    """A YOLOv8-style file (convs, no attention at all): the message says there is none, and does
    not talk about attn.qkv convs."""
    sd = {k: v for k, v in model_n.state_dict().items() if ".attn." not in k}
    path = tmp_path / "yolov8n.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match="no attention layers at all") as e:
        YOLOv12.load(path)
    assert "qkv" not in str(e.value)


def test_malicious_legacy_pickle_refusal_names_the_global_and_no_torch_advice(tmp_path, model_n):
    path = tmp_path / "evil.pt"
    torch.save({"model": model_n.state_dict(), "x": _Evil("true")}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"refers to \['(posix|nt|os)\.system'\].*Refused") as e:
        YOLOv12.load(path)
    _never_advises_unsafe_loading(str(e.value))


def test_corrupt_safetensors_is_a_clear_error(tmp_path, model_n):
    pytest.importorskip("safetensors", reason="safetensors not installed")
    good = tmp_path / "good.safetensors"
    save_safetensors(model_n, good)
    for name, data in (("cut", good.read_bytes()[:500]), ("noise", os.urandom(300))):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=rf"^path: .*{name}\.safetensors is not a readable "
                                             r"\.safetensors file \(SafetensorError"):
            YOLOv12.load(path)


def test_whole_model_torch_save_of_our_yolov12_loads_without_running_code(tmp_path, model_n):
    model = copy.deepcopy(model_n)
    model.names = {i: f"thing{i}" for i in range(80)}
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    loaded = YOLOv12.load(path)
    assert (loaded.scale, loaded.nc, loaded.names[3]) == ("n", 80, "thing3")
    _assert_same_weights(loaded, model)
    # the classes in the file were stand-ins: none of ours was instantiated by unpickling
    from yolov12 import weights as W
    obj = W._torch_load(path)
    assert type(obj).__name__ == "YOLOv12" and type(obj) is not YOLOv12
    assert isinstance(obj, W._Inert)


def test_state_dict_saved_after_fuse_loads_as_a_fused_model(tmp_path, model_n):
    fused = copy.deepcopy(model_n).fuse()
    path = tmp_path / "fused.pt"
    torch.save(fused.state_dict(), path)
    loaded = YOLOv12.load(path)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loaded.modules())
    x = torch.rand(1, 3, 64, 96)
    torch.testing.assert_close(_out(loaded, x), _out(model_n, x), atol=1e-3, rtol=1e-3)
    # a partly fused file: the mismatch says what happened
    sd = dict(model_n.state_dict())
    for k in [k for k in sd if k.startswith("model.2.cv1.bn.")]:
        del sd[k]
    sd["model.2.cv1.conv.bias"] = torch.zeros(sd["model.2.cv1.conv.weight"].shape[0])
    torch.save(sd, path)
    with pytest.raises(ValueError, match="saved from a partly fused model"):
        YOLOv12.load(path)
