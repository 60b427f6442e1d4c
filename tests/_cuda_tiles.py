"""csrc/area_attention_tiles.h (the attention kernel's tile sizes and index formulas) compiled on
the host, for the CPU model of the kernel in test_cuda_kernel_model.py: ``tiles().block_n(32)``,
``tiles().k_frag_offset(d, tm, k32, nb, LANE)`` ... call the header's functions element-wise on
numpy arrays (broadcast like numpy), so the model reads what the kernel reads.

Built with g++ (``$CXX`` if set) from tests/area_attention_tiles_host.cpp into a fresh temporary
directory once per process (about a second, removed at exit): a changed header is always
what runs.
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "csrc" / "area_attention_tiles.h"
SHIM = Path(__file__).resolve().parent / "area_attention_tiles_host.cpp"


def header_functions() -> list[str]:
    """The names of the functions the header defines (``Y12_TILE_FN <type> name(``)."""
    return re.findall(r"^Y12_TILE_FN\s+[\w:]+\s+(\w+)\(", HEADER.read_text(), re.M)


class Tiles:
    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        lib.y12t_eval.restype = ctypes.c_int
        lib.y12t_eval.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64,
                                  ctypes.c_void_p]
        lib.y12t_name.restype = ctypes.c_char_p
        lib.y12t_name.argtypes = [ctypes.c_int]

    def names(self) -> list[str]:
        out, i = [], 0
        while (name := self._lib.y12t_name(i)) is not None:
            out.append(name.decode())
            i += 1
        return out

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args):
            arrays = np.broadcast_arrays(*[np.asarray(a).astype(np.int64) for a in args]) \
                if args else []
            shape = arrays[0].shape if arrays else ()
            count = int(np.prod(shape)) if shape else 1
            packed = np.ascontiguousarray(np.stack([a.reshape(-1) for a in arrays])
                                          if arrays else np.zeros((0, 1), np.int64))
            out = np.empty(count, np.int64)
            rc = self._lib.y12t_eval(name.encode(), packed.ctypes.data, len(args), count,
                                     out.ctypes.data)
            if rc:
                raise TypeError(f"area_attention_tiles.h: no function {name} taking {len(args)} "
                                f"arguments (y12t_eval returned {rc})")
            return out.reshape(shape) if shape else int(out[0])
        return call


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


@functools.lru_cache(maxsize=None)
def tiles() -> Tiles:
    """The compiled header; RuntimeError (with the compiler's output) if it does not build."""
    cxx = compiler()
    if cxx is None:
        raise FileNotFoundError("no C++ compiler (g++, or $CXX)")
    out_dir = Path(tempfile.mkdtemp(prefix="y12-tiles-"))
    atexit.register(shutil.rmtree, out_dir, True)  # the loaded library stays mapped until exit
    lib = out_dir / "area_attention_tiles_host.so"
    cmd = [cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-w", "-I", str(HEADER.parent),
           str(SHIM), "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return Tiles(ctypes.CDLL(str(lib)))
