"""Window and clip spans: exact expected spans, validation, clamping."""

from __future__ import annotations

import pytest

from uvtag.errors import UsageError
from uvtag.infer.windows import MAX_WINDOWS, clip_spans, window_count, window_spans


def test_default_stride_is_half_window() -> None:
    assert window_spans(16.0, 8.0) == [(0.0, 8.0), (4.0, 12.0), (8.0, 16.0)]


def test_exact_fit_without_extra_window() -> None:
    assert window_spans(10.0, 4.0, 2.0) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]


def test_last_window_is_shifted_back_to_end_at_duration() -> None:
    assert window_spans(10.0, 4.0, 3.0) == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert window_spans(11.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (7.0, 11.0)]


def test_every_window_has_full_length_and_covers_video() -> None:
    spans = window_spans(123.456, 8.0, 3.0)
    assert spans[0][0] == 0.0 and spans[-1][1] == 123.456
    assert all(abs((end - start) - 8.0) < 1e-6 for start, end in spans)
    assert all(b[0] > a[0] and b[0] <= a[1] for a, b in zip(spans, spans[1:]))


def test_float_steps_are_rounded() -> None:
    assert window_spans(0.9, 0.3, 0.1) == [
        (0.0, 0.3), (0.1, 0.4), (0.2, 0.5), (0.3, 0.6), (0.4, 0.7), (0.5, 0.8), (0.6, 0.9)
    ]


def test_window_equal_to_duration_gives_one_window() -> None:
    assert window_spans(8.0, 8.0) == [(0.0, 8.0)]


def test_window_longer_than_video_raises_or_clamps() -> None:
    with pytest.raises(UsageError, match="longer than the video"):
        window_spans(5.0, 8.0)
    assert window_spans(5.0, 8.0, clamp=True) == [(0.0, 5.0)]


@pytest.mark.parametrize(
    ("duration", "window", "stride", "what"),
    [
        (10.0, 0.0, None, "window"),
        (10.0, -1.0, None, "window"),
        (10.0, 4.0, 0.0, "stride"),
        (10.0, 4.0, -2.0, "stride"),
        (10.0, float("nan"), None, "window"),
        (0.0, 4.0, None, "duration"),
        (float("inf"), 4.0, None, "duration"),
    ],
)
def test_invalid_arguments(duration: float, window: float, stride: float | None, what: str) -> None:
    with pytest.raises(UsageError, match=what):
        window_spans(duration, window, stride)


def test_stride_larger_than_window_leaves_gaps_but_ends_at_duration() -> None:
    assert window_spans(20.0, 2.0, 5.0) == [(0.0, 2.0), (5.0, 7.0), (10.0, 12.0), (15.0, 17.0), (18.0, 20.0)]


def test_clip_spans_are_consecutive_by_default() -> None:
    assert clip_spans(30.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    assert clip_spans(25.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)]
    assert clip_spans(25.0, 10.0, 5.0) == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0)]


def test_clip_spans_short_video_gives_one_clip() -> None:
    assert clip_spans(3.5, 10.0) == [(0.0, 3.5)]


@pytest.mark.parametrize("clamp", [False, True])
def test_window_count_is_the_length_of_the_spans(clamp: bool) -> None:
    for duration in (0.9, 3.0, 10.0, 11.0, 25.0, 123.456):
        for window in (0.3, 1.0, 4.0, 8.0, 10.0):
            for stride in (None, 0.1, 0.25, 1.0, 3.0, 5.0):
                if window > duration and not clamp:
                    continue
                spans = window_spans(duration, window, stride, clamp=clamp)
                assert window_count(duration, window, stride, clamp=clamp) == len(spans)


def test_too_many_windows_are_refused_before_any_is_built() -> None:
    assert window_count(10.0, 8.0, 1e-9) == 2_000_000_000
    with pytest.raises(UsageError, match=r"makes 2,000,000,000 windows, more than the 1,000,000 allowed"):
        window_spans(10.0, 8.0, 1e-9)
    with pytest.raises(UsageError, match=r"about 10\^323 clips"):  # a quotient no float can hold
        clip_spans(10.0, 8.0, 5e-324)
    assert len(window_spans(3600.0, 8.0, 0.1)) == 35_921  # one hour at a 0.1 s stride is fine
    assert MAX_WINDOWS == 1_000_000
