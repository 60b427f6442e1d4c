"""The CUDA backend (csrc/ kernels as yolov12::cuda_* torch.library ops, yolov12_kernels.cuda_backend).

CPU (CI):
* the backend says why it is unavailable / cannot take a call, ``backend="cuda"`` on CPU tensors
  raises a clear error, "auto" falls back with one log line; importing this module builds nothing;
* the operators' schemas and fake kernels: meta / FakeTensor shapes, one graph node under
  ``torch.compile(fullgraph=True)``;
* the host build of csrc/bindings.cpp (``-DY12_HOST_TEST``: CPU dispatch key, stub launchers of
  tests/host_launchers.cpp): its C++ signatures match the Python schemas, every argument check
  raises a Python exception through the dispatcher (many times over, in a child process with
  faulthandler), outputs of every op and layout match reference.py (what the binding passes to the
  kernels) in qkv's memory format, a fused call converts and copies nothing, and
  torch.library.opcheck passes;
* the JIT cache: content-addressed keys, the build-then-publish protocol under races, a reader
  never handed a rewritten file, failed builds publishing nothing.

GPU (skipped with the reason elsewhere): AOT and JIT builds, then correctness against
yolov12_kernels.reference on random shapes, NaN-poisoned outputs, odd N, batch*areas*heads past
65,535, float16 / bfloat16, both layouts, strided and misaligned views, channels-last qkv giving a
channels-last output, and the depthwise conv (NCHW and channels-last) for float32 / float16 /
bfloat16 with odd H, W, C and kernel sizes; the argument errors, opcheck and
torch.compile(fullgraph=True) on CUDA tensors; compute-sanitizer memcheck and racecheck on a small
case. Set YOLOV12_CUDA_ARCHS=compute_75 (with YOLOV12_CUDA_JIT=force) to run all of this on the
sm_75 code path JIT-compiled by the driver (see docs/cuda.md).
"""
from __future__ import annotations

import logging
import mmap
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _utils import assert_close_to_reference, attention_only, poison_like

import yolov12_kernels as yk
from benchmarks import sanitizer_case
from yolov12_kernels import _cuda_build, cuda_backend, dispatch, reference

# Cheap: nothing here may load or build the library at import (collection) time; the tests that
# need it ask for it when they run.
HAS_CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (none visible)")
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CHECKS = TESTS / "cuda_op_checks.py"


def _child_env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)] + sys.path),
                **extra)


def run_checks(what: str, device: str, library: str | None = None, timeout: int = 600,
               **env) -> None:
    """tests/cuda_op_checks.py in a child process with faulthandler: a native crash fails the test
    with the child's Python traceback instead of killing the test process."""
    cmd = [sys.executable, "-X", "faulthandler", str(CHECKS), what, "--device", device]
    if library:
        cmd += ["--library", library]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(**env),
                          timeout=timeout)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), (
        f"{' '.join(cmd)} exited with {proc.returncode}"
        + (" (killed by a signal: a native crash)" if proc.returncode < 0 else "")
        + f"\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}")


# ------------------------------------------------------------------------------------------------
# CPU: backend interface
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
    """A library without SASS/PTX for the GPU (e.g. the default AOT arch list, which has no PTX,
    on a GPU newer than sm_90): the arch query raises; unsupported() must turn that into a reason
    for every op and dtype, so that "auto" moves on to another backend."""
    class NoImage:
        def attention_ptx_arch(self, device, bf16):
            raise RuntimeError("attention kernel attributes: CUDA kernel launch failed: no kernel "
                               "image is available for execution on the device (209)")

    monkeypatch.setattr(cuda_backend, "_state", dict(cuda_backend._state, loaded=True,
                                                     path="/x/_C.so", reason=None, source="aot"))
    monkeypatch.setattr(cuda_backend, "extension", lambda: NoImage())
    monkeypatch.setattr(cuda_backend, "_arch_cache", {})
    gpu = torch.device("cuda", 0)
    for op, dtype, d in (("area_attention", torch.float16, 32),
                         ("fused_area_attention", torch.bfloat16, 64),
                         ("position_perceiver", torch.float32, None)):
        reason = cuda_backend.unsupported(op, gpu, dtype, d, False)
        assert reason and "no code for GPU 0" in reason and "no kernel image" in reason, reason


