"""Video in and out with PyAV (``pip install av``, the package's ``video`` extra).

* ``read_frames(path, vid_stride)``: every ``vid_stride``-th frame as an (H, W, 3) uint8 RGB
  array, in order; a file that cannot be opened, that breaks off (corrupt data), or that ends
  before the frame count its header announces (truncated: FFmpeg stops there without a word)
  ends its frames with one ``ValueError`` item naming the file and the frame (the frames before
  it were yielded as usual), instead of raising from inside the decoder;
* ``VideoWriter``: annotated frames encoded to H.264 (MPEG-4 part 2 where the FFmpeg build has no
  H.264 encoder) at the frame rate of the frames kept, written under a temporary name beside the
  final one (``outputs.writing``: a write failure is one line) and renamed when closed; a run that stops early closes it
  with the frames written so far, a failure to write removes it.
"""
from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from .outputs import OutputError, cause, writing

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv",
                  ".ts", ".flv"}


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError as e:
        raise ImportError("video: reading and writing videos needs PyAV: pip install av (or "
                          "pip install 'yolov12-kernels[video]')") from e
    return av


def probe(path) -> tuple[int | None, float]:
    """(frame count from the container, or None when it does not say; frames per second)."""
    av = _av()
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None, 0.0
            s = c.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 0) or 25.0
            return (int(s.frames) or None), rate
    except av.error.FFmpegError:
        return None, 0.0


def read_frames(path, vid_stride: int = 1):
    """(frame number, RGB uint8 array) for frames 0, vid_stride, 2 * vid_stride, ...; an error
    ends the sequence as a ``(frame number, ValueError)`` item (see the module docstring)."""
    av = _av()
    if isinstance(vid_stride, bool) or not isinstance(vid_stride, int) or vid_stride < 1:
        raise ValueError(f"vid_stride: expected an int >= 1, got {vid_stride!r}")
    k = 0
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                yield 0, ValueError(f"video: {str(path)!r} has no video stream")
                return
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg's own frame threads, outside the GIL
            announced = int(stream.frames or 0)
            for frame in c.decode(stream):
                if k % vid_stride == 0:
                    yield k, frame.to_ndarray(format="rgb24")
                k += 1
        if announced and k < announced:  # FFmpeg stops quietly at a cut-off end
            yield k, ValueError(f"video: {str(path)!r} ends at frame {k} of the {announced} its "
                                "header announces (truncated?)")
    except (av.error.FFmpegError, OSError) as e:  # truncated, corrupt, not a video
        where = f"at frame {k}" if k else "before its first frame"
        yield k, ValueError(f"video: {str(path)!r} cannot be read {where} "
                            f"({str(e).split(':')[0].strip() or type(e).__name__})")


class VideoWriter:
    """``write(rgb array or PIL image)`` frames of one size, ``close()`` to finish the file.

    The size is the first frame's, cut to even sides (what 4:2:0 video takes)."""

    def __init__(self, path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(writing(self.path))
        self._container = None
        self._stream = None

    def _open(self, h: int, w: int):
        av = _av()
        self._container = av.open(str(self._tmp), "w", format=None)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width, self._stream.height = w - w % 2, h - h % 2
        self._stream.pix_fmt = "yuv420p"

    def write(self, image) -> None:
        av = _av()
        a = np.asarray(image)
        try:
            if self._stream is None:
                self._open(*a.shape[:2])
            a = np.ascontiguousarray(a[:self._stream.height, :self._stream.width])
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                self._container.mux(packet)
        except OSError as e:  # a full disk (PyAV's errors are OSErrors): one line, the final name
            raise OutputError(self.path, cause(e)) from None
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Finish the file (flush the encoder, rename into place), or with ``keep=False``
        remove it. A video with no frame is not kept."""
        try:
            if self._container is not None:
                if keep:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if not keep or self.frames == 0:
                raise _Discard
        except BaseException as e:
            self._stack.__exit__(type(e), e, e.__traceback__)  # removes the temporary file
            if not isinstance(e, _Discard):
                raise
            return
        self._stack.close()  # renames it into place


class _Discard(Exception):
    pass
