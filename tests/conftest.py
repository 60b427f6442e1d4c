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
