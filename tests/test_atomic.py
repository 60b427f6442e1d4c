"""yolov12.atomic: a writer that fails leaves neither the final file nor its temporary one."""
import os

import pytest

from yolov12.atomic import atomic_path, write_text


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def test_clean_exit_renames_onto_the_final_name(tmp_path):
    final = tmp_path / "out.json"
    final.write_text("old")
    write_text(final, '{"a": 1}')
    assert final.read_text() == '{"a": 1}'
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "out.json"]


def test_temporary_name_keeps_the_suffix_and_directory(tmp_path):
    with atomic_path(tmp_path / "image.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name != "image.png"
        tmp.write_bytes(b"png")
    assert (tmp_path / "image.png").read_bytes() == b"png"


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_writer_leaves_nothing(tmp_path, error):
    final = tmp_path / "predictions.json"
    with pytest.raises(type(error)):
        with atomic_path(final) as tmp:
            tmp.write_text("partial")
            raise error
    assert os.listdir(tmp_path) == []


def test_a_failed_writer_keeps_the_previous_file(tmp_path):
    final = tmp_path / "model.onnx"
    final.write_bytes(b"previous")
    with pytest.raises(OSError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")
    assert final.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_the_final_file_has_the_mode_a_plain_open_gives(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_a_device_or_pipe_is_never_replaced(tmp_path):
    """Run as root, a rename onto /dev/null would put a regular file in its place: refused before
    anything is written (a pipe of the test's own stands for the device)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        write_text(fifo, "x")
    assert not fifo.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_the_process_umask_is_never_touched(tmp_path, monkeypatch):
    """Reading the umask means setting it (os.umask): two threads writing at once could leave
    the process with umask 0, and every later file world-writable. The temporary file is created
    with mode 0666 instead, which the kernel narrows by the umask."""
    def umask(mask):
        raise AssertionError("atomic_path changed the process umask")
    monkeypatch.setattr(os, "umask", umask)
    write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").read_text() == "x"
