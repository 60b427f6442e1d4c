"""CI (no GPU needed): the CUDA sources compile for every target arch, without register spills, and
the host binding passes a syntax check against torch's headers.

* every csrc/*.cu is compiled with plain nvcc (no torch) for each arch of the default list
  (``-gencode arch=compute_XX,code=sm_XX``) plus compute_75 PTX, with ``-Xptxas -v``; the ptxas
  register / spill / shared-memory table is printed (in full with ``pytest -rP``, also written to
  ``$YOLOV12_PTXAS_REPORT`` when set; a one-line-per-kernel summary always shows, even under
  plain ``pytest``) and any spill fails the build;
* csrc/bindings.cpp is checked with ``g++ -fsyntax-only`` against torch's include dirs and the CUDA
  runtime headers, without Python's (the library is no Python module) (the CPU torch wheel lacks one generated c10/cuda header; an empty stand-in is
  used, it only defines a DLL-export macro);
* the C API header is valid C;
* ``CMakeLists.txt`` configures and builds the static library (one arch, to keep CI short).

Skipped, with the reason, where nvcc / g++ / cmake are missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
sys.path.insert(0, str(ROOT))
from yolov12_kernels import _cuda_build  # noqa: E402

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH")
CU_FILES = sorted(CSRC.glob("*.cu"))
# every arch of the default list as SASS, plus compute_75 PTX (what the driver JIT-compiles for the
# sm_75 path on a newer GPU)
CI_ARCHS = _cuda_build.DEFAULT_ARCHS + ";compute_75"
# what torch's CUDAExtension adds to every nvcc command: the kernels must not rely on implicit
# half/bf16 conversions or operators
TORCH_NVCC_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                      "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]


def _cuda_include() -> Path | None:
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    if NVCC:
        cands.append(str(Path(os.path.realpath(NVCC)).parent.parent))
    for c in cands:
        if c and (Path(c) / "include" / "cuda_runtime_api.h").is_file():
            return Path(c) / "include"
    return None


def _demangle(names: list[str]) -> dict[str, str]:
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout
    pretty = out.splitlines()
    if len(pretty) != len(names):
        return {n: n for n in names}
    # drop the anonymous-namespace prefix and the parameter list: "kernel<__half, 64>"
    short = [re.sub(r"\(.*\)$", "", re.sub(r"\(anonymous namespace\)::", "", p)) for p in pretty]
    return dict(zip(names, short))


def parse_ptxas(log: str) -> list[dict]:
    """One row per (kernel, arch): registers, spill stores/loads, stack, shared memory."""
    rows, cur = [], None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(sm_\d+a?)'", line)
        if m:
            cur = {"kernel": m.group(1), "arch": m.group(2), "regs": None, "spill_stores": None,
                   "spill_loads": None, "stack": None, "smem": 0}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(s.group(1)) if s else 0
    names = _demangle(sorted({r["kernel"] for r in rows}))
    for r in rows:
        r["kernel"] = names[r["kernel"]]
    return rows


def _compile(cu: Path, out_dir: Path) -> dict:
    cmd = [NVCC, "-c", str(cu), "-o", str(out_dir / (cu.stem + ".o")), "-I", str(CSRC),
           "-std=c++17", "-Xptxas", "-v", "--threads", "1"] + TORCH_NVCC_DEFINES \
        + _cuda_build.nvcc_common_flags() \
        + _cuda_build.gencode_flags(CI_ARCHS)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return {"file": cu.name, "cmd": " ".join(cmd), "rc": proc.returncode,
            "log": proc.stdout + proc.stderr, "seconds": time.perf_counter() - t0}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile every .cu once for all archs (files in parallel: one nvcc per file)."""
    if NVCC is None:
        pytest.skip("nvcc not found on PATH")
    out_dir = tmp_path_factory.mktemp("nvcc")
    with ThreadPoolExecutor(max_workers=max(1, min(len(CU_FILES), os.cpu_count() or 1))) as ex:
        results = list(ex.map(lambda cu: _compile(cu, out_dir), CU_FILES))
    rows = []
    for r in results:
        for row in parse_ptxas(r["log"]):
            rows.append(dict(row, file=r["file"]))
    lines = [f"ptxas report ({CI_ARCHS}):",
             f"{'file':<20} {'arch':<6} {'regs':>4} {'spill st/ld':>11} {'stack':>5} "
             f"{'smem':>6}  kernel"]
    for row in sorted(rows, key=lambda x: (x["file"], x["kernel"], x["arch"])):
        lines.append(f"{row['file']:<20} {row['arch']:<6} {row['regs']!s:>4} "
                     f"{row['spill_stores']!s:>5}/{row['spill_loads']!s:<5} {row['stack']!s:>5} "
                     f"{row['smem']:>6}  {row['kernel']}")
    lines += [f"{r['file']}: nvcc {r['seconds']:.1f} s, rc={r['rc']}" for r in results]
    report = "\n".join(lines)
    print(report)
    # compact form, one line per kernel, shown in every CI log (see test_no_register_spills)
    summary = [f"ptxas registers per arch ({CI_ARCHS}; the full table with -rP):"]
    for name in sorted({(r["file"], r["kernel"]) for r in rows}):
        sel = sorted((r for r in rows if (r["file"], r["kernel"]) == name), key=lambda r: r["arch"])
        spill = sum((r["spill_stores"] or 0) + (r["spill_loads"] or 0) for r in sel)
        summary.append(f"  {name[1].replace('void ', ''):<45} "
                       + " ".join(f"{r['arch'][3:]}:{r['regs']}" for r in sel)
                       + f"  spill bytes {spill}")
    if os.environ.get("YOLOV12_PTXAS_REPORT"):
        Path(os.environ["YOLOV12_PTXAS_REPORT"]).write_text(report + "\n")
    return {"results": results, "rows": rows, "report": report, "out_dir": out_dir,
            "summary": "\n".join(summary)}


