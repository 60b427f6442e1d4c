"""State-dict layout parity with the public YOLO12 model.

``tests/data/yolo12_state_dict_shapes.json.gz`` holds every state-dict key and tensor shape of the
ultralytics YOLO12 models (n/s/m/l/x, nc=80), dumped from ultralytics' own ``DetectionModel``
built from its ``yolo12<scale>.yaml`` (version recorded in the file). Our model must have exactly
the same keys, in the same order, with the same shapes, so that public checkpoints load with
``strict=True``. Where ultralytics is installed, the second test also compares outputs.
"""
import gzip
import json
from pathlib import Path

import pytest
import torch

from yolov12 import YOLOv12

DATA = Path(__file__).parent / "data" / "yolo12_state_dict_shapes.json.gz"


def public_layout():
    with gzip.open(DATA, "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("scale", list("nsmlx"))
def test_same_keys_order_and_shapes_as_public_model(scale):
    want = public_layout()["scales"][scale]
    got = [[k, list(v.shape)] for k, v in YOLOv12(scale).state_dict().items()]
    assert got == want


def test_outputs_equal_the_public_model_when_ultralytics_is_installed():
    tasks = pytest.importorskip("ultralytics.nn.tasks",
                                reason="ultralytics not installed (optional parity check)")
    theirs = tasks.DetectionModel("yolo12n.yaml", nc=80, verbose=False).eval()
    with torch.no_grad():
        for k, v in theirs.state_dict().items():
            if k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
            elif k.endswith("running_mean"):
                v.normal_(0, 0.1)
    ours = YOLOv12("n")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    x = torch.rand(1, 3, 256, 320)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x)[0], atol=1e-3, rtol=1e-4)
