"""Output files written whole or not at all.

Every file a command writes (predictions, annotated images, videos, exported models, records) goes
through ``atomic_path``: the writer fills a temporary file beside the final one, which is renamed
onto the final name only when the writer finished without an exception. A full disk, a read-only
directory, a crash or Ctrl-C then leave no partial file under the final name (and no temporary one:
it is removed on the way out). ``os.replace`` is atomic within one file system, which the temporary
name beside the final one guarantees.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path


NOT_REGULAR = "not a regular file (a device, a pipe or a socket); give a file name"


def check_replaceable(path) -> None:
    """``OSError`` (EINVAL) when ``path`` exists and is a device, a pipe or a socket: the rename
    that publishes a file would put a regular file in its place (``/dev/null`` itself, run as
    root)."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise OSError(errno.EINVAL, NOT_REGULAR, str(path))


def _create_beside(final: Path) -> Path:
    """A new empty file beside ``final`` with a name of its own, created with mode 0666 so that
    the kernel applies the umask, as a plain ``open()`` would (``mkstemp`` makes it 0600, and
    reading the umask means setting it: a race between threads, which could leave the process
    with umask 0)."""
    folder = final.parent if str(final.parent) else Path(".")
    for _ in range(100):
        tmp = folder / f".{final.name}.{secrets.token_hex(4)}.part{final.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in ``path``'s directory, with ``path``'s suffix (writers such as
    Pillow pick the format from it); on a clean exit rename it to ``path``, else remove it.
    ``path`` must not be a device, a pipe or a socket (``check_replaceable``)."""
    final = Path(path)
    check_replaceable(final)
    tmp = None
    try:
        tmp = _create_beside(final)
        yield tmp
        check_replaceable(final)  # once more: it may have appeared while the writer ran
        os.replace(tmp, final)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


def write_text(path, text: str, encoding: str = "utf-8") -> None:
    """``Path(path).write_text(text)``, whole or not at all; an ``OSError`` as it comes (the
    commands use ``outputs.write_text``, which turns it into one line; this one needs only the
    standard library, for the GPU check's orchestration)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
