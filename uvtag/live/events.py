"""Typed events of a watched stream, in the order `Watch` yields them.

Times named `*_sec` are stream time: seconds from the first decoded frame, monotonic across
reconnections (a gap in the source advances it by the wall-clock time the gap lasted).
`wall_time` is the Unix time (seconds) at which the event was produced.

- `Started`: the source opened and its first frame decoded.
- `WindowScored`: one window scored (top-k), with its latency.
- `SegmentClosed`: a segment that can no longer grow (see `uvtag.live.segmenter`).
- `Lagged`: windows skipped because the model fell behind the source.
- `Gap`: the source dropped and came back (or not) after a reconnection.
- `Ended`: the last event: why the watch ended and what it did.
"""

from __future__ import annotations

from dataclasses import dataclass

from uvtag.results import LabelScore, Segment


@dataclass(frozen=True)
class Started:
    """The source is open and decoding: its picture size and nominal rate (0 when unknown)."""

    source: str
    model: str
    width: int
    height: int
    fps: float
    window_sec: float
    stride_sec: float
    wall_time: float


@dataclass(frozen=True)
class WindowScored:
    """Window `index` ([start_sec, end_sec) of stream time) scored.

    `latency_sec` is the wall-clock time from the arrival of the frame that closed the window
    (the first frame at or after its end) to this event.
    """

    index: int
    start_sec: float
    end_sec: float
    top: tuple[LabelScore, ...]
    wall_time: float
    latency_sec: float


@dataclass(frozen=True)
class SegmentClosed:
    """A final segment, as `localize` reports one (label, start_sec, end_sec, score)."""

    segment: Segment
    wall_time: float


@dataclass(frozen=True)
class Lagged:
    """`skipped` windows between `start_sec` and `end_sec` were dropped unscored (the model was
    behind); `total_skipped` counts every window dropped so far."""

    skipped: int
    total_skipped: int
    start_sec: float
    end_sec: float
    wall_time: float


@dataclass(frozen=True)
class Gap:
    """The source delivered no frame from `start_sec` to `end_sec`; `reason` says what happened
    (`attempts` reconnections were tried). Windows wholly inside the gap are not scored."""

    start_sec: float
    end_sec: float
    reason: str
    attempts: int
    wall_time: float


@dataclass(frozen=True)
class Ended:
    """The watch is over. `reason`: "end of stream", "interrupted" or "lost"; `error` is the one
    line saying why a lost source could not be reached again (empty otherwise)."""

    reason: str
    duration_sec: float
    windows: int
    skipped: int
    gaps: int
    wall_time: float
    error: str = ""


Event = Started | WindowScored | SegmentClosed | Lagged | Gap | Ended
