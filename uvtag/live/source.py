"""Live sources: anything FFmpeg (inside PyAV) opens as a live input, as frames on one clock.

`live_frames(spec, options)` yields `Frame`s (stream time, arrival time, decoded picture) and a
`Gap` event whenever the source dropped and came back. What `spec` may be (`source_kind`):
- "-": standard input (e.g. MPEG-TS from a pipe); its end is the end of the stream;
- an existing regular file: read to its end (`follow=False`), or followed while it grows
  (`follow=True`: a recording in progress, in a streamable container such as MPEG-TS or Matroska);
  it ends when it stops growing for `read_timeout_sec`;
- a V4L2 camera, `/dev/videoN`;
- a URL: rtsp, rtmp, http(s), udp, tcp, ... (whatever this FFmpeg build has protocols for).

Faults. A source must yield its first frame within `first_frame_timeout_sec` (attempts are
retried with back-off until then), else `SourceError`. After that, a network source or camera
that stops (an error, the end of the data, or no data for `read_timeout_sec`) is reopened with
back-off (`backoff_sec` doubling up to its maximum) for up to `reconnect_for_sec`; then
`SourceLost`. Standard input and files never reconnect: their end is the stream's end (a stall
of standard input for `read_timeout_sec` is `SourceLost`).

Time. Stream time starts at 0 with the first frame and follows the source's timestamps; it never
goes back. Across a reconnection (new timestamps) it advances by the wall-clock time between the
last frame before the drop and the first one after it (`StreamClock`), so for a live source it
stays close to the source's own clock, and the `Gap` says which stream time had no frames.
"""

from __future__ import annotations

import os
import select
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from uvtag.errors import VideoError, first_line
from uvtag.live.events import Gap


# FFmpeg probes 20 frames to guess a stream's frame rate before the first one is returned (1.3 s
# at 15 fps, on every reconnection too); live sources skip that guess (the nominal rate may then
# be unknown: 0), so their first frame comes as soon as it is decoded.
LIVE_PROBE = {"fpsprobesize": "0"}


class SourceError(VideoError):
    """A live source that cannot be opened or never yields a frame (one line naming it)."""


class SourceLost(VideoError):
    """A live source that stopped and could not be reached again."""


class Stopped(Exception):
    """Raised inside the reading loop when the consumer asked to stop."""


@dataclass(frozen=True)
class SourceOptions:
    """How patient to be with a live source (seconds)."""

    first_frame_timeout_sec: float = 10.0
    read_timeout_sec: float = 10.0
    reconnect_for_sec: float = 30.0
    backoff_sec: tuple[float, float] = (0.25, 8.0)  # first delay, longest delay
    follow: bool = False


@dataclass(frozen=True)
class Frame:
    """One decoded picture: `time_sec` on the stream clock, `arrived` on `time.monotonic()`."""

    time_sec: float
    arrived: float
    image: object  # av.VideoFrame


def source_kind(spec: str) -> str:
    """"pipe", "file", "device" or "url" (UsageError-free: a bad spec fails when opened)."""
    if spec == "-":
        return "pipe"
    if "://" in spec:
        return "url"
    if spec.startswith("/dev/video"):
        return "device"
    return "file"


def describe_source(spec: str) -> str:
    """The source as every output line names it: "standard input" for "-", and a URL without its
    password (rtsp://user:***@camera/stream), since cameras take credentials in the URL."""
    if spec == "-":
        return "standard input"
    if "://" not in spec:
        return spec
    try:
        parts = urlsplit(spec)
        password = parts.password
    except ValueError:
        return spec
    if not password:
        return spec
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


# ---------------------------------------------------------------------- the stream clock


class StreamClock:
    """Maps each connection's frame times onto one monotonic stream time starting at 0."""

    def __init__(self) -> None:
        self.last_sec: float | None = None  # stream time of the last frame
        self.last_arrived = 0.0  # its arrival, monotonic seconds
        self.step_sec = 0.0  # the last frame-to-frame step inside a connection
        self.gap_start_sec = 0.0  # where the stream time of the last drop begins
        self._offset: float | None = None  # stream time minus source time, this connection

    def drop(self) -> None:
        """The connection ended: the gap starts one frame after the last frame."""
        self.gap_start_sec = (self.last_sec or 0.0) + self.step_sec
        self._offset = None

    def place(self, source_sec: float | None, arrived: float) -> float:
        """The stream time of a frame with source time `source_sec` (None: unknown) that
        arrived at `arrived` (monotonic seconds)."""
        last = self.last_sec
        if last is None:
            t = 0.0
            self._offset = -(source_sec or 0.0)
        elif self._offset is None or source_sec is None:  # the first frame after a drop, or no pts
            t = last + max(self.step_sec, arrived - self.last_arrived, 1e-6)
            self._offset = None if source_sec is None else t - source_sec
        else:
            t = source_sec + self._offset
            if t <= last:  # timestamps went back (a reset or a wrap): one step on
                t = last + (self.step_sec or 1e-3)
                self._offset = t - source_sec
            self.step_sec = t - last
        self.last_sec, self.last_arrived = t, arrived
        return t


# ---------------------------------------------------------------------- readers for PyAV


class _PollingReader:
    """A file-like `read(n)` over a file descriptor that waits with a timeout and can be stopped.

    PyAV reads through it, so a pipe that sends nothing, or a stop request, never blocks the
    decoding thread for longer than one poll. `follow` keeps reading a growing regular file:
    its end is reached once it has not grown for `timeout_sec`.
    """

    POLL_SEC = 0.1

    def __init__(self, fd: int, name: str, timeout_sec: float, stop: threading.Event, follow: bool = False) -> None:
        self.fd, self.name, self.timeout_sec, self.stop, self.follow = fd, name, timeout_sec, stop, follow

    def read(self, size: int) -> bytes:
        waited_since = time.monotonic()
        while True:
            if self.stop.is_set():
                raise Stopped()
            if self.follow:
                data = os.read(self.fd, size)
                if data:
                    return data
                time.sleep(self.POLL_SEC)
            else:
                ready, _, _ = select.select([self.fd], [], [], self.POLL_SEC)
                if ready:
                    return os.read(self.fd, size)
            if time.monotonic() - waited_since > self.timeout_sec:
                if self.follow:
                    return b""  # stopped growing: the recording is finished
                raise TimeoutError(f"no data for {self.timeout_sec:g} s")


def _open_container(spec: str, kind: str, options: SourceOptions, stop: threading.Event, timeout_sec: float):
    """(an opened PyAV input container for `spec`, the file descriptor to close after it or None);
    raises what PyAV or the OS raise."""
    import av

    timeouts = (timeout_sec, options.read_timeout_sec)
    if kind == "pipe":
        return av.open(_PollingReader(0, "standard input", timeout_sec, stop), "r", container_options=LIVE_PROBE), None
    if kind == "file":
        if stat.S_ISREG(os.stat(spec).st_mode) and options.follow:
            fd = os.open(spec, os.O_RDONLY)
            try:
                reader = _PollingReader(fd, spec, options.read_timeout_sec, stop, follow=True)
                container = av.open(reader, "r", container_options=LIVE_PROBE)
            except BaseException:
                os.close(fd)
                raise
            return container, fd
        return av.open(spec, "r", timeout=timeouts), None
    if kind == "device":
        return av.open(spec, "r", format="v4l2", timeout=timeouts, container_options=LIVE_PROBE), None
    return av.open(spec, "r", timeout=timeouts, container_options=LIVE_PROBE), None


def _check_file(spec: str) -> None:
    if not os.path.exists(spec):
        raise SourceError(f"{spec}: no such file (give a file, '-' for standard input, /dev/videoN or a URL)")
    if os.path.isdir(spec):
        raise SourceError(f"{spec}: is a directory")


def _decoded(container, stop: threading.Event) -> Iterator[object]:
    """Frames of the first video stream, decoded with low delay (slice threads only); damaged
    packets are skipped as FFmpeg does."""
    import av

    if not container.streams.video:
        raise SourceError("no video stream (audio only?)")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"  # frame threads would hold back one frame per thread
    for packet in container.demux(stream):
        if stop.is_set():
            raise Stopped()
        try:
            frames = packet.decode()
        except (av.error.InvalidDataError, av.error.UndefinedError):
            continue
        yield from frames


def _nominal_fps(container) -> float:
    rate = container.streams.video[0].average_rate
    return float(rate) if rate else 0.0


@dataclass(frozen=True)
class Opened:
    """Yielded once, before the first frame: the picture size and nominal rate."""

    width: int
    height: int
    fps: float


