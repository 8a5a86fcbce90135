"""Pure span arithmetic: sliding windows for `localize`, consecutive clips for `batch`.

A span is `(start_sec, end_sec)` in seconds from the start of the video. Every span these
functions return has the full requested length: the last span is shifted back so it ends exactly
at the video's end (it then overlaps its neighbour more than the stride says) instead of being
cut short, because the model always sees a fixed number of frames and a short tail window would
be sampled more densely than the others. Span ends are rounded to the microsecond
(`_DECIMALS`) so that 0.1 + 0.2 prints as 0.3.
"""

from __future__ import annotations

import math
from numbers import Real

from uvtag.errors import UsageError

_DECIMALS = 6  # span times are rounded to 1 µs
_EPS_SEC = 1e-6  # a window ending within 1 µs of the video end counts as ending at it


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a positive number of seconds, got {value!r}")


def window_spans(
    duration_sec: float,
    window_sec: float,
    stride_sec: float | None = None,
    *,
    clamp: bool = False,
) -> list[tuple[float, float]]:
    """Sliding windows of `window_sec` every `stride_sec`, covering the whole video.

    Args:
        duration_sec: video length in seconds (> 0).
        window_sec: window length in seconds (> 0).
        stride_sec: step between window starts in seconds (> 0); default `window_sec / 2`
            (half-overlapping windows, so every instant is seen by two windows).
        clamp: what to do when the window is longer than the video: False raises `UsageError`,
            True returns the single span `[(0, duration_sec)]`.

    Returns:
        Spans `(start_sec, end_sec)` sorted by start, each exactly `window_sec` long (except the
        one clamped span); the first starts at 0 and the last ends at `duration_sec`.
    """
    _check_positive("video duration", duration_sec)
    _check_positive("window", window_sec)
    stride = window_sec / 2 if stride_sec is None else stride_sec
    _check_positive("stride", stride)
    if window_sec > duration_sec + _EPS_SEC:
        if clamp:
            return [(0.0, round(float(duration_sec), _DECIMALS))]
        raise UsageError(
            f"window of {window_sec:g} s is longer than the video ({duration_sec:g} s); "
            "use a shorter --window"
        )
    # Number of windows that fit without passing the end (tolerating float error).
    num_fit = math.floor((duration_sec - window_sec) / stride + 1e-9) + 1
    spans = [
        (round(i * stride, _DECIMALS), round(i * stride + window_sec, _DECIMALS))
        for i in range(num_fit)
    ]
    if spans[-1][1] < duration_sec - _EPS_SEC:
        spans.append(
            (round(duration_sec - window_sec, _DECIMALS), round(float(duration_sec), _DECIMALS))
        )
    return spans


def clip_spans(
    duration_sec: float, clip_sec: float, stride_sec: float | None = None
) -> list[tuple[float, float]]:
    """Consecutive clips for `batch`: `window_spans` with batch's defaults.

    The default stride is `clip_sec` (back-to-back, non-overlapping clips; only the last one,
    shifted back to end at the video's end, may overlap its neighbour), and a video shorter than
    one clip gives the single clip `[(0, duration_sec)]` instead of an error, since a batch must
    not fail on short files.

    Args:
        duration_sec: video length in seconds (> 0).
        clip_sec: clip length in seconds (> 0).
        stride_sec: step between clip starts in seconds (> 0); default `clip_sec`.

    Returns:
        Spans `(start_sec, end_sec)` sorted by start, covering `[0, duration_sec]`.
    """
    stride = clip_sec if stride_sec is None else stride_sec
    return window_spans(duration_sec, clip_sec, stride, clamp=True)
