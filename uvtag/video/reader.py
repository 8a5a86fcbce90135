"""open_video(path) -> VideoReader: frames by index as RGB uint8, from the most correct backend available.

Backend order is correctness first, then speed:
  1. "pyav"   decodes every codec tried (H.264, HEVC, VP9, AV1, MPEG-4, MJPEG), raises on corrupt data,
              gives exact pts for VFR; we add rotation and demux-based frame counts.
  2. "decord" fast resize-while-decoding, but no AV1, fails on some VP9 and mishandles rotated video.
  3. "opencv" stops silently on corrupt data and seeks wrongly on VFR: used sequentially and verified.
In automatic mode (backend=None) a backend that is not installed, cannot open the file or fails
mid-file is replaced by the next one. Errors are `VideoError("<path>: <reason>")`, one line: any
exception a decoder raises on a damaged file (an AttributeError from a missing codec context, an
av.error.PermissionError from a seek, an IndexError from decord's index...) is reported that way,
with its type and message as the cause. Only KeyboardInterrupt, SystemExit and this process's own
MemoryError pass through (a decoder's MemoryError subclass, raised for corrupt data, is the file's).

Memory: `iter_frames` holds one decoded frame at a time (plus the decoder's own reference frames),
so a sliding-window pass over a 2-hour video is bounded by the caller's window buffer, not the video.
The only per-video state is the frame index (8 bytes of pts per frame: 1.7 MB for 2 h at 30 fps;
the demux pass at open holds a transient Python list of the same pts). Measured with
tests/benchmarks/bench_decode.py: streaming 30 min of 720p H.264 with the sliding-window pattern peaks
at 80 MiB RSS (34 MiB above the imports), the same as for a 3 min file, so memory is bounded by the
decoder's reference frames plus the caller's window buffer, not by the video length.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import stat
from typing import Iterable, Iterator, Sequence

import numpy as np

from uvtag.errors import UvtagError, VideoError, describe
from uvtag.results import VideoInfo
from uvtag.video.backends import BACKEND_CLASSES, BACKEND_MODULES, DecodeFailure, Size, is_installed

BACKENDS: tuple[str, ...] = ("pyav", "decord", "opencv")  # default order, most correct first


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of(mode: int) -> str:
    """What a non-regular, non-directory file is, in a few words."""
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")


def check_video_path(path: str) -> None:
    """Fail early, in one line, for problems no decoder should see.

    A missing file, a folder, a broken link, an unreadable or empty file, and anything that is not a
    regular file: opening a named pipe, a device or a socket would block or read forever, so those
    are refused from `os.stat` alone, before anything opens them.
    """
    if not os.path.lexists(path):
        raise VideoError(f"{path}: no such file")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise VideoError(f"{path}: broken symbolic link") from None
    except OSError as e:
        raise VideoError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise VideoError(f"{path}: is a directory")
    if not stat.S_ISREG(mode):
        raise VideoError(f"{path}: {_kind_of(mode)}, not a video file (uvtag reads regular files only)")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied (file is not readable)")
    try:
        with open(path, "rb") as f:
            empty = f.read(1) == b""
    except OSError as e:
        raise VideoError(f"{path}: cannot read ({e.strerror or e})") from None
    if empty:
        raise VideoError(f"{path}: file is empty")


def is_host_error(exc: BaseException) -> bool:
    """True for a failure of this process rather than of the file being read.

    That is Python's own MemoryError (and anything that is not an Exception). Decoders' MemoryError
    subclasses (av.error.MemoryError) report corrupt data, so they are the file's fault.
    """
    if not isinstance(exc, Exception):
        return True
    return isinstance(exc, MemoryError) and type(exc).__module__.partition(".")[0] not in BACKEND_MODULES.values()


def _passes_through(exc: BaseException) -> bool:
    """Exceptions the reader re-raises as they are: its own errors and the host's (see is_host_error)."""
    return isinstance(exc, UvtagError) or is_host_error(exc)


def _as_failure(exc: Exception, what: str) -> DecodeFailure:
    """A decoder exception that is not a DecodeFailure, as one: `what` plus its cause."""
    return DecodeFailure(f"{what} ({describe(exc)})")


