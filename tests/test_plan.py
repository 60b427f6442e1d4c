"""The prepared forward of the fast path (issue 18): launch plans per input shape, replayed, and
CUDA graphs by default on a GPU.

CPU (the fused conv kernels in Triton's interpreter, ``fused_convs=True``): a plan's replay equals
the first call and the direct forward, bit for bit, on a new input too (a step missing from the
plan would replay stale data) and with every plan buffer NaN-poisoned first (a step missing shows
as NaN); each layer's output after a replay equals the direct forward's; a caller keeps its
previous output; inputs of another dtype, strides or memory format, under no_grad and
inference_mode; two threads at once; a shape evicted and rebuilt (least recently used first);
load_state_dict after the plan reaches its replay (prepared weights and the Triton pe tap tables);
layers the kernels do not take replay as PyTorch calls; the plan's steps within the launch budget;
each recorded launch passes the launcher what Triton's own ``JITFunction.run`` passes.

Interpreter forwards cost seconds each, so one model and its plan serve the module (the tests
hold whatever the plan holds at their start: each builds what it needs) at 32x32, with SDPA
attention (a PyTorch step) except where the Triton attention's recording is the point.

GPU (skipped here): graphs by default, their replay against the direct forward, a capture failure
falling back to the plan with one log line, weights reloaded after a capture, two GPUs.
"""
from __future__ import annotations

import gc
import logging
import threading
import weakref
from unittest import mock

import pytest
import torch

from _tiny import images as tiny_images
from _tiny import tiny_yolo
from test_fused_forward import BUDGET, interpreted, sensitive
from yolov12.fast import CapturedForward, fused_convs_unsupported, optimize
from yolov12.model import YOLOv12
from yolov12.plan import LaunchPlan

SIDE = 32  # the smallest input YOLOv12-N takes: every area divides its feature maps


def _seeded_model(seed: int) -> YOLOv12:
    torch.manual_seed(seed)  # module fixtures must not take whatever RNG state a test left
    return sensitive(YOLOv12("n"))


def _inputs(seed: int, n: int, shape=(1, 3, SIDE, SIDE)):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=g) for _ in range(n)]


@pytest.fixture(scope="module")
def fast():
    return optimize(_seeded_model(0), "cpu", torch.float32, fused_convs=True, backend="sdpa")


@pytest.fixture(scope="module")
def fast_gpu():
    """The same model and settings built under the GPU's choices: graphs on, recorded."""
    if fused_convs_unsupported(torch.device("cpu"), torch.float32) is not None:
        pytest.skip("the fused conv kernels do not run on this CPU (TRITON_INTERPRET=1 unset)")
    from yolov12_kernels.target import rehearse_gpu
    with rehearse_gpu():
        return optimize(_seeded_model(0), "cpu", torch.float32, fused_convs=True, backend="sdpa")


@pytest.fixture(scope="module")
def xs():
    return _inputs(1, 2)


@pytest.fixture(scope="module")
def direct(fast, xs):
    """(output of x0, output of x1, each layer's output on x1) of the direct forward."""
    layers = []
    with torch.inference_mode():
        out0 = fast.direct(xs[0])
        out1 = fast._fused(xs[1].contiguous(memory_format=torch.channels_last), layers)
    return out0, out1, [t.clone() for t in layers]


def _plan(fast, x) -> LaunchPlan:
    """The plan of x's shape (built by a call when the model has none)."""
    if tuple(x.shape) not in fast._replays:
        fast(x)
    plan = fast._replays[tuple(x.shape)]
    assert isinstance(plan, LaunchPlan)
    return plan


