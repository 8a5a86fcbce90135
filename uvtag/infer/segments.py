"""Pure maths that turns per-window class scores into temporal segments for `localize`.

Pipeline (`to_segments`): smooth -> threshold -> runs -> merge gaps -> drop short -> NMS -> sort.

Segment boundaries. Sliding windows overlap, so "from the start of the first window to the end of
the last" would make every segment up to one window too long. Instead each window *owns* the part
of the time axis closest to its centre: window i owns `[b_i, b_{i+1}]` with
`b_i = (centre_{i-1} + centre_i) / 2`, `b_0` = start of the first window and `b_W` = end of the
last. Owned intervals tile `[0, duration]` with no gaps or overlaps, so a run of windows i..j
becomes the segment `[b_i, b_{j+1}]`. For back-to-back windows this is exactly their spans.

Scores. Thresholding and segment scores use the *smoothed* scores. A segment's score is the mean
of its class's smoothed score over the windows in its run(s) (windows inside a merged gap do not
count), so every segment score is >= the threshold.

NMS. Default is per-class greedy temporal NMS: different labels may overlap, as the ActivityNet
detection format allows. Same-label runs from one score sequence are disjoint by construction, so
per-class NMS only matters for segments pooled from several sources (see `nms`);
`class_agnostic_nms=True` instead keeps only the best label where segments of different labels
overlap by more than `nms_iou`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from uvtag.errors import UsageError
from uvtag.results import Segment

_EPS_SEC = 1e-9  # tolerance for comparing times in seconds

Span = tuple[float, float]


def smooth(scores: np.ndarray, kernel: int) -> np.ndarray:
    """Moving average along the window axis, same length as the input.

    Args:
        scores: `[W, K]` scores (W windows in time order, K classes).
        kernel: odd number of windows averaged (1 = no smoothing). Near the ends the average is
            over the windows that exist (no zero padding, no shrinking of the output).

    Returns:
        `[W, K]` float64 smoothed scores.
    """
    if not isinstance(kernel, (int, np.integer)) or kernel < 1 or kernel % 2 == 0:
        raise UsageError(f"smoothing kernel must be an odd number of windows >= 1, got {kernel!r}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [W, K], got shape {scores.shape}")
    num_windows = scores.shape[0]
    if kernel == 1 or num_windows == 0:
        return scores.copy()
    half = kernel // 2
    # cumsum with a leading zero row: sum over [lo, hi) = csum[hi] - csum[lo]
    csum = np.concatenate([np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0)], axis=0)
    idx = np.arange(num_windows)
    lo = np.clip(idx - half, 0, num_windows)
    hi = np.clip(idx + half + 1, 0, num_windows)
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def window_boundaries(spans: Sequence[Span]) -> np.ndarray:
    """Boundaries of the intervals the windows own (see module docstring).

    Args:
        spans: W windows `(start_sec, end_sec)`, sorted by start.

    Returns:
        `[W + 1]` seconds; window i owns `[b[i], b[i + 1]]`.
    """
    arr = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    if len(arr) == 0:
        return np.zeros(0)
    if np.any(np.diff(arr[:, 0]) <= 0) or np.any(arr[:, 1] <= arr[:, 0]):
        raise ValueError("window spans must have end > start and strictly increasing starts")
    centres = arr.mean(axis=1)
    return np.concatenate([[arr[0, 0]], (centres[:-1] + centres[1:]) / 2, [arr[-1, 1]]])


def temporal_iou(a: Segment | Span, b: Segment | Span) -> float:
    """Intersection over union of two time intervals (0 when they do not overlap)."""
    a0, a1 = _interval(a)
    b0, b1 = _interval(b)
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = max(a1, b1) - min(a0, b0)
    return inter / union if union > 0 else 0.0


def _interval(x: Segment | Span) -> Span:
    if isinstance(x, Segment):
        return x.start_sec, x.end_sec
    return float(x[0]), float(x[1])


def nms(segments: Sequence[Segment], iou_threshold: float, class_agnostic: bool = False) -> list[Segment]:
    """Greedy temporal non-maximum suppression.

    Segments are visited by descending score; one is dropped when its IoU with an already kept
    segment (of the same label, unless `class_agnostic`) is greater than `iou_threshold`.

    Returns:
        The kept segments, sorted by start, then descending score, then label.
    """
    kept: list[Segment] = []
    for seg in sorted(segments, key=lambda s: (-s.score, s.start_sec, s.index)):
        rivals = kept if class_agnostic else [k for k in kept if k.index == seg.index]
        if all(temporal_iou(seg, k) <= iou_threshold for k in rivals):
            kept.append(seg)
    return _sorted(kept)


def _sorted(segments: Sequence[Segment]) -> list[Segment]:
    return sorted(segments, key=lambda s: (s.start_sec, -s.score, s.index))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) indices of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


def _class_segments(
    column: np.ndarray, mask: np.ndarray, bounds: np.ndarray, merge_gap_sec: float
) -> list[tuple[float, float, float]]:
    """(start_sec, end_sec, score) for one class: runs of `mask`, merged across short gaps."""
    merged: list[list[float]] = []  # [start_sec, end_sec, score_sum, num_windows]
    for first, last in _runs(mask):
        start, end = float(bounds[first]), float(bounds[last + 1])
        total, count = float(column[first : last + 1].sum()), last - first + 1
        if merged and start - merged[-1][1] <= merge_gap_sec + _EPS_SEC:
            merged[-1][1] = end
            merged[-1][2] += total
            merged[-1][3] += count
        else:
            merged.append([start, end, total, count])
    return [(s, e, total / count) for s, e, total, count in merged]


def _top_k_mask(scores: np.ndarray, k: int | None) -> np.ndarray:
    """`[W, K]` True where a class is among its window's k best (all True when k is None)."""
    if k is None or k >= scores.shape[1]:
        return np.ones(scores.shape, dtype=bool)
    if k < 1:
        raise UsageError(f"top_k_per_window must be >= 1, got {k}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def to_segments(
    spans: Sequence[Span],
    scores: np.ndarray,
    labels: Sequence[str],
    *,
    threshold: float = 0.3,
    smooth_windows: int = 1,
    min_duration_sec: float = 0.0,
    merge_gap_sec: float = 0.0,
    nms_iou: float | None = 0.5,
    class_agnostic_nms: bool = False,
    top_k_per_window: int | None = None,
) -> list[Segment]:
    """Per-window class scores -> temporal segments (see the module docstring for the rules).

    Args:
        spans: W windows `(start_sec, end_sec)`, sorted by start (as `window_spans` returns).
        scores: `[W, K]` class probabilities per window.
        labels: K class names; `Segment.index` is the column in `scores`.
        threshold: a class is active in a window when its smoothed score is >= this.
        smooth_windows: odd moving-average length in windows applied first (1 = none).
        min_duration_sec: segments shorter than this (after merging) are dropped.
        merge_gap_sec: same-label segments separated by at most this many seconds are merged.
        nms_iou: NMS IoU threshold; None disables NMS.
        class_agnostic_nms: suppress across labels instead of within each label.
        top_k_per_window: if set, a class is active only in windows where it is among the k best.

    Returns:
        Segments sorted by start, then descending score, then class index.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != (len(spans), len(labels)):
        raise ValueError(
            f"scores shape {scores.shape} does not match {len(spans)} windows x {len(labels)} labels"
        )
    if len(spans) == 0:
        return []
    smoothed = smooth(scores, smooth_windows)
    bounds = window_boundaries(spans)
    active = (smoothed >= threshold) & _top_k_mask(smoothed, top_k_per_window)
    segments = []
    for k in np.flatnonzero(active.any(axis=0)).tolist():
        for start, end, score in _class_segments(smoothed[:, k], active[:, k], bounds, merge_gap_sec):
            if end - start >= min_duration_sec - _EPS_SEC:
                segments.append(Segment(labels[k], k, start, end, score))
    if nms_iou is not None:
        return nms(segments, nms_iou, class_agnostic=class_agnostic_nms)
    return _sorted(segments)