def _candidates(backend: str | None) -> list[str]:
    if backend is None:
        return list(BACKENDS)
    if backend not in BACKENDS:
        raise VideoError(f"unknown video backend {backend!r} (choose from {', '.join(BACKENDS)})")
    return [backend]


def _open_first(path: str, names: list[str], forced: bool):
    """Open `path` with the first backend in `names` that works; returns (backend, remaining names)."""
    first_error: str | None = None
    tried: list[str] = []
    for i, name in enumerate(names):
        if not is_installed(BACKEND_MODULES[name]):
            if forced:
                raise VideoError(f"{path}: backend {name!r} is not installed (pip install {BACKEND_MODULES[name]})")
            continue
        try:
            return BACKEND_CLASSES[name](path), names[i + 1 :]
        except DecodeFailure as e:
            failure = e
        except Exception as e:  # a decoder tripping over a damaged file
            if _passes_through(e):
                raise
            failure = _as_failure(e, "cannot open")
        first_error = first_error or failure.reason  # the most trusted backend's reason is the clearest
        tried.append(name)
        if not failure.retry:
            break
    if first_error is None:
        raise VideoError(f"{path}: no video backend installed (pip install av)")
    also = f" (tried {', '.join(tried)})" if len(tried) > 1 else ""
    raise VideoError(f"{path}: {first_error}{also}")


class _IndexFeed:
    """Ascending indices handed lazily to a backend; remembers the ones pulled but not yet delivered,
    so that a replacement backend can continue exactly where the failed one stopped."""

    def __init__(self, source: Iterator[int]) -> None:
        self._source, self._pulled = source, collections.deque()

    def __iter__(self) -> "_IndexFeed":
        return self

    def __next__(self) -> int:
        idx = next(self._source)
        self._pulled.append(idx)
        return idx

    def next_wanted(self) -> int | None:
        """The first index handed out but not yet delivered (the frame being decoded), if any."""
        return self._pulled[0] if self._pulled else None

    def delivered(self, idx: int) -> None:
        while self._pulled and self._pulled[0] <= idx:
            self._pulled.popleft()

    def restart(self) -> None:
        self._source, self._pulled = itertools.chain(list(self._pulled), self._source), collections.deque()