def test_arch_list_parsing():
    assert _cuda_build.gencode_flags("7.5;8.6+PTX,compute_75") == [
        "-gencode=arch=compute_75,code=sm_75",
        "-gencode=arch=compute_86,code=sm_86",
        "-gencode=arch=compute_86,code=compute_86",
        "-gencode=arch=compute_75,code=compute_75",
    ]
    assert len(_cuda_build.gencode_flags(_cuda_build.DEFAULT_ARCHS)) == 5
    with pytest.raises(ValueError, match="below sm_75"):
        _cuda_build.gencode_flags("7.0")
    with pytest.raises(ValueError, match="cannot parse"):
        _cuda_build.gencode_flags("sm86")


@needs_nvcc
def test_every_kernel_compiles_for_every_arch(compiled):
    for r in compiled["results"]:
        assert r["rc"] == 0, f"nvcc failed for {r['file']}:\n{r['cmd']}\n{r['log'][-6000:]}"
    # every kernel was compiled to SASS for each SASS arch of the list
    sass = {f"sm_{cc}" for cc, kind in _cuda_build.parse_archs(CI_ARCHS) if "sass" in kind}
    for f in CU_FILES:
        archs = {row["arch"] for row in compiled["rows"] if row["file"] == f.name}
        assert archs == sass, f"{f.name}: ptxas ran for {sorted(archs)}, expected {sorted(sass)}"


@needs_nvcc
def test_no_register_spills(compiled, capsys):
    with capsys.disabled():  # printed even when output is captured (plain `pytest` in CI)
        print("\n" + compiled["summary"])
    spills = [r for r in compiled["rows"] if r["spill_stores"] or r["spill_loads"]]
    assert compiled["rows"], "no ptxas report parsed:\n" + compiled["report"]
    assert not spills, "register spills:\n" + compiled["report"]


