"""`Watch`: sliding windows over a live source, scored as they close, as an iterator of events.

Two threads. The decoding thread reads the source (`uvtag.live.source`), scales and crops every
frame once (uint8, the model's input square, as `localize` does), keeps the frames of the windows
not yet closed, and hands each closed window's sampled frames to a bounded queue. The caller's
thread (the iterator) takes them from the queue, normalises them and runs the model on what is
there (up to a batch), and yields
`WindowScored`, `SegmentClosed` (`uvtag.live.segmenter`) and the other events of
`uvtag.live.events`.

Windows are the ones `localize` uses: [k * stride, k * stride + window) of stream time, sampled
with the official sampler over the frames whose timestamps fall inside (`sample_span_indices`
after `timestamps_to_frame_range`); at the end of a stream, one last window ending at its end, as
`window_spans` adds. A window closes when the first frame at or after its end arrives.

Real time. The queue holds at most `max_queue` windows. When the model falls behind a live source,
the oldest waiting window is dropped for each new one, and a window that waited longer than
`max_lag_sec` is dropped instead of scored (both counted; a `Lagged` event says how many and
where), so latency stays bounded (by `max_lag_sec` plus one forward pass) and memory is bounded by
the window's frames plus the queue, however long the stream runs. A plain file (not followed) is
not live: its decoding waits for the
model instead, so no window is dropped, as with `localize`.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from uvtag.errors import UsageError
from uvtag.infer.views import top_k
from uvtag.live.events import Ended, Event, Gap, Lagged, SegmentClosed, Started, WindowScored
from uvtag.live.segmenter import Segmenter
from uvtag.live.source import Frame, Opened, SourceLost, SourceOptions, describe_source, live_frames, source_kind
from uvtag.video.sampling import sample_span_indices, timestamps_to_frame_range
from uvtag.video.transforms import crop_offsets, resized_shape, spatial_indices, to_views

_DECIMALS = 6  # span times rounded to 1 µs, as `uvtag.infer.windows` rounds them
_EPS_SEC = 1e-6  # a frame within 1 µs of a window's end closes it (timestamps_to_frame_range's tolerance)
POLL_SEC = 0.1  # how often a waiting iterator looks at `stop()`


def window_span(index: int, window_sec: float, stride_sec: float) -> tuple[float, float]:
    """Window `index` of a stream: [index * stride, index * stride + window), rounded as localize's."""
    return round(index * stride_sec, _DECIMALS), round(index * stride_sec + window_sec, _DECIMALS)


