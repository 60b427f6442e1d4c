"""Test set-up shared by every test module.

Without a GPU, Triton kernels run in its interpreter: TRITON_INTERPRET must be set before any
kernel module is imported, so it is set here, at collection time, before test modules load.
"""
import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(__file__))  # for tests/_utils.py


def _share_cores_between_xdist_workers() -> None:
    """Under pytest-xdist (``-n N``), give each worker its share of the cores.

    Every worker is a process with PyTorch's default of one OpenMP thread per core: with N workers
    on C cores that is N*C threads that spin-wait on each other, and CPU-bound tests slowed down
    enough to hit a 200 s timeout on a 16-core GPU machine with 14 workers. An OMP_NUM_THREADS set
    by the user wins; subprocesses started by tests inherit the share through it.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(share)
    torch.set_num_threads(share)


_share_cores_between_xdist_workers()


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    """A different, reproducible seed per test case (derived from its node id)."""
    import zlib
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    yield


@pytest.fixture
def gpu_choices():
    """The GPU's choices on the CPU (``yolov12_kernels.target.rehearse_gpu``, an sm_90 GPU):
    inside the test, "auto" orders backends as on an H100, ``optimize()`` and ``Predictor``
    choose fused convs, channels-last, float16 by default, Triton attention and CUDA graphs,
    while the kernels run in Triton's interpreter on CPU tensors and graphs are the recorded
    stand-in (``RecordedGraphs``; docs/testing.md says what it does not cover). Models built
    inside keep those choices. Skipped where the interpreter is off (a GPU machine runs the
    real thing)."""
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        pytest.skip("the GPU's choices run on the CPU in Triton's interpreter "
                    "(TRITON_INTERPRET=1 unset here)")
    from yolov12_kernels.target import rehearse_gpu
    with rehearse_gpu((9, 0)) as target:
        yield target


@pytest.fixture(params=["cpu", "gpu"])
def choices(request):
    """Runs a test twice: under the CPU's own choices ("cpu") and the GPU's (``gpu_choices``)."""
    if request.param == "gpu":
        request.getfixturevalue("gpu_choices")
    return request.param


def pytest_report_header(config):
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"torch {torch.__version__}, GPU: {dev}, "
            f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')}"]
