"""Clip assembly from one frame stream, and the background prefetcher."""

from __future__ import annotations

import threading

import pytest

from uvtag.infer.clips import assemble_clips, needed_frames, prefetch


class Tracked:
    """Frames that count how many are alive, to check the memory bound."""

    alive = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self, index: int) -> None:
        self.index = index
        with Tracked.lock:
            Tracked.alive += 1
            Tracked.peak = max(Tracked.peak, Tracked.alive)

    def __del__(self) -> None:
        with Tracked.lock:
            Tracked.alive -= 1


def test_overlapping_windows_get_the_right_frames_in_order():
    plans = [[0, 2, 4, 6], [3, 5, 7, 9], [6, 8, 10, 12]]
    frames = ((i, f"f{i}") for i in needed_frames(plans))
    out = list(assemble_clips(plans, frames))
    assert [c for c, _ in out] == [0, 1, 2]
    assert out[1][1] == ["f3", "f5", "f7", "f9"]


def test_repeated_and_unsorted_indices_are_honoured():
    plans = [[2, 0, 0, 1]]
    out = list(assemble_clips(plans, [(0, "a"), (1, "b"), (2, "c")]))
    assert out == [(0, ["c", "a", "a", "b"])]


def test_memory_is_bounded_by_the_window_not_the_video():
    Tracked.alive = Tracked.peak = 0
    window, stride, n = 16, 8, 2000  # 2000 clips over a 16,000-frame stream
    plans = [list(range(s, s + window, 2)) for s in range(0, n * stride, stride)]

    def stream():
        for i in range(n * stride + window):
            yield i, Tracked(i)

    count = 0
    for _c, clip in assemble_clips(plans, stream()):
        count += 1
        del clip
    assert count == n
    assert Tracked.peak <= 2 * window  # the frames of the overlapping windows, plus the one in flight


def test_a_short_stream_is_an_error_naming_the_frame():
    with pytest.raises(ValueError, match="before frame 9"):
        list(assemble_clips([[0, 9]], [(0, "a"), (1, "b")]))


def test_prefetch_yields_everything_and_reraises():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise RuntimeError("decoder died")

    got = []
    with pytest.raises(RuntimeError, match="decoder died"):
        for x in prefetch(broken()):
            got.append(x)
    assert got == [1]


def test_prefetch_runs_ahead_in_another_thread():
    names = []

    def items():
        for i in range(3):
            names.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items())) == [0, 1, 2]
    assert set(names) == {"uvtag-prefetch"}
