"""Reading pictures: 16-bit and float images are scaled (not clipped to white), and unreadable
files fail with a message that names them."""
from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch

from _lively import lively
from yolov12 import YOLOv12
from yolov12.images import to_rgb8
from yolov12.predict import Predictor, letterbox, load_image

Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")


def _photo(h=72, w=100, seed=0):
    """An 8-bit grayscale 'photo': smooth shading, a few objects of different brightness, grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 60 + 80 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    img[10:40, 15:45] = 220
    img[45:65, 60:95] = 30
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_to_rgb8_scales_deep_and_float_pixels():
    g = _photo()
    want = np.repeat(g[:, :, None], 3, axis=2)
    assert np.array_equal(np.asarray(to_rgb8(g.astype(np.uint16) * 257)), want)
    assert np.array_equal(np.asarray(to_rgb8(g.astype(np.float32) / 255)), want)
    assert np.array_equal(np.asarray(to_rgb8(g.astype(np.float64) / 255)), want)
    assert np.array_equal(np.asarray(to_rgb8(Image.fromarray(g.astype(np.uint16) * 257))), want)
    # mode I (32-bit), as older Pillow opens 16-bit PNGs: read as 16-bit
    as_i = Image.fromarray(g.astype(np.int32) * 257)
    assert as_i.mode == "I" and np.array_equal(np.asarray(to_rgb8(as_i)), want)
    assert np.array_equal(np.asarray(to_rgb8(Image.fromarray(g.astype(np.float32) / 255))), want)
    # gray with one channel, RGBA (alpha dropped) and plain RGB
    assert np.array_equal(np.asarray(to_rgb8(g[:, :, None])), want)
    rgba = np.dstack([want, np.full(g.shape, 7, np.uint8)])
    assert np.array_equal(np.asarray(to_rgb8(rgba)), want)
    assert np.array_equal(np.asarray(to_rgb8(Image.fromarray(rgba, "RGBA"))), want)


def test_to_rgb8_refuses_what_it_cannot_scale():
    with pytest.raises(ValueError, match=r"float pixels in \[0, 255\]"):
        to_rgb8(np.linspace(0, 255, 12, dtype=np.float32).reshape(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        to_rgb8(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="outside the 8- and 16-bit ranges"):
        to_rgb8(Image.fromarray(np.array([[0, 70000]], np.int32)))
    with pytest.raises(ValueError, match="shape"):
        to_rgb8(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(TypeError, match="image: expected a PIL image"):
        to_rgb8([[0, 1]])


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return Predictor(lively(YOLOv12("n")), imgsz=64, conf=0.0, max_det=10, device="cpu")


def test_same_photo_8bit_16bit_and_float_give_the_same_detections(tmp_path, predictor):
    g = _photo()
    files = {"8-bit": tmp_path / "p8.png", "16-bit": tmp_path / "p16.png",
             "float": tmp_path / "pf.tiff"}
    Image.fromarray(g).save(files["8-bit"])
    Image.fromarray(g.astype(np.uint16) * 257).save(files["16-bit"])
    Image.fromarray(g.astype(np.float32) / 255).save(files["float"])
    assert Image.open(files["16-bit"]).mode.startswith("I")  # really a 16-bit file
    assert Image.open(files["float"]).mode == "F"
    dets = {k: predictor([load_image(f)])[0] for k, f in files.items()}
    for k in ("16-bit", "float"):
        assert torch.equal(dets[k].boxes, dets["8-bit"].boxes), k
        assert torch.equal(dets[k].scores, dets["8-bit"].scores), k
        assert torch.equal(dets[k].labels, dets["8-bit"].labels), k
    # what Pillow's clipping conversion fed the model (all white) is detectably different
    white = predictor([Image.new("RGB", (g.shape[1], g.shape[0]), (255, 255, 255))])[0]
    assert not torch.equal(white.boxes, dets["8-bit"].boxes)


def test_letterbox_takes_16bit_arrays():
    g = _photo()
    x8, _ = letterbox(g, 64)
    x16, _ = letterbox(g.astype(np.uint16) * 257, 64)
    assert torch.equal(x8, x16)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels (no real pixel data): what a decompression
    bomb looks like to the reader before it allocates."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_unreadable_files_name_the_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(ValueError, match="notes.jpg.*not an image"):
        load_image(text)
    good = tmp_path / "ok.png"
    Image.fromarray(_photo()).save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="cannot read.*cut.png"):
        load_image(truncated)
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 30000, 30000)  # 900 M pixels, over twice Pillow's default limit
    with pytest.raises(ValueError, match="refusing.*bomb.png.*decompression bomb"):
        load_image(bomb)


def test_images_between_pillows_limit_and_twice_it_are_refused_too(tmp_path):
    """Pillow only warns there (and decodes anyway); the documented limit is its limit."""
    limit = Image.MAX_IMAGE_PIXELS
    side = int((1.5 * limit) ** 0.5)  # 1.5x the limit: past it, under twice it
    bomb = tmp_path / "big.png"
    _png_header_only(bomb, side, side)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="refusing.*big.png.*decompression bomb"):
            load_image(bomb)
    assert not seen, [str(w.message) for w in seen]  # no raw DecompressionBombWarning either
