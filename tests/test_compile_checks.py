"""The Triton kernels compiled to GPU machine code under two Triton versions, without a GPU.

The interpreter the other tests use never lowers a kernel, so what only the compiler rejects
(types, layouts, shared memory, register spills) shows up here. Two versions: Triton 3.6.0, what
the GPU machine runs (``scripts/setup.sh`` installs it into ``.triton36/``, or
``YOLOV12_TRITON36`` names a directory holding it; put first on PYTHONPATH of a subprocess), and
the newest, the one installed. The four runs (two checks under two versions) share the two cores of
a CI machine, two at a time, the longest first:

* ``compile_check``: the attention kernels, every variant (forward, forward for a backward,
  backward; both entry points; every YOLOv12 shape at batch 1/8/32; head_dim 16/64/128; 2-D token
  strides), float16/bfloat16/float32, sm_80 and sm_90;
* ``conv_check --ci``: the fused conv, depthwise, MLP and box-decode kernels of every scale at
  batch 1 and 32, float16/bfloat16/float32, sm_80 and sm_90, one variant per configuration class
  (``conv_check.representatives``), which is what fits CI's time: the full matrix (979 distinct
  variants) takes 7-13 min of one core per version on the 2-core CI-class machine, the classes
  (290) 1.6-2.6 min. Left out: the other variants of a class (the same tile, warps, stages and
  kernel size with fewer epilogue flags or other stride specialisations: a spill there, which
  can differ by a few bytes, goes unseen), and float16 on sm_80 / bfloat16 on sm_90 (each dtype
  is compiled on the other arch; their configurations are the same and their spills agreed in
  every pair of the full matrix). The full matrix: ``python -m yolov12_kernels.triton.conv_check``
  under each version (``PYTHONPATH=.triton36:.`` for 3.6.0).

Measured 2026-12-03 (fresh caches): attention 75 s / 98 s, ``conv_check --ci`` 93 s / 127 s
under 3.6.0 / 3.9.0 on the idle 2-core machine, i.e. ~2 min of wall time per version with the two
checks side by side; 3.5-4.5 min per version while other jobs loaded the machine.

Either fails on a compile error, shared memory over the arch's limit, or a register spill in a
variant its allow-list (``compile_check.SPILL_ALLOWED``, ``conv_spills.ALLOWED``) gives no reason
for. Each check compiles into a fresh cache, as on a fresh CI clone.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIDE_ENV = "YOLOV12_TRITON36"
CHECKS = {"attention": ["-m", "yolov12_kernels.triton.compile_check"],
          "conv": ["-m", "yolov12_kernels.triton.conv_check", "--ci"]}


def triton36_dir() -> Path | None:
    """The directory holding Triton 3.6.0 (``YOLOV12_TRITON36``, else ``.triton36/``), or None."""
    for d in (os.environ.get(SIDE_ENV), ROOT / ".triton36"):
        if d and (Path(d) / "triton-3.6.0.dist-info").is_dir():
            return Path(d)
    return None


def _has_nvidia_backend(pythonpath: list[str]) -> str | None:
    """The Triton version importable with ``pythonpath`` first, if it has its NVIDIA backend."""
    code = ("import triton, triton.backends.nvidia.compiler as c; "
            "print(triton.__version__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(pythonpath), timeout=300)
    return r.stdout.strip() if r.returncode == 0 else None


def _env(pythonpath: list[str], tmp: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([*pythonpath, str(ROOT)])
    if tmp is not None:  # the checks' fresh Triton caches go there, and go with it
        env["TMPDIR"] = str(tmp)
    return env


def _run(name: str, pythonpath: list[str], work: Path) -> tuple[str, int, float, str]:
    work.mkdir(parents=True)
    t = time.time()
    r = subprocess.run([sys.executable, *CHECKS[name]], cwd=ROOT, capture_output=True,
                       text=True, env=_env(pythonpath, work), timeout=1800)
    return name, r.returncode, time.time() - t, r.stdout + "\n" + r.stderr


def _summary_line(out: str) -> str:
    """The check's closing "N/M compiled ..." line (stderr may end with Triton's warnings)."""
    lines = [line for line in out.splitlines() if " compiled " in line and "/" in line]
    return lines[-1] if lines else (out.strip().splitlines() or ["no output"])[-1]


VERSIONS = ("3.6.0", "newest")


def _triton(version: str) -> tuple[list[str] | None, str]:
    """(PYTHONPATH entries that import this Triton, its version), or (None, why it is skipped)."""
    pythonpath = []
    if version == "3.6.0":
        side = triton36_dir()
        if side is None:
            return None, (f"no Triton 3.6.0 side install ({ROOT / '.triton36'} or ${SIDE_ENV}): "
                          "scripts/setup.sh installs it where a package registry is reachable")
        pythonpath = [str(side)]
    found = _has_nvidia_backend(pythonpath)
    if found is None:
        return None, "this Triton has no NVIDIA backend (ptxas)"
    return pythonpath, found


@pytest.fixture(scope="module")
def compile_runs(tmp_path_factory):
    """Both checks under both versions, run once for the module: the four subprocesses two at a
    time (the CI machine's two cores), the longest first (conv before attention, the newest
    Triton before 3.6.0), so that neither core waits while the other finishes one version's
    longer check. {version: (pythonpath or None, version found or why not)}, {(version, check):
    result}."""
    tritons = {v: _triton(v) for v in VERSIONS}
    jobs = sorted(((v, name) for v in VERSIONS if tritons[v][0] is not None for name in CHECKS),
                  key=lambda job: (job[1] != "conv", job[0] != "newest"))
    tmp = tmp_path_factory.mktemp("compile_checks")
    with ThreadPoolExecutor(2) as pool:
        results = pool.map(lambda job: _run(job[1], tritons[job[0]][0],
                                            tmp / job[0].replace(".", "_") / job[1]), jobs)
        return tritons, dict(zip(jobs, results))


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_kernels_compile_without_new_spills(version, compile_runs):
    tritons, runs = compile_runs
    pythonpath, found = tritons[version]
    if pythonpath is None:
        pytest.skip(found)
    if version == "3.6.0":
        assert found == "3.6.0", f"{pythonpath[0]} holds Triton {found}, not 3.6.0"
    results = [runs[(version, name)] for name in CHECKS]
    summary = [f"{name} under Triton {found}: exit {rc} in {secs:.0f}s, {_summary_line(out)}"
               for name, rc, secs, out in results]
    print("\n".join(summary))  # the times and counts show with -rP / -s
    failed = [(name, out) for name, rc, _, out in results if rc != 0]
    assert not failed, "\n".join(summary) + "".join(
        f"\n--- {name}: every failing variant\n"
        + "\n".join(line for line in out.splitlines() if not line.startswith("ok "))[-6000:]
        for name, out in failed)


def test_ci_representatives_one_per_configuration_class():
    """``conv_check --ci``: one variant per (arch, kernel, dtype, configuration), the one with the
    most epilogue flags; 16-bit as bfloat16 on sm_80 and float16 on sm_90; float32 everywhere."""
    import torch

    from yolov12_kernels.triton.conv_check import representatives

    def kernel():
        pass

    def v(cc, dtype, **kw):
        cfg = dict(BLOCK_M=64, num_warps=4)
        cfg.update(kw)
        return [cc, f"sm{cc}", kernel, (torch.empty(0, dtype=dtype),), cfg, []]

    h, b, f = torch.float16, torch.bfloat16, torch.float32
    groups = {"bf16 plain": v(80, b, SILU=True), "bf16 residual": v(80, b, SILU=True, HAS_RES=True),
              "fp16 on sm80": v(80, h, SILU=True, HAS_RES=True),
              "bf16 other tile": v(80, b, BLOCK_M=128), "fp32": v(80, f), "fp32 sm90": v(90, f),
              "fp16 sm90": v(90, h), "bf16 on sm90": v(90, b)}
    assert list(representatives(groups)) == ["bf16 residual", "bf16 other tile", "fp32",
                                             "fp32 sm90", "fp16 sm90"]
