"""Decoder backends (PyAV, decord, OpenCV) behind one small interface.

Each backend opens one file and offers `info`, `timestamps_sec()` and
`iter_frames(sorted_unique_indices, size)`; `reader.VideoReader` adds validation, any-order access and
fall-back. Backends raise `DecodeFailure` (a reason without the path); the reader turns it into a
one-line `VideoError("<path>: <reason>")`. Each class's docstring states the measured behaviour
that shapes it (decoding H.264, HEVC, VP9, AV1, VFR, rotated, truncated, corrupt and audio-only
files); tests/test_reader.py and tests/test_bad_videos.py exercise it.

Frame index i always means the i-th frame in presentation order, and frames are uint8 RGB [H, W, 3]
as displayed (rotation applied).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import importlib.util
import itertools
import os
import re
import sys
import tempfile
import threading
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from uvtag.errors import first_line
from uvtag.results import VideoInfo

Size = tuple[int, int] | None  # (height, width) of the returned frames, as displayed
SEEK_COST_FRAMES = 16  # a seek + decoder flush costs about this many decoded frames (measured ~10-20)
MAX_BAD_PACKETS_IN_A_ROW = 50  # PyAV: give up on a stream after this many undecodable packets
DECORD_CHUNK_BYTES = 256 << 20  # decord get_batch builds the whole batch in memory: cap it (4K RGB = 25 MB/frame)


class DecodeFailure(Exception):
    """A backend could not open or decode a file; `retry` says whether another backend may succeed."""

    def __init__(self, reason: str, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = " ".join(reason.split())  # always one line
        self.retry = retry


class NativeName:
    """A name for the file `path` that decord and OpenCV can be given.

    Both crash the process (a segfault, not an exception) when handed a str that is not valid
    UTF-8, which is how Python spells a file name of other bytes (a Latin-1 name: surrogate
    escapes). Such a file is opened here and named `/proc/self/fd/N` (Linux) until `close()`;
    any other name is passed as it is.
    """

    def __init__(self, path: str) -> None:
        self.fd: int | None = None
        self.name = path
        try:
            path.encode("utf-8")
            return
        except UnicodeEncodeError:
            pass
        if not os.path.isdir("/proc/self/fd"):
            raise DecodeFailure("the file name is not valid UTF-8, which this decoder cannot take")
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise DecodeFailure(f"cannot open it ({e.strerror})")
        self.name = f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def is_installed(module: str) -> bool:
    """True if `module` can be imported (without importing it)."""
    return module in sys.modules or importlib.util.find_spec(module) is not None



def _rotate(arr: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation in degrees (PyAV's `frame.rotation` convention; ffmpeg autorotate)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(arr, k=k)) if k else arr


_decoder_threads = 0  # FFmpeg threads of each PyAV decoder; 0: FFmpeg's choice (about one per core)


def set_decoder_threads(count: int) -> None:
    """Cap the FFmpeg threads of every PyAV decoder this process opens from now on (0: FFmpeg's choice).

    Many decoder processes side by side decode faster with few threads each (see uvtag.batch.pool).
    """
    global _decoder_threads
    if count < 0:
        raise ValueError(f"decoder threads must be >= 0, got {count}")
    _decoder_threads = int(count)


def yuv420_planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A planar 4:2:0 av.VideoFrame's planes as decoded, stored (not rotated): uint8 Y [H, W],
    U and V [ceil(H/2), ceil(W/2)], copied out of FFmpeg's padded rows. Any other pixel format
    is a ValueError."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        raise ValueError(f"not a planar 4:2:0 frame: {frame.format.name}")
    return tuple(
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy() for p in frame.planes[:3]
    )


def _yuv420_frame(frame, rotation: int):
    """A `uvtag.video.colour.Yuv420Frame` of an av.VideoFrame, or None where the frame is not
    planar 4:2:0 or its matrix is not one `uvtag.video.colour` converts."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        return None
    from uvtag.video.colour import Yuv420Frame, spec_of  # torch: only where raw frames are asked for

    spec = spec_of(frame.colorspace, frame.color_range, frame.format.name)
    return None if spec is None else Yuv420Frame(*yuv420_planes(frame), spec, rotation)


def _stored_size(size: Size, rotation: int) -> Size:
    """The (h, w) to scale the stored picture to so that it is `size` after rotation."""
    if size is None or rotation % 180 == 0:
        return size
    return size[1], size[0]


class _Targets:
    """Ascending frame indices, pulled lazily, that can also answer "is frame i wanted?".

    Iterating gives the targets in order; `wants(i)` pulls just far enough ahead (up to i) to know.
    The decoder runs only a few packets ahead of the frames it returns, so the look-ahead stays short.
    """

    def __init__(self, indices: Iterable[int]) -> None:
        self._source = iter(indices)
        self._ahead: collections.deque[int] = collections.deque()
        self._open: set[int] = set()  # the current target and the pulled-ahead ones
        self._last = -1  # the largest index pulled so far
        self._current: int | None = None

    def __iter__(self) -> "_Targets":
        return self

    def __next__(self) -> int:
        self._open.discard(self._current)
        self._current = self._ahead.popleft() if self._ahead else self._pull()
        self._open.add(self._current)
        return self._current

    def _pull(self) -> int:
        self._last = next(self._source)
        return self._last

    def wants(self, idx: int) -> bool:
        while self._last < idx:
            try:
                self._ahead.append(self._pull())
            except StopIteration:
                break
            self._open.add(self._ahead[-1])
        return idx in self._open


# ----------------------------------------------------------------------------------------- PyAV
class PyAVBackend:
    """PyAV (FFmpeg 8 in the wheel): first choice, it decodes every codec tried and reports errors.

    Hazards handled here: rotation is not applied by PyAV (we rotate with
    `frame.rotation`); `stream.frames` is 0 in WebM and header counts are wrong for truncated files
    (we count demuxed packets); seeking is by time, which index/fps gets wrong on VFR (we index frames
    by their sorted packet pts and seek to the pts of the keyframe before the target); a bad packet
    ends `container.decode()` (we decode packet by packet and skip bad ones).

    Speed: `iter_frames` tells the decoder to drop non-reference frames nobody asked for (FFmpeg's
    `skip_frame`, set per packet). No other frame depends on them, so the frames returned are
    bit-identical; sparse and sliding-window reads of an H.264 file with B-frames cost ~25% less
    CPU (720p, 8 frames per 2 s window: 4.0 -> 3.0 CPU-s for 3,600 frames).
    """

    name = "pyav"
    note = ""  # extra context for out-of-range errors (set for truncated files)
    raw = False  # iter_frames gives Yuv420Frame pictures where it can (see _to_rgb)

    def __init__(self, path: str) -> None:
        import av

        self._av = av
        self.path = path
        self.decoded = 0  # frames the decoder produced (skipped non-reference frames are not)
        self._skip = "DEFAULT"
        try:
            self._container = av.open(path, metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, UnicodeError) as e:
            raise DecodeFailure(f"cannot open: {first_line(e, 300)} (not a video file, or truncated/corrupt container)")
        try:
            self._open_stream()
        except BaseException:
            self._container.close()
            raise

    def _open_stream(self) -> None:
        if not self._container.streams.video:
            raise DecodeFailure("not a video file (no video stream; audio only?)")
        self._stream = stream = self._container.streams.video[0]
        if stream.codec_context is None:  # PyAV found no decoder for the stream's (damaged) parameters
            raise DecodeFailure("no decoder for the video stream (unknown codec or corrupt stream header)")
        stream.thread_type = "AUTO"  # frame + slice threads: decode alone reaches the ffmpeg CLI speed
        if _decoder_threads:
            stream.codec_context.thread_count = _decoder_threads
        self._pts, self._key_idx, last_duration, last_corrupt = self._demux_index()
        if len(self._pts) == 0:
            raise DecodeFailure("no video frames in the file (empty or truncated video stream)")
        first = next(self._decode_from(0), None)
        if first is None:
            codec = stream.codec_context.name
            raise DecodeFailure(f"cannot decode the first frame (codec {codec}): corrupt or unsupported stream")
        self._rotation = int(first[1].rotation) % 360
        num = len(self._pts)
        header_frames = int(stream.frames or 0)
        self._truncated_at: int | None = None
        if header_frames > num or last_corrupt:  # file shorter than its header: find what really decodes
            num = self._count_decodable()
            self._truncated_at = num
            self.note = f"truncated: only {num} frames decodable, header says {max(header_frames, len(self._pts))}"
        self.info = self._make_info(first[1], num, last_duration)

    def _demux_index(self) -> tuple[np.ndarray, list[int], int, bool]:
        """Sorted pts of all video packets, frame indices of keyframes, last packet duration, corrupt tail.

        Demuxing reads packets without decoding (about 1-2 % of decode time), so the frame count is exact
        for every container, including WebM and truncated files.
        """
        pts, keys, last_duration, last_corrupt = [], [], 0, False
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue
                p = packet.pts if packet.pts is not None else packet.dts
                if p is None:
                    raise DecodeFailure("packets without timestamps: cannot index frames", retry=True)
                pts.append(p)
                if packet.is_keyframe:
                    keys.append(p)
                last_duration, last_corrupt = int(packet.duration or 0), bool(packet.is_corrupt)
        except self._av.error.FFmpegError:
            last_corrupt = True  # demux error = damaged tail; what was read so far is the index
        sorted_pts = np.unique(np.asarray(pts, dtype=np.int64))
        key_idx = sorted({int(np.searchsorted(sorted_pts, k)) for k in keys} | {0})
        return sorted_pts, key_idx, last_duration, last_corrupt

    def _make_info(self, first_frame, num: int, last_duration: int) -> VideoInfo:
        tb = float(self._stream.time_base)
        pts = self._pts[:num]
        step = last_duration or (int(np.median(np.diff(pts))) if num > 1 else 0)
        duration = float((pts[-1] - pts[0] + step) * tb)
        rate = self._stream.average_rate or self._stream.guessed_rate
        if duration <= 0:
            duration = num / float(rate) if rate else 0.0
        fps = num / duration if duration > 0 else float(rate or 0.0)
        if rate and abs(fps - float(rate)) < 0.005 * float(rate):
            fps = float(rate)  # CFR with a coarse time base (WebM: 1 ms) -> keep the exact nominal rate
        h, w = first_frame.height, first_frame.width
        if self._rotation % 180:
            h, w = w, h
        codec = self._stream.codec_context.codec.name
        codec = {"libdav1d": "av1", "libvpx-vp9": "vp9"}.get(codec, codec)
        return VideoInfo(self.path, num, fps, duration, w, h, self._rotation, codec, self.name)

    def _count_decodable(self) -> int:
        """Decode the last GOP(s) of a truncated file and return the number of decodable frames."""
        last = -1
        for start in reversed(self._key_idx):
            for idx, _frame in self._decode_from(start):
                last = max(last, idx)
            if last >= 0:
                return last + 1
        return 0

    def _decode_from(self, key_index: int, wants: Callable[[int], bool] | None = None) -> Iterator[tuple[int, "object"]]:
        """Seek to the keyframe with frame index `key_index` and yield (index, av.VideoFrame) to the end.

        `wants(i)` says whether frame i is needed; packets of unneeded frames are decoded only if other
        frames reference them (skip_frame NONREF). None decodes everything.
        """
        self._container.seek(int(self._pts[key_index]), stream=self._stream, backward=True)
        bad_in_a_row = 0
        for packet in self._container.demux(self._stream):
            if wants is not None or self._skip != "DEFAULT":
                p = packet.pts if packet.pts is not None else packet.dts
                idx = self._index_of(p) if packet.size else None
                self._set_skip("NONREF" if wants is not None and idx is not None and not wants(idx) else "DEFAULT")
            try:
                frames = packet.decode()
                bad_in_a_row = 0
            except (self._av.error.MemoryError, self._av.error.ExitError):
                raise
            except self._av.error.FFmpegError as e:
                # a damaged packet: skip it like ffmpeg does (its frame is reported missing if wanted);
                # a long run of them means the stream itself is undecodable
                bad_in_a_row += 1
                if bad_in_a_row > MAX_BAD_PACKETS_IN_A_ROW:
                    raise DecodeFailure(f"decoder error: {first_line(e, 300)}")
                continue
            for frame in frames:
                self.decoded += 1
                p = frame.pts if frame.pts is not None else frame.dts
                idx = self._index_of(p)
                if idx is not None:
                    yield idx, frame

    def _set_skip(self, mode: str) -> None:
        if mode != self._skip:  # FFmpeg reads it when the next packet is sent (also with frame threads)
            self._stream.codec_context.skip_frame = mode
            self._skip = mode

    def _index_of(self, pts: int | None) -> int | None:
        """Frame index of a presentation timestamp (binary search in the sorted pts; no per-frame dict)."""
        if pts is None:
            return None
        i = int(np.searchsorted(self._pts, pts))
        return i if i < len(self._pts) and self._pts[i] == pts else None

    def _to_rgb(self, frame, size: Size) -> np.ndarray:
        """av.VideoFrame -> uint8 [H, W, 3] RGB, scaled by swscale (bilinear) *before* the RGB conversion.

        With `raw` set (and no size), a planar 4:2:0 frame of a matrix `uvtag.video.colour` converts
        comes back as a `Yuv420Frame` instead (planes as decoded, rotation not yet applied).
        """
        if self.raw and size is None:
            picture = _yuv420_frame(frame, self._rotation)
            if picture is not None:
                return picture
        stored = _stored_size(size, self._rotation)
        if stored is None:
            arr = frame.to_ndarray(format="rgb24")
        else:
            arr = frame.reformat(width=stored[1], height=stored[0], format="rgb24", interpolation="BILINEAR").to_ndarray()
        return _rotate(arr, self._rotation)

    def timestamps_sec(self) -> np.ndarray:
        """Presentation time of every frame in seconds, relative to the first frame. [num_frames] float64."""
        pts = self._pts[: self.info.num_frames]
        return (pts - pts[0]).astype(np.float64) * float(self._stream.time_base)

    def iter_frames(self, indices: Sequence[int], size: Size = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, frame) for sorted unique `indices`: decode forward, seek when the gap is large.

        A seek costs decoding from the keyframe before the target plus SEEK_COST_FRAMES; continuing
        costs decoding every frame in the gap. Frames in the gap are decoded only when they are
        reference frames, and never converted to RGB.
        """
        targets = _Targets(indices)
        frames, pos = None, -1
        for target in targets:
            key = self._key_idx[bisect.bisect_right(self._key_idx, target) - 1]
            if frames is None or (key > pos and target - pos > target - key + SEEK_COST_FRAMES):
                frames, pos = self._decode_from(key, targets.wants), key - 1
            for idx, frame in frames:
                pos = idx
                if idx >= target:
                    break
            else:
                frames = None
            if pos != target:
                raise DecodeFailure(self._missing_reason(target, pos))
            yield target, self._to_rgb(frame, size)

    def _missing_reason(self, target: int, pos: int) -> str:
        if self._truncated_at is not None and target >= self._truncated_at:
            return f"cannot decode frame {target}: truncated: only {self._truncated_at} frames decodable"
        if pos > target:
            return f"cannot decode frame {target}: its data is corrupt (the decoder skipped it)"
        return f"cannot decode frame {target}: the stream ended after frame {pos} (truncated or corrupt)"

    def close(self) -> None:
        self._container.close()


# --------------------------------------------------------------------------------------- decord
def import_decord():
    """Import decord after torch.

    decord 0.6.0 bundles its own FFmpeg 4.1 and libgomp-era symbols; reports on its tracker describe
    crashes when it is loaded before torch. With torch 2.13.0 on Linux x86-64 both orders work,
    but loading torch first is the order known to be safe everywhere, and torch is loaded by uvtag's
    model code anyway, so importing it here costs nothing extra in practice.
    """
    if is_installed("torch"):
        import torch  # noqa: F401  (import order matters, see docstring)
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # its FFmpeg prints to stderr; we raise one-line errors
    return decord


def _cv2():
    """cv2 with its own and its FFmpeg's stderr logging off (failures become VideoError lines instead)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when the FFmpeg backend loads
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


class DecordBackend:
    """decord 0.6.0: fast resize-while-decoding; second choice.

    Hazards (measured; tests/test_reader.py checks them): no AV1 (reported like audio-only), fails on
    realtime VP9 with alt-ref frames past frame ~10 (raised mid-file -> the reader falls back), and on
    rotated video it returns frames with a wrong row stride (4 "channels") and get_batch fails, so
    rotated files are refused. get_batch builds the whole batch in memory, so batches are capped at
    DECORD_CHUNK_BYTES (4K video would otherwise grow memory by GBs). Hangs cannot be handled in
    process: use `uvtag.video.isolated`.
    """

    name = "decord"
    note = ""

    def __init__(self, path: str) -> None:
        self._decord = import_decord()
        self.path = path
        self._native = NativeName(path)
        try:
            self._open(self._native.name)
        except BaseException:
            self._native.close()
            raise

    def _open(self, name: str) -> None:
        decord, path = self._decord, self.path
        rotation = probe_rotation(name)
        if rotation:
            raise DecodeFailure(f"decord 0.6.0 mishandles rotated video (rotation={rotation})")
        try:
            with decord_log_silenced():
                self._vr = decord.VideoReader(name, ctx=decord.cpu(0), num_threads=2)
                num = len(self._vr)
                if num == 0:
                    raise DecodeFailure("no video frames in the file")
                first = self._vr[0].asnumpy()
                self._ts = self._vr.get_frame_timestamp(list(range(num)))[:, 0].astype(np.float64)
                fps = float(self._vr.get_avg_fps())
        except (decord.DECORDError, RuntimeError) as e:  # decord raises RuntimeError for unreadable files
            reason = _decord_reason(e)
            raise DecodeFailure(reason if name == path else reason.replace(name, "the file"))
        if first.ndim != 3 or first.shape[2] != 3:
            raise DecodeFailure(f"decord returned frames of shape {first.shape} (rotated or unusual pixel format)")
        self._sized: dict[tuple[int, int], object] = {}
        self._pad_bug: set[tuple[int, int]] = set()
        duration = float(self._ts[-1] - self._ts[0]) + 1.0 / fps if fps > 0 else 0.0
        h, w = first.shape[:2]
        self.info = VideoInfo(path, num, fps, duration, w, h, 0, "", self.name)

    def _reader_for(self, size: Size):
        """decord scales while decoding, but only at open time: keep one reader per requested size."""
        if size is None:
            return self._vr
        if size not in self._sized:
            self._sized.clear()  # one extra reader at a time bounds memory
            self._sized[size] = self._decord.VideoReader(
                self._native.name, ctx=self._decord.cpu(0), num_threads=2, width=size[1], height=size[0]
            )
        return self._sized[size]

    def _get_batch(self, part: list[int], size: Size) -> np.ndarray:
        """get_batch -> uint8 [len(part), H, W, 3], working around decord's row-padding bug.

        decord 0.6.0 fails ("from_size == to_size") when FFmpeg pads the rows of the RGB picture, which
        happens for some widths (48 and 72 px here, not 40/50/64/96). Then we decode at full size and
        scale with OpenCV (bilinear); a full-size failure is a real DecodeFailure.
        """
        if size is not None and size not in self._pad_bug:
            try:
                return self._reader_for(size).get_batch(part).asnumpy()
            except self._decord.DECORDError as e:
                if "from_size == to_size" not in str(e) or not is_installed("cv2"):
                    raise
                self._pad_bug.add(size)
        batch = self._vr.get_batch(part).asnumpy()
        if size is None:
            return batch
        cv2 = _cv2()

        return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for f in batch])

    def timestamps_sec(self) -> np.ndarray:
        """Frame start times in seconds relative to the first frame (from pts). [num_frames] float64."""
        return self._ts - self._ts[0]

    def iter_frames(self, indices: Sequence[int], size: Size = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, frame) for sorted unique `indices`, get_batch in memory-capped chunks."""
        h, w = size or (self.info.height, self.info.width)
        chunk = max(1, min(64, DECORD_CHUNK_BYTES // (h * w * 3)))
        pending = iter(indices)
        while part := list(itertools.islice(pending, chunk)):  # lazy: indices may be a long stream
            try:
                with decord_log_silenced():
                    batch = self._get_batch(part, size)
            except self._decord.DECORDError as e:
                raise DecodeFailure(f"cannot decode frames {part[0]}..{part[-1]}: {_decord_reason(e)}")
            if batch.shape[1:] != (h, w, 3):
                raise DecodeFailure(f"decord returned frames of shape {batch.shape[1:]}, expected {(h, w, 3)}")
            yield from zip(part, batch)

    def close(self) -> None:
        self._sized.clear()
        self._vr = None
        self._native.close()


_DECORD_LOG_LINE = re.compile(rb"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # "[04:11:21] .../video_reader.cc:83: ERROR opening: ..."
_stderr_lock = threading.Lock()


@contextlib.contextmanager
def decord_log_silenced() -> Iterator[None]:
    """Keep decord's own log lines off stderr while the block runs.

    decord's C++ code writes lines such as "[04:11:21] .../video_reader.cc:83: ERROR opening: ..."
    straight to file descriptor 2, whatever `decord.logging` says (that only sets FFmpeg's level),
    and uvtag reports the failure as a one-line VideoError anyway. So fd 2 points at a temporary file
    for the block; afterwards every line in it that is not in decord's log format (anything another
    thread printed meanwhile) is written to the real stderr, in order. Blocks run one at a time.
    """
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to protect
            yield
            return
        try:
            with tempfile.TemporaryFile() as capture:
                os.dup2(capture.fileno(), 2)
                try:
                    yield
                finally:
                    with contextlib.suppress(OSError, ValueError, AttributeError):
                        sys.stderr.flush()
                    os.dup2(saved, 2)
                    capture.seek(0)
                    kept = [line for line in capture.read().splitlines(keepends=True) if not _DECORD_LOG_LINE.match(line)]
                    if kept:
                        os.write(2, b"".join(kept))
        finally:
            os.close(saved)


def _decord_reason(exc: Exception) -> str:
    text = str(exc)
    if "cannot find video stream" in text:
        return "no decodable video stream (audio only, or a codec decord lacks such as AV1)"
    last = [line for line in text.splitlines() if line.strip()][-1:] or [type(exc).__name__]
    return "decord: " + last[0].split("] ")[-1][:200]


def probe_rotation(path: str) -> int:
    """Display rotation in degrees (PyAV convention) read from the container without decoding; 0 if unknown."""
    if is_installed("cv2"):
        cv2 = _cv2()

        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        meta = cap.get(cv2.CAP_PROP_ORIENTATION_META) if cap.isOpened() else 0
        cap.release()
        return int(round(-meta)) % 360  # OpenCV reports the opposite sense: 270 for a rotate=90 file
    return 0


# --------------------------------------------------------------------------------------- OpenCV
class OpenCVBackend:
    """OpenCV (headless wheel): last resort, used only when the others are missing or fail.

    Hazards (measured on opencv-python-headless 5.0.0.93 and 5.1.0.95): it stops *silently* on corrupt
    or truncated data and its frame count is the header's; it seeks to wrong frames on VFR. AV1 depends
    on the wheel's FFmpeg: 5.0 has no software AV1 decoder, 5.1 (FFmpeg 9) decodes it. So this backend never
    seeks: it reads sequentially (grab() for skipped frames, reopening to go back) and treats an early
    end of stream as an error naming how many frames were decodable. It applies rotation itself.
    """

    name = "opencv"
    note = "frame count from the header (OpenCV cannot verify it)"

    def __init__(self, path: str) -> None:
        cv2 = _cv2()

        self._cv2 = cv2
        self.path = path
        self._cap, self._pos = None, -1
        self._native = NativeName(path)
        try:
            self._reopen()
            ok, first = self._cap.read()
            if not ok:
                raise DecodeFailure("OpenCV cannot decode the first frame (unsupported codec such as AV1, or corrupt)")
        except BaseException:
            self.close()
            raise
        self._pos = 0
        num = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 0.0
        h, w = first.shape[:2]
        rotation = int(round(-self._cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        self._ts: np.ndarray | None = None
        duration = num / fps if fps > 0 else 0.0
        self.info = VideoInfo(path, max(num, 1), fps, duration, w, h, rotation, "", self.name)

    def _reopen(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = self._cv2.VideoCapture(self._native.name, self._cv2.CAP_FFMPEG)
        self._pos = -1
        if not self._cap.isOpened():
            raise DecodeFailure("OpenCV cannot open it (not a video, no video stream, or unsupported container)")

    def timestamps_sec(self) -> np.ndarray:
        """Per-frame times from CAP_PROP_POS_MSEC, collected in one grab() pass (cached)."""
        if self._ts is None:
            self._reopen()
            times = []
            while self._cap.grab():
                times.append(self._cap.get(self._cv2.CAP_PROP_POS_MSEC) / 1000.0)
            self._pos = len(times) - 1
            self._ts = np.asarray(times, dtype=np.float64) - (times[0] if times else 0.0)
        return self._ts

    def iter_frames(self, indices: Sequence[int], size: Size = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, frame) for sorted unique `indices`, reading forward only (no index seeks)."""
        cv2 = self._cv2
        for target in indices:
            if target <= self._pos:
                self._reopen()
            while self._pos < target - 1:
                if not self._cap.grab():
                    raise DecodeFailure(self._ended(target))
                self._pos += 1
            ok, bgr = self._cap.read()
            if not ok:
                raise DecodeFailure(self._ended(target))
            self._pos = target
            if size is not None:
                bgr = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            yield target, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _ended(self, target: int) -> str:
        return f"cannot decode frame {target}: truncated: only {self._pos + 1} frames decodable"

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._native.close()


BACKEND_CLASSES = {"pyav": PyAVBackend, "decord": DecordBackend, "opencv": OpenCVBackend}
BACKEND_MODULES = {"pyav": "av", "decord": "decord", "opencv": "cv2"}
