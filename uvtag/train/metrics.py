"""Pure evaluation maths: top-1 accuracy and temporal-detection mAP at a tIoU threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["average_precision", "temporal_iou", "temporal_map"]

Detection = tuple[str, float, float, str, float]  # (video, start_sec, end_sec, label, score)
Truth = tuple[str, float, float, str]  # (video, start_sec, end_sec, label)


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time intervals (seconds); 0 for disjoint ones."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def average_precision(hits: Sequence[bool], num_truths: int) -> float:
    """Area under the interpolated precision-recall curve (VOC/ActivityNet all-point style).

    Args:
        hits: whether each detection, in descending score order, matched an unmatched truth.
        num_truths: ground-truth instances of the class.
    """
    if num_truths == 0:
        return float("nan")
    if len(hits) == 0:
        return 0.0
    tp = np.cumsum(np.asarray(hits, dtype=np.float64))
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / num_truths
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # make precision monotone
    recall = np.concatenate([[0.0], recall])
    return float(np.sum((recall[1:] - recall[:-1]) * precision))


def temporal_map(detections: Sequence[Detection], truths: Sequence[Truth], iou: float) -> float:
    """Mean over ground-truth classes of the AP of detections matched greedily at tIoU >= `iou`.

    Per class, detections go in descending score order; each matches the unmatched truth of the
    same video with the highest tIoU, if that is at least `iou` (ActivityNet's protocol).
    """
    aps = []
    for label in sorted({t[3] for t in truths}):
        gts = [t for t in truths if t[3] == label]
        used = [False] * len(gts)
        dets = sorted((d for d in detections if d[3] == label), key=lambda d: -d[4])
        hits = []
        for video, start, end, _, _ in dets:
            best, best_j = iou, -1
            for j, g in enumerate(gts):
                if not used[j] and g[0] == video:
                    overlap = temporal_iou((start, end), (g[1], g[2]))
                    if overlap >= best:
                        best, best_j = overlap, j
            if best_j >= 0:
                used[best_j] = True
            hits.append(best_j >= 0)
        aps.append(average_precision(hits, len(gts)))
    return float(np.mean(aps)) if aps else float("nan")