def test_stale_library_is_reported_not_loaded(tmp_path):
    """A library without the current schema tag (an AOT build of older sources) would abort the
    process in the dispatcher's schema check if loaded: it is refused before loading."""
    stale = tmp_path / "_C.so"
    stale.write_bytes(b"\x7fELF not our schemas")
    reason = cuda_backend._load_library(str(stale))
    assert reason and "other operator schemas" in reason and "rebuild" in reason
    assert str(stale) not in torch.ops.loaded_libraries


def test_schema_tag_in_the_binding_is_current():
    """csrc/bindings.cpp carries the hash of cuda_backend.SCHEMAS: change both together (the host
    build test below checks that the C++ signatures match the schemas)."""
    text = (ROOT / "csrc" / "bindings.cpp").read_text()
    assert f'"{cuda_backend.SCHEMA_TAG}"' in text, (
        f"update y12_ops_schema_tag in csrc/bindings.cpp to {cuda_backend.SCHEMA_TAG!r}")


def test_importing_the_tests_builds_nothing():
    """Collection (importing this module, e.g. in every xdist worker) neither loads nor builds the
    library: only tests that run ask for it."""
    code = ("import test_cuda_backend\nfrom yolov12_kernels import cuda_backend\n"
            "assert not cuda_backend._state['loaded'], cuda_backend._state\nprint('OK')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_child_env(YOLOV12_CUDA_JIT="1"), cwd=TESTS, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


def test_backend_cuda_without_extension_raises():
    if HAS_CUDA and cuda_backend.unavailable() is None:
        pytest.skip("the library is available here; covered by the GPU tests")
    q = torch.randn(1, 8, 2, 32)
    with pytest.raises(RuntimeError, match=r"backend='cuda' cannot run area_attention.*_C"):
        yk.area_attention(q, q, q, backend="cuda")


def test_backend_cuda_on_cpu_tensors_raises():
    q = torch.randn(1, 8, 2, 32, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run area_attention") as e:
        yk.area_attention(q, q, q, backend="cuda")
    msg = str(e.value)
    # either the library is missing here, or it is present and the tensors are on the CPU
    assert ("CUDA device" in msg) or ("_C" in msg), msg
    w = torch.randn(4, 1, 7, 7)
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run position_perceiver"):
        yk.position_perceiver(torch.randn(1, 4, 5, 5), w, backend="cuda")


def test_auto_falls_back_with_one_log_line(monkeypatch, caplog):
    # the Turing order puts "cuda" first; on CPU tensors (or without the library) it is skipped
    monkeypatch.setitem(dispatch.FALLBACK_ORDER, "cpu", ("cuda", "sdpa", "reference"))
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
# CPU: operator schemas and fake kernels (no library needed)
def test_fake_kernels_give_the_output_shapes():
    ops = cuda_backend.ops
    q = torch.empty(2, 40, 3, 32, device="meta", dtype=torch.float16)
    assert ops.cuda_area_attention(q, q, q, 4, 0.1).shape == q.shape
    qkv = torch.empty(2, 192, 5, 13, device="meta", dtype=torch.bfloat16)
    w = torch.empty(64, 1, 7, 7, device="meta")
    out = ops.cuda_fused_area_attention(qkv, 2, 5, w, None, 0.1)
    assert out.shape == (2, 64, 5, 13) and out.dtype == torch.bfloat16 and out.is_contiguous()
    # qkv's memory format, as the C++ kernel allocates it
    out = ops.cuda_fused_area_attention(qkv.to(memory_format=torch.channels_last), 2, 5, w,
                                        None, 0.1)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert ops.cuda_fused_area_attention(qkv, 2, 5, None, None, 0.1).shape == (2, 64, 5, 13)
    v = torch.empty(2, 64, 5, 13, device="meta")
    assert ops.cuda_position_perceiver(v, w, None).shape == v.shape
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():  # CUDA fake tensors work without a GPU
        x = torch.empty(2, 40, 3, 32, device="cuda", dtype=torch.float16)
        o = ops.cuda_area_attention(x, x, x, 4, 0.1)
        assert o.device.type == "cuda" and o.shape == x.shape
        ops.cuda_area_attention_out(x, x, x, 4, 0.1, o)


def test_backend_is_one_graph_node_under_torch_compile():
    """The backend functions trace to exactly one op each, fullgraph (no graph break)."""
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def core(qkv, w, b, q):
        x = cuda_backend.fused_area_attention(qkv, 2, 4, w, b, 0.17)
        y = cuda_backend.area_attention(q, q, q, 4, 0.17)
        return x, y, cuda_backend.position_perceiver(x, w, b)

    f = torch.compile(core, backend=capture, fullgraph=True)
    h = dict(device="meta", dtype=torch.float16)
    x, y, z = f(torch.empty(2, 192, 8, 8, **h), torch.empty(64, 1, 7, 7, **h),
                torch.empty(64, **h), torch.empty(2, 64, 2, 32, **h))
    assert x.shape == z.shape == (2, 64, 8, 8) and y.shape == (2, 64, 2, 32)
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert sorted(targets) == sorted(["yolov12.cuda_fused_area_attention",
                                      "yolov12.cuda_area_attention",
                                      "yolov12.cuda_position_perceiver"]), targets


# ------------------------------------------------------------------------------------------------
# CPU: the host build of the binding
@pytest.fixture(scope="module")
def host_library(tmp_path_factory):
    """csrc/bindings.cpp + tests/host_launchers.cpp built for the CPU dispatch key (in a child
    process: the test process never loads it)."""
    from torch.utils import cpp_extension

    inc = next((Path(c) / "include" for c in (os.environ.get("CUDA_HOME"), "/usr/local/cuda",
                                               str(Path(shutil.which("nvcc") or "/x").resolve()
                                                   .parent.parent))
                if c and (Path(c) / "include" / "cuda_runtime_api.h").is_file()), None)
    if inc is None or shutil.which(os.environ.get("CXX", "c++")) is None \
            or not cpp_extension.is_ninja_available():
        pytest.skip("the host build needs a C++ compiler, ninja and the CUDA runtime headers "
                    "(cuda_runtime_api.h, for the C API's types)")
    build = tmp_path_factory.mktemp("host_build")
    code = textwrap.dedent(f"""
        from torch.utils import cpp_extension
        print(cpp_extension.load(
            name="y12_host", sources=[{str(ROOT / "csrc" / "bindings.cpp")!r},
                                      {str(TESTS / "host_launchers.cpp")!r}],
            extra_include_paths=[{str(ROOT / "csrc")!r}, {str(inc)!r}],
            extra_cflags=["-O1", "-DY12_HOST_TEST"], build_directory={str(build)!r},
            is_python_module=False))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("what", ["errors", "reference", "opcheck"])
def test_host_build_of_the_binding(host_library, what):
    """Loading it checks the C++ signatures against the Python schemas (a mismatch would abort
    the child); then every argument check raises a Python exception through the dispatcher,
    outputs match the reference, and opcheck passes."""
    run_checks(what, "cpu", host_library)


# ------------------------------------------------------------------------------------------------
# CPU: the JIT cache
def _copy_csrc(dst: Path) -> Path:
    shutil.copytree(ROOT / "csrc", dst)
    return dst


def test_library_key_covers_sources_flags_and_toolchain(tmp_path):
    src = _copy_csrc(tmp_path / "csrc")
    inputs = _cuda_build.build_inputs("9.0", src)
    for field in ("sources", "cxx_flags", "cuda_flags", "torch", "torch_cuda", "python", "cxx",
                  "nvcc", "cxx11_abi"):
        assert field in inputs, field
    assert set(inputs["sources"]) == {f.name for f in src.iterdir()}
    assert "-gencode=arch=compute_90,code=sm_90" in inputs["cuda_flags"]
    key = _cuda_build.library_key(inputs)
    assert key == _cuda_build.library_key(_cuda_build.build_inputs("9.0", src))  # deterministic
    assert key != _cuda_build.library_key(_cuda_build.build_inputs("8.0", src))
    (src / "mma_utils.cuh").write_text((src / "mma_utils.cuh").read_text() + "\n// changed\n")
    assert key != _cuda_build.library_key(_cuda_build.build_inputs("9.0", src))
    for field, value in (("torch", "0.0"), ("torch_cuda", "0.0"), ("cxx", ["g++", "other"]),
                         ("nvcc", "other"), ("python", "3.0")):
        assert key != _cuda_build.library_key(dict(inputs, **{field: value})), field


_RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from yolov12_kernels import _cuda_build
    root, log = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_build(tmp):
        with open(log, "a") as f:
            f.write(f"build {os.getpid()}\\n")
        out = tmp / "lib.so"
        with open(out, "wb") as f:  # written in pieces: a half-written file must never show
            for i in range(20):
                f.write(bytes([i]) * 4096)
                f.flush()
                time.sleep(0.01)
        return out

    print(_cuda_build.publish(root, "k1", slow_build))
""")


def test_publish_races_build_once_and_hand_out_only_complete_files(tmp_path):
    root, log = tmp_path / "cache", tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(root), str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_child_env()) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert paths == {str(_cuda_build.published_path(root, "k1"))}, paths
    assert len(log.read_text().splitlines()) == 1, log.read_text()  # one build, three waited
    data = Path(paths.pop()).read_bytes()
    assert data == b"".join(bytes([i]) * 4096 for i in range(20))
    assert not list(root.glob(".build-*")), "temporary build directory left behind"


def test_a_published_file_never_changes_under_a_reader(tmp_path):
    root = tmp_path / "cache"

    def build(content):
        def run(tmp):
            (tmp / "lib.so").write_bytes(content)
            return tmp / "lib.so"
        return run

    final = _cuda_build.publish(root, "k1", build(b"first" * 1000))
    assert not os.access(final, os.W_OK) or os.geteuid() == 0  # published read-only
    with open(final, "rb") as f:
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        inode = os.stat(final).st_ino
        # the same key again: the published file is used, the builder never runs
        assert _cuda_build.publish(root, "k1", build(b"other" * 1000)) == final
        # a racer that got past the lock (e.g. flock not honoured) cannot replace it either
        other = tmp_path / "other.so"
        other.write_bytes(b"other" * 1000)
        assert _cuda_build._publish_file(other, final) is False
        assert os.stat(final).st_ino == inode and final.read_bytes() == b"first" * 1000
        assert view[:] == b"first" * 1000
        # changed inputs make a new key: a new file beside it, the mapped one untouched
        final2 = _cuda_build.publish(root, "k2", build(b"second" * 1000))
        assert final2 != final and view[:] == b"first" * 1000
        view.close()


def test_a_failed_build_publishes_nothing(tmp_path):
    root = tmp_path / "cache"
    (root / ".build-k1-stale").mkdir(parents=True)  # left by a killed build

    def broken(tmp):
        (tmp / "lib.so").write_bytes(b"half")
        raise RuntimeError("nvcc failed")

    with pytest.raises(RuntimeError, match="nvcc failed"):
        _cuda_build.publish(root, "k1", broken)
    assert not _cuda_build.published_path(root, "k1").exists()
    assert not list(root.glob(".build-*"))

    def good(tmp):
        (tmp / "lib.so").write_bytes(b"ok")
        return tmp / "lib.so"

    assert _cuda_build.publish(root, "k1", good).read_bytes() == b"ok"


# ------------------------------------------------------------------------------------------------
# GPU
@pytest.fixture(scope="module")
def ext():
    if not HAS_CUDA:
        pytest.skip("needs a CUDA GPU (none visible)")
    reason = cuda_backend.unavailable()
    if reason:
        pytest.fail(f"a GPU is visible but the CUDA library is unavailable: {reason}")
    return cuda_backend.extension()


def _bf16_ok(ext) -> bool:
    return ext.attention_ptx_arch(torch.cuda.current_device(), True) >= 80


def _dtypes(ext):
    out = [torch.float16]
    if _bf16_ok(ext):
        out.append(torch.bfloat16)
    return out


@needs_gpu
def test_aot_build_loads():
    path = cuda_backend._aot_library()
    if path is None:
        pytest.skip("AOT library not built (pip install --no-build-isolation -e . on this "
                    "machine builds it)")
    if os.environ.get(cuda_backend.ENV_JIT, "").lower() == "force":
        pytest.skip("YOLOV12_CUDA_JIT=force ignores the AOT library")
    assert cuda_backend.unavailable() is None and cuda_backend.source() == "aot"


@needs_gpu
def test_jit_build(tmp_path):
    """A JIT build into a fresh cache, in child processes (the library is never loaded twice into
    one process): the first builds and publishes, the second loads the published file as is."""
    reason = _cuda_build.jit_unavailable()
    if reason:
        pytest.skip(f"JIT build impossible here: {reason}")
    code = textwrap.dedent("""
        import torch
        from yolov12_kernels import cuda_backend, reference
        assert cuda_backend.unavailable() is None, cuda_backend.unavailable()
        assert cuda_backend.source() == "jit"
        q = torch.randn(1, 70, 2, 32, device="cuda", dtype=torch.float16)
        out = cuda_backend.area_attention(q, q, q, 1, 32 ** -0.5)
        ref = reference.area_attention(q.double(), q.double(), q.double(), 1)
        assert (out.double() - ref).abs().max().item() < 4e-3
        print(cuda_backend._state["path"])
    """)
    env = _child_env(YOLOV12_CUDA_CACHE=str(tmp_path), YOLOV12_CUDA_JIT="force")
    paths = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code],
                              capture_output=True, text=True, env=env, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        paths.append(proc.stdout.strip().splitlines()[-1])
        if len(paths) == 1:
            stat = os.stat(paths[0])
    assert paths[0] == paths[1] and os.stat(paths[1]).st_mtime_ns == stat.st_mtime_ns
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".so"] == [Path(paths[0]).name]


ATTN_SHAPES = [  # (B, N, heads, d, area); tiles: 80 x 80 at d = 32, 64 x 64 at d = 64
    (1, 1600, 2, 32, 4),   # YOLOv12-N P4: 4 areas of 400 = 5 x 5 tiles, double-buffered
    (2, 400, 4, 32, 1),    # P5, global
    (3, 21, 3, 64, 3),     # odd n = 7 (< one 16-row warp tile)
    (1, 130, 1, 64, 2),    # n = 65: one key past a 64-key tile
    (2, 129, 2, 32, 1),    # n = 129: tails in both q and k tiles
    (1, 340, 2, 32, 2),    # n = 170: three key tiles, the last 10 keys
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
    (1, 2, 32, 40, 40, 4),   # YOLOv12-N P4: [d][key] tiles by 16-byte copies
    (2, 4, 32, 20, 20, 1),   # YOLOv12-N P5
    (2, 3, 64, 7, 9, 3),     # odd H, W; n = 21: element loads
    (1, 1, 32, 5, 13, 5),    # n = 13
    (1, 2, 64, 12, 15, 1),   # n = 180: three 64-key tiles at d = 64
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
        ext.fused_area_attention_fwd(qkv, heads, area, None, None, d ** -0.5, out)
        ref_hi = attention_only(qkv.double(), heads, area)
        assert_close_to_reference(out, ref_hi, attention_only(qkv, heads, area),
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


@needs_gpu
@pytest.mark.parametrize("shape", QKV_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_channels_last_in_channels_last_out(ext, shape):
    """The fused NHWC path's call: a channels-last qkv gives a channels-last output (attention
    stored 2 channels at a time, pe(v) read and added 8 channels at a time), with the pe weights
    in the model's dtype or in fp32 (no conversion either way), through the op and into a
    NaN-poisoned channels-last ``out``."""
    B, heads, d, H, W, area = shape
    C = heads * d
    cl = torch.channels_last
    for dtype in _dtypes(ext):
        qkv = torch.randn(B, 3 * C, H, W, device="cuda", dtype=dtype).to(memory_format=cl)
        w, b = _pe_params(C, 7, dtype)
        ref_hi = reference.fused_area_attention(qkv.double(), heads, area, w.double(), b.double())
        ref_lo = reference.fused_area_attention(qkv, heads, area, w, b)
        for w_, b_ in ((w, b), (w.float(), b.float())):
            name = f"{dtype} qkv, {w_.dtype} weights"
            with torch.no_grad():
                out = yk.fused_area_attention(qkv, heads, area, w_, b_, backend="cuda")
            assert out.is_contiguous(memory_format=cl), f"{name}: strides {out.stride()}"
            assert_close_to_reference(out, ref_hi, ref_lo, name=name)
            into = poison_like(out)
            assert into.is_contiguous(memory_format=cl)
            ext.fused_area_attention_fwd(qkv, heads, area, w_, b_, d ** -0.5, into)
            assert torch.equal(into, out), name
        # the NCHW call keeps NCHW
        out = ext.fused_area_attention_fwd(qkv.contiguous(), heads, area, w, b, d ** -0.5)
        assert out.is_contiguous(), out.stride()
        assert_close_to_reference(out, ref_hi, ref_lo, name=f"{dtype} NCHW")


PE_CL_SHAPES = [  # (B, C, H, W, k): channels-last v
    (2, 64, 40, 40, 7),    # YOLOv12-N P4: 8 chunks of 8 channels, one CTA row of channels
    (2, 384, 20, 20, 7),   # YOLOv12-X P5: 6 CTA rows of 64 channels
    (1, 16, 9, 13, 7),     # strips past the row's end (13 = 3 * 4 + 1), image smaller than 2k
    (3, 8, 5, 2, 3),       # one chunk, W < one strip
    (1, 40, 7, 6, 3),      # 5 chunks per CTA
    (1, 12, 6, 9, 7),      # C not a multiple of 8: the row kernel
    (1, 24, 5, 7, 5),      # k = 5: the row kernel
]


@needs_gpu
@pytest.mark.parametrize("shape", PE_CL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_position_perceiver_channels_last(ext, shape):
    """The channels-last depthwise kernel (and what it leaves to the row kernel), written into a
    poisoned output and accumulated, every dtype, weights in v's dtype and in fp32."""
    B, C, H, W, k = shape
    cl = torch.channels_last
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        v = torch.randn(B, C, H, W, device="cuda", dtype=dtype).to(memory_format=cl)
        w, b = _pe_params(C, k, dtype)
        ref_hi = reference.position_perceiver(v.double(), w.double(), b.double())
        if dtype == torch.float32:  # fp32 on the CPU: cuDNN may use TF32 on the GPU
            ref_lo = reference.position_perceiver(v.cpu(), w.cpu(), b.cpu()).cuda()
        else:
            ref_lo = reference.position_perceiver(v, w, b)
        for w_, b_ in ((w, b), (w.float(), b.float())):
            out = poison_like(v)
            ext.position_perceiver_fwd(v, w_, b_, out, False)
            assert_close_to_reference(out, ref_hi, ref_lo, name=f"pe {dtype} {w_.dtype}")
            base = torch.randn_like(v)
            acc = base.clone()
            ext.position_perceiver_fwd(v, w_, b_, acc, True)
            assert_close_to_reference(acc, base.double() + ref_hi, base + ref_lo,
                                      name=f"pe accumulate {dtype} {w_.dtype}")


PE_SHAPES = [  # (B, C, H, W, k); tiles: whole planes up to 64 x 64, several per CTA when small
    (2, 64, 40, 40, 7),  # YOLOv12 P4: 2 planes per CTA
    (2, 7, 20, 20, 7),   # P5: 10 planes per CTA, odd rows not 16-byte aligned (element loads)
    (1, 5, 33, 65, 7),   # odd everything; two tiles across (64 + 1 columns)
    (1, 2, 70, 66, 3),   # 2 x 2 tiles of up to 64 x 64
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
@pytest.mark.parametrize("what", ["errors", "reference", "opcheck"])
def test_ops_on_the_gpu(ext, what):
    """The argument checks (the worker-killing segfault of the first H100 run was in this error
    path), all ops and layouts against the reference, and opcheck, on CUDA tensors, each in a
    child process with faulthandler."""
    run_checks(what, "cuda")


@needs_gpu
def test_torch_compile_fullgraph_on_cuda(ext):
    B, heads, d, H, W, area = 2, 2, 32, 8, 10, 4
    C = heads * d
    qkv = torch.randn(B, 3 * C, H, W, device="cuda", dtype=torch.float16)
    w, b = _pe_params(C, 7, torch.float16)
    q = torch.randn(2, 40, 2, 32, device="cuda", dtype=torch.float16)

    def core(qkv, w, b, q):
        return (yk.fused_area_attention(qkv, heads, area, w, b, backend="cuda"),
                yk.area_attention(q, q, q, area, backend="cuda"))

    with torch.no_grad():
        want = core(qkv, w, b, q)
        torch._dynamo.reset()
        got = torch.compile(core, fullgraph=True)(qkv, w, b, q)
    for g, e in zip(got, want):
        assert torch.equal(g, e)


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