class VideoReader:
    """Frames of one video by index. Use `open_video` to make one; close it or use `with`."""

    def __init__(self, path: str | os.PathLike, backend: str | None = None) -> None:
        self.path = os.fspath(path)
        check_video_path(self.path)
        self._impl, self._fallbacks = _open_first(self.path, _candidates(backend), forced=backend is not None)
        self.info: VideoInfo = self._impl.info

    # ------------------------------------------------------------------ public API
    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames at `indices` (any order, duplicates allowed) as uint8 [len(indices), H, W, 3] RGB.

        Args:
            indices: frame indices in [0, info.num_frames).
            size: (height, width) to scale to while decoding (bilinear); None keeps the displayed size.
        """
        indices = [self._check_index(i) for i in indices]
        size = self._check_size(size)
        h, w = size or (self.info.height, self.info.width)
        out = np.empty((len(indices), h, w, 3), np.uint8)
        where: dict[int, list[int]] = {}
        for pos, idx in enumerate(indices):
            where.setdefault(idx, []).append(pos)
        for idx, frame in self._iter_unique(sorted(where), size):
            if frame.shape != out.shape[1:]:
                raise VideoError(f"{self.path}: cannot decode frame {idx}: the decoder gave a {frame.shape[1]}x{frame.shape[0]} "
                                 f"picture, not {w}x{h} (corrupt stream, or its size changes mid-stream)")
            out[where[idx]] = frame
        return out

    def iter_frames(self, indices: Iterable[int], size: tuple[int, int] | None = None,
                    raw: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Stream (index, frame uint8 [H, W, 3] RGB) for ascending `indices` in one forward pass.

        With `raw` (and no `size`), frames the PyAV backend holds as planar 4:2:0 of a matrix
        `uvtag.video.colour` converts come as `Yuv420Frame` pictures instead, for a conversion on
        another device; any other frame is RGB as usual.

        Each distinct index is decoded once (a repeated index yields the same array again); frames
        between requested ones are decoded but never converted to RGB. `indices` is consumed lazily,
        so it may be a generator over a 2-hour video; memory is one frame at a time.
        """
        size = self._check_size(size)
        repeats: dict[int, int] = {}

        def unique() -> Iterator[int]:
            prev = -1
            for idx, run in itertools.groupby(self._check_index(i) for i in indices):
                if idx < prev:
                    raise VideoError(f"{self.path}: iter_frames needs ascending indices ({idx} after {prev})")
                repeats[idx], prev = sum(1 for _ in run), idx
                yield idx

        for idx, frame in self._iter_unique(unique(), size, raw):
            for _ in range(repeats.pop(idx, 1)):
                yield idx, frame

    def timestamps_sec(self) -> np.ndarray:
        """Presentation time of every frame in seconds from the first frame, [num_frames] float64 (exact for VFR)."""
        return self._call(lambda impl: impl.timestamps_sec(), "cannot read the frame timestamps")

    def close(self) -> None:
        """Release the decoder (a decoder that fails to close is dropped: its frames were already read)."""
        impl, self._impl = self._impl, None
        if impl is not None:
            _close_quietly(impl)

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _check_index(self, index: int) -> int:
        i = int(index)
        if i != index or not 0 <= i < self.info.num_frames:
            note = f"; {self._impl.note}" if self._impl is not None and self._impl.note else ""
            raise VideoError(f"{self.path}: frame index {index} out of range (video has {self.info.num_frames} frames{note})")
        return i

    def _check_size(self, size: tuple[int, int] | None) -> Size:
        if size is None:
            return None
        h, w = (int(s) for s in size)
        if h <= 0 or w <= 0:
            raise VideoError(f"{self.path}: invalid frame size {size!r} (need positive (height, width))")
        return h, w

    def _iter_unique(self, indices: Iterable[int], size: Size, raw: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Frames for ascending unique indices, switching to the next backend if the current one fails."""
        feed = _IndexFeed(iter(indices))
        while True:
            if self._impl is None:
                raise VideoError(f"{self.path}: reader is closed")
            self._impl.raw = raw  # only PyAV reads it
            try:
                for idx, frame in self._impl.iter_frames(feed, size):
                    feed.delivered(idx)
                    yield idx, frame
                return
            except DecodeFailure as e:
                failure = e
            except Exception as e:  # a decoder tripping over damaged data
                if _passes_through(e):  # e.g. an index error raised by the caller's own indices
                    raise
                at = feed.next_wanted()
                failure = _as_failure(e, "cannot decode frames" if at is None else f"cannot decode frame {at}")
            self._fall_back(failure)
            feed.restart()

    def _call(self, fn, what: str):
        """`fn(backend)`, moving to the next backend if it fails; `what` names the step in errors."""
        while True:
            if self._impl is None:
                raise VideoError(f"{self.path}: reader is closed")
            try:
                return fn(self._impl)
            except DecodeFailure as e:
                failure = e
            except Exception as e:
                if _passes_through(e):
                    raise
                failure = _as_failure(e, what)
            self._fall_back(failure)

    def _fall_back(self, failure: DecodeFailure) -> None:
        """Replace the failed backend by the next one that opens the file, or raise VideoError."""
        if not (failure.retry and self._fallbacks):
            raise VideoError(f"{self.path}: {failure.reason}") from None
        failed = self._impl.name
        _close_quietly(self._impl)
        try:
            self._impl, self._fallbacks = _open_first(self.path, self._fallbacks, forced=False)
        except VideoError:
            self._impl = None
            raise VideoError(f"{self.path}: {failure.reason} ({failed}; no other backend could read it)") from None
        self.info = dataclasses.replace(self.info, backend=self._impl.name)


def _close_quietly(impl) -> None:
    """Close a backend; an exception from a decoder that is being dropped is of no use to anyone."""
    try:
        impl.close()
    except Exception as e:
        if is_host_error(e):
            raise


def open_video(path: str | os.PathLike, backend: str | None = None) -> VideoReader:
    """Open a video for frame access.

    Args:
        path: the video file.
        backend: "pyav", "decord" or "opencv" to force one; None tries BACKENDS in order with fall-back.

    Returns:
        A VideoReader; `reader.info` says which backend is used. Raises VideoError on any failure.
    """
    return VideoReader(path, backend)
