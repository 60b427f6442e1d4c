"""The CUDA backend (csrc/ kernels through yolov12_kernels.cuda_backend).

CPU (CI): the backend says why it is unavailable / cannot take a call, ``backend="cuda"`` on CPU
tensors raises a clear error, and "auto" falls back with one log line.

GPU (skipped with the reason elsewhere): AOT and JIT builds, then correctness against
yolov12_kernels.reference on random shapes, NaN-poisoned outputs, odd N, batch*areas*heads past
65,535, float16 / bfloat16, both layouts, strided and misaligned views, and the depthwise conv for
float32 / float16 / bfloat16 with odd H, W, C and kernel sizes; compute-sanitizer memcheck and
racecheck on a small case. Set YOLOV12_CUDA_ARCHS=compute_75 (with a fresh JIT cache or AOT build)
to run all of this on the sm_75 code path JIT-compiled by the driver (see docs/cuda.md).
"""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
from _utils import assert_close_to_reference, poison_like

import yolov12_kernels as yk
from benchmarks import sanitizer_case
from yolov12_kernels import cuda_backend, dispatch, reference

HAS_CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (none visible)")


# ------------------------------------------------------------------------------------------------
# CPU
def test_unavailable_reason_is_clear():
    reason = cuda_backend.unavailable()
    if reason is None:
        assert cuda_backend.source() in ("aot", "jit")
        return
    assert "yolov12_kernels._C" in reason
    if torch.version.cuda is None:
        assert "has no CUDA" in reason


def test_unsupported_reasons():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert "CUDA device" in cuda_backend.unsupported("area_attention", cpu, torch.float16, 32,
                                                     False)
    assert "forward only" in cuda_backend.unsupported("area_attention", gpu, torch.float16, 32,
                                                      True)
    assert "head_dim 48" in cuda_backend.unsupported("area_attention", gpu, torch.float16, 48,
                                                     False)
    assert "float32" in cuda_backend.unsupported("fused_area_attention", gpu, torch.float32, 32,
                                                 False)
    assert "float64" in cuda_backend.unsupported("area_attention", gpu, torch.float64, 64, False)
    assert "float64" in cuda_backend.unsupported("position_perceiver", gpu, torch.float64, None,
                                                 False)
    assert cuda_backend.unsupported("position_perceiver", gpu, torch.float32, None, False) is None
    assert cuda_backend.unsupported("area_attention", gpu, torch.float16, 64, False) is None


def test_no_kernel_image_for_the_gpu_is_a_reason_not_a_crash(monkeypatch):
    """An extension without SASS/PTX for the GPU (e.g. the default AOT arch list, which has no
    PTX, on a GPU newer than sm_90): attention_ptx_arch raises; unsupported() must turn that into
    a reason for every op and dtype, so that "auto" moves on to another backend."""
    class NoImage:
        def attention_ptx_arch(self, device, bf16):
            raise RuntimeError("attention kernel attributes: CUDA kernel launch failed: no kernel "
                               "image is available for execution on the device (209)")

    monkeypatch.setattr(cuda_backend, "_state", dict(cuda_backend._state, loaded=True,
                                                     ext=NoImage(), reason=None, source="aot"))
    monkeypatch.setattr(cuda_backend, "_arch_cache", {})
    gpu = torch.device("cuda", 0)
    for op, dtype, d in (("area_attention", torch.float16, 32),
                         ("fused_area_attention", torch.bfloat16, 64),
                         ("position_perceiver", torch.float32, None)):
        reason = cuda_backend.unsupported(op, gpu, dtype, d, False)
        assert reason and "no code for GPU 0" in reason and "no kernel image" in reason, reason


def test_jit_cache_dir_is_keyed_by_python_torch_cuda_and_archs(monkeypatch, tmp_path):
    from yolov12_kernels import _cuda_build

    monkeypatch.setenv("YOLOV12_CUDA_CACHE", str(tmp_path))
    a = _cuda_build.cache_dir("8.0;9.0+PTX")
    assert a.parent == tmp_path
    assert a.name.startswith(f"py{sys.version_info.major}{sys.version_info.minor}-torch")
    assert a.name.endswith(f"-cu{torch.version.cuda}-sass80-sassptx90")
    assert _cuda_build.cache_dir("compute_75") != a


