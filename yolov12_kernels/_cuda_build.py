"""Building the CUDA extension: arch flags (shared with setup.py and the CI compile test) and the
JIT path (``torch.utils.cpp_extension.load`` with ninja, a cache directory and a file lock).

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

import os
import re
import shutil
from pathlib import Path

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
def _local_arch_spec() -> str:
    """The arch list of the GPUs visible now (e.g. "9.0"), for a JIT build that runs only here."""
    import torch

    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps)


def cache_dir(arch_spec: str) -> Path:
    """``<root>/py<XY>-torch<ver>-cu<cuda>-<archs>``, root ``$YOLOV12_CUDA_CACHE`` or
    ``~/.cache/yolov12_kernels``. The Python version is part of the key (as in torch's own
    ``torch_extensions/py<XY>_cu<cuda>``): the module links against one CPython ABI, and two
    environments with the same torch but different Pythons must not rebuild over each other's
    library in one shared directory."""
    import sys

    import torch

    root = os.environ.get("YOLOV12_CUDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "yolov12_kernels")
    tag = "-".join(f"{kind.replace('+', '')}{cc}" for cc, kind in parse_archs(arch_spec))
    torch_tag = torch.__version__.split("+")[0]
    py_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(root) / f"{py_tag}-torch{torch_tag}-cu{torch.version.cuda}-{tag}"


class _FileLock:
    """An exclusive ``flock`` on a file: two processes never run the same JIT build at once (the
    second waits, then finds the finished build in the cache)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def jit_unavailable() -> str | None:
    """Why a JIT build cannot even start here, or None."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} has no CUDA (torch.version.cuda is None)"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None or not (
            shutil.which("nvcc") or os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "bin",
                                                                "nvcc"))):
        return "no CUDA compiler found (nvcc not on PATH and CUDA_HOME not set)"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def load(arch_spec: str | None = None, verbose: bool = False):
    """Build (once, cached) and import the extension from csrc/ for ``arch_spec`` (default:
    ``$YOLOV12_CUDA_ARCHS``, else the visible GPUs). Raises RuntimeError with the reason if it
    cannot."""
    reason = jit_unavailable()
    if reason:
        raise RuntimeError(f"cannot JIT-build the yolov12_kernels CUDA extension: {reason}")
    from torch.utils import cpp_extension

    arch_spec = arch_spec or os.environ.get(ENV_ARCHS) or _local_arch_spec()
    if not arch_spec:
        raise RuntimeError("cannot JIT-build the yolov12_kernels CUDA extension: no GPU visible "
                           f"and {ENV_ARCHS} not set")
    src = csrc_dir()
    build_dir = cache_dir(arch_spec)
    build_dir.mkdir(parents=True, exist_ok=True)
    with _FileLock(build_dir / "build.lock"):
        return cpp_extension.load(
            name="yolov12_kernels_cuda",
            sources=[str(src / BINDING_SOURCE)] + [str(src / s) for s in KERNEL_SOURCES],
            extra_include_paths=[str(src)],
            extra_cflags=["-O3"],
            # our -gencode flags also stop torch from adding its own arch flags
            extra_cuda_cflags=nvcc_common_flags() + gencode_flags(arch_spec),
            build_directory=str(build_dir),
            verbose=verbose,
        )