# ---------------------------------------------------------------------------------------------
@interpreted
@pytest.mark.parametrize("choice", ["cpu", "gpu"])
def test_replay_equals_first_call_and_direct_forward(request, choice, xs, direct):
    """First call (prepares the shape: the plan, or with the GPU's choices a CUDA graph, the
    recorded stand-in), then a replay on another input: each equals the direct forward exactly,
    and the first output is the caller's (the replay did not overwrite it)."""
    fast = request.getfixturevalue("fast" if choice == "cpu" else "fast_gpu")
    fast.reset_replays()
    first = fast(xs[0])
    kind = LaunchPlan if choice == "cpu" else CapturedForward
    assert isinstance(fast._replays[tuple(xs[0].shape)], kind)
    assert torch.equal(first, direct[0])
    second = fast(xs[1])  # a replay: every step on the new input
    assert torch.equal(second, direct[1])
    assert torch.equal(first, direct[0]), "the replay overwrote the previous call's output"
    assert not first.is_inference() and not first.requires_grad
    first.add_(0)  # a plain tensor of the caller's


@interpreted
def test_replay_rewrites_every_buffer_and_layer(fast, xs, direct):
    """Every buffer of the plan NaN first: a replay must rewrite all it reads; each layer's output
    after it equals the direct forward's layer by layer (``layer_outputs``)."""
    plan = _plan(fast, xs[0])
    plan.poison()
    assert torch.isnan(plan.output).all()
    out = plan.replay(xs[1])
    assert torch.equal(out, direct[1])
    assert len(plan.layer_outputs) == len(direct[2]) == len(fast.net.model)
    for i, (got, want) in enumerate(zip(plan.layer_outputs, direct[2])):
        assert torch.equal(got, want), f"layer {i}"


@interpreted
def test_inputs_of_any_dtype_strides_and_grad_mode(fast, xs, direct):
    wide = torch.zeros(1, 3, SIDE, 2 * SIDE, dtype=torch.float64)
    wide[..., ::2] = xs[0].double()
    strided = wide[..., ::2]  # float64, non-contiguous, the values of xs[0]
    assert not strided.is_contiguous()
    with torch.no_grad():
        assert torch.equal(fast(strided), direct[0])
    with torch.inference_mode():
        assert torch.equal(fast(xs[1].contiguous(memory_format=torch.channels_last)), direct[1])