@pytest.mark.skipif(HAS_CUDA and cuda_backend.unavailable() is None,
                    reason="the extension is available here; covered by the GPU tests")
def test_backend_cuda_without_extension_raises():
    q = torch.randn(1, 8, 2, 32)
    with pytest.raises(RuntimeError, match=r"backend='cuda' cannot run area_attention.*_C"):
        yk.area_attention(q, q, q, backend="cuda")


def test_backend_cuda_on_cpu_tensors_raises():
    q = torch.randn(1, 8, 2, 32, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run area_attention") as e:
        yk.area_attention(q, q, q, backend="cuda")
    msg = str(e.value)
    # either the extension is missing here, or it is present and the tensors are on the CPU
    assert ("CUDA device" in msg) or ("_C" in msg), msg
    w = torch.randn(4, 1, 7, 7)
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run position_perceiver"):
        yk.position_perceiver(torch.randn(1, 4, 5, 5), w, backend="cuda")


def test_auto_falls_back_with_one_log_line(monkeypatch, caplog):
    # the Turing order puts "cuda" first; on CPU tensors (or without the extension) it is skipped
    monkeypatch.setattr(dispatch, "auto_order", lambda device: ("cuda", "sdpa", "reference"))
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    dispatch._logged.clear()
    q, k, v = (torch.randn(2, 12, 2, 32) for _ in range(3))
    with caplog.at_level(logging.WARNING, logger="yolov12_kernels"):
        out1 = yk.area_attention(q, k, v, 3)
        out2 = yk.area_attention(q, k, v, 3)
    lines = [r.getMessage() for r in caplog.records if "'cuda' skipped" in r.getMessage()]
    assert len(lines) == 1, lines
    ref = reference.area_attention(q.double(), k.double(), v.double(), 3)
    assert_close_to_reference(out1, ref)
    assert torch.equal(out1, out2)


# ------------------------------------------------------------------------------------------------
# GPU
@pytest.fixture(scope="module")
def ext():
    if not HAS_CUDA:
        pytest.skip("needs a CUDA GPU (none visible)")
    reason = cuda_backend.unavailable()
    if reason:
        pytest.fail(f"a GPU is visible but the CUDA extension is unavailable: {reason}")
    return cuda_backend.extension()


def _bf16_ok(ext) -> bool:
    return ext.attention_ptx_arch(torch.cuda.current_device(), True) >= 80


def _dtypes(ext):
    out = [torch.float16]
    if _bf16_ok(ext):
        out.append(torch.bfloat16)
    return out


@needs_gpu
def test_aot_build_imports():
    import importlib.util

    if importlib.util.find_spec("yolov12_kernels._C") is None:
        pytest.skip("AOT extension not built (pip install --no-build-isolation -e . on this "
                    "machine builds it)")
    from yolov12_kernels import _C

    assert hasattr(_C, "area_attention_fwd") and hasattr(_C, "position_perceiver_fwd")


@needs_gpu
def test_jit_build(tmp_path, monkeypatch):
    from yolov12_kernels import _cuda_build

    reason = _cuda_build.jit_unavailable()
    if reason:
        pytest.skip(f"JIT build impossible here: {reason}")
    monkeypatch.setenv("YOLOV12_CUDA_CACHE", str(tmp_path))
    mod = _cuda_build.load()
    q = torch.randn(1, 70, 2, 32, device="cuda", dtype=torch.float16)
    out = mod.area_attention_fwd(q, q, q, 1, 32 ** -0.5)
    ref = reference.area_attention(q.double(), q.double(), q.double(), 1)
    assert_close_to_reference(out, ref, reference.area_attention(q, q, q, 1))


ATTN_SHAPES = [  # (B, N, heads, d, area)
    (1, 1600, 2, 32, 4),   # YOLOv12-N P4: 4 areas of 400
    (2, 400, 4, 32, 1),    # P5, global
    (3, 21, 3, 64, 3),     # odd n = 7 (< one 16-row warp tile)
    (1, 130, 1, 64, 2),    # n = 65: one key past a 64-key tile
    (2, 129, 2, 32, 1),    # n = 129: tails in both q and k tiles
    (1, 1, 1, 32, 1),      # a single token
]


@needs_gpu
@pytest.mark.parametrize("shape", ATTN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_area_attention_drop_in(ext, shape):
    B, N, heads, d, area = shape
    for dtype in _dtypes(ext):
        q, k, v = (torch.randn(B, N, heads, d, device="cuda", dtype=dtype) for _ in range(3))
        out = poison_like(q)
        ext.area_attention_fwd(q, k, v, area, d ** -0.5, out)
        ref_hi = reference.area_attention(q.double(), k.double(), v.double(), area)
        ref_lo = reference.area_attention(q, k, v, area)
        assert_close_to_reference(out, ref_hi, ref_lo, name=f"{dtype} {shape}")
        # and through the public op
        with torch.no_grad():
            out2 = yk.area_attention(q, k, v, area, backend="cuda")
        assert torch.equal(out, out2)


@needs_gpu
@pytest.mark.parametrize("view", ["transposed", "sliced", "misaligned", "scale"])
def test_area_attention_strided_views(ext, view):
    B, N, heads, d, area = 2, 96, 3, 64, 2
    dt = torch.float16
    if view == "transposed":  # (B, heads, N, d) memory seen as (B, N, heads, d)
        q, k, v = (torch.randn(B, heads, N, d, device="cuda", dtype=dt).transpose(1, 2)
                   for _ in range(3))
    elif view == "sliced":    # q, k, v slices of one (B, N, heads, 3d) tensor
        q, k, v = torch.randn(B, N, heads, 3 * d, device="cuda", dtype=dt).split(d, dim=-1)
    elif view == "misaligned":  # 2-byte offset: no 16-byte vector loads possible
        numel = B * N * heads * d
        q, k, v = (torch.randn(numel + 1, device="cuda", dtype=dt)[1:].view(B, N, heads, d)
                   for _ in range(3))
    else:
        q, k, v = (torch.randn(B, N, heads, d, device="cuda", dtype=dt) for _ in range(3))
    scale = 0.3 if view == "scale" else d ** -0.5
    out = ext.area_attention_fwd(q, k, v, area, scale)
    ref_hi = reference.area_attention(q.double(), k.double(), v.double(), area, scale)
    ref_lo = reference.area_attention(q, k, v, area, scale)
    assert_close_to_reference(out, ref_hi, ref_lo, name=view)


@needs_gpu
def test_area_attention_more_than_65535_problems(ext):
    B, N, heads, d, area = 2, 64, 520, 32, 64  # 2 * 64 * 520 = 66,560 problems of one token
    q, k, v = (torch.randn(B, N, heads, d, device="cuda", dtype=torch.float16) for _ in range(3))
    out = poison_like(q)
    ext.area_attention_fwd(q, k, v, area, d ** -0.5, out)
    torch.testing.assert_close(out, v, rtol=0, atol=0)  # softmax over one key is 1: out == v
    B, N, heads, area = 1, 2 * 70000, 1, 70000  # two tokens per area, 70,000 areas
    q, k, v = (torch.randn(B, N, heads, d, device="cuda", dtype=torch.float16) for _ in range(3))
    out = ext.area_attention_fwd(q, k, v, area, d ** -0.5)
    ref_hi = reference.area_attention(q.double(), k.double(), v.double(), area)
    assert_close_to_reference(out, ref_hi, reference.area_attention(q, k, v, area))


QKV_SHAPES = [  # (B, heads, d, H, W, area)
    (1, 2, 32, 40, 40, 4),   # YOLOv12-N P4
    (2, 4, 32, 20, 20, 1),   # YOLOv12-N P5
    (2, 3, 64, 7, 9, 3),     # odd H, W; n = 21
    (1, 1, 32, 5, 13, 5),    # n = 13
]


def _pe_params(C, k, dtype):
    w = torch.randn(C, 1, k, k, device="cuda", dtype=dtype) / k
    b = torch.randn(C, device="cuda", dtype=dtype)
    return w, b


@needs_gpu
@pytest.mark.parametrize("shape", QKV_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_model_layout_and_fused(ext, shape):
    B, heads, d, H, W, area = shape
    C = heads * d
    for dtype in _dtypes(ext):
        qkv = torch.randn(B, 3 * C, H, W, device="cuda", dtype=dtype)
        out = poison_like(torch.empty(B, C, H, W, device="cuda", dtype=dtype))
        ext.area_attention_qkv_fwd(qkv, heads, area, d ** -0.5, out)
        ref_hi = reference.area_attention_qkv(qkv.double(), heads, area)
        assert_close_to_reference(out, ref_hi, reference.area_attention_qkv(qkv, heads, area),
                                  name=f"qkv {dtype}")
        w, b = _pe_params(C, 7, dtype)
        out = poison_like(out)
        ext.fused_area_attention_fwd(qkv, heads, area, w, b, d ** -0.5, out)
        ref_hi = reference.fused_area_attention(qkv.double(), heads, area, w.double(), b.double())
        ref_lo = reference.fused_area_attention(qkv, heads, area, w, b)
        assert_close_to_reference(out, ref_hi, ref_lo, name=f"fused {dtype}")
        with torch.no_grad():
            out2 = yk.fused_area_attention(qkv, heads, area, w, b, backend="cuda")
        assert torch.equal(out, out2)


@needs_gpu
def test_fused_on_non_contiguous_qkv(ext):
    B, heads, d, H, W, area = 2, 2, 32, 12, 10, 4
    C = heads * d
    big = torch.randn(B, 3 * C + 5, H, W + 3, device="cuda", dtype=torch.float16)
    qkv = big[:, 2:2 + 3 * C, :, 1:1 + W]  # rows not evenly spaced as tokens: backend copies
    w, b = _pe_params(C, 7, torch.float16)
    with torch.no_grad():
        out = yk.fused_area_attention(qkv, heads, area, w, b, backend="cuda")
    ref_hi = reference.fused_area_attention(qkv.double(), heads, area, w.double(), b.double())
    assert_close_to_reference(out, ref_hi,
                              reference.fused_area_attention(qkv, heads, area, w, b))
    # channels_last: token stride 3C, channel stride 1 (read in place, vector loads along d)
    qkv_cl = torch.randn(B, 3 * C, H, W, device="cuda", dtype=torch.float16).to(
        memory_format=torch.channels_last)
    out = poison_like(torch.empty(B, C, H, W, device="cuda", dtype=torch.float16))
    ext.fused_area_attention_fwd(qkv_cl, heads, area, w, b, d ** -0.5, out)
    ref_hi = reference.fused_area_attention(qkv_cl.double(), heads, area, w.double(), b.double())
    assert_close_to_reference(out, ref_hi,
                              reference.fused_area_attention(qkv_cl, heads, area, w, b))


PE_SHAPES = [  # (B, C, H, W, k)
    (2, 64, 40, 40, 7),
    (1, 5, 33, 65, 7),   # odd everything, tiles with tails in x and y
    (3, 3, 7, 3, 7),     # image smaller than the kernel
    (2, 6, 17, 19, 3),
    (1, 4, 11, 37, 5),   # run-time kernel size path
    (1, 2, 9, 9, 9),
]


@needs_gpu
@pytest.mark.parametrize("shape", PE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=lambda d: str(d).replace("torch.", ""))
def test_position_perceiver(ext, shape, dtype):
    B, C, H, W, k = shape
    v = torch.randn(B, C, H, W, device="cuda", dtype=dtype)
    w, b = _pe_params(C, k, dtype)
    out = poison_like(v)
    ext.position_perceiver_fwd(v, w, b, out, False)
    ref_hi = reference.position_perceiver(v.double(), w.double(), b.double())
    if dtype == torch.float32:  # fp32 on the CPU: cuDNN may use TF32 on the GPU
        ref_lo = reference.position_perceiver(v.cpu(), w.cpu(), b.cpu()).cuda()
    else:
        ref_lo = reference.position_perceiver(v, w, b)
    assert_close_to_reference(out, ref_hi, ref_lo, name="pe")
    # without bias, and accumulating onto an existing output
    base = torch.randn_like(v)
    acc = base.clone()
    ext.position_perceiver_fwd(v, w, None, acc, True)
    ref_hi = base.double() + reference.position_perceiver(v.double(), w.double())
    lo = base + (reference.position_perceiver(v, w) if dtype != torch.float32 else
                 reference.position_perceiver(v.cpu(), w.cpu()).cuda())
    assert_close_to_reference(acc, ref_hi, lo, name="pe accumulate")


@needs_gpu
def test_position_perceiver_views_and_many_planes(ext):
    # a channel slice with a W stride of 2: any strides are read in place
    big = torch.randn(2, 10, 15, 26, device="cuda", dtype=torch.float16)
    v = big[:, 3:9, :, ::2]
    w, b = _pe_params(6, 7, torch.float16)
    with torch.no_grad():
        out = yk.position_perceiver(v, w, b, backend="cuda")
    ref_hi = reference.position_perceiver(v.double(), w.double(), b.double())
    assert_close_to_reference(out, ref_hi, reference.position_perceiver(v, w, b))
    # B * C = 70,000 planes > 65,535 (grid y): the planes loop
    v = torch.randn(2, 35000, 3, 4, device="cuda", dtype=torch.float16)
    w, b = _pe_params(35000, 7, torch.float16)
    out = poison_like(v)
    ext.position_perceiver_fwd(v, w, b, out, False)
    ref_hi = reference.position_perceiver(v.double(), w.double(), b.double())
    assert_close_to_reference(out, ref_hi, reference.position_perceiver(v, w, b))


@needs_gpu
def test_argument_errors_name_the_argument(ext):
    q = torch.randn(1, 8, 2, 32, device="cuda", dtype=torch.float16)
    with pytest.raises(RuntimeError, match="q: expected a CUDA tensor"):
        ext.area_attention_fwd(q.cpu(), q, q, 1, 1.0)
    with pytest.raises(RuntimeError, match="k: dtype"):
        ext.area_attention_fwd(q, q.float(), q, 1, 1.0)
    with pytest.raises(RuntimeError, match="head_dim 16"):
        x = torch.randn(1, 8, 2, 16, device="cuda", dtype=torch.float16)
        ext.area_attention_fwd(x, x, x, 1, 1.0)
    with pytest.raises(RuntimeError, match="q: dtype Float"):
        x = q.float()
        ext.area_attention_fwd(x, x, x, 1, 1.0)
    with pytest.raises(RuntimeError, match="area: 3 does not divide"):
        ext.area_attention_fwd(q, q, q, 3, 1.0)
    with pytest.raises(RuntimeError, match="out: shape"):
        ext.area_attention_fwd(q, q, q, 1, 1.0, q[:, :4])
    # an out aliasing an input is a race (other CTAs still read it), not an in-place op
    with pytest.raises(RuntimeError, match="single memory location"):
        ext.area_attention_fwd(q, q.clone(), q.clone(), 1, 1.0, q)
    v = torch.randn(1, 4, 5, 5, device="cuda")
    with pytest.raises(RuntimeError, match="weight: expected a depthwise weight"):
        ext.position_perceiver_fwd(v, torch.randn(4, 1, 7, 5, device="cuda"))
    with pytest.raises(RuntimeError, match="weight: kernel size must be odd"):
        ext.position_perceiver_fwd(v, torch.randn(4, 1, 6, 6, device="cuda"))
    with pytest.raises(RuntimeError, match="bias: expected a CUDA tensor"):
        ext.position_perceiver_fwd(v, torch.randn(4, 1, 7, 7, device="cuda"), torch.randn(4))
    with pytest.raises(RuntimeError, match="single memory location"):
        ext.position_perceiver_fwd(v, torch.randn(4, 1, 7, 7, device="cuda"), None, v, True)
    with pytest.raises(RuntimeError, match="forward only"):
        x = q.clone().requires_grad_()
        yk.area_attention(x, x, x, backend="cuda")


@needs_gpu
@pytest.mark.slow
@pytest.mark.parametrize("tool", sanitizer_case.TOOLS)
def test_compute_sanitizer(ext, tool):
    """memcheck and racecheck on a small case of every kernel (benchmarks/sanitizer_case.py, also
    run by ``python -m benchmarks.gpu_check``)."""
    if sanitizer_case.find_sanitizer() is None:
        pytest.skip("compute-sanitizer not found")
    proc = subprocess.run(sanitizer_case.command(tool), capture_output=True, text=True,
                          env=sanitizer_case.environment(), cwd=sanitizer_case.ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
