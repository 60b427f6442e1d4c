"""Launch configurations as data: per-arch tables written by the tuning sweep on a GPU.

``configs/<arch>.json`` (arch class: ``sm80``, ``sm86``, ``sm90``; see ``conv.ARCHS``) maps a
layer-shape class to the configuration measured fastest for it::

    {"meta": {"source": "tune", "device": ..., "torch": ..., "triton": ..., "cuda": ...,
              "date": ..., "commit": ..., ...},
     "entries": {"conv/float16/k3s2/96x192/m1048576": {"config": [128, 64, 32, 8, 3, 1],
                                                       "example": {...}, "us": ..., ...}, ...}}

Keys (``conv_key``, ``mlp_key``, ``dwconv_key``): the kernel family, dtype, kernel size and
stride, widths, and the pixel count M = B*HO*WO rounded up to a power of two (the batch and image
size a class was measured at stand for the ones near it). ``conv.conv_config``,
``mlp.mlp_config`` and ``dwconv.dwconv_config`` look a launch up here first and fall back to
their heuristics for an arch or shape class without an entry. A table is read once per process
(cached); a lookup is a dict access.

Only ``python -m benchmarks.tune`` writes tables (from GPU timings; ``meta.source`` says so). No
table ships until a GPU has measured one: configurations nobody timed are the heuristics', not a
table's. ``YOLOV12_CONFIG_TABLES=DIR`` reads the tables of DIR instead (``none``: no tables);
``tables_from(DIR)`` does the same inside a ``with`` block (tests, the sweep).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path

import torch

TABLE_DIR = Path(__file__).resolve().parent / "configs"
TABLES_ENV = "YOLOV12_CONFIG_TABLES"
FORMAT = 1

_override: list[str] = []


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def m_class(m: int) -> int:
    """The pixel-count class: M rounded up to a power of two."""
    return 1 << max(0, int(m) - 1).bit_length()


def conv_key(dtype: torch.dtype, m: int, cout: int, cin: int, ks: int, stride: int) -> str:
    return f"conv/{_dtype_name(dtype)}/k{ks}s{stride}/{cin}x{cout}/m{m_class(m)}"


def mlp_key(dtype: torch.dtype, m: int, channels: int, hidden: int) -> str:
    return f"mlp/{_dtype_name(dtype)}/{channels}x{hidden}/m{m_class(m)}"


def dwconv_key(dtype: torch.dtype, m: int, channels: int, ks: int, stride: int) -> str:
    return f"dwconv/{_dtype_name(dtype)}/k{ks}s{stride}/{channels}/m{m_class(m)}"


def table_dir() -> str:
    if _override:
        return _override[-1]
    return os.environ.get(TABLES_ENV) or str(TABLE_DIR)


@functools.lru_cache(maxsize=None)
def load(arch: str, directory: str) -> dict:
    """The table of ``arch`` in ``directory`` as {key: entry}; {} where there is none. A table
    of another format version is refused (ValueError naming the file)."""
    if directory == "none":
        return {}
    path = Path(directory) / f"{arch}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if data.get("meta", {}).get("format") != FORMAT:
        raise ValueError(f"{path}: config table format {data.get('meta', {}).get('format')!r}, "
                         f"this version reads {FORMAT}")
    return dict(data.get("entries", {}))


def lookup(arch: str, key: str) -> list | None:
    """The configuration (a list of ints/bools) of ``key`` in ``arch``'s table, or None."""
    entry = load(arch, table_dir()).get(key)
    return None if entry is None else entry["config"]


@contextlib.contextmanager
def tables_from(directory: str | os.PathLike):
    """Inside the block, tables are read from ``directory`` ("none": no tables)."""
    _override.append(str(directory))
    load.cache_clear()
    try:
        yield
    finally:
        _override.pop()
        load.cache_clear()


def write(path: str | os.PathLike, meta: dict, entries: dict) -> Path:
    """Write one arch's table (sorted keys: diffs of re-tuned tables stay readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"meta": {**meta, "format": FORMAT}, "entries": dict(sorted(entries.items()))}
    path.write_text(json.dumps(body, indent=1) + "\n")
    load.cache_clear()
    return path


def shipped_tables() -> list[Path]:
    """The tables in the package (none until a GPU run commits one)."""
    return sorted(TABLE_DIR.glob("*.json"))


__all__ = ["conv_key", "mlp_key", "dwconv_key", "m_class", "lookup", "load", "tables_from",
           "write", "shipped_tables", "table_dir", "TABLE_DIR", "TABLES_ENV", "FORMAT"]
