"""Frame sampling against the official loaders' outputs (tests/data/protocol/sampling*.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uvtag.video.sampling import (
    sample_clip_indices,
    sample_span_indices,
    span_to_frame_range,
    timestamps_to_frame_range,
)

DATA = Path(__file__).parent / "data" / "protocol"


def _records(name: str) -> list[dict]:
    return json.loads((DATA / name).read_text())["cases"]


def test_kinetics_matches_all_official_clips() -> None:
    records = _records("sampling.json")
    clips = 0
    for rec in records:
        n, f, k_total = rec["n"], rec["F"], rec["K"]
        assert len(rec["indices_by_clip"]) == k_total
        for k, expected in enumerate(rec["indices_by_clip"]):
            got = sample_clip_indices(n, f, k, k_total, sampler="kinetics")
            assert got == expected, (n, f, k_total, k)
            clips += 1
    assert clips == 960


def test_sth_matches_all_official_clips() -> None:
    records = _records("sampling_sth.json")
    clips = 0
    for rec in records:
        n, f, k_total = rec["n"], rec["F"], rec["K"]
        for k, file_numbers in enumerate(rec["file_numbers_by_clip"]):
            got = sample_clip_indices(n, f, k, k_total, sampler="sth")
            assert [i + 1 for i in got] == file_numbers, (n, f, k_total, k)
            clips += 1
    assert clips == 960


def test_spec_worked_examples() -> None:
    assert sample_clip_indices(300, 8, 0, 4) == [7, 44, 82, 119, 157, 194, 231, 269]
    assert sample_clip_indices(300, 8, 3, 4) == [29, 66, 104, 141, 179, 216, 253, 291]
    # banker's rounding: seg = 0.5, half-up would give [0, 1, 1, 2, 2, 3, 3, 4]
    assert sample_clip_indices(5, 8, 0, 1) == [0, 0, 1, 2, 2, 2, 3, 4]
    assert sample_clip_indices(1, 8, 0, 1) == [0] * 8
    assert sample_clip_indices(1, 16, 2, 3, sampler="sth") == [0] * 16


def test_indices_in_range_and_sorted() -> None:
    for n in (1, 2, 3, 17, 250):
        for k_total in (1, 4):
            for k in range(k_total):
                idx = sample_clip_indices(n, 16, k, k_total)
                assert len(idx) == 16
                assert idx == sorted(idx)
                assert 0 <= idx[0] and idx[-1] <= n - 1


@pytest.mark.parametrize(
    "args",
    [
        (0, 8, 0, 1),  # no frames
        (10, 0, 0, 1),  # no frames per clip
        (10, 8, 1, 1),  # clip index out of range
        (10, 8, -1, 2),
        (10, 8, 0, 0),
        (10.0, 8, 0, 1),  # float frame count
        (True, 8, 0, 1),
    ],
)
def test_invalid_arguments(args: tuple) -> None:
    with pytest.raises(ValueError):
        sample_clip_indices(*args)


def test_unknown_sampler() -> None:
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_clip_indices(10, 8, 0, 1, sampler="uniform")


@pytest.mark.parametrize("sampler", ["kinetics", "sth"])
def test_span_of_whole_video_equals_video_sampling(sampler: str) -> None:
    for n in (1, 5, 50, 301):
        for k in range(4):
            assert sample_span_indices(0, n, 8, k, 4, sampler) == sample_clip_indices(
                n, 8, k, 4, sampler
            )


def test_span_is_offset_sub_video() -> None:
    got = sample_span_indices(100, 400, 8, 3, 4)
    assert got == [100 + i for i in [29, 66, 104, 141, 179, 216, 253, 291]]
    assert all(100 <= i < 400 for i in got)
    assert sample_span_indices(7, 8, 4) == [7, 7, 7, 7]
    with pytest.raises(ValueError, match="empty frame range"):
        sample_span_indices(5, 5, 8)


def test_span_to_frame_range_convention() -> None:
    # frame i covers [i/fps, (i+1)/fps); a span holds the frames that start inside it
    assert span_to_frame_range(0.0, 8.0, 30.0, 900) == (0, 240)
    assert span_to_frame_range(8.0, 16.0, 30.0, 900) == (240, 480)
    # 0.1 * 30 = 3.0000000000000004 must still count as frame 3
    assert span_to_frame_range(0.1, 0.2, 30.0, 900) == (3, 6)
    # partial frames: frame 1 starts at 0.0333 < 0.05, so the first frame inside is 2
    assert span_to_frame_range(0.05, 0.1, 30.0, 900) == (2, 3)


def test_span_to_frame_range_tiles_without_overlap() -> None:
    fps, n = 29.97, 1000
    edges = [i * 1.3 for i in range(26)]
    ranges = [span_to_frame_range(a, b, fps, n) for a, b in zip(edges, edges[1:])]
    for (_, e0), (s1, _) in zip(ranges, ranges[1:]):
        assert e0 == s1


def test_span_to_frame_range_clipped_to_video() -> None:
    assert span_to_frame_range(-2.0, 1.0, 10.0, 50) == (0, 10)
    assert span_to_frame_range(4.0, 100.0, 10.0, 50) == (40, 50)
    assert span_to_frame_range(-1.0, 100.0, 10.0, 50) == (0, 50)
    # a span shorter than a frame gets the frame covering its start
    assert span_to_frame_range(1.01, 1.05, 10.0, 50) == (10, 11)
    assert span_to_frame_range(4.95, 5.0, 10.0, 50) == (49, 50)


@pytest.mark.parametrize(
    "span",
    [(5.0, 6.0), (7.0, 9.0), (-3.0, 0.0), (2.0, 2.0), (3.0, 1.0), (float("nan"), 1.0)],
)
def test_span_to_frame_range_rejects_spans_outside(span: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        span_to_frame_range(span[0], span[1], 10.0, 50)


def test_span_to_frame_range_rejects_bad_fps() -> None:
    with pytest.raises(ValueError, match="fps"):
        span_to_frame_range(0.0, 1.0, 0.0, 50)


def test_timestamps_cfr_agrees_with_fps_version() -> None:
    fps, n = 25.0, 300
    times = [i / fps for i in range(n)]
    for a, b in [(0.0, 4.0), (0.1, 0.2), (3.3, 7.9), (11.0, 20.0), (-1.0, 2.0), (11.99, 12.0)]:
        assert timestamps_to_frame_range(a, b, times) == span_to_frame_range(a, b, fps, n)


def test_timestamps_vfr() -> None:
    # 10 fps for 1 s, then 2 fps: frames start at 0.0..0.9, 1.0, 1.5, 2.0, 2.5
    times = [i / 10 for i in range(10)] + [1.0, 1.5, 2.0, 2.5]
    assert timestamps_to_frame_range(0.0, 1.0, times) == (0, 10)
    assert timestamps_to_frame_range(1.0, 2.0, times) == (10, 12)
    assert timestamps_to_frame_range(1.6, 1.9, times) == (11, 12)  # inside frame 11
    assert timestamps_to_frame_range(2.0, 99.0, times) == (12, 14)
    assert timestamps_to_frame_range(7.0, 8.0, times) == (13, 14)  # after the last start
    with pytest.raises(ValueError, match="before the first frame"):
        timestamps_to_frame_range(-2.0, -1.0, times)
    with pytest.raises(ValueError, match="non-decreasing"):
        timestamps_to_frame_range(0.0, 1.0, [0.0, 0.2, 0.1])
    with pytest.raises(ValueError, match="empty"):
        timestamps_to_frame_range(0.0, 1.0, [])