@interpreted
def test_two_threads_get_their_own_outputs(fast, xs, direct):
    _plan(fast, xs[0])
    outs, errors = {}, []

    def call(i):
        try:
            outs[i] = fast(xs[i])
        except Exception as e:  # noqa: BLE001 — reported by the assertion below
            errors.append(e)
    threads = [threading.Thread(target=call, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert torch.equal(outs[0], direct[0]) and torch.equal(outs[1], direct[1])


@interpreted
def test_plan_steps_within_the_launch_budget(fast, xs):
    """One step per kernel of the fused forward (issue 13's count, less the input cast: the
    replay's copy-in): 104 Triton launches (89 dense convs, 6 depthwise, 8 MLP pairs, 1 decode),
    8 SDPA attention cores and 2 upsample copies as PyTorch calls."""
    from yolov12_kernels.triton import launch
    plan = _plan(fast, xs[0])
    calls = [s for s in plan.steps if isinstance(s, launch.CallStep)]
    assert len(plan.steps) <= BUDGET
    assert plan.launches() == 104 and len(calls) == 10, (plan.launches(), len(calls))
    assert sum(s.fn is torch.Tensor.copy_ for s in calls) == 2


def test_least_recently_used_shape_goes_first():
    """max_shapes=2: A, B, A again (kept, now the most recent), C: B goes, its memory with it."""
    fast = optimize(YOLOv12("n"), "cpu", torch.float32, fused_convs=False, max_shapes=2)
    built = []

    class Prepared:  # stands for a graph or plan
        def __init__(self, x):
            built.append(tuple(x.shape))
            self.out = torch.zeros(1)

        def __call__(self, x):
            return self.out

    alive = {}

    def prepare(x):
        p = Prepared(x)
        alive[tuple(x.shape)] = weakref.ref(p)
        return p, p.out
    a, b, c = ((1, 3, 32, 32), (1, 3, 32, 64), (1, 3, 64, 32))
    with mock.patch.object(fast, "_prepare", prepare):
        for shape in (a, b, a, c):
            fast._prepared(torch.zeros(shape))
    gc.collect()
    assert built == [a, b, c]
    assert list(fast._replays) == [a, c]
    assert alive[b]() is None and alive[a]() is not None


@interpreted
def test_shape_evicted_and_back_is_rebuilt(xs, direct):
    """max_shapes=1: 32x32, then 32x64 (the first plan is evicted and freed), then 32x32 again."""
    fast = optimize(_seeded_model(0), "cpu", torch.float32, fused_convs=True, backend="sdpa",
                    max_shapes=1)
    assert torch.equal(fast(xs[0]), direct[0])
    first = weakref.ref(fast._replays[tuple(xs[0].shape)])
    fast(torch.rand(1, 3, SIDE, 2 * SIDE))
    gc.collect()
    assert first() is None, "an evicted plan is still alive (its buffers with it)"
    assert torch.equal(fast(xs[0]), direct[0])
    assert list(fast._replays) == [tuple(xs[0].shape)]


@interpreted
def test_weights_loaded_after_the_plan_reach_its_replay(xs):
    """Triton attention (its pe tap table is read by address): plan, load other weights, replay
    = a model built with those weights (prepared weight copies and pe tables rewritten)."""
    def build(seed):
        return optimize(_seeded_model(seed), "cpu", torch.float32, fused_convs=True,
                        backend="triton")
    fast, other = build(0), build(1)
    before = fast(xs[0])
    fast.load_state_dict(other.state_dict())
    replayed = fast(xs[0])
    with torch.inference_mode():
        want = other.direct(xs[0])
    assert not torch.equal(replayed, before)
    assert torch.equal(replayed, want), "the replay kept some of the old weights"


@interpreted
def test_weights_loaded_refresh_pe_tap_tables_of_the_modules_path():
    """Without the fused convs the attention modules' Triton pe tables are rewritten in place by
    load_state_dict too (a CUDA graph of that path reads them by address)."""
    from yolov12.fast import FastAAttn
    from yolov12_kernels.triton import area_attention as K
    fast = optimize(_seeded_model(0), "cpu", torch.float32, fused_convs=False, backend="triton")
    attn = next(m for m in fast.net.modules() if isinstance(m, FastAAttn))
    with torch.inference_mode():
        attn(torch.rand(1, attn.qkv.conv.in_channels, 4, 4))  # builds the table
    w, b = attn.pe.conv.weight, attn.pe.conv.bias
    table = K.pe_taps(w, b)
    fast.load_state_dict(optimize(_seeded_model(1), "cpu", torch.float32,
                                  fused_convs=False).state_dict())
    assert torch.equal(table, K._taps_table(w, b))


@interpreted
def test_layers_the_kernels_do_not_take_replay_as_pytorch_calls():
    """ReLU convs into a block buffer and a concat slice, a bilinear upsample, a concat built by
    torch.cat: each a PyTorch step of the plan; a poisoned replay equals the first call."""
    from yolov12_kernels.triton import launch
    torch.manual_seed(2)
    model = YOLOv12("n")
    model.model[2].cv1.act = torch.nn.ReLU()
    model.model[15].act = torch.nn.ReLU()
    model.model[9] = torch.nn.Sequential(torch.nn.Upsample(None, 2, "nearest"))
    model.model[12] = torch.nn.Upsample(None, 2, "bilinear")
    fast = optimize(sensitive(model), "cpu", torch.float32, fused_convs=True, backend="sdpa")
    x = _inputs(3, 1)[0]
    first = fast(x)
    plan = fast._replays[tuple(x.shape)]
    modules = {type(s.args[0]).__name__ for s in plan.steps
               if isinstance(s, launch.CallStep) and isinstance(s.args[0], torch.nn.Module)}
    assert {"Conv", "Sequential", "Upsample", "Concat"} <= modules, modules
    plan.poison()
    assert torch.equal(fast(x), first)


# ---------------------------------------------------------------------------------------------
# what survived planted bugs (issue 25, item 4): the small network of _tiny, both choices
@interpreted
def test_the_callers_input_is_never_the_prepared_input(choices):
    """A shape prepared from an input already in the model's dtype and memory format (float32,
    channels-last): the plan's (or graph's) input buffer must be its own, not the caller's
    tensor, which the next call's copy-in would overwrite."""
    fast = optimize(tiny_yolo(0), "cpu", torch.float32, fused_convs=True)
    x0, x1 = (x.contiguous(memory_format=torch.channels_last) for x in tiny_images(7, 2))
    kept = x0.clone()
    first = fast(x0)
    second = fast(x1)
    assert isinstance(fast._replays[tuple(x0.shape)],
                      CapturedForward if choices == "gpu" else LaunchPlan)
    assert torch.equal(x0, kept), "a later call wrote into the caller's first input"
    assert not torch.equal(first, second)


@interpreted
def test_two_batch_sizes_at_one_image_size(choices):
    """Batch 2, then batch 1 at one image size, through the public call: each shape is
    prepared on its own (shapes right), and image 0 gets the same boxes and scores at either
    batch (a batch-1 call must not replay, or be cast into, batch 2's plan or graph)."""
    fast = optimize(tiny_yolo(1), "cpu", torch.float32, fused_convs=True)
    x2 = tiny_images(8, batch=2)[0]
    out2 = fast(x2)
    out1 = fast(x2[:1])
    assert out2.shape == (2, *out1.shape[1:]) and out1.shape[0] == 1
    torch.testing.assert_close(out1, out2[:1], rtol=1e-5, atol=1e-4)
    assert len(fast._replays) == 2


def test_two_threads_on_a_cold_plan_never_see_half_a_binding():
    """The first call of a plan binds the compiled kernel's direct launch; a second thread that
    comes in meanwhile must find either nothing (and take the JIT call itself) or all of it —
    never the launcher without its byte offsets. Thread A is held inside the binding, right
    where it computes the byte offsets, while thread B calls; then both finish, and a third
    call goes through the direct launch with the right pointers."""
    from yolov12_kernels.triton import launch as L
    launches, errors = [], []
    holding, released = threading.Event(), threading.Event()

    class Compiled:
        function, packed_metadata = "function", "packed"

        def run(self, *args):
            launches.append(args)

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **options: Compiled()

    class Pointer:  # stands for a tensor: what a plan reads of one
        device = torch.device("cpu")

        def __init__(self, address):
            self.address = address

        def data_ptr(self):
            return self.address

        def element_size(self):
            if threading.current_thread() is first and not holding.is_set():
                holding.set()  # A is binding: let B call now
                released.wait(10)
            return 4

    plan = L.Plan(Kernel(), 3, (0, 0), (7,), L.Config(16, 16, 1, 1))
    plan.jit_only = False  # as on a GPU (the interpreter never binds)
    ptrs = (Pointer(1024), Pointer(4096))

    def call():
        try:
            plan.run(ptrs, 0.5)
        except Exception as e:  # noqa: BLE001 — reported by the assertion below
            errors.append(e)
        finally:
            if threading.current_thread() is second:
                released.set()
    first, second = threading.Thread(target=call), threading.Thread(target=call)
    first.start()
    assert holding.wait(10)
    second.start()
    for t in (second, first):
        t.join(10)
    assert not errors, errors
    plan.run(ptrs, 0.5)
    assert launches[-1] == (3, 1, 1, 0, "function", "packed", None, None, None, 1024, 4096,
                            0.5, 7)


# ---------------------------------------------------------------------------------------------
# what a recorded launch passes Triton's launcher
class _Compiled:
    """Stands for a CompiledKernel: its launcher records what it is called with."""
    function, packed_metadata = "function", "packed"

    def __init__(self):
        self.calls = []

    def run(self, *args):
        self.calls.append(args)


def _jit_run_values(kernel, args, kwargs):
    """The launcher's arguments after the hooks as Triton's ``JITFunction.run`` computes them
    (``bound_args.values()`` of its binder), tensors as their data pointers. Needs Triton's
    binder, which only needs a backend for specialisation (a stand-in: the values are kept)."""
    from triton.runtime import jit as J
    if not hasattr(J, "create_function_from_signature"):
        pytest.skip("this Triton has no create_function_from_signature (the binder changed)")

    class Backend:
        def get_tensor_specialization(self, *a, **k):
            return None

        def get_int_specialization(self, *a, **k):
            return None

        def supports_native_tensor_specialization(self):
            return False

    jf = J.JITFunction(kernel.fn)
    binder = J.create_function_from_signature(jf.signature, jf.params, Backend())
    params, _, _ = binder(*args, **kwargs)
    return tuple(v.data_ptr() if isinstance(v, torch.Tensor) else v for v in params.values())


def _conv_launches():
    """(kernel, grid, args, kwargs) of one launch of each fused conv op's kernel."""
    from yolov12_kernels.triton import box_decode, conv, dwconv, mlp
    cl = torch.channels_last
    x = torch.randn(1, 16, 4, 4).to(memory_format=cl)
    w = torch.randn(32, 16, 3, 3).to(memory_format=cl)
    y = torch.empty(1, 32, 4, 4).to(memory_format=cl)
    dw = torch.randn(16, 1, 3, 3)
    w1, w2 = torch.randn(24, 16, 1, 1), mlp.pack_w2(torch.randn(16, 24, 1, 1))
    feats, out = torch.randn(1, 64 + 2, 21), torch.empty(1, 6, 21)
    return [
        (conv._conv_kernel, *conv.launch_args(x, w, torch.randn(32), None, None, y, 1, True)),
        (dwconv._dwconv_kernel, *dwconv.launch_args(x, dw, None, x.clone(), 1, False)),
        (mlp._mlp_kernel, *mlp.launch_args(x, w1, None, w2, torch.randn(16), x.clone(), True)),
        (box_decode._box_decode_kernel, *box_decode.launch_args(
            feats, out, [(4, 4), (2, 2), (1, 1)], [8, 16, 32], 16)),
    ]


@pytest.mark.parametrize("i", range(4), ids=["conv", "dwconv", "mlp", "box_decode"])
def test_recorded_launch_passes_what_triton_jit_passes(i):
    """The recorded launch calls the launcher as JITFunction.run does (Triton 3.6 and 3.9 end
    with ``kernel.run(g0, g1, g2, stream, function, packed, metadata, enter, leave,
    *bound_args.values())``): every parameter in signature order, constexprs included."""
    from yolov12_kernels.triton import launch
    kernel, grid, args, kwargs = _conv_launches()[i]
    compiled = _Compiled()
    step = launch._recorded_call(kernel, compiled, grid, args, kwargs)
    assert isinstance(step, launch.FixedLaunch)
    step(7)
    assert compiled.calls == [(grid[0], 1, 1, 7, "function", "packed", None, None, None,
                               *_jit_run_values(kernel, args, kwargs))]


def test_recording_keeps_each_launch_in_order():
    """Under the interpreter a recorded launch is the JIT call again (with its tensors); outside
    a recording nothing is kept; recordings are per thread."""
    from yolov12_kernels.triton import launch
    calls = []

    class Kernel:
        def __getitem__(self, grid):
            return lambda *a, **k: calls.append((grid, a, k))
    k = Kernel()
    launch.run(k, (1,), (1,), {})
    with launch.recording() as rec:
        launch.run(k, (2,), (2,), {"A": 1})
        other = threading.Thread(target=lambda: launch.run(k, (3,), (3,), {}))
        other.start()
        other.join()
    assert len(rec.steps) == 1 and isinstance(rec.steps[0], launch.JitLaunch)
    calls.clear()
    rec.steps[0](0)
    assert calls == [((2,), (2,), {"A": 1})]


# ---------------------------------------------------------------------------------------------
# GPU (skipped without one)
def _fused_gpu() -> bool:
    return torch.cuda.is_available() and fused_convs_unsupported(
        torch.device("cuda"), torch.float16) is None


fused_gpu = pytest.mark.skipif(not _fused_gpu(), reason="needs a CUDA GPU where the fused conv "
                                                        "kernels run (sm_80+)")
two_gpus = pytest.mark.skipif(not (_fused_gpu() and torch.cuda.device_count() >= 2),
                              reason="needs two CUDA GPUs where the fused conv kernels run")


@fused_gpu
@pytest.mark.parametrize("fused_convs", [None, False])
def test_cuda_default_is_a_graph_replay_equal_to_the_direct_forward(fused_convs):
    fast = sensitive(YOLOv12("n")).optimize("cuda", torch.float16, fused_convs=fused_convs)
    xs = [torch.rand(2, 3, 128, 160) for _ in range(2)]  # CPU float32: cast on the copy-in
    with torch.inference_mode():
        want = [fast.direct(x.cuda()) for x in xs]
    first = fast(xs[0])
    assert isinstance(fast._replays[tuple(xs[0].shape)], CapturedForward)
    second = fast(xs[1])
    for got, exp in ((first, want[0]), (second, want[1])):
        torch.testing.assert_close(got, exp, rtol=1e-3, atol=1e-3)
    with torch.no_grad():  # another dtype, device and memory format: the same input
        other = xs[1].cuda().half().contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast(other), want[1], rtol=1e-3, atol=1e-3)
    assert torch.equal(first, fast(xs[0])), "a replay overwrote the previous call's output"


@fused_gpu
def test_cuda_graphs_off_replays_the_plan():
    fast = YOLOv12("n").optimize("cuda", torch.float16, graphs=False)
    x = torch.rand(1, 3, 128, 128, device="cuda", dtype=torch.float16)
    first = fast(x)
    assert isinstance(fast._replays[tuple(x.shape)], LaunchPlan)
    with torch.inference_mode():
        want = fast.direct(x)
    torch.testing.assert_close(fast(x), want, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(first, want, rtol=1e-3, atol=1e-3)


@fused_gpu
def test_cuda_capture_failure_falls_back_to_the_plan_with_one_log_line(caplog):
    import yolov12.fast as fast_mod
    fast_mod._logged.clear()
    fast = YOLOv12("n").optimize("cuda", torch.float16)
    x = torch.rand(1, 3, 128, 128, device="cuda", dtype=torch.float16)
    with mock.patch.object(fast_mod, "CapturedForward", side_effect=RuntimeError("no graphs")), \
            caplog.at_level(logging.WARNING, logger="yolov12"):
        fast(x)
        fast(torch.rand(1, 3, 160, 128, device="cuda"))
    assert sum("CUDA graph capture" in r.getMessage() for r in caplog.records) == 1
    assert isinstance(fast._replays[tuple(x.shape)], LaunchPlan)


@fused_gpu
def test_cuda_weights_loaded_after_the_capture_reach_the_graph():
    fast, other = (_seeded_model(s).optimize("cuda", torch.float16, backend="triton")
                   for s in (0, 1))
    x = torch.rand(1, 3, 128, 128, device="cuda")
    before = fast(x)
    assert isinstance(fast._replays[tuple(x.shape)], CapturedForward)
    fast.load_state_dict(other.state_dict())
    replayed = fast(x)
    with torch.inference_mode():
        want = other.direct(x)
    assert not torch.equal(replayed, before)
    torch.testing.assert_close(replayed, want, rtol=1e-3, atol=1e-3)


@two_gpus
def test_cuda_two_models_on_two_gpus():
    model = YOLOv12("n")
    fasts = [model.optimize(f"cuda:{i}", torch.float16) for i in (0, 1)]
    x = torch.rand(1, 3, 128, 128)
    outs = [f(x) for f in fasts]
    assert [o.device.index for o in outs] == [0, 1]
    with torch.inference_mode():
        want = [f.direct(x.to(f.device)) for f in fasts]
    for o, w in zip(outs, want):
        torch.testing.assert_close(o, w, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(outs[1].cuda(0), outs[0], rtol=1e-3, atol=1e-2)
