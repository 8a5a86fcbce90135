"""Questions to a tag index: where do these labels hold (`search`), which videos look alike (`similar`).

search: a clip *holds* a label when the label is among the clip's stored top-k with a score of
at least `min_score`. With `mode="any"` a clip counts when it holds any of the labels (its score:
the best of them), with `mode="all"` when it holds every one (its score: the weakest of them).
Counting clips of one video that touch or overlap in time merge into one `Range` (score: the
best clip's; `mean_score`: the clips' mean). Videos are ranked by their best range's score, best
first (ties: the longer total time, then the video written first); each video's ranges are in time order.

similar: cosine similarity between stored video embeddings (each stored L2-normalised, see
`uvtag.index.writer`), highest first.
"""

from __future__ import annotations

import difflib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from uvtag.errors import UsageError

SEARCH_MODES = ("any", "all")
TOUCH_SEC = 1e-6  # clips closer than this count as neighbours (float noise on back-to-back spans)


@dataclass(frozen=True)
class ClipHit:
    """One clip that counts for a query."""

    start_sec: float
    end_sec: float
    score: float
    labels: tuple[str, ...]  # the query's labels it holds, in query order


@dataclass(frozen=True)
class Range:
    """Neighbouring clips of one video that count for a query, as one time range."""

    start_sec: float
    end_sec: float
    score: float  # the best clip's score
    mean_score: float
    num_clips: int
    labels: tuple[str, ...]  # the query's labels held somewhere in the range, in query order


@dataclass(frozen=True)
class VideoHits:
    """A video that matches a query, with the ranges where it does."""

    path: str
    score: float  # its best range's score
    ranges: tuple[Range, ...]


@dataclass(frozen=True)
class SearchResult:
    """The answer to one `search`."""

    labels: tuple[str, ...]
    mode: str
    min_score: float
    num_videos: int  # videos that match, before `limit`
    videos: tuple[VideoHits, ...]  # best first, at most `limit`


@dataclass(frozen=True)
class Neighbour:
    """A video and its cosine similarity to the query video."""

    path: str
    similarity: float


@dataclass(frozen=True)
class SimilarResult:
    """The answer to one `similar`."""

    path: str
    model: str | None
    neighbours: tuple[Neighbour, ...]  # most similar first


def merge_ranges(clips: Sequence[ClipHit], labels: Sequence[str] = ()) -> list[Range]:
    """Clips that touch or overlap in time, merged into ranges in time order. Pure.

    Args:
        clips: the counting clips of one video, in any order.
        labels: the query's labels, to order each range's `labels` (default: first seen).
    """
    order = {label: n for n, label in enumerate(labels)}
    ranges: list[Range] = []
    group: list[ClipHit] = []

    def close() -> None:
        held = {label for c in group for label in c.labels}
        scores = [c.score for c in group]
        ranges.append(Range(group[0].start_sec, end, max(scores), sum(scores) / len(scores),
                            len(group), tuple(sorted(held, key=lambda x: (order.get(x, len(order)), x)))))

    end = 0.0
    for clip in sorted(clips, key=lambda c: (c.start_sec, c.end_sec)):
        if group and clip.start_sec > end + TOUCH_SEC:
            close()
            group = []
        end = max(end, clip.end_sec) if group else clip.end_sec
        group.append(clip)
    if group:
        close()
    return ranges


def rank_videos(hits: dict[int, list[Range]]) -> list[tuple[int, float, tuple[Range, ...]]]:
    """(video id, score, ranges) best first: by best range score, then the longer matched time,
    then the video written first (the lower id). Pure."""
    videos = [(key, max(r.score for r in ranges), tuple(ranges)) for key, ranges in hits.items() if ranges]
    return sorted(videos, key=lambda v: (-v[1], -sum(r.end_sec - r.start_sec for r in v[2]), v[0]))


def known_labels(conn: sqlite3.Connection) -> list[str]:
    """Every label a row of the index names."""
    return [label for (label,) in conn.execute("SELECT label FROM labels ORDER BY class_index")]


def check_labels(labels: Sequence[str], known: Sequence[str], where: str) -> None:
    """UsageError naming the first label not in `known`, with the closest known ones."""
    if not labels:
        raise UsageError("search needs at least one label")
    for label in labels:
        if label in known:
            continue
        close = difflib.get_close_matches(label, known, n=3, cutoff=0.6)
        close += [k for k in known if k.lower() == label.lower() and k not in close]
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else \
            f"it knows {len(known)} labels, e.g. {', '.join(repr(k) for k in known[:5])}"
        raise UsageError(f"no video in {where} has the label {label!r}; {hint}")


def _clip_hits(conn: sqlite3.Connection, labels: Sequence[str], min_score: float, mode: str
               ) -> dict[int, list[tuple[float, float, float, dict[str, float]]]]:
    """video id -> its counting clips as (start_sec, end_sec, score, {label: score held})."""
    marks = ", ".join("?" * len(labels))
    rows = conn.execute(
        "SELECT cl.clip_id, c.video_id, c.start_sec, c.end_sec, cl.label, cl.score "
        f"FROM clip_labels AS cl JOIN clips AS c ON c.id = cl.clip_id WHERE cl.label IN ({marks}) AND cl.score >= ?",
        (*labels, min_score),
    )
    per_clip: dict[int, list] = {}
    for clip_id, video_id, start, end, label, score in rows:
        entry = per_clip.get(clip_id)
        if entry is None:
            per_clip[clip_id] = [video_id, start, end, {label: score}]
        elif score > entry[3].get(label, -1.0):  # a label twice in one clip's top-k: its best
            entry[3][label] = score
    need = len(set(labels))
    per_video: dict[int, list[tuple[float, float, float, dict[str, float]]]] = {}
    for video_id, start, end, held in per_clip.values():
        if mode == "all" and len(held) < need:
            continue
        score = min(held.values()) if mode == "all" else max(held.values())
        per_video.setdefault(video_id, []).append((start, end, score, held))
    return per_video


def _best_videos(per_video: dict[int, list[tuple[float, float, float, dict[str, float]]]], limit: int | None) -> list[int]:
    """The videos that can make the first `limit` places: a video's score is its best clip's, so
    only those at least as good as the limit-th best need their ranges merged."""
    if limit is None or len(per_video) <= limit:
        return list(per_video)
    best = {video_id: max(c[2] for c in clips) for video_id, clips in per_video.items()}
    cut = sorted(best.values(), reverse=True)[limit - 1]
    return [video_id for video_id, score in best.items() if score >= cut]


def search(conn: sqlite3.Connection, labels: Sequence[str], *, min_score: float = 0.0, mode: str = "any",
           limit: int | None = 20, where: str = "the index") -> SearchResult:
    """Videos and time ranges where `labels` hold; see the module docstring.

    Args:
        conn: an open tag index (`uvtag.index.schema.connect_reader`).
        labels: labels as the index names them (`known_labels`).
        min_score: the least score a label needs in a clip, in [0, 1].
        mode: "any" or "all" of the labels in a clip.
        limit: the most videos returned (None: all).
        where: the index's name in error messages.

    Raises:
        UsageError: a label the index does not know ("did you mean"), or a bad mode or score.
    """
    if mode not in SEARCH_MODES:
        raise UsageError(f"search mode {mode!r}: use any or all")
    if not 0.0 <= min_score <= 1.0:
        raise UsageError(f"--min-score {min_score}: scores are probabilities, between 0 and 1")
    labels = tuple(dict.fromkeys(labels))
    check_labels(labels, known_labels(conn), where)
    per_video = _clip_hits(conn, labels, min_score, mode)
    ranges = {video_id: merge_ranges([ClipHit(start, end, score, tuple(x for x in labels if x in held))
                                      for start, end, score, held in per_video[video_id]], labels)
              for video_id in _best_videos(per_video, limit)}
    ranked = rank_videos(ranges)
    chosen = ranked if limit is None else ranked[:limit]
    paths = _paths(conn, [video_id for video_id, _, _ in chosen])
    videos = tuple(VideoHits(paths[video_id], score, ranges) for video_id, score, ranges in chosen)
    return SearchResult(labels, mode, min_score, len(per_video), videos)


def _paths(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        out.update(conn.execute(f"SELECT id, path FROM videos WHERE id IN ({marks})", chunk).fetchall())
    return out


def find_video(conn: sqlite3.Connection, path: str, where: str = "the index") -> tuple[int, str]:
    """(id, stored path) of the video `path` names: exactly as stored, else the one stored path
    that is the same file.

    Raises:
        UsageError: no such video in the index.
    """
    import os

    row = conn.execute("SELECT id, path FROM videos WHERE path = ?", (path,)).fetchone()
    if row is not None:
        return row[0], row[1]
    target = os.path.realpath(path)
    same = [(i, p) for i, p in conn.execute("SELECT id, path FROM videos") if os.path.realpath(p) == target]
    if len(same) == 1:
        return same[0]
    names = [p for (p,) in conn.execute("SELECT path FROM videos")]
    close = difflib.get_close_matches(path, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"{path}: not a video of {where}{hint}")


def similar(conn: sqlite3.Connection, path: str, *, limit: int | None = 10, where: str = "the index") -> SimilarResult:
    """The videos whose stored embeddings are nearest to that of `path` (a video in the index).

    Raises:
        UsageError: the index holds no embeddings, `path` is not in it, or has none.
    """
    import numpy as np

    video_id, stored = find_video(conn, path, where)
    rows = conn.execute("SELECT id, path, embedding FROM videos WHERE status = 'ok' AND embedding IS NOT NULL").fetchall()
    if not rows:
        raise UsageError(f"{where} holds no embeddings: write it with `uvtag batch DIR --out {where} --embed`")
    ids = [r[0] for r in rows]
    if video_id not in ids:
        raise UsageError(f"{stored}: has no embedding in {where} (failed, or written without --embed)")
    matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), -1)
    return _nearest(stored, matrix[ids.index(video_id)], matrix, [r[1] for r in rows], {stored},
                    meta_model(conn), limit)


def _nearest(path: str, query, matrix, paths: Sequence[str], exclude: set[str], model: str | None,
             limit: int | None) -> SimilarResult:
    """Rank `paths` (rows of `matrix`) by cosine similarity to `query`, leaving out `exclude`."""
    import numpy as np

    q = np.asarray(query, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(q) or 1.0)
    sims = (matrix.astype(np.float64) @ q) / np.where(norms > 0, norms, 1.0)
    order = sorted((n for n, p in enumerate(paths) if p not in exclude), key=lambda n: (-sims[n], paths[n]))
    chosen = order if limit is None else order[:limit]
    return SimilarResult(path, model, tuple(Neighbour(paths[n], float(sims[n])) for n in chosen))


def meta_model(conn: sqlite3.Connection) -> str | None:
    """The model the index's videos were tagged by (None: not recorded)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
    return None if row is None else row[0]
