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
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

_U16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

# A PIL image's pixels arrive as a read-only array, which the resize only reads. PyTorch warns
# once per process when it wraps one; that warning says nothing here, so it is spent now, quietly
# (a filter would not do: warning filters are global state, not safe to change from the threads
# that letterbox).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.from_numpy(np.frombuffer(b"\0", dtype=np.uint8))


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


# ---------------------------------------------------------------------------------------------
# reading a file, and fitting a picture into the network input (letterbox), in uint8
# ---------------------------------------------------------------------------------------------
STRIDE = 32      # the network's largest stride: input sides are multiples of it
PAD_VALUE = 114  # grey padding, what the public models were trained with


def load_image(path):
    """An 8-bit RGB ``PIL.Image``, rotated upright per its EXIF orientation (as phones store
    photos); 16-bit and float images are scaled to 8 bits (``to_rgb8``), never clipped.

    Raises ``ValueError`` naming the file when it cannot be read: not an image, corrupt or
    truncated, or over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    from PIL import ImageOps
    with open_image(path) as im:
        im.load()  # decode now: a truncated file fails here, inside open_image
        # upright in place: the default returns a copy even when nothing turns (its cost for a
        # 1080p JPEG: benchmarks/results/predict_stages.jsonl); Pillow before 9.4 has no in_place
        try:
            ImageOps.exif_transpose(im, in_place=True)
        except TypeError:
            im = ImageOps.exif_transpose(im)
        return to_rgb8(im, repr(str(path)))


def rgb8_array(image, source: str = "the image") -> np.ndarray:
    """``image`` (PIL image or array, any of ``to_rgb8``'s kinds) as an (H, W, 3) uint8 array.
    An 8-bit RGB array is returned as it is (no copy); a PIL image costs one copy of its pixels
    (Pillow keeps them in its own memory)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
            and image.shape[2] == 3:
        return image
    return np.asarray(to_rgb8(image, source))


def upright_size(path) -> tuple[int, int]:
    """(h, w) of an image file as ``load_image`` will return it, from its header: the EXIF
    orientation swaps the sides (read where that is cheap: a PNG's EXIF may need the pixels)."""
    from PIL import Image
    with Image.open(path) as im:
        w, h = im.size
        if im.format in ("JPEG", "MPO", "TIFF", "WEBP") and \
                im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
            w, h = h, w
    return h, w


@dataclass
class Letterbox:
    """How an image was fitted into the network input: ``x_in = x_orig * ratio[0] + pad[0]``."""
    ratio: tuple[float, float]   # (x, y) scale factors, exact after rounding the resized size
    pad: tuple[int, int]         # (left, top) padding in input pixels
    orig_shape: tuple[int, int]  # (h, w) of the original image
    shape: tuple[int, int]       # (h, w) of the letterboxed input


def letterbox_geometry(h: int, w: int, imgsz: int = 640, stride: int = STRIDE,
                       shape: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(new w, new h, H, W): the size an h x w image is resized to and the input it is padded to.

    Long side ``imgsz``, aspect kept, each side padded to the next multiple of ``stride``; or, with
    ``shape`` (a static ONNX file's (H, W)), the largest size that fits inside ``shape``, padded to
    exactly it.
    """
    r = min(imgsz / h, imgsz / w) if shape is None else min(shape[0] / h, shape[1] / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    if shape is not None:
        return min(nw, shape[1]), min(nh, shape[0]), shape[0], shape[1]
    return nw, nh, math.ceil(nh / stride) * stride, math.ceil(nw / stride) * stride


def check_imgsz(imgsz, stride: int = STRIDE) -> None:
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < stride:
        raise ValueError(f"imgsz: expected an int >= {stride}, got {imgsz!r}")


def resize_u8(pixels: np.ndarray, nw: int, nh: int, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 pixels resized to (3, nh, nw) planes (CHW: the layout the resize kernel
    writes, so no transposing copy follows) with the bilinear filter widened to the scale on a
    reduction (antialiased: what Pillow's ``Image.BILINEAR`` resize computes), in one pass over
    the uint8 pixels, written into ``out`` when given.

    The arithmetic is PyTorch's uint8 path (``interpolate(..., antialias=True)``, vectorised):
    about 3.5x faster than Pillow's own resize (2.6 ms against 9.0 ms, 1920x1080 -> 640x360,
    one thread, benchmarks/results/predict_stages.jsonl). Its filter weights are 16-bit fixed
    point where Pillow's are 22-bit, so a pixel can come out 1 (of 255) apart from Pillow's
    where the exact value lies next to a half: none at 1080p -> 640 (an exact 1/3), up to 1.6%
    of the pixels at other ratios (docs/usage.md). One thread: it runs in the decode workers,
    beside the model's threads.
    """
    t = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)  # NHWC in memory: the fast path
    if pixels.shape[:2] != (nh, nw):
        t = torch.nn.functional.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True,
                                            align_corners=False)
    planes = t[0].numpy()
    if out is None:
        return np.ascontiguousarray(planes)
    out[...] = planes
    return out


def letterbox_u8(image, imgsz: int = 640, stride: int = STRIDE,
                 shape: tuple[int, int] | None = None, source: str = "the image"
                 ) -> tuple[np.ndarray, Letterbox]:
    """``image`` (PIL image or array, see ``to_rgb8``) resized once in uint8 so its long side is
    ``imgsz``, aspect kept, and padded (grey, centred) to the next multiple of ``stride`` on each
    side — or, with ``shape`` (H, W), fitted inside and padded to exactly that.

    Returns the (3, H, W) uint8 input, RGB planes (normalising to [0, 1] is the device's job:
    ``normalize``), and the ``Letterbox`` that maps boxes back.
    """
    check_imgsz(imgsz, stride)
    pixels = rgb8_array(image, source)
    h, w = pixels.shape[:2]
    nw, nh, H, W = letterbox_geometry(h, w, imgsz, stride, shape)
    left, top = (W - nw) // 2, (H - nh) // 2
    canvas = np.empty((3, H, W), dtype=np.uint8)
    # the grey border only: the image's own rectangle is written once, by the resize
    canvas[:, :top], canvas[:, top + nh:] = PAD_VALUE, PAD_VALUE
    canvas[:, top:top + nh, :left], canvas[:, top:top + nh, left + nw:] = PAD_VALUE, PAD_VALUE
    resize_u8(pixels, nw, nh, out=canvas[:, top:top + nh, left:left + nw])
    return canvas, Letterbox((nw / w, nh / h), (left, top), (h, w), (H, W))


def normalize(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 3, H, W) uint8 pixels (on any device) -> the network's input in [0, 1], ``dtype``,
    channels-last in memory (what the convolutions read; the layout change rides on the dtype
    conversion): one pass on the device the pixels are on. Every path (one image at a time, the
    pipeline, val) goes through it, so the input values are the same bits everywhere."""
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device,
                      memory_format=torch.channels_last)
    out.copy_(x).div_(255.0)
    return out if dtype == torch.float32 else out.to(dtype)
