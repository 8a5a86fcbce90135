"""A tag index read back as batch records, and batch records made results again (for `uvtag merge`).

The records are those of `uvtag.outputs.formats` (`video_record` / `failure_record`, without
`schema_version`), so an index merges with json and jsonl files and into them; a record made a
`VideoPrediction` again is what `IndexWriter.write_video` takes.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from uvtag.errors import UsageError
from uvtag.index.schema import connect_reader, from_db
from uvtag.results import ClipPrediction, Failure, LabelScore, VideoInfo, VideoPrediction

_INFO = ("num_frames", "fps", "duration_sec", "width", "height", "rotation", "codec", "backend")


def _top(rows: list[tuple[int, str, int, float]]) -> list[dict[str, Any]]:
    return [{"rank": rank, "label": label, "class_index": index, "score": score} for rank, label, index, score in rows]


def _video_records(conn: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    videos = conn.execute("SELECT id, path, status, error, error_kind, model, num_views, "
                          + ", ".join(_INFO) + " FROM videos ORDER BY id").fetchall()
    for video_id, path, status, error, kind, model, num_views, *info in videos:
        path, error, model = from_db(path), from_db(error), from_db(model)
        if status == "failed":
            yield {"record": "failure", "path": path, "kind": kind or "error", "error": error or ""}
            continue
        defaults = VideoInfo(path, 0, 0.0, 0.0, 0, 0)
        fields = {name: getattr(defaults, name) if value is None else value for name, value in zip(_INFO, info)}
        top = conn.execute("SELECT rank, label, class_index, score FROM video_labels WHERE video_id = ? ORDER BY rank",
                           (video_id,)).fetchall()
        clips = []
        for clip_id, start, end in conn.execute("SELECT id, start_sec, end_sec FROM clips WHERE video_id = ? "
                                                "ORDER BY id", (video_id,)).fetchall():
            labels = conn.execute("SELECT rank, label, class_index, score FROM clip_labels WHERE clip_id = ? "
                                  "ORDER BY rank", (clip_id,)).fetchall()
            clips.append({"start_sec": start, "end_sec": end, "top": _top(labels)})
        yield {"record": "video", "path": path, "model": model,
               "video": dataclasses.asdict(VideoInfo(path=path, **fields)),
               "num_views": num_views if num_views is not None else len(clips), "top": _top(top), "clips": clips}


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every video and failure of the index at `path` as batch records, in the order written.

    Raises:
        UsageError: not a uvtag tag index of this schema version.
    """
    conn = connect_reader(path)
    try:
        return list(_video_records(conn))
    except sqlite3.Error as e:
        raise UsageError(f"{path}: cannot read it ({e})") from None
    finally:
        conn.close()


def _labels(records: Any) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(r["label"], int(r["class_index"]), float(r["score"])) for r in records)


def result_from_record(record: Mapping[str, Any], model: str | None = None) -> VideoPrediction | Failure:
    """The `VideoPrediction` or `Failure` a batch record describes (`model` where it names none).

    Raises:
        UsageError: a record without the fields uvtag writes.
    """
    try:
        if record["record"] == "failure":
            return Failure(record["path"], record.get("error", ""), record.get("kind", "error"))
        info = dict(record.get("video") or {})
        info = VideoInfo(**{"path": record["path"], "num_frames": 0, "fps": 0.0, "duration_sec": 0.0, "width": 0,
                            "height": 0, **{k: v for k, v in info.items() if k in VideoInfo.__dataclass_fields__}})
        clips = tuple(ClipPrediction(float(c["start_sec"]), float(c["end_sec"]), _labels(c["top"]))
                      for c in record.get("clips", ()))
        return VideoPrediction(record["path"], record.get("model") or model or "", info, _labels(record["top"]),
                               int(record.get("num_views", len(clips))), clips)
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{record.get('path', 'a record')}: not a complete uvtag batch record ({e})") from None