class WindowPlanner:
    """Which windows close as frame times arrive (pure: times in, window spans out)."""

    def __init__(self, window_sec: float, stride_sec: float) -> None:
        for name, value in (("window", window_sec), ("stride", stride_sec)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UsageError(f"{name} must be a positive number of seconds, got {value!r}")
        self.window_sec, self.stride_sec = float(window_sec), float(stride_sec)
        self.next_index = 0
        self.last_end = -math.inf

    @property
    def next_start(self) -> float:
        """Start of the first window not yet closed: frames before it are no longer needed."""
        return window_span(self.next_index, self.window_sec, self.stride_sec)[0]

    def closed_by(self, time_sec: float) -> list[tuple[int, tuple[float, float]]]:
        """(index, span) of the windows a frame at `time_sec` closes (end <= time, 1 µs tolerance)."""
        out = []
        while (span := window_span(self.next_index, self.window_sec, self.stride_sec))[1] - _EPS_SEC <= time_sec:
            out.append((self.next_index, span))
            self.last_end = span[1]
            self.next_index += 1
        return out

    def finish(self, duration_sec: float) -> list[tuple[int, tuple[float, float]]]:
        """Windows closed by the end of a stream of `duration_sec`: those that fit, then one ending
        at the end if the last one stops short (a stream shorter than a window: one window over all)."""
        out = []
        while (span := window_span(self.next_index, self.window_sec, self.stride_sec))[1] <= duration_sec + 1e-9 * self.stride_sec:
            out.append((self.next_index, span))
            self.last_end = span[1]
            self.next_index += 1
        end = round(duration_sec, _DECIMALS)
        if duration_sec > 0 and self.last_end < duration_sec - _EPS_SEC:
            start = max(0.0, round(duration_sec - self.window_sec, _DECIMALS))
            if self.next_index == 0 or start > window_span(self.next_index - 1, self.window_sec, self.stride_sec)[0]:
                out.append((self.next_index, (start, end)))
                self.next_index += 1
        return out


@dataclass(frozen=True)
class _Job:
    """A closed window's sampled frames on their way to the model."""

    index: int
    span: tuple[float, float]
    frames: np.ndarray  # uint8 [T, c, c, 3], the model's input squares
    closed_at: float  # monotonic arrival time of the frame that closed it


@dataclass(frozen=True)
class _Finished:
    reason: str
    duration_sec: float
    error: str = ""


class _Queue:
    """Windows and source events from the decoding thread, at most `capacity` windows waiting.

    `put_window(drop=True)` drops the oldest waiting window when full (it is returned so it can be
    counted); `drop=False` waits for room instead. Other items never count against the capacity.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: collections.deque = collections.deque()
        self._windows = 0
        self._cond = threading.Condition()
        self.closed = False

    def put_window(self, job: _Job, drop: bool, stop: threading.Event) -> _Job | None:
        with self._cond:
            dropped = None
            while self._windows >= self.capacity and not drop and not stop.is_set():
                self._cond.wait(POLL_SEC)
            if self._windows >= self.capacity:
                for i, item in enumerate(self._items):
                    if isinstance(item, _Job):
                        dropped = item
                        del self._items[i]
                        self._windows -= 1
                        break
            self._items.append(job)
            self._windows += 1
            self._cond.notify_all()
            return dropped

    def put(self, item: object) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def take(self, max_windows: int, timeout: float) -> list:
        """Up to `max_windows` consecutive windows, or one other item; [] after `timeout`."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            out: list = []
            while self._items and len(out) < max_windows:
                if not isinstance(self._items[0], _Job):
                    if not out:
                        out.append(self._items.popleft())
                    break
                out.append(self._items.popleft())
                self._windows -= 1
            self._cond.notify_all()
            return out


class Watch:
    """Iterate to watch `source`; `stop()` (any thread, e.g. a SIGINT handler) ends it cleanly:
    open segments are closed and an `Ended` event is the last one yielded.

    Args:
        tagger: a loaded `uvtag.tagger.Tagger`.
        source: see `uvtag.live.source` ("-", a file, /dev/videoN, a URL).
        segments: a `uvtag.tagger.SegmentOptions` (NMS is implied: see `uvtag.live.segmenter`).
        window_sec, stride_sec: windows, as `localize` (default stride: half the window).
        top: labels per window event.
        source_options: timeouts, reconnection, `follow`.
        max_queue: windows that may wait for the model (default: two batches, at least 4).
        max_lag_sec: a window that waited longer than this for the model is skipped (default: the
            window length).
    """

    def __init__(self, tagger, source: str, *, segments, window_sec: float = 8.0, stride_sec: float | None = None,
                 top: int = 5, source_options: SourceOptions = SourceOptions(), max_queue: int | None = None,
                 max_lag_sec: float | None = None) -> None:
        self.tagger, self.source = tagger, source
        self.window_sec = window_sec
        self.stride_sec = window_sec / 2 if stride_sec is None else stride_sec
        self.planner = WindowPlanner(window_sec, self.stride_sec)
        options = segments
        self.segmenter = Segmenter(tagger.labels, threshold=options.threshold, smooth_windows=options.smooth_windows,
                                   min_duration_sec=options.min_duration_sec, merge_gap_sec=options.merge_gap_sec,
                                   top_k_per_window=options.top_k_per_window)
        self.top = top
        self.source_options = source_options
        self.batch_size = tagger.predictor.batch_size
        self.queue = _Queue(max_queue or max(4, 2 * self.batch_size))
        self.live = not (source_kind(source) == "file" and not source_options.follow)
        self.max_lag_sec = window_sec if max_lag_sec is None else max_lag_sec
        self._stop = threading.Event()
        self.interrupted = False
        self.windows = self.skipped = self.gaps = 0
        self._unreported: list[tuple[float, float]] = []  # spans dropped since the last report
        self._lock = threading.Lock()
        self._started = False

    def stop(self) -> None:
        """Ask the watch to end: the iterator finishes with the closing events."""
        self.interrupted = True
        self._stop.set()

    # ------------------------------------------------------------------ the decoding thread

    def _produce(self, frames: Iterator) -> None:
        ck = self.tagger.checkpoint
        crop_index = spatial_indices(1, ck.sampler)[0]
        times: collections.deque[float] = collections.deque()
        crops: collections.deque[np.ndarray] = collections.deque()
        geometry = None
        last = None

        def close(windows, closed_at) -> None:
            for index, span in windows:
                frames = self._sampled(span, times, crops)
                if frames is None:  # no frame inside (a gap): nothing to score
                    continue
                dropped = self.queue.put_window(_Job(index, span, frames, closed_at), self.live, self._stop)
                if dropped is not None:
                    with self._lock:
                        self.skipped += 1
                        self._unreported.append(dropped.span)

        error = ""
        try:
            for item in frames:
                if isinstance(item, (Opened, Gap)):
                    self.queue.put(item)
                    continue
                frame: Frame = item
                if geometry is None:
                    size = resized_shape(frame.image.height, frame.image.width, ck.input_size)
                    geometry = size, crop_offsets(size[0], size[1], ck.input_size, crop_index)
                close(self.planner.closed_by(frame.time_sec), frame.arrived)
                times.append(frame.time_sec)
                crops.append(self._crop(frame.image, geometry, ck.input_size))
                # keep one window of frames: the open windows, and the last window a stream
                # ending now would add (it ends at the end of the stream)
                while times[0] < frame.time_sec - self.window_sec - _EPS_SEC:
                    times.popleft()
                    crops.popleft()
                last = frame
        except SourceLost as e:  # the stream ended there: its last windows are scored all the same
            error = str(e)
        except BaseException as e:  # handed to the iterator, which raises it
            self.queue.put(e)
            return
        duration = self._duration(last, times)
        if last is not None and not self._stop.is_set():
            close(self.planner.finish(duration), time.monotonic())
        reason = "interrupted" if self._stop.is_set() else "lost" if error else "end of stream"
        self.queue.put(_Finished(reason, duration, error))

    def _duration(self, last: Frame | None, times) -> float:
        return 0.0 if last is None else last.time_sec + self._frame_step(last, times)

    @staticmethod
    def _frame_step(last: Frame, times) -> float:
        """The last frame's duration: from its own metadata, else the median step of the buffer."""
        image = last.image
        if getattr(image, "duration", None) and image.time_base is not None:
            return float(image.duration * image.time_base)
        if len(times) > 1:
            return float(np.median(np.diff(np.asarray(times))))
        return 0.0

    @staticmethod
    def _crop(image, geometry, size: int) -> np.ndarray:
        """The model's input square of one frame: scaled by the decoder's bilinear scaler to the
        short-side size (as `localize`), then cropped; uint8 [c, c, 3] RGB."""
        (height, width), (y, x) = geometry
        rgb = image.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR").to_ndarray()
        return np.ascontiguousarray(rgb[y : y + size, x : x + size])

    def _sampled(self, span, times, crops) -> np.ndarray | None:
        """The window's sampled frames, uint8 [T, c, c, 3], or None when no frame falls inside it.

        Only numpy here: torch runs in the caller's thread alone (a daemon thread inside torch when
        the interpreter exits can abort the process)."""
        start, end = span
        if not times or times[-1] < start - _EPS_SEC or times[0] >= end - _EPS_SEC:
            return None
        ck = self.tagger.checkpoint
        first, stop = timestamps_to_frame_range(start, end, list(times))
        indices = sample_span_indices(first, stop, ck.num_frames, 0, 1, ck.sampler)
        return np.stack([crops[i] for i in indices])  # [T, c, c, 3]

    # ------------------------------------------------------------------ the iterator

    def __iter__(self) -> Iterator[Event]:
        if self._started:
            raise RuntimeError("a Watch can be iterated once")
        self._started = True
        frames = live_frames(self.source, self.source_options, self._stop)
        first = next(frames, None)  # raises SourceError for a source that never yields a frame
        if self._stop.is_set() or first is None:
            yield self._ended("interrupted" if self._stop.is_set() else "end of stream", 0.0)
            return
        worker = threading.Thread(target=self._produce, args=(_chain(first, frames),), daemon=True, name="uvtag-watch")
        worker.start()
        try:
            yield from self._consume()
        finally:
            self._stop.set()

    def _consume(self) -> Iterator[Event]:
        duration, reason, error = 0.0, "interrupted", ""
        while True:
            if self._stop.is_set() and self.interrupted:
                break
            items = self.queue.take(self.batch_size, POLL_SEC)
            if not items:
                continue
            head = items[0]
            if isinstance(head, BaseException):
                raise head
            if isinstance(head, _Finished):
                duration, reason, error = head.duration_sec, head.reason, head.error
                break
            if isinstance(head, Opened):
                yield Started(describe_source(self.source), self.tagger.name, head.width, head.height, head.fps,
                              self.window_sec, self.stride_sec, time.time())
            elif isinstance(head, Gap):
                self.gaps += 1
                yield head
            else:
                yield from self._score(items)
        if reason == "interrupted":
            self.interrupted = True
        lag = self._lag_event()
        if lag is not None:
            yield lag
        for segment in self.segmenter.close():
            yield SegmentClosed(segment, time.time())
        yield self._ended(reason, duration, error)

    def _score(self, jobs: list[_Job]) -> Iterator[Event]:
        if self.live:
            now = time.monotonic()
            stale = [j for j in jobs if now - j.closed_at > self.max_lag_sec]
            if stale:
                jobs = [j for j in jobs if now - j.closed_at <= self.max_lag_sec]
                with self._lock:
                    self.skipped += len(stale)
                    self._unreported += [j.span for j in stale]
        if not jobs:
            return
        ck = self.tagger.checkpoint
        clips = [to_views(j.frames, ck.input_size, ck.mean, ck.std, [0], ck.channel_order)[0] for j in jobs]
        logits = self.tagger.predictor.logits(torch.stack(clips))  # clips [B, 3, T, c, c]
        probs = torch.softmax(logits, dim=-1)
        lag = self._lag_event()
        if lag is not None:
            yield lag
        for job, p in zip(jobs, probs):
            self.windows += 1
            now = time.time()
            yield WindowScored(job.index, job.span[0], job.span[1], top_k(p, self.tagger.labels, self.top), now,
                               time.monotonic() - job.closed_at)
            for segment in self.segmenter.add(job.span, p.numpy()):
                yield SegmentClosed(segment, time.time())

    def _lag_event(self) -> Lagged | None:
        with self._lock:
            spans, self._unreported = self._unreported, []
            total = self.skipped
        if not spans:
            return None
        return Lagged(len(spans), total, min(s for s, _ in spans), max(e for _, e in spans), time.time())

    def _ended(self, reason: str, duration: float, error: str = "") -> Ended:
        return Ended(reason, duration, self.windows, self.skipped, self.gaps, time.time(), error)


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest

