"""Segment logic on synthetic score sequences with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from uvtag.errors import UsageError
from uvtag.infer.segments import nms, smooth, temporal_iou, to_segments, window_boundaries
from uvtag.infer.windows import window_spans
from uvtag.results import Segment

LABELS = ("run", "jump", "swim")
# 7 windows of 4 s every 2 s over 16 s; centres 2, 4, ..., 14; owned boundaries below.
SPANS = window_spans(16.0, 4.0, 2.0)
BOUNDS = [0.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 16.0]


def scores_with(active: dict[int, dict[int, float]], num_windows: int = 7) -> np.ndarray:
    """[W, 3] background 0.05 with the given {class: {window: score}} set."""
    scores = np.full((num_windows, len(LABELS)), 0.05)
    for k, per_window in active.items():
        for w, value in per_window.items():
            scores[w, k] = value
    return scores


def test_boundaries_tile_the_video() -> None:
    assert window_boundaries(SPANS).tolist() == BOUNDS
    # back-to-back windows own exactly their own spans
    assert window_boundaries([(0, 5), (5, 10), (10, 15)]).tolist() == [0, 5, 10, 15]


def test_single_action() -> None:
    scores = scores_with({0: {2: 0.8, 3: 0.9, 4: 0.7}})
    segs = to_segments(SPANS, scores, LABELS, threshold=0.5)
    assert segs == [Segment("run", 0, 5.0, 11.0, pytest.approx(0.8))]


def test_two_actions_back_to_back() -> None:
    scores = scores_with({0: {0: 0.9, 1: 0.9, 2: 0.6}, 1: {3: 0.7, 4: 0.8, 5: 0.9, 6: 0.6}})
    segs = to_segments(SPANS, scores, LABELS, threshold=0.5)
    assert [(s.label, s.start_sec, s.end_sec) for s in segs] == [("run", 0.0, 7.0), ("jump", 7.0, 16.0)]
    assert segs[0].score == pytest.approx(0.8) and segs[1].score == pytest.approx(0.75)


def test_one_window_blip_removed_by_min_duration() -> None:
    scores = scores_with({0: {1: 0.9, 2: 0.9, 3: 0.9}, 2: {5: 0.95}})
    kept = to_segments(SPANS, scores, LABELS, threshold=0.5, min_duration_sec=3.0)
    assert [(s.label, s.start_sec, s.end_sec) for s in kept] == [("run", 3.0, 9.0)]
    both = to_segments(SPANS, scores, LABELS, threshold=0.5, min_duration_sec=2.0)
    assert [(s.label, s.start_sec, s.end_sec) for s in both] == [("run", 3.0, 9.0), ("swim", 11.0, 13.0)]


def test_gap_merged_only_when_short_enough() -> None:
    scores = scores_with({0: {1: 0.6, 2: 0.8, 4: 0.9, 5: 0.9}})
    split = to_segments(SPANS, scores, LABELS, threshold=0.5, merge_gap_sec=1.9)
    assert [(s.start_sec, s.end_sec) for s in split] == [(3.0, 7.0), (9.0, 13.0)]
    merged = to_segments(SPANS, scores, LABELS, threshold=0.5, merge_gap_sec=2.0)
    # gap window 3 does not count towards the score
    assert merged == [Segment("run", 0, 3.0, 13.0, pytest.approx((0.6 + 0.8 + 0.9 + 0.9) / 4))]


def test_merge_happens_before_min_duration() -> None:
    scores = scores_with({0: {2: 0.9, 4: 0.9}})  # two 2 s pieces, 2 s apart
    assert to_segments(SPANS, scores, LABELS, threshold=0.5, min_duration_sec=3.0) == []
    segs = to_segments(SPANS, scores, LABELS, threshold=0.5, min_duration_sec=3.0, merge_gap_sec=2.0)
    assert [(s.start_sec, s.end_sec) for s in segs] == [(5.0, 11.0)]


def test_class_agnostic_nms_suppresses_a_duplicate_label() -> None:
    scores = scores_with({0: {2: 0.9, 3: 0.9, 4: 0.9}, 1: {2: 0.6, 3: 0.6, 4: 0.6}})
    per_class = to_segments(SPANS, scores, LABELS, threshold=0.5)
    assert [s.label for s in per_class] == ["run", "jump"]  # same start: higher score first
    agnostic = to_segments(SPANS, scores, LABELS, threshold=0.5, class_agnostic_nms=True)
    assert [s.label for s in agnostic] == ["run"]


def test_nms_suppresses_same_label_duplicate_but_keeps_other_labels() -> None:
    segs = [
        Segment("run", 0, 0.0, 10.0, 0.9),
        Segment("run", 0, 1.0, 10.0, 0.8),  # IoU 0.9 with the first: duplicate
        Segment("run", 0, 8.0, 20.0, 0.7),  # IoU 2/20 with the first: kept
        Segment("jump", 1, 1.0, 10.0, 0.85),  # other label: kept per class
    ]
    assert nms(segs, 0.5) == [segs[0], segs[3], segs[2]]
    assert nms(segs, 0.5, class_agnostic=True) == [segs[0], segs[2]]


def test_nothing_above_threshold_gives_no_segments() -> None:
    assert to_segments(SPANS, scores_with({}), LABELS, threshold=0.5) == []


def test_threshold_is_inclusive() -> None:
    segs = to_segments(SPANS, scores_with({2: {6: 0.5}}), LABELS, threshold=0.5)
    assert [(s.label, s.start_sec, s.end_sec) for s in segs] == [("swim", 13.0, 16.0)]


def test_smoothing_removes_a_blip_and_keeps_a_plateau() -> None:
    scores = scores_with({0: {1: 0.9}, 1: {3: 0.9, 4: 0.9, 5: 0.9}})
    raw = to_segments(SPANS, scores, LABELS, threshold=0.5)
    assert [s.label for s in raw] == ["run", "jump"]
    smoothed = to_segments(SPANS, scores, LABELS, threshold=0.5, smooth_windows=3)
    assert [(s.label, s.start_sec, s.end_sec) for s in smoothed] == [("jump", 7.0, 13.0)]


def test_top_k_per_window_limits_labels() -> None:
    scores = scores_with({0: {2: 0.9}, 1: {2: 0.6}})
    assert [s.label for s in to_segments(SPANS, scores, LABELS, threshold=0.5)] == ["run", "jump"]
    top1 = to_segments(SPANS, scores, LABELS, threshold=0.5, top_k_per_window=1)
    assert [s.label for s in top1] == ["run"]


def test_output_sorted_by_start_then_score() -> None:
    scores = scores_with({0: {5: 0.9, 6: 0.9}, 1: {0: 0.6}, 2: {0: 0.8}})
    segs = to_segments(SPANS, scores, LABELS, threshold=0.5)
    assert [s.label for s in segs] == ["swim", "jump", "run"]


def test_smooth_exact_values_and_edges() -> None:
    assert smooth(np.array([[0.0], [0.0], [3.0], [0.0], [0.0]]), 3).ravel().tolist() == [0, 1, 1, 1, 0]
    assert smooth(np.array([[3.0], [0.0], [0.0]]), 3).ravel().tolist() == [1.5, 1.0, 0.0]
    assert smooth(np.array([[3.0], [0.0], [0.0]]), 5).ravel().tolist() == [1.0, 1.0, 1.0]
    x = np.random.default_rng(0).random((6, 4))
    assert np.array_equal(smooth(x, 1), x)
    assert smooth(x, 3).shape == (6, 4)


@pytest.mark.parametrize("kernel", [0, 2, -1])
def test_smooth_rejects_even_or_non_positive_kernel(kernel: int) -> None:
    with pytest.raises(UsageError, match="odd"):
        smooth(np.zeros((3, 2)), kernel)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="does not match"):
        to_segments(SPANS, np.zeros((6, 3)), LABELS)


def test_temporal_iou() -> None:
    assert temporal_iou((0.0, 10.0), (5.0, 15.0)) == pytest.approx(5 / 15)
    assert temporal_iou((0.0, 1.0), (2.0, 3.0)) == 0.0
    assert temporal_iou((0.0, 1.0), (1.0, 2.0)) == 0.0
    assert temporal_iou(Segment("a", 0, 2.0, 4.0, 1.0), (2.0, 4.0)) == 1.0
