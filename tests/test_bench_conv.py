"""benchmarks/bench_conv.py without a GPU: its three providers compute the same thing for every
distinct YOLOv12-N layer (a 64x64 input, the Triton side interpreted), and it exits cleanly."""
import pytest
import torch

from _utils import ATOL

pytest.importorskip("triton")

from benchmarks import bench_conv  # noqa: E402
from yolov12_kernels._conv_checks import unsupported  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


@pytest.mark.skipif(unsupported(DEVICE, torch.float32) is not None,
                    reason="the Triton kernels cannot run here")
def test_providers_agree_on_every_layer():
    n = 0
    with torch.inference_mode():
        for name, kind, (fused, eager, nhwc, flops, moved) in bench_conv.cases(
                "n", ("conv", "dwconv", "mlp", "decode"), 1, torch.float32, DEVICE, imgsz=64):
            a, b, c = fused(), eager(), nhwc()
            scale = max(1.0, b.abs().max().item())  # decode: boxes in pixels
            torch.testing.assert_close(a, b, rtol=1e-4, atol=10 * ATOL[torch.float32] * scale,
                                       msg=name)
            torch.testing.assert_close(c, b, rtol=1e-4, atol=10 * ATOL[torch.float32] * scale,
                                       msg=name)
            assert moved > 0 and (flops > 0 or kind == "decode")
            n += 1
    assert n > 40  # distinct layers of YOLOv12-N: most of its 111 convs are repeats


@pytest.mark.skipif(CUDA, reason="checks the no-GPU exit")
def test_exits_cleanly_without_a_gpu(capsys):
    assert bench_conv.main([]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out
