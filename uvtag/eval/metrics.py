"""Score predictions against ground truth: classification accuracy and localization mAP.

Classification
    Ground truth is a CSV with a `path,label` header (one row per video) or a folder with one
    sub-folder per class (`root/<label>/<video>`). Predictions are classify/batch outputs (json,
    jsonl or csv). A prediction matches a ground-truth video by path: the exact string, then the
    absolute path (CSV paths are relative to the CSV's folder, prediction paths to the working
    directory), then the file name when it is unique on both sides. top-k accuracy counts a video
    correct when its label is among the first k predicted labels (k is capped by how many labels
    the predictions carry: `k_available`). Ground-truth videos with no prediction count as wrong.

Localization (ActivityNet protocol)
    Ground truth is ActivityNet-style JSON: {"database": {video_id: {"annotations":
    [{"segment": [start_sec, end_sec], "label": str}], "subset": ...}}}. Predictions are uvtag
    localize JSON (video_id = file stem) or ActivityNet result JSON ({"results": {video_id:
    [{"label", "score", "segment"}]}}). For each class with ground truth and each tIoU threshold t:
    detections of that class over all videos are ranked by descending score; each one is a true
    positive when some ground-truth segment of that class in its video has tIoU >= t and is not yet
    matched (the highest-tIoU unmatched one is taken), else a false positive, so duplicate
    detections of one segment count once. AP is the area under the interpolated precision-recall
    curve (precision made monotone from the right, summed over the recall steps), as ActivityNet's
    evaluation defines it. mAP at t is the mean AP over the classes that have ground truth (a
    predicted class with no ground truth is left out); the average mAP is the mean over thresholds.
    Detections of videos absent from the ground truth are ignored.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uvtag.errors import UsageError
from uvtag.eval.readers import Detection, GroundTruthSegment, PredictedLabels
from uvtag.infer.segments import temporal_iou

ACTIVITYNET_TIOUS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50:0.05:0.95
THUMOS_TIOUS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)  # 0.3:0.1:0.7
TIOU_PRESETS: dict[str, tuple[float, ...]] = {"activitynet": ACTIVITYNET_TIOUS, "thumos": THUMOS_TIOUS}


# ---------------------------------------------------------------- classification


@dataclass(frozen=True)
class ClassStats:
    """Per-class summary: how often the true class came first, and what it was mistaken for."""

    label: str
    count: int
    top1_correct: int
    confused_with: tuple[tuple[str, int], ...]  # most frequent wrong top-1 labels, descending

    @property
    def accuracy(self) -> float:
        return self.top1_correct / self.count if self.count else 0.0


@dataclass(frozen=True)
class ClassificationReport:
    """top-1/top-5 over the ground-truth videos, per-class summary and the confusion counts."""

    num_videos: int
    num_matched: int
    top1: float
    top5: float
    k_available: int
    mean_class_accuracy: float
    per_class: tuple[ClassStats, ...]
    confusion: Mapping[str, Mapping[str, int]] = field(repr=False)  # true label -> predicted top-1 -> count
    unmatched: tuple[str, ...] = ()  # ground-truth paths with no prediction

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: accuracies as fractions in [0, 1]."""
        return {
            "task": "classification", "num_videos": self.num_videos, "num_matched": self.num_matched,
            "top1": self.top1, "top5": self.top5, "k_available": self.k_available,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class": [{"label": c.label, "count": c.count, "top1_correct": c.top1_correct,
                           "accuracy": c.accuracy, "confused_with": [list(x) for x in c.confused_with]}
                          for c in self.per_class],
            "confusion": {k: dict(v) for k, v in self.confusion.items()},
            "unmatched": list(self.unmatched),
        }


def match_paths(truth_paths: Iterable[str], predicted_paths: Iterable[str]) -> dict[str, str]:
    """ground-truth path -> predicted path, by exact string, absolute path, then unique file name."""
    truth, preds = list(truth_paths), list(predicted_paths)
    by_exact = {p: p for p in preds}
    by_abs = {os.path.abspath(p): p for p in preds}
    names = Counter(Path(p).name for p in preds)
    truth_names = Counter(Path(t).name for t in truth)
    by_name = {Path(p).name: p for p in preds if names[Path(p).name] == 1}
    matched = {}
    for t in truth:
        hit = by_exact.get(t) or by_abs.get(os.path.abspath(t))
        if hit is None and truth_names[Path(t).name] == 1:
            hit = by_name.get(Path(t).name)
        if hit is not None:
            matched[t] = hit
    return matched


def classification_report(truth: Mapping[str, str], predictions: Sequence[PredictedLabels],
                          k: int = 5) -> ClassificationReport:
    """top-1 / top-`k` accuracy and per-class confusion of `predictions` against `truth` (path -> label)."""
    if not truth:
        raise UsageError("the ground truth lists no videos")
    by_path = {p.path: p for p in predictions}
    matched = match_paths(truth, by_path)
    k_avail = min([k] + [len(p.top) for p in predictions]) if predictions else 0
    confusion: dict[str, Counter[str]] = {}
    hit1 = hitk = 0
    for path, label in truth.items():
        pred = by_path[matched[path]] if path in matched else None
        labels = [ls.label for ls in pred.top] if pred else []
        first = labels[0] if labels else "(no prediction)"
        confusion.setdefault(label, Counter())[first] += 1
        hit1 += first == label
        hitk += label in labels[:k_avail]
    per_class = []
    for label in sorted(confusion):
        counts = confusion[label]
        wrong = sorted(((p, n) for p, n in counts.items() if p != label), key=lambda x: (-x[1], x[0]))
        per_class.append(ClassStats(label, sum(counts.values()), counts[label], tuple(wrong)))
    n = len(truth)
    return ClassificationReport(
        num_videos=n, num_matched=len(matched), top1=hit1 / n, top5=hitk / n, k_available=k_avail,
        mean_class_accuracy=float(np.mean([c.accuracy for c in per_class])), per_class=tuple(per_class),
        confusion={t: dict(c) for t, c in confusion.items()},
        unmatched=tuple(t for t in truth if t not in matched),
    )


