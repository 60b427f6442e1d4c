"""The fast inference path (``YOLOv12.optimize``) against the reference model.

CPU: fp32 equality for several scales and sizes, bf16 against the framework's own bf16 error,
channels-last, validation, and torch.compile without graph breaks. CUDA (skipped without a GPU):
fp16/bf16/fp32 against the framework's own error in that dtype, CUDA-graph capture and replay,
torch.compile (the whole model traced in one graph; inductor on an attention layer).

The truth is always the reference model in float64 on the CPU: an fp32 run on a GPU is not one
(cuDNN convs use TF32, a 10-bit mantissa, by default: as coarse as fp16 itself).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from _utils import assert_close_to_reference, randomize_bn
from yolov12.fast import FastAAttn, FastYOLOv12, resolve_attention
from yolov12.model import YOLOv12
from yolov12.modules import AAttn

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def reference_model(scale: str) -> YOLOv12:
    """A model whose outputs are sensitive to every layer: random BN statistics and affine
    parameters (fresh BNs are nearly the identity, which would hide a wrong fold), and class
    biases at 0 so that the class probabilities sit where sigmoid is steep, not at ~1e-5."""
    model = randomize_bn(YOLOv12(scale)).eval()
    with torch.no_grad():
        for seq in model.model[-1].cv3:
            seq[-1].bias.zero_()
    return model


def errors(out: torch.Tensor, ref: torch.Tensor, size: int) -> tuple[float, float]:
    """(max box error as a fraction of the image side, max class-probability error)."""
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    d = (out.double().cpu() - ref.double().cpu()).abs()
    return d[:, :4].max().item() / size, d[:, 4:].max().item()


@pytest.mark.parametrize("scale,size", [("n", 64), ("n", (96, 160)), ("s", 128)])
def test_fp32_matches_reference(scale, size):
    model = reference_model(scale)
    x = torch.rand(2, 3, *((size, size) if isinstance(size, int) else size))
    with torch.inference_mode():
        ref = model(x)
        out = model.optimize("cpu", torch.float32)(x)
    box, cls = errors(out, ref, x.shape[-1])
    assert box < 1e-5 and cls < 1e-5, (box, cls)


def test_optimize_leaves_model_and_state_dict_keys_alone(choices):
    model = reference_model("n")
    keys = set(model.state_dict())
    fast = model.optimize()
    assert set(model.state_dict()) == keys, "optimize must not change the original model"
    assert any(isinstance(m, AAttn) for m in model.modules())
    fused_keys = set(YOLOv12("n").eval().fuse().state_dict())
    assert set(fast.net.state_dict()) == fused_keys, "FastAAttn must keep AAttn's names"
    assert all(not p.requires_grad for p in fast.parameters())
    assert not any(isinstance(m, AAttn) for m in fast.modules())
    assert isinstance(fast, FastYOLOv12) and fast.scale == "n"
    assert fast.num_params() < model.num_params()  # BN parameters folded away


def test_backends_and_channels_last_agree():
    model = reference_model("n")
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        for backend in ("reference", "sdpa"):
            for cl in (False, True):
                fast = model.optimize("cpu", torch.float32, backend=backend, channels_last=cl)
                assert fast.attention_backend == backend
                assert fast.channels_last is cl
                box, cls = errors(fast(x), ref, 64)
                assert box < 1e-5 and cls < 1e-5, (backend, cl, box, cls)


def test_auto_backend_is_reported(choices):
    """What optimize() chooses on each device, no forward: the CPU's (the modules path, SDPA,
    float32, channels-last), an sm_90 GPU's (the fused convs, Triton attention, float16,
    channels-last, graphs; NCHW without the fused convs), and "auto"'s order there."""
    from yolov12_kernels import dispatch
    from yolov12_kernels.target import RecordedGraphs
    fast = YOLOv12("n").optimize("cpu")
    assert fast.attention_backend in dispatch.BACKENDS
    gpu = choices == "gpu"
    assert (fast.attention_backend, fast.dtype, fast.fused_convs) == (
        ("triton", torch.float16, True) if gpu else ("sdpa", torch.float32, False))
    assert fast.channels_last is True and (fast._graph_kit is RecordedGraphs) == gpu
    order = dispatch.auto_order(torch.device("cpu"), "fused_area_attention")
    assert order == dispatch.FALLBACK_ORDER["sm80+" if gpu else "cpu"]
    assert YOLOv12("n").optimize("cpu", fused_convs=False).channels_last is not gpu