@needs_nvcc
@pytest.mark.parametrize("arch", [75, 80])
def test_ptx_uses_the_mma_shape_of_the_arch(arch, tmp_path):
    """compute_75 PTX (the Turing path; also what an H100 JIT-compiles when the library is built
    as compute_75 PTX only) must use m16n8k8 f16 MMAs, no bf16 MMA and no cp.async (sm_80+);
    compute_80 uses m16n8k16 for both fp16 and bf16 and cp.async double buffering. Both read the
    MMA B fragments with ldmatrix (sm_75+), plain and transposed."""
    ptx = tmp_path / f"attn_{arch}.ptx"
    proc = subprocess.run([NVCC, "-ptx", f"-arch=compute_{arch}", "-I", str(CSRC), "-std=c++17",
                           "-O3", str(CSRC / "area_attention.cu"), "-o", str(ptx)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = ptx.read_text()
    assert f".target sm_{arch}" in text
    assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in text
    assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in text
    if arch == 75:
        assert "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32" in text
        assert "m16n8k16" not in text
        assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16" not in text
        assert "cp.async" not in text
    else:
        assert "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in text
        assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in text
        assert "cp.async.cg.shared.global" in text and "cp.async.wait_group 1" in text


def test_c_api_header_is_plain_c(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    inc = _cuda_include()
    if cc is None or inc is None:
        pytest.skip("no C compiler or CUDA runtime headers")
    src = tmp_path / "use_api.c"
    src.write_text('#include "yolov12_kernels.h"\n'
                   "int main(void) { y12_attention_params p = {0}; y12_pe_params e = {0};\n"
                   "  (void)p; (void)e; return (int)Y12_BFLOAT16; }\n")
    proc = subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-fsyntax-only", "-I", str(CSRC),
                           "-I", str(inc), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_binding_syntax(tmp_path):
    """bindings.cpp against torch's headers (what CUDAExtension compiles, minus the link), in its
    CUDA configuration (the host build of tests/test_cuda_backend.py covers the CPU one)."""
    gxx = shutil.which("g++")
    inc = _cuda_include()
    if gxx is None or inc is None:
        pytest.skip("g++ or the CUDA runtime headers (cuda_runtime_api.h) not found")
    from torch.utils.cpp_extension import include_paths

    incs = include_paths()
    shim = tmp_path / "shim"
    macros = Path(incs[0]) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    if not macros.exists():  # CPU wheels do not ship this generated header
        (shim / "c10" / "cuda" / "impl").mkdir(parents=True)
        (shim / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("#pragma once\n")
    # no Python include directory: the binding is loaded with torch.ops.load_library and must
    # not depend on Python's C-API (or pybind11, which needs it)
    cmd = [gxx, "-fsyntax-only", "-std=c++17", "-w", "-I", str(CSRC), "-I", str(inc),
           "-I", str(shim)] + [f"-I{p}" for p in incs] + [str(CSRC / "bindings.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stderr[-8000:]


def test_cmake_builds_static_library(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None or NVCC is None:
        pytest.skip("cmake or nvcc not found")
    build = tmp_path / "build"
    real_nvcc = _cuda_include().parent / "bin" / "nvcc" if _cuda_include() else Path(NVCC)
    env = dict(os.environ, CUDACXX=str(real_nvcc if real_nvcc.exists() else NVCC))
    cfg = subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                          "-DCMAKE_CUDA_ARCHITECTURES=75"], capture_output=True, text=True,
                         env=env)
    if cfg.returncode != 0 and "No CMAKE_CUDA_COMPILER could be found" in cfg.stdout + cfg.stderr:
        pytest.skip("cmake cannot find the CUDA compiler")
    assert cfg.returncode == 0, cfg.stdout[-4000:] + cfg.stderr[-4000:]
    bld = subprocess.run([cmake, "--build", str(build), "-j", str(os.cpu_count() or 1)],
                         capture_output=True, text=True, env=env)
    assert bld.returncode == 0, bld.stdout[-6000:] + bld.stderr[-4000:]
    assert list(build.glob("**/libyolov12_kernels.a")), "libyolov12_kernels.a not built"
