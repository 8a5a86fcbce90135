"""Pure span arithmetic: sliding windows for `localize`, consecutive clips for `batch`.

A span is `(start_sec, end_sec)` in seconds from the start of the video. Every span these
functions return has the full requested length: the last span is shifted back so it ends exactly
at the video's end (it then overlaps its neighbour more than the stride says) instead of being
cut short, because the model always sees a fixed number of frames and a short tail window would
be sampled more densely than the others. Span ends are rounded to the microsecond
(`_DECIMALS`) so that 0.1 + 0.2 prints as 0.3.

The number of spans is computed first (`window_count`, no list) and capped at `MAX_WINDOWS`, so a
tiny stride is refused before any memory is spent on it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Real

from uvtag.errors import UsageError

# Most spans one video may have: 24 h at a 0.1 s stride is 864,000 windows, and a million windows'
# scores alone take 1.6 GB for 400 classes (float32), so a larger count is a mistyped stride.
MAX_WINDOWS = 1_000_000
_DECIMALS = 6  # span times are rounded to 1 µs
_EPS_SEC = 1e-6  # a window ending within 1 µs of the video end counts as ending at it


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a positive number of seconds, got {value!r}")


def _fit_count(duration_sec: float, window_sec: float, stride_sec: float) -> int:
    """Windows that start every `stride_sec` and end by `duration_sec` (float error tolerated).

    Exact for any stride: a quotient too large for a float is computed with fractions.
    """
    quotient = (duration_sec - window_sec) / stride_sec
    if math.isfinite(quotient):
        return math.floor(quotient + 1e-9) + 1
    return math.floor(Fraction(duration_sec - window_sec) / Fraction(stride_sec)) + 1


def _span_end(index: int, window_sec: float, stride_sec: float) -> float:
    return round(index * stride_sec + window_sec, _DECIMALS)


def _checked_stride(duration_sec: float, window_sec: float, stride_sec: float | None) -> float:
    _check_positive("video duration", duration_sec)
    _check_positive("window", window_sec)
    stride = window_sec / 2 if stride_sec is None else stride_sec
    _check_positive("stride", stride)
    return stride


def window_count(
    duration_sec: float,
    window_sec: float,
    stride_sec: float | None = None,
    *,
    clamp: bool = False,
) -> int:
    """How many spans `window_spans` returns for these arguments, without building them.

    Same arguments and validation as `window_spans` (a window longer than the video raises
    `UsageError` unless `clamp`). Exact for any stride whose span times a float can hold; for a
    stride so small that they overflow, the windows that fit (the shifted last one uncounted).
    """
    stride = _checked_stride(duration_sec, window_sec, stride_sec)
    if window_sec > duration_sec + _EPS_SEC:
        if clamp:
            return 1
        raise UsageError(
            f"window of {window_sec:g} s is longer than the video ({duration_sec:g} s); "
            "use a shorter --window"
        )
    fit = _fit_count(duration_sec, window_sec, stride)
    try:
        shifted_last = _span_end(fit - 1, window_sec, stride) < duration_sec - _EPS_SEC
    except OverflowError:  # (fit - 1) * stride beyond any float
        shifted_last = False
    return fit + int(shifted_last)


def _format_count(count: int) -> str:
    """`1,234,567`, or `about 10^N` for counts too long to read."""
    digits = len(str(count))
    return f"{count:,}" if digits <= 15 else f"about 10^{digits - 1}"


def _check_count(count: int, unit: str, duration_sec: float, window_sec: float, stride_sec: float) -> None:
    """UsageError (one line, with the count) when `count` spans exceed `MAX_WINDOWS`."""
    if count > MAX_WINDOWS:
        raise UsageError(
            f"a {window_sec:g} s {unit} every {stride_sec:g} s over a {duration_sec:g} s video makes "
            f"{_format_count(count)} {unit}s, more than the {MAX_WINDOWS:,} allowed; use a longer --stride"
        )


def window_spans(
    duration_sec: float,
    window_sec: float,
    stride_sec: float | None = None,
    *,
    clamp: bool = False,
    unit: str = "window",
) -> list[tuple[float, float]]:
    """Sliding windows of `window_sec` every `stride_sec`, covering the whole video.

    Args:
        duration_sec: video length in seconds (> 0).
        window_sec: window length in seconds (> 0).
        stride_sec: step between window starts in seconds (> 0); default `window_sec / 2`
            (half-overlapping windows, so every instant is seen by two windows).
        clamp: what to do when the window is longer than the video: False raises `UsageError`,
            True returns the single span `[(0, duration_sec)]`.
        unit: what a span is called in the error message ("window", "clip").

    Returns:
        Spans `(start_sec, end_sec)` sorted by start, each exactly `window_sec` long (except the
        one clamped span); the first starts at 0 and the last ends at `duration_sec`.

    Raises:
        UsageError: invalid numbers, a window longer than the video (without `clamp`), or more
            than `MAX_WINDOWS` spans (checked before any span is built).
    """
    stride = _checked_stride(duration_sec, window_sec, stride_sec)
    count = window_count(duration_sec, window_sec, stride, clamp=clamp)
    if window_sec > duration_sec + _EPS_SEC:  # clamped (window_count raised otherwise)
        return [(0.0, round(float(duration_sec), _DECIMALS))]
    _check_count(count, unit, duration_sec, window_sec, stride)
    num_fit = _fit_count(duration_sec, window_sec, stride)
    spans = [(round(i * stride, _DECIMALS), _span_end(i, window_sec, stride)) for i in range(num_fit)]
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
    return window_spans(duration_sec, clip_sec, stride, clamp=True, unit="clip")