def test_load_state_dict_takes_the_models_own_keys_too():
    """``fast.load_state_dict`` takes the state dict of the model it was built from (keys
    ``model.0...``, BatchNorm folded as optimize folds it), the folded net's and its own
    (``net.model.0...``): each then computes exactly what a fast model built from those weights
    does. assign=True and a key the model does not have are refused, the key named as the model
    has it. (After a plan or graph was prepared: tests/test_autograd_modes.py loads every form.)
    The small network of ``_tiny`` (Conv+BN, A2C2f, Detect: what the keys are made of)."""
    from _tiny import images, tiny_yolo
    a, b = tiny_yolo(0), tiny_yolo(1)
    x = images(2)[0]
    want = b.optimize("cpu", torch.float32)
    with torch.inference_mode():
        expected = want(x)
    for sd in (b.state_dict(), want.net.state_dict(), want.state_dict()):
        fast = a.optimize("cpu", torch.float32)
        with torch.inference_mode():
            before = fast(x)
        fast.load_state_dict(sd)
        with torch.inference_mode():
            after = fast(x)
        assert not torch.equal(before, after) and torch.equal(after, expected)
    with pytest.raises(ValueError, match="assign"):
        fast.load_state_dict(want.state_dict(), assign=True)
    wrong = dict(b.state_dict(), **{"model.0.bn.typo": torch.zeros(1)})
    with pytest.raises(RuntimeError, match=r"model\.0\.bn\.typo"):
        fast.load_state_dict(wrong)
    with pytest.raises(ValueError, match="strict"):
        fast.load_state_dict(b.state_dict(), strict=False)


# Floors of the allowed (box / side, probability) error: what one rounding of an O(1) value costs.
FLOOR = {torch.float16: 2e-3, torch.bfloat16: 2e-3, torch.float32: 1e-5}


def truth_and_framework(model, x, dtype, device):
    """(the float64 CPU truth, the framework's own result in ``dtype`` on ``device``) for the
    reference model (reference attention; copies: casting the model itself down and back up would
    round its fp32 weights)."""
    with torch.inference_mode():
        truth = copy.deepcopy(model).cpu().double().set_attention_backend("reference")(
            x.cpu().double())
        ref_lo = copy.deepcopy(model).to(device, dtype).set_attention_backend("reference")(
            x.to(device, dtype)).float()
    return truth, ref_lo


def assert_within_framework_error(out, truth, ref_lo, dtype, side, factor=2.0, name="fast path"):
    """The flash-attention rule: ``out`` errs at most ``factor`` x what the framework's own
    computation in the same dtype errs (``ref_lo``), both against the float64 truth; box errors
    as a fraction of the image ``side``."""
    box_lo, cls_lo = errors(ref_lo, truth, side)
    box, cls = errors(out, truth, side)
    assert box <= max(factor * box_lo, FLOOR[dtype]), (name, "boxes", box, box_lo)
    assert cls <= max(factor * cls_lo, FLOOR[dtype]), (name, "classes", cls, cls_lo)


def _low_precision_check(model, x, dtype, device, factor=2.0):
    """Fast path in ``dtype`` within ``factor`` x the error of the reference model run in the same
    dtype, both against the float64 truth."""
    truth, ref_lo = truth_and_framework(model, x, dtype, device)
    with torch.inference_mode():
        out = model.optimize(device, dtype)(x.to(device))
    assert out.dtype == torch.float32  # decode in fp32
    assert_within_framework_error(out, truth, ref_lo, dtype, x.shape[-1], factor)


def test_bfloat16_on_cpu_within_framework_error():
    _low_precision_check(reference_model("n"), torch.rand(1, 3, 64, 64), torch.bfloat16, "cpu")


def test_bad_arguments_raise_naming_them():
    model = YOLOv12("n")
    with pytest.raises(ValueError, match="dtype"):
        model.optimize("cpu", torch.int8)
    with pytest.raises(ValueError, match="model"):
        FastYOLOv12(nn.Conv2d(3, 3, 1))
    fast = model.optimize("cpu")
    with pytest.raises(ValueError, match="x: image sides"):
        fast(torch.rand(1, 3, 50, 64))
    with pytest.raises(RuntimeError, match="CUDA"):
        fast.capture(1, 64)
    with pytest.raises(ValueError, match="net: put the model in eval mode"):
        resolve_attention(YOLOv12("n").train())


def test_torch_compile_fullgraph_no_breaks():
    """No graph break anywhere, the custom-op boundary included (fullgraph raises on a break).
    The "eager" compile backend checks the trace without inductor's slow C++ build."""
    model = reference_model("n")
    fast = model.optimize("cpu")
    x = torch.rand(1, 3, 64, 64)
    torch._dynamo.reset()
    compiled = torch.compile(fast, backend="eager", fullgraph=True)
    with torch.inference_mode():
        ref = model(x)
        box, cls = errors(compiled(x), ref, 64)
    assert box < 1e-5 and cls < 1e-5


def test_unfused_variant_is_the_reference_computation():
    """What the bench compiles as the torch.compile baseline computes what the reference does
    (BN unfolded, reference attention, decode in the model's dtype)."""
    model = reference_model("n")
    base = FastYOLOv12(model, "cpu", torch.float32, backend="reference", channels_last=False,
                       fold_bn=False, fp32_decode=False)
    assert any(getattr(m, "bn", None) is not None for m in base.modules())
    assert base.attention_backend == "reference"
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        box, cls = errors(base(x), model(x), 64)
    assert box < 1e-6 and cls < 1e-6  # the same arithmetic


