"""Any image in, 8-bit RGB out: every picture predict and val read goes through ``to_rgb8``.

Pillow's own ``convert("RGB")`` *clips* 16-bit (``I;16``) and 32-bit integer (``I``) pixels to 255
and truncates float (``F``) ones, so a 16-bit grayscale PNG became an all-white image and the
detector ran on nothing, without a word. Here deep and float pixels are *scaled* to 0..255:

* 16-bit integers (Pillow ``I;16``/``I;16B``/``I;16L``, numpy ``uint16``): ``v * 255 / 65535``,
  rounded, so a 16-bit copy of an 8-bit photo (``v8 * 257``) gives back exactly the 8-bit pixels;
* 32-bit integers (Pillow ``I``, how older Pillow opens 16-bit PNG/TIFF files): read as 16-bit
  when every value is within 0..65535; anything else is an error (its range is not knowable);
* floats (Pillow ``F``, numpy float16/32/64): the usual [0, 1] convention, times 255; values
  outside [0, 1] are an error that says the range found (divide by the maximum first);
* 8-bit stays as is; gray (2-D or one channel) is repeated into R, G and B; Pillow's other modes
  (RGBA, LA, P, CMYK, YCbCr, 1 ...) go through its RGB conversion (alpha is dropped).

Files are opened with ``open_image``: every way a file can fail to be read is one ``ValueError``
that names it.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np

_U16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


@contextlib.contextmanager
def open_image(path):
    """``PIL.Image.open(path)``, with every way the file can fail to be read — not an image,
    corrupt or truncated (also when decoded inside the ``with``), over Pillow's decompression-bomb
    limit ``PIL.Image.MAX_IMAGE_PIXELS`` — raised as a ``ValueError`` that names the file.

    Pillow refuses only images over *twice* its limit and merely warns between the limit and twice
    it (a raw ``DecompressionBombWarning`` in the user's output, then megapixels decoded anyway);
    here the limit is the limit.
    """
    from PIL import Image
    name = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"image: refusing {name!r}: {e} (a decompression bomb, or a huge "
                         "image: raise PIL.Image.MAX_IMAGE_PIXELS if you trust it)") from e
    except Image.UnidentifiedImageError as e:
        raise ValueError(f"image: {name!r} is not an image Pillow can read") from e
    except (OSError, SyntaxError) as e:  # truncated / corrupt data (Pillow raises both)
        raise ValueError(f"image: cannot read {name!r}: {e}") from e


def _gray_or_rgb(a: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1|3|4) -> (H, W, 3) (alpha dropped, gray repeated)."""
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return a[:, :, :3]
    raise ValueError(f"image: expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {a.shape}")


def _scaled_to_u8(a: np.ndarray, source: str) -> np.ndarray:
    """Pixels of a deep or float array scaled to uint8 (see the module docstring)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.isfinite(a).all():
            raise ValueError(f"image: {source} has NaN or infinite pixels")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"image: {source} has float pixels in [{lo:g}, {hi:g}]; float images "
                             "are read as values in [0, 1] (divide by the maximum first)")
        return np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if a.dtype == np.uint16 or (lo >= 0 and hi <= 65535):
            # exact integer rounding of v * 255 / 65535 (v8 * 257 maps back to v8)
            v = a.astype(np.int64)
            return ((v * 255 + 32767) // 65535).astype(np.uint8)
        raise ValueError(f"image: {source} has integer pixels in [{lo}, {hi}], outside the 8- and "
                         "16-bit ranges; convert it to 8 or 16 bits per channel")
    raise ValueError(f"image: {source} has pixels of dtype {a.dtype}, which is not an image type")


def to_rgb8(image, source: str = "the image"):
    """``image`` (a PIL image or a numpy array) as an 8-bit RGB ``PIL.Image`` (see module doc).

    ``source`` names the image in error messages (e.g. its path).
    """
    from PIL import Image
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(_gray_or_rgb(_scaled_to_u8(image, source))),
                               "RGB")
    if not isinstance(image, Image.Image):
        raise TypeError(f"image: expected a PIL image or a numpy array, got "
                        f"{type(image).__name__}")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _U16_MODES or mode in ("I", "F"):
        a = np.asarray(image)
        if mode in _U16_MODES:
            a = a.astype(np.uint16)  # big/little-endian variants to native
        return Image.fromarray(_gray_or_rgb(_scaled_to_u8(a, source)), "RGB")
    if mode.startswith("I;") or mode.startswith("F;"):  # other raw modes: say so, never clip
        raise ValueError(f"image: {source} has Pillow mode {mode!r}, which is not supported; "
                         "convert it to 8 or 16 bits per channel")
    return image.convert("RGB")
