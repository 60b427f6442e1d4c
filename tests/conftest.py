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


def pytest_report_header(config):
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"torch {torch.__version__}, GPU: {dev}, "
            f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')}"]
