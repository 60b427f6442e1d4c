"""The CPU cores this process may run on: what thread and process counts are sized by."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which a container or ``taskset``
    narrows; ``os.cpu_count()`` counts the machine's), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
