"""``load_image`` lets Pillow keep blocks of pixel memory for reuse (a process-wide Pillow
setting), unless the user chose with ``PILLOW_BLOCKS_MAX``. Each case in a fresh process: the
setting cannot be undone inside one."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PROBE = """
import sys
from PIL import Image
from yolov12.images import PIXEL_BLOCKS_KEPT, load_image
Image.new("RGB", (64, 48), (10, 20, 30)).save(sys.argv[1])
before = Image.core.get_blocks_max()
im = load_image(sys.argv[1])
print(before, Image.core.get_blocks_max(), PIXEL_BLOCKS_KEPT, im.size)
"""


def _probe(tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if k != "PILLOW_BLOCKS_MAX"}
    full.update(PYTHONPATH=str(ROOT), **env)
    r = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "a.png")], env=full,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


def test_first_read_keeps_pixel_blocks_for_reuse(tmp_path):
    before, after, kept, *size = _probe(tmp_path)
    assert before == "0" and after == kept == "8" and size == ["(64,", "48)"]


def test_the_users_pillow_blocks_max_is_left_alone(tmp_path):
    before, after, *_ = _probe(tmp_path, PILLOW_BLOCKS_MAX="2")
    assert before == after == "2"
