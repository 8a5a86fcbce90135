"""Read back what uvtag wrote and what ground truth looks like, for `uvtag eval` and reports.

Predictions: classify/batch outputs (json, jsonl or csv) as `PredictedLabels` per video; localize
JSON (video_id = file stem) or ActivityNet result JSON ({"results": {video_id: [{"label",
"score", "segment"}]}}) as `Detection`s. Ground truth: a CSV with a `path,label` header (one row
per video) or a folder with one sub-folder per class (`root/<label>/<video>`); ActivityNet-style
JSON ({"database": {video_id: {"annotations": [{"segment": [start_sec, end_sec], "label": str}],
"subset": ...}}}) as `GroundTruthSegment`s. Every malformed input is one UsageError line.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from uvtag.batch.output import CsvBlocks
from uvtag.errors import UsageError
from uvtag.results import Failure, LabelScore


@dataclass(frozen=True)
class PredictedLabels:
    """The ranked labels predicted for one video (read back from a classify/batch output)."""

    path: str
    top: tuple[LabelScore, ...]


@dataclass(frozen=True)
class Detection:
    """One predicted segment of a video, for mAP."""

    video_id: str
    label: str
    start_sec: float
    end_sec: float
    score: float


@dataclass(frozen=True)
class GroundTruthSegment:
    """One annotated segment of a video."""

    video_id: str
    label: str
    start_sec: float
    end_sec: float


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_json(path: Path) -> object:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e})") from None


def _top_from_records(records: Iterable[Mapping[str, object]]) -> tuple[LabelScore, ...]:
    ranked = sorted(records, key=lambda r: int(r.get("rank", 0)))  # type: ignore[arg-type]
    return tuple(LabelScore(str(r["label"]), int(r.get("class_index", -1)), float(r["score"]))  # type: ignore[arg-type]
                 for r in ranked)


def _video_from_record(record: Mapping[str, object]) -> PredictedLabels:
    return PredictedLabels(str(record["path"]), _top_from_records(record.get("top") or []))  # type: ignore[arg-type]


def read_predictions(path: str | os.PathLike[str]) -> tuple[list[PredictedLabels], list[Failure]]:
    """Video-level labels and failures from a classify or batch output (json, jsonl or csv).

    Raises:
        UsageError: unreadable file or not a uvtag classify/batch output.
    """
    src = Path(path)
    suffix = src.suffix.lower()
    try:
        if suffix == ".csv":
            return _predictions_from_csv(_read_text(src), src)
        if suffix == ".jsonl":
            lines = [json.loads(line) for line in _read_text(src).splitlines() if line.strip()]
            records = [r for r in lines if isinstance(r, dict)]
        elif suffix == ".json":
            doc = _read_json(src)
            if not isinstance(doc, dict) or not isinstance(doc.get("videos"), list):
                raise UsageError(f"{src}: not a uvtag classify/batch JSON (no 'videos' list)")
            records = [{**v, "record": "video"} for v in doc["videos"]]
            records += [{**f, "record": "failure"} for f in doc.get("failures") or []]
        else:
            raise UsageError(f"{src}: cannot tell the format from the extension; give .json, .jsonl or .csv")
        videos = {r["path"]: _video_from_record(r) for r in records if r.get("record", "video") == "video"}
        failures = [Failure(str(r["path"]), str(r.get("error", "")), str(r.get("kind", "error")))
                    for r in records if r.get("record") == "failure" and r["path"] not in videos]
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{src}: not a uvtag classify/batch output ({type(e).__name__}: {e})") from None
    return list(videos.values()), failures


def _predictions_from_csv(text: str, src: Path) -> tuple[list[PredictedLabels], list[Failure]]:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if rows and "row_type" in rows[0]:  # batch csv: keep the `video` summary rows
        labels: dict[str, list[dict[str, str]]] = {}
        pending: dict[str, list[dict[str, str]]] = {}
        failures: dict[str, Failure] = {}
        ends = CsvBlocks()
        for r in rows:
            complete = ends.add(r["row_type"], r["path"], r["rank"] or "")
            if r["row_type"] == "video":  # a block is complete on the row CsvBlocks says
                block = pending.setdefault(r["path"], [])
                if r["label"]:
                    block.append(r)
                if complete:
                    labels[r["path"]] = pending.pop(r["path"])  # a later run's block supersedes
            elif r["row_type"] == "failure":
                kind, _, message = r["error"].partition(": ")
                failures[r["path"]] = Failure(r["path"], message, kind)
        videos = [PredictedLabels(p, _top_from_records(rs)) for p, rs in labels.items()]
        return videos, [f for p, f in failures.items() if p not in labels]
    if rows and not {"path", "rank", "label", "score"} <= set(rows[0]):
        raise UsageError(f"{src}: not a uvtag classify/batch CSV (columns {', '.join(rows[0])})")
    grouped: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        grouped.setdefault(r["path"], []).append(r)
    return [PredictedLabels(p, _top_from_records(rs)) for p, rs in grouped.items()], []


def read_detections(path: str | os.PathLike[str]) -> list[Detection]:
    """Segments from a uvtag localize JSON or an ActivityNet result JSON (see module docstring)."""
    src = Path(path)
    doc = _read_json(src)
    try:
        if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
            return [Detection(str(vid), str(d["label"]), float(d["segment"][0]), float(d["segment"][1]),
                              float(d["score"]))
                    for vid, dets in doc["results"].items() for d in dets]
        if isinstance(doc, dict) and isinstance(doc.get("segments"), list) and "path" in doc:
            vid = Path(str(doc["path"])).stem
            return [Detection(vid, str(s["label"]), float(s["start_sec"]), float(s["end_sec"]), float(s["score"]))
                    for s in doc["segments"]]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise UsageError(f"{src}: malformed detection record ({type(e).__name__}: {e})") from None
    raise UsageError(f"{src}: not a uvtag localize JSON nor an ActivityNet result JSON")


def read_activitynet_gt(path: str | os.PathLike[str], subset: str | None = None) -> tuple[list[str], list[GroundTruthSegment]]:
    """(video ids, segments) of an ActivityNet-style ground truth JSON, optionally one subset only."""
    src = Path(path)
    doc = _read_json(src)
    if not isinstance(doc, dict) or not isinstance(doc.get("database"), dict):
        raise UsageError(f"{src}: not ActivityNet-style ground truth (no 'database' object)")
    videos, segments = [], []
    try:
        for vid, entry in doc["database"].items():
            if subset is not None and entry.get("subset") != subset:
                continue
            videos.append(str(vid))
            segments += [GroundTruthSegment(str(vid), str(a["label"]), float(a["segment"][0]), float(a["segment"][1]))
                         for a in entry.get("annotations") or []]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise UsageError(f"{src}: malformed annotation ({type(e).__name__}: {e})") from None
    if not videos:
        raise UsageError(f"{src}: no videos" + (f" in subset {subset!r}" if subset else ""))
    return videos, segments


def read_class_gt(path: str | os.PathLike[str], extensions: Sequence[str] | None = None) -> dict[str, str]:
    """Ground-truth label per video path: from a `path,label` CSV or a folder per class.

    CSV paths are resolved against the CSV's folder; folder paths are the files found under
    `root/<label>/` (recursively, video extensions only unless `extensions` is given).
    """
    src = Path(path)
    if src.is_dir():
        from uvtag.video.files import find_videos

        truth = {}
        for cls in sorted(p for p in src.iterdir() if p.is_dir()):
            for video in find_videos([cls], extensions) if extensions else find_videos([cls]):
                truth[str(video)] = cls.name
        if not truth:
            raise UsageError(f"{src}: no videos in class sub-folders (expected {src}/<label>/<video>)")
        return truth
    rows = list(csv.reader(io.StringIO(_read_text(src), newline="")))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["path", "label"]:
        raise UsageError(f"{src}: ground truth CSV needs a 'path,label' header")
    truth = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2 or not row[1].strip():
            raise UsageError(f"{src}: line {number} needs a path and a label")
        truth[str(src.parent / row[0]) if not os.path.isabs(row[0]) else row[0]] = row[1].strip()
    return truth
