"""The recorded launches against Triton's real launcher, on a CPU (issue 25): what a launch plan
replays reaches the CUDA driver as the plan recorded it, under Triton 3.6.0 (the GPU machine's)
and the newest installed.

A launch plan (``yolov12.plan``) and the Triton attention's plans call the compiled kernel's
launcher directly with precomputed arguments (``launch.FixedLaunch``, ``launch.Plan``), skipping
Triton's JIT; under the interpreter (every other CPU test) that path never runs. Here
``tests/_launcher_abi.py`` runs it, in a subprocess per Triton version, with Triton's own
launchers and C utilities built by gcc against a stub ``libcuda.so.1`` (``tests/stub_libcuda.c``:
it counts launches and keeps the last one's grid, block, shared memory, kernel, stream and
parameter bytes), the kernels compiled for sm_90 on their first launch as on an H100. Every
recorded launch must reach the driver once with the grid it recorded, ``32 x num_warps`` threads
and its compiled kernel's shared memory, and with the parameter bytes of Triton's own JIT launch
of the same call (without and with launch hooks); a launch with one argument taken out must not
reach the kernel as if nothing were missing.

What runs (CI), split so that the two versions, side by side on two cores, take about as long
(3.9 compiles ~1.4x slower; the attention set's 54 kernels are the dearest part):

* Triton 3.6.0 (the GPU machine's): YOLOv12-N's plan at 640x640, float16, batch 1; every launch of
  ``compile_check``'s attention set in every dtype (579 plans: every YOLOv12 shape at batch 1/8/32,
  both entry points, forward, forward for a backward, backward; head_dim 16/64/128; 2-D token
  strides; a 3x3 pe), each through the JIT, its direct launch, and both replayed;
* the newest: YOLOv12-N's plan at batch 1 and 32; the attention set in float16 (every kernel
  signature of the set: the dtype changes only pointer types, which its generic launcher handles
  alike, and configurations, which 3.6.0 checks in every dtype).

``YOLOV12_LAUNCHER_ABI=full``: scales n, s and x at batch 1 and 32 and the attention set in every
dtype under both versions (~210 kernels each: a few minutes more). Both versions share one
Triton cache.

Not covered: a real driver (the stub accepts every handle, pointer and size; what the kernel
does with its parameters), a real GPU (that the kernels run, the CUDA graph path).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_compile_checks import triton36_dir

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "_launcher_abi.py"
FULL_ENV = "YOLOV12_LAUNCHER_ABI"
VERSIONS = ("3.6.0", "newest")


def _plans(version: str) -> list[str]:
    if os.environ.get(FULL_ENV) == "full":
        return [f"{s}:{b}" for s in ("n", "s", "x") for b in (1, 32)]
    return ["n:1"] if version == "3.6.0" else ["n:1", "n:32"]


def _attention_dtypes(version: str) -> str:
    full = version == "3.6.0" or os.environ.get(FULL_ENV) == "full"
    return "fp16,bf16,fp32" if full else "fp16"


def _missing_tools() -> str | None:
    """Why Triton's launchers cannot be built here, or None."""
    if shutil.which("gcc") is None:
        return "gcc is not installed (Triton builds its launchers with it)"
    include = sysconfig.get_paths(scheme=sysconfig.get_default_scheme())["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"Python.h is not in {include} (the Python development headers)"
    return None


def _run(version: str, tmp: Path) -> dict:
    """The harness under ``version``: its JSON report, plus its exit status, wall seconds and
    output tail, or {"skip": why}."""
    pythonpath = []
    if version == "3.6.0":
        side = triton36_dir()
        if side is None:
            return {"skip": f"no Triton 3.6.0 side install ({ROOT / '.triton36'} or "
                            "$YOLOV12_TRITON36): scripts/setup.sh installs it"}
        pythonpath = [str(side)]
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTHONPATH")}
    env.update(PYTHONPATH=os.pathsep.join([*pythonpath, str(ROOT)]),
               TRITON_CACHE_DIR=str(tmp / "triton-cache"),  # shared by both versions
               CUDA_VISIBLE_DEVICES="")  # on a GPU machine too, torch sees none: the stub is it
    cmd = [sys.executable, str(HARNESS), str(tmp / version), "--plans", *_plans(version),
           "--attention", _attention_dtypes(version), "--negative"]
    t = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    lines = r.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        report = {}
    if version == "newest" and "No module named 'triton.backends.nvidia" in r.stderr:
        return {"skip": "this Triton has no NVIDIA backend"}
    report.update(rc=r.returncode, wall=time.time() - t, tail=(r.stdout + r.stderr)[-4000:])
    return report


@pytest.fixture(scope="module")
def abi_runs(tmp_path_factory):
    """{version: report} of both harness runs, side by side (two cores)."""
    missing = _missing_tools()
    if missing:
        pytest.skip(missing)
    tmp = tmp_path_factory.mktemp("launcher_abi")
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(VERSIONS, pool.map(lambda v: _run(v, tmp), VERSIONS)))
    shutil.rmtree(tmp / "triton-cache", ignore_errors=True)  # ~100 MB of compiled kernels
    return runs


def _report(abi_runs, version: str) -> dict:
    report = abi_runs[version]
    if "skip" in report:
        pytest.skip(report["skip"])
    assert "checked" in report, f"the harness did not finish (exit {report['rc']}):\n" \
                                f"{report['tail']}"
    if version == "3.6.0":
        assert report["triton"] == "3.6.0", f"the side install holds Triton {report['triton']}"
    return report


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_launches_reach_the_driver_as_recorded(version, abi_runs):
    report = _report(abi_runs, version)
    print(f"Triton {report['triton']}: {report['checked']} recorded launches replayed "
          f"({report['kernels']} kernels), plans {report['plans']}, attention "
          f"{report.get('attention')}; {report['wall']:.0f} s wall; seconds {report['seconds']}")
    assert not report["failures"], "\n".join(report["failures"])
    assert report["rc"] == 0, report["tail"]
    assert set(report["plans"]) == set(_plans(version))
    # YOLOv12-N at 640: 113 launches at batch 1, 112 at 32 (no split-K reduction); every
    # attention plan twice (579 plans in three dtypes, 193 in one)
    assert all(n >= 100 for n in report["plans"].values()), report["plans"]
    assert report["attention"] >= 300 * len(_attention_dtypes(version).split(","))
    assert report["checked"] == sum(report["plans"].values()) + report["attention"]


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_a_launch_missing_an_argument_does_not_pass(version, abi_runs):
    """Triton 3.6's generated launcher counts its arguments and refuses; 3.9's generic one reads
    them by the kernel's signature without counting (the launch goes out with every later
    argument shifted), which the comparison with the JIT's launch catches."""
    report = _report(abi_runs, version)
    negative = report.get("negative") or {}
    assert negative.get("refused_by") in ("launcher", "comparison"), report["failures"]
    if version == "3.6.0":
        assert negative["refused_by"] == "launcher", negative
        assert "arguments" in negative["error"], negative
    print(f"Triton {report['triton']}: refused by the {negative['refused_by']}: "
          f"{negative['error'][:200]}")
