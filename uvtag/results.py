"""Typed results passed between stages and to the writers.

Times are seconds (float) and say so in their names; scores are probabilities in [0, 1]
(softmax per view, averaged over views) unless a field says otherwise. Scores and span times are
finite: a record holding NaN or inf raises `NonFiniteError` when it is built, so none is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uvtag.errors import UvtagError

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1  # bump when a field of a written record changes meaning or name


class NonFiniteError(UvtagError):
    """A score or time that is NaN or infinite (a model with broken weights or normalisation)."""


def _is_non_finite(value: object) -> bool:
    return isinstance(value, Real) and not math.isfinite(value)


def _check_score(label: str, score: float) -> None:
    if _is_non_finite(score):
        raise NonFiniteError(
            f"the score of {label!r} is {score}, not a finite number: the model's outputs are NaN or "
            "infinite (broken weights or normalisation in the checkpoint, or an overflow: try --precision fp32)"
        )


def _check_span(what: str, start_sec: float, end_sec: float) -> None:
    if _is_non_finite(start_sec) or _is_non_finite(end_sec):
        raise NonFiniteError(f"{what} [{start_sec}, {end_sec}] s has a time that is not a finite number")


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

    def __post_init__(self) -> None:
        _check_score(self.label, self.score)


@dataclass(frozen=True)
class ClipPrediction:
    """Top-k labels for one span of a video (a clip in `batch`, a window in `localize`)."""

    start_sec: float
    end_sec: float
    top: tuple[LabelScore, ...]

    def __post_init__(self) -> None:
        _check_span("span", self.start_sec, self.end_sec)


@dataclass(frozen=True)
class VideoPrediction:
    """Video-level top-k labels, optionally with the per-clip results it was built from.

    `embeddings`, when asked for (`embed=True`), holds the video embedding of each clip, float32
    [len(clips), C] in clip order (the vectors the classifier head read); writers ignore it.
    """

    path: str
    model: str
    info: VideoInfo
    top: tuple[LabelScore, ...]
    num_views: int
    clips: tuple[ClipPrediction, ...] = ()
    embeddings: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Segment:
    """A temporal segment found by `localize`: one label over [start_sec, end_sec)."""

    label: str
    index: int
    start_sec: float
    end_sec: float
    score: float

    def __post_init__(self) -> None:
        _check_span(f"segment of {self.label!r}", self.start_sec, self.end_sec)
        _check_score(self.label, self.score)


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


@dataclass(frozen=True)
class VideoFeatures:
    """The video embeddings of one video's windows (`Tagger.features`), for downstream models.

    `features` is float32 [len(spans), C], in time order: row i is the embedding (the vector the
    classifier head reads) of the clip sampled from window `spans[i]`. Windows start every
    `stride_sec` and last `window_sec`, except that the last one is shifted back to end at the
    video's end, and a video shorter than one window gets the single window [0, duration_sec].
    """

    path: str
    model: str
    info: VideoInfo
    window_sec: float
    stride_sec: float
    sampled_frames: int  # frames the model samples from each window (its clip length)
    spans: tuple[tuple[float, float], ...]
    features: np.ndarray = field(compare=False, repr=False)

    def __post_init__(self) -> None:
        for start, end in self.spans:
            _check_span("window", start, end)

    @property
    def embed_dim(self) -> int:
        """C, the length of one row."""
        return int(self.features.shape[1])

    @property
    def num_frames(self) -> float:
        """Video frames one window spans (`window_sec * fps`, to 0.001; `num_frames` in ActionFormer's configs)."""
        return round(self.window_sec * self.info.fps, 3)

    @property
    def feat_stride(self) -> float:
        """Video frames between window starts (`stride_sec * fps`, to 0.001; ActionFormer's `feat_stride`)."""
        return round(self.stride_sec * self.info.fps, 3)

    def pooled(self) -> np.ndarray:
        """The mean of the rows, float32 [C] (summed in float64)."""
        import numpy  # here, not at the top: the CLI imports this module and keeps `--help` fast

        return self.features.mean(axis=0, dtype=numpy.float64).astype(numpy.float32)

    @classmethod
    def from_prediction(cls, prediction: VideoPrediction, window_sec: float, stride_sec: float,
                        sampled_frames: int) -> VideoFeatures:
        """The features of a `VideoPrediction` made with embeddings (`tag_clips(..., embed=True)`)."""
        if prediction.embeddings is None:
            raise ValueError(f"{prediction.path}: the prediction was made without embeddings")
        spans = tuple((c.start_sec, c.end_sec) for c in prediction.clips)
        return cls(prediction.path, prediction.model, prediction.info, window_sec, stride_sec, sampled_frames,
                   spans, prediction.embeddings)