# ---------------------------------------------------------------- localization


def interpolated_ap(tp: np.ndarray, num_positives: int) -> float:
    """Area under the interpolated precision-recall curve (ActivityNet / VOC all-point).

    Args:
        tp: bool or 0/1 [num_detections], detections ranked by descending score; 1 = true positive.
        num_positives: ground-truth segments of the class (> 0).
    """
    tp = np.asarray(tp, dtype=np.float64)
    if num_positives <= 0:
        raise ValueError("interpolated_ap needs at least one positive")
    if tp.size == 0:
        return 0.0
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(1.0 - tp)
    recall = tp_cum / num_positives
    precision = tp_cum / (tp_cum + fp_cum)
    prec = np.concatenate([[0.0], precision, [0.0]])
    rec = np.concatenate([[0.0], recall, [1.0]])
    prec = np.maximum.accumulate(prec[::-1])[::-1]  # precision made non-increasing in recall
    steps = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def match_detections(detections: Sequence[Detection], truth: Sequence[GroundTruthSegment],
                     tious: Sequence[float]) -> np.ndarray:
    """True-positive flags of one class's detections at each threshold, bool [len(tious), len(detections)].

    `detections` must already be ranked by descending score. A detection takes the unmatched
    ground-truth segment of its video with the highest tIoU, if that tIoU is >= the threshold.
    """
    by_video: dict[str, list[GroundTruthSegment]] = {}
    for g in truth:
        by_video.setdefault(g.video_id, []).append(g)
    tp = np.zeros((len(tious), len(detections)), bool)
    used = [{vid: np.zeros(len(gs), bool) for vid, gs in by_video.items()} for _ in tious]
    for d, det in enumerate(detections):
        gts = by_video.get(det.video_id)
        if not gts:
            continue
        ious = np.array([temporal_iou((det.start_sec, det.end_sec), (g.start_sec, g.end_sec)) for g in gts])
        order = np.argsort(-ious, kind="stable")
        for t, thr in enumerate(tious):
            for j in order:
                if ious[j] < thr:
                    break
                if not used[t][det.video_id][j]:
                    used[t][det.video_id][j] = True
                    tp[t, d] = True
                    break
    return tp


@dataclass(frozen=True)
class DetectionReport:
    """mAP per tIoU threshold, its mean, and AP per class (rows follow `tious`)."""

    tious: tuple[float, ...]
    mAP: tuple[float, ...]
    average_mAP: float
    ap: Mapping[str, tuple[float, ...]]  # class -> AP at each threshold
    num_videos: int
    num_gt_segments: int
    num_detections: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: AP and mAP as fractions in [0, 1]."""
        return {"task": "localization", "tious": list(self.tious), "mAP": list(self.mAP),
                "average_mAP": self.average_mAP, "ap": {k: list(v) for k, v in self.ap.items()},
                "num_videos": self.num_videos, "num_gt_segments": self.num_gt_segments,
                "num_detections": self.num_detections}


def detection_report(truth: Sequence[GroundTruthSegment], detections: Sequence[Detection],
                     tious: Sequence[float] = ACTIVITYNET_TIOUS, videos: Iterable[str] | None = None) -> DetectionReport:
    """ActivityNet mAP of `detections` against `truth` at each tIoU in `tious` (see module docstring).

    Args:
        videos: the ground-truth video ids (default: those with a segment); detections elsewhere are ignored.
    """
    if not truth:
        raise UsageError("the ground truth has no segments to score against")
    known = set(videos) if videos is not None else {g.video_id for g in truth}
    kept = [d for d in detections if d.video_id in known]
    classes = sorted({g.label for g in truth})
    ap = {}
    for cls in classes:
        gts = [g for g in truth if g.label == cls]
        dets = sorted((d for d in kept if d.label == cls), key=lambda d: -d.score)
        flags = match_detections(dets, gts, tious)
        ap[cls] = tuple(interpolated_ap(row, len(gts)) for row in flags)
    maps = tuple(float(np.mean([ap[c][t] for c in classes])) for t in range(len(tious)))
    return DetectionReport(tuple(float(t) for t in tious), maps, float(np.mean(maps)), ap, len(known),
                           len(truth), len(kept))


def parse_tious(text: str) -> tuple[float, ...]:
    """tIoU thresholds from a preset name (activitynet, thumos) or a comma list like `0.3,0.5`."""
    preset = TIOU_PRESETS.get(text.strip().lower())
    if preset is not None:
        return preset
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or not all(0 < v <= 1 for v in values):
        raise UsageError(f"--tiou {text!r}: give activitynet, thumos or comma-separated values in (0, 1]")
    return values