class _Connection:
    """Reading the source: each `frames()` call is one connection (open, decode, close)."""

    def __init__(self, spec: str, kind: str, options: SourceOptions, stop: threading.Event) -> None:
        self.spec, self.kind, self.options, self.stop = spec, kind, options, stop

    def frames(self, timeout_sec: float) -> Iterator[object]:
        container, fd = _open_container(self.spec, self.kind, self.options, self.stop, timeout_sec)
        try:
            self.fps = _nominal_fps(container) if container.streams.video else 0.0
            yield from _decoded(container, self.stop)
        finally:
            container.close()
            if fd is not None:
                os.close(fd)


def _cannot_work(exc: BaseException) -> bool:
    """Errors no retry can fix before a source has worked: an unknown protocol or format, a
    missing device or file, no permission, an HTTP 4xx (wrong URL)."""
    import av

    return isinstance(exc, (LookupError, FileNotFoundError, PermissionError, av.error.HTTPClientError))


def _reason(exc: BaseException, spec: str) -> str:
    """One line of why `exc` ended a connection to `spec` (FFmpeg's messages quote the URL; its
    password is left out)."""
    text = first_line(exc, 200) if str(exc) else type(exc).__name__
    return text.replace(spec, describe_source(spec)) if spec != "-" else text


def live_frames(spec: str, options: SourceOptions = SourceOptions(),
                stop: threading.Event | None = None) -> Iterator[Opened | Frame | Gap]:
    """`Opened`, then `Frame`s in order and a `Gap` after each reconnection (see the module
    docstring). Ends at the end of the stream, on `stop`, or raises SourceError / SourceLost."""
    stop = stop or threading.Event()
    kind = source_kind(spec)
    name = describe_source(spec)
    if kind == "file":
        _check_file(spec)
    connection = _Connection(spec, kind, options, stop)
    clock = StreamClock()
    deadline = time.monotonic() + options.first_frame_timeout_sec
    delay = options.backoff_sec[0]
    attempts = 0  # reconnection attempts since the last frame
    dropped: str | None = None  # why the last connection ended, while reconnecting
    while True:
        limit = deadline - time.monotonic()
        try:
            for image in connection.frames(max(0.5, limit)):
                now = time.monotonic()
                if clock.last_sec is None:
                    yield Opened(image.width, image.height, connection.fps)
                t = clock.place(image.time, now)
                if dropped is not None:
                    yield Gap(clock.gap_start_sec, t, dropped, attempts, time.time())
                    dropped, attempts, delay = None, 0, options.backoff_sec[0]
                yield Frame(t, now, image)
            ended = None
        except Stopped:
            return
        except SourceError as e:
            raise SourceError(f"{name}: {_reason(e, spec)}") from None
        except Exception as e:  # FFmpeg, network and OS errors: this connection is over
            if isinstance(e, MemoryError) and type(e).__module__ == "builtins":
                raise
            if clock.last_sec is None and _cannot_work(e):
                raise SourceError(f"{name}: {_reason(e, spec)}") from None
            ended = _reason(e, spec)
        if stop.is_set():
            return
        if clock.last_sec is None:  # nothing decoded yet
            if kind in ("pipe", "file") and ended is None:
                raise SourceError(f"{name}: ended before its first video frame")
            if kind in ("pipe", "file"):
                raise SourceError(f"{name}: no video frame ({ended})")
            if time.monotonic() >= deadline:
                why = ended or "the stream ended"
                raise SourceError(f"{name}: no video frame within {options.first_frame_timeout_sec:g} s ({why})")
        elif kind in ("pipe", "file"):
            if ended is None:
                return
            raise SourceLost(f"{name}: {ended}")
        else:
            if dropped is None:  # the connection that delivered frames just ended
                dropped = ended or "the source ended its stream"
                clock.drop()
                deadline = time.monotonic() + options.reconnect_for_sec
            if time.monotonic() >= deadline:
                raise SourceLost(f"{name}: lost ({dropped}); not back after {attempts} reconnection attempts "
                                 f"in {options.reconnect_for_sec:g} s")
            attempts += 1
        if stop.wait(min(delay, max(0.0, deadline - time.monotonic()))):
            return
        delay = min(delay * 2, options.backoff_sec[1])
