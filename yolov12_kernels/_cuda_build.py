"""Building the CUDA library: arch flags (shared with setup.py and the CI compile test) and the JIT
path (``load``: a content-addressed cache of built libraries, see "JIT" below).

This module imports nothing heavy at top level: ``setup.py`` loads it by file path to reuse
``gencode_flags`` before the package (or torch) is importable.

Arch list syntax (``YOLOV12_CUDA_ARCHS``, ``;``/``,``/space separated):

* ``8.6``        SASS for sm_86;
* ``8.6+PTX``    SASS for sm_86 and compute_86 PTX (the driver JIT-compiles it for newer GPUs);
* ``compute_75`` compute_75 PTX only: no SASS at all, so on any newer GPU (e.g. an H100) the
  driver compiles the sm_75 code path, which is how the Turing path is tested without a Turing
  GPU. Note that bf16 attention does not exist in compute_75 code (no bf16 MMA below sm_80).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

DEFAULT_ARCHS = "7.5;8.0;8.6;8.9;9.0"
ENV_ARCHS = "YOLOV12_CUDA_ARCHS"
MIN_ARCH = 75  # mma.sync m16n8k8 (fp16 tensor cores) needs sm_75

_PKG_DIR = Path(__file__).resolve().parent
# csrc/ is at the top of the repository (next to the package); a packaged copy is looked for too.
_CSRC_CANDIDATES = (_PKG_DIR.parent / "csrc", _PKG_DIR / "csrc")
KERNEL_SOURCES = ("area_attention.cu", "depthwise_conv.cu")
BINDING_SOURCE = "bindings.cpp"


def csrc_dir() -> Path:
    for d in _CSRC_CANDIDATES:
        if (d / BINDING_SOURCE).is_file():
            return d
    raise FileNotFoundError(
        "csrc/ not found next to the yolov12_kernels package (looked in "
        f"{', '.join(str(d) for d in _CSRC_CANDIDATES)}): the JIT build needs a source checkout "
        "or an editable install (pip install -e .)")


def parse_archs(spec: str) -> list[tuple[int, str]]:
    """``"7.5;8.6+PTX;compute_75"`` -> [(75, "sass"), (86, "sass+ptx"), (75, "ptx")]."""
    out = []
    for item in re.split(r"[;,\s]+", spec.strip()):
        if not item:
            continue
        m = re.fullmatch(r"(\d+)\.(\d)(\+PTX)?", item, flags=re.IGNORECASE)
        if m:
            cc, kind = int(m.group(1)) * 10 + int(m.group(2)), "sass+ptx" if m.group(3) else "sass"
        else:
            m = re.fullmatch(r"compute_(\d+)", item)
            if not m:
                raise ValueError(f"{ENV_ARCHS}: cannot parse {item!r}; expected entries like "
                                 "'8.6', '8.6+PTX' or 'compute_75'")
            cc, kind = int(m.group(1)), "ptx"
        if cc < MIN_ARCH:
            raise ValueError(f"{ENV_ARCHS}: {item!r} is below sm_75; the kernels use mma.sync "
                             "tensor-core instructions that need Turing (7.5) or newer")
        out.append((cc, kind))
    if not out:
        raise ValueError(f"{ENV_ARCHS}: empty arch list {spec!r}")
    return out


def gencode_flags(spec: str) -> list[str]:
    """nvcc ``-gencode`` flags for an arch list (see the module docstring)."""
    flags = []
    for cc, kind in parse_archs(spec):
        if kind in ("sass", "sass+ptx"):
            flags.append(f"-gencode=arch=compute_{cc},code=sm_{cc}")
        if kind in ("ptx", "sass+ptx"):
            flags.append(f"-gencode=arch=compute_{cc},code=compute_{cc}")
    return flags


def nvcc_common_flags() -> list[str]:
    """Flags every build of the kernels uses (AOT, JIT, CI compile)."""
    return ["-O3", "-lineinfo"]



# ------------------------------------------------------------------------------------------------
# JIT
#
# Built libraries live in one cache directory under content-addressed names,
# ``yolov12_kernels_cuda-<key>.so``, where the key hashes everything the binary depends on: the
# csrc/ files, the compiler flags and arch list, the torch, CUDA and Python versions and the C++
# and CUDA compilers (``build_inputs``). A published file is never rewritten: any change makes a
# new key, hence a new file. A build runs in a private temporary directory (in a child process,
# so a compiler or loader failure cannot take the caller down) and the finished library is then
# published under its final name in one atomic step. So a process that has a library mapped is
# never handed a file that changes under it, however many processes build or load at once; the
# lock per key only stops them from compiling the same thing several times.
LIBRARY_NAME = "yolov12_kernels_cuda"
CXX_FLAGS = ("-O3",)


def cache_root() -> Path:
    """``$YOLOV12_CUDA_CACHE``, else ``$XDG_CACHE_HOME/yolov12_kernels`` (``~/.cache/...``)."""
    root = os.environ.get("YOLOV12_CUDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "yolov12_kernels")
    return Path(root)


def _local_arch_spec() -> str:
    """The arch list of the GPUs visible now (e.g. "9.0"), for a JIT build that runs only here."""
    import torch

    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps)


def _nvcc() -> str | None:
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME:
        path = os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
        if os.path.exists(path):
            return path
    return shutil.which("nvcc")


def _tool_version(cmd: list[str]) -> str:
    """``cmd --version`` output (the key changes with the compiler), or why it is unknown."""
    try:
        proc = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"
    return proc.stdout.strip()


def build_inputs(arch_spec: str, src: Path | None = None) -> dict:
    """Everything a JIT-built library depends on (its cache key is the hash of this)."""
    import torch

    src = src or csrc_dir()
    files = sorted(f for f in src.iterdir() if f.suffix in (".cu", ".cuh", ".cpp", ".h"))
    cxx = os.environ.get("CXX", "c++")  # the compiler torch.utils.cpp_extension uses on Linux
    return {
        "sources": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
        "cxx_flags": list(CXX_FLAGS),
        "cuda_flags": nvcc_common_flags() + gencode_flags(arch_spec),
        "torch": torch.__version__,
        "torch_cuda": str(torch.version.cuda),
        "cxx11_abi": bool(torch.compiled_with_cxx11_abi()),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "cxx": [cxx, _tool_version([cxx])],
        "nvcc": _tool_version([_nvcc() or "nvcc"]),
    }


def library_key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def published_path(root: Path, key: str) -> Path:
    return root / f"{LIBRARY_NAME}-{key}.so"


class _FileLock:
    """An exclusive ``flock`` on a file, held while one process builds one key."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _publish_file(built: Path, final: Path) -> bool:
    """Give the finished file ``built`` the name ``final`` in one atomic step, never replacing a
    file already there. True if published, False if ``final`` existed (then left untouched)."""
    os.chmod(built, 0o555)  # published libraries are read-only: nothing writes them in place
    try:
        os.link(built, final)  # atomic, and fails if final exists
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: an atomic rename (callers hold the lock)
        if final.exists():
            return False
        os.replace(built, final)
        return True


def publish(root: Path, key: str, build: Callable[[Path], Path]) -> Path:
    """The library published for ``key`` under ``root``; if there is none yet, ``build(tmp_dir)``
    makes one in a fresh private directory and returns its path, and it is published."""
    final = published_path(root, key)
    if final.is_file():  # published files are complete and never change: no lock needed
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _FileLock(root / f".{LIBRARY_NAME}-{key}.lock"):
        if final.is_file():  # another process built it while this one waited
            return final
        for stale in root.glob(f".build-{key}-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
        try:
            built = build(tmp)
            if not built.is_file():
                raise RuntimeError(f"the build finished without producing {built}")
            _publish_file(built, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# Run in a child process: torch.utils.cpp_extension.load compiles with ninja into the private
# directory and loads the result once, which checks that it links and loads.
_BUILD_SCRIPT = """
import json, sys
from torch.utils import cpp_extension
a = json.loads(sys.argv[1])
cpp_extension.load(name=a["name"], sources=a["sources"], extra_include_paths=a["include"],
                   extra_cflags=a["cxx_flags"], extra_cuda_cflags=a["cuda_flags"],
                   build_directory=a["build_dir"], is_python_module=False, verbose=a["verbose"])
"""


def _torch_build(tmp: Path, src: Path, inputs: dict, verbose: bool) -> Path:
    args = {"name": LIBRARY_NAME, "include": [str(src)], "build_dir": str(tmp),
            "sources": [str(src / BINDING_SOURCE)] + [str(src / s) for s in KERNEL_SOURCES],
            "cxx_flags": inputs["cxx_flags"], "cuda_flags": inputs["cuda_flags"],
            "verbose": verbose}
    proc = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, json.dumps(args)],
                          capture_output=not verbose, text=True)
    if proc.returncode != 0:
        out = ((proc.stdout or "") + (proc.stderr or ""))[-6000:]
        raise RuntimeError(f"building the CUDA library failed (exit {proc.returncode}):\n{out}")
    return tmp / f"{LIBRARY_NAME}.so"


def jit_unavailable() -> str | None:
    """Why a JIT build cannot even start here, or None."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} has no CUDA (torch.version.cuda is None)"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None or _nvcc() is None:
        return "no CUDA compiler found (nvcc not on PATH and CUDA_HOME not set)"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def load(arch_spec: str | None = None, verbose: bool = False) -> str:
    """The path of the library built from csrc/ for ``arch_spec`` (default: ``$YOLOV12_CUDA_ARCHS``,
    else the visible GPUs), building and publishing it first if the cache has none. Does not load
    it (``torch.ops.load_library`` does). RuntimeError with the reason if it cannot."""
    reason = jit_unavailable()
    if reason:
        raise RuntimeError(f"cannot JIT-build the yolov12_kernels CUDA library: {reason}")
    arch_spec = arch_spec or os.environ.get(ENV_ARCHS) or _local_arch_spec()
    if not arch_spec:
        raise RuntimeError("cannot JIT-build the yolov12_kernels CUDA library: no GPU visible "
                           f"and {ENV_ARCHS} not set")
    src = csrc_dir()
    inputs = build_inputs(arch_spec, src)
    path = publish(cache_root(), library_key(inputs),
                   lambda tmp: _torch_build(tmp, src, inputs, verbose))
    return str(path)