# ----------------------------------------------------------------------------------------------
# GPU (skipped without CUDA)

@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", ["n", "s"])
def test_cuda_low_precision_matches_reference(scale, dtype):
    _low_precision_check(reference_model(scale), torch.rand(2, 3, 160, 160), dtype, "cuda")


@cuda
def test_cuda_fp32_matches_reference():
    # the framework's own fp32 on this GPU (TF32 cuDNN convs by default) sets the yardstick
    _low_precision_check(reference_model("n"), torch.rand(2, 3, 128, 128), torch.float32, "cuda")


@cuda
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_graph_replay_matches_forward(channels_last):
    fast = reference_model("n").optimize("cuda", torch.float16, channels_last=channels_last)
    graphed = fast.capture(2, (128, 160))
    for _ in range(2):  # new inputs each call: the copy-in must take effect
        x = torch.rand(2, 3, 128, 160, device="cuda", dtype=torch.float16)
        with torch.inference_mode():
            want = fast(x)
        got = graphed(x).clone()
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-2)
    with pytest.raises(ValueError, match="captured for input shape"):
        graphed(torch.rand(1, 3, 128, 160, device="cuda", dtype=torch.float16))


@cuda
def test_cuda_torch_compile_fullgraph_aot_eager():
    """The whole fp16 fast model on CUDA traces as one graph through AOTAutograd, the GPU
    backends' custom ops by their fake kernels (what inductor builds on), and computes within the
    framework's fp16 error. aot_eager, not inductor: inductor's code generation for the whole
    network takes minutes (the layer test below runs inductor)."""
    model = reference_model("n")
    x = torch.rand(1, 3, 128, 128)
    truth, ref_lo = truth_and_framework(model, x, torch.float16, "cuda")
    fast = model.optimize("cuda", torch.float16)
    torch._dynamo.reset()
    compiled = torch.compile(fast, backend="aot_eager", fullgraph=True)
    with torch.inference_mode():
        out = compiled(x.cuda())
    assert_within_framework_error(out, truth, ref_lo, torch.float16, 128, name="aot_eager")


@cuda
@pytest.mark.slow
def test_cuda_inductor_attention_layer():
    """inductor compiles one fast attention layer (qkv conv, the backend's custom op, proj)
    fullgraph; eager and compiled both within 2x the framework's own fp16 error of the float64
    truth (compared with each other, inductor's fused fp32 arithmetic vs eager fp16 would only
    say which of the two rounds differently)."""
    model = reference_model("n")
    attn = next(m for m in model.modules() if isinstance(m, AAttn))
    fast_attn = next(m for m in model.optimize("cuda", torch.float16).modules()
                     if isinstance(m, FastAAttn))
    x = torch.randn(2, attn.qkv.conv.in_channels, 16, 24)  # 384 tokens: any area divides them
    with torch.inference_mode():
        truth = copy.deepcopy(attn).double().eval()
        truth.backend = "reference"
        truth = truth(x.double()).cuda()
        ref_lo = copy.deepcopy(attn).to("cuda", torch.float16).eval()
        ref_lo.backend = "reference"
        ref_lo = ref_lo(x.to("cuda", torch.float16))
        x16 = x.to("cuda", torch.float16)
        eager = fast_attn(x16)
        torch._dynamo.reset()
        compiled = torch.compile(fast_attn, fullgraph=True)(x16)
    for name, out in (("eager", eager), ("inductor", compiled)):
        assert_close_to_reference(out, truth, ref_lo, name=f"{fast_attn.backend} {name}")


def test_fast_aattn_picks_its_backend_by_problem_size():
    """"auto" ranks backends per size class (batch 1 and batch 32 differ on a GPU): the fast
    path resolves one backend per class when it is built, and each call's size picks among them."""
    from yolov12_kernels import dispatch, dispatch_table
    from yolov12.fast import FastAAttn
    attn = AAttn(64, 2, area=4).eval()
    calls = []

    def fake(name):
        def core(qkv, *args):
            calls.append(name)
            return qkv[:, :64]
        return dispatch.Backend(name, None, core, None)
    fa = FastAAttn(attn, {"S": fake("small"), "M": fake("medium"), "L": fake("large")})
    assert fa.backend == "large+medium+small"
    with torch.no_grad():
        fa(torch.randn(1, 64, 8, 8))                       # 4,096 elements
        side = 1 << 7                                      # 64 * 128 * 128 = 2^20: class M
        fa(torch.randn(1, 64, side, side))
    assert calls == ["small", "medium"]
    assert dispatch_table.size_class(64 * side * side) == "M"
