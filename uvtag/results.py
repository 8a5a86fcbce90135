"""Typed results passed between stages and to the writers.

Times are seconds (float) and say so in their names; scores are probabilities in [0, 1]
(softmax per view, averaged over views) unless a field says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SCHEMA_VERSION = 1  # bump when a field of a written record changes meaning or name


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a video stream, after rotation is applied."""

    path: str
    num_frames: int
    fps: float
    duration_sec: float
    width: int  # as displayed (after rotation)
    height: int
    rotation: int = 0  # degrees of display rotation the reader applied (0, 90, 180, 270)
    codec: str = ""
    backend: str = ""


@dataclass(frozen=True)
class LabelScore:
    """One class with its score."""

    label: str
    index: int
    score: float


@dataclass(frozen=True)
class ClipPrediction:
    """Top-k labels for one span of a video (a clip in `batch`, a window in `localize`)."""

    start_sec: float
    end_sec: float
    top: tuple[LabelScore, ...]


@dataclass(frozen=True)
class VideoPrediction:
    """Video-level top-k labels, optionally with the per-clip results it was built from."""

    path: str
    model: str
    info: VideoInfo
    top: tuple[LabelScore, ...]
    num_views: int
    clips: tuple[ClipPrediction, ...] = ()


@dataclass(frozen=True)
class Segment:
    """A temporal segment found by `localize`: one label over [start_sec, end_sec)."""

    label: str
    index: int
    start_sec: float
    end_sec: float
    score: float


@dataclass(frozen=True)
class Failure:
    """A video that could not be processed, and why (one line)."""

    path: str
    error: str
    kind: str = "error"  # the error class name, e.g. VideoError


@dataclass(frozen=True)
class LocalizationResult:
    """Everything `localize` found for one video."""

    path: str
    model: str
    info: VideoInfo
    window_sec: float
    stride_sec: float
    windows: tuple[ClipPrediction, ...]
    segments: tuple[Segment, ...]
    labels: tuple[str, ...] = field(default=(), repr=False)
    # settings that produced `segments` (threshold, smooth_windows, ...), written to the JSON output
    params: Mapping[str, float | int | str | bool | None] = field(default_factory=dict)
