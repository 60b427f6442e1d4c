"""Output paths, checked before any work, and write failures as one line.

Commands check the files and folders they will write *before* they load a model or read an image
(``check_file``, ``check_dir``): a folder where a file is expected, a file where a folder is
expected, a device, a path under a file, or a folder nobody may write in ends the run with one
line naming the option. Writing itself goes through ``writing`` (``atomic.atomic_path``: a
temporary name beside the final one, renamed when complete), which turns an ``OSError`` — a full
disk, a read-only file system, a file grown past the process's size limit — into ``OutputError``,
one line naming the final path and the cause; ``yolov12.__main__`` prints it and exits 1. Nothing
partial is left under the final name, nor the temporary one.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .atomic import NOT_REGULAR, atomic_path, check_replaceable


class OutputError(Exception):
    """An output that could not be written: ``str()`` is one line, the path and the cause."""

    def __init__(self, path, reason: str):
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason = Path(path), reason


def cause(e: OSError) -> str:
    """'No space left on device' for an ``OSError`` (its strerror, without the temp file name)."""
    return e.strerror or str(e) or type(e).__name__


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (where a new folder would be created)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path, flag: str, shown) -> None:
    """Create and remove an empty file in ``folder``: a read-only file system or a folder without
    write permission fails here, before any work (permission bits alone do not tell: root)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".yolov12-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise SystemExit(f"{flag}: cannot write in {folder} (for {shown}): {cause(e)}") from None


def _check_folder(folder: Path, flag: str, shown: Path) -> None:
    """``folder`` (where ``shown`` goes) is a folder, or its closest existing ancestor is, and that
    folder takes new files."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise SystemExit(f"{flag}: {shown} is under {base}, which is a file, not a folder")
    _probe(base, flag, shown)


def check_file(path, flag: str, example: str | None = None) -> Path:
    """``path`` as the output file of option ``flag``: not a folder, not a device or other special
    file (os.replace would put a regular file in its place), in a folder that exists or can be
    created and that takes new files. ``SystemExit`` with one line otherwise; nothing is created."""
    path = Path(path)
    if path.is_dir():
        hint = f" (e.g. {path / example})" if example else ""
        raise SystemExit(f"{flag}: {path} is a folder; give a file name{hint}")
    if path.exists() and not path.is_file():
        raise SystemExit(f"{flag}: {path} exists and is not a regular file; give another name")
    _check_folder(path.parent, flag, path)
    return path


def check_dir(path, flag: str) -> Path:
    """``path`` as the output folder of option ``flag``: a folder or nothing yet (created later),
    under folders that take new files. ``SystemExit`` with one line otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SystemExit(f"{flag}: {path} is a file; {flag} names a folder")
    _check_folder(path, flag, path)
    return path


@contextlib.contextmanager
def writing(path):
    """``atomic.atomic_path(path)`` with its folder created, and any ``OSError`` on the way (the
    folder, the temporary file, the writer, the rename) raised as one-line ``OutputError``."""
    path = Path(path)
    try:  # a device, pipe or socket at ``path``: atomic_path's OSError, one line as the others
        if str(path.parent):
            os.makedirs(path.parent, exist_ok=True)
        with atomic_path(path) as tmp:
            yield tmp
    except OSError as e:
        raise OutputError(path, cause(e)) from None


def refuse_special(path) -> None:
    """``OutputError`` when ``path`` is a device, a pipe or a socket: the rename that publishes a
    file would put a regular file in its place (``/dev/null`` itself, run as root)."""
    try:
        check_replaceable(path)
    except OSError:
        raise OutputError(path, NOT_REGULAR) from None


def write_text(path, text: str) -> None:
    """The whole of ``text`` in ``path``, or nothing and an ``OutputError``."""
    with writing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
