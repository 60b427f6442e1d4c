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
import tempfile
from pathlib import Path


NOT_REGULAR = "not a regular file (a device, a pipe or a socket); give a file name"


def check_replaceable(path) -> None:
    """``OSError`` (EINVAL) when ``path`` exists and is a device, a pipe or a socket: the rename
    that publishes a file would put a regular file in its place (``/dev/null`` itself, run as
    root)."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise OSError(errno.EINVAL, NOT_REGULAR, str(path))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in ``path``'s directory, with ``path``'s suffix (writers such as
    Pillow pick the format from it); on a clean exit rename it to ``path``, else remove it.
    ``path`` must not be a device, a pipe or a socket (``check_replaceable``)."""
    final = Path(path)
    check_replaceable(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".part{final.suffix}",
                               dir=final.parent if str(final.parent) else ".")
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp makes the file private (0600); give it the mode a plain open() would (umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        check_replaceable(final)  # once more: it may have appeared while the writer ran
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path, text: str, encoding: str = "utf-8") -> None:
    """``Path(path).write_text(text)``, whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_bytes(path, data: bytes) -> None:
    """``Path(path).write_bytes(data)``, whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
