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
from uvtag.index.schema import from_db, to_db

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
    if not known:
        raise UsageError(f"{where} holds no tagged video yet")
    for label in labels:
        if label in known:
            continue
        close = difflib.get_close_matches(label, known, n=3, cutoff=0.6)
        close += [k for k in known if k.lower() == label.lower() and k not in close]
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else \
            f"it knows {len(known)} labels, e.g. {', '.join(repr(k) for k in known[:5])}"
        raise UsageError(f"no video in {where} has the label {label!r}; {hint}")


def _video_scores(conn: sqlite3.Connection, labels: Sequence[str], min_score: float, mode: str) -> dict[int, float]:
    """video id -> its best counting clip's score, for every matching video (from the label index alone)."""
    where = f"label IN ({', '.join('?' * len(labels))}) AND score >= ?"
    if mode == "all":
        sql = (f"SELECT video_id, max(s) FROM (SELECT video_id, min(score) AS s FROM clip_labels WHERE {where} "
               "GROUP BY clip_id HAVING count(DISTINCT label) = ?) GROUP BY video_id")
        return dict(conn.execute(sql, (*labels, min_score, len(labels))).fetchall())
    sql = f"SELECT video_id, max(score) FROM clip_labels WHERE {where} GROUP BY video_id"
    return dict(conn.execute(sql, (*labels, min_score)).fetchall())


def _clip_hits(conn: sqlite3.Connection, labels: Sequence[str], min_score: float, mode: str, videos: Sequence[int]
               ) -> dict[int, list[ClipHit]]:
    """video id -> its counting clips, for `videos`."""
    per_clip: dict[int, list] = {}
    for start in range(0, len(videos), 500):  # under SQLite's bound-parameter limit
        chunk = videos[start : start + 500]
        sql = ("SELECT cl.clip_id, c.video_id, c.start_sec, c.end_sec, cl.label, cl.score FROM clips AS c "
               "CROSS JOIN clip_labels AS cl ON cl.clip_id = c.id "  # CROSS: from the videos' clips outwards
               f"WHERE c.video_id IN ({', '.join('?' * len(chunk))}) AND cl.label IN ({', '.join('?' * len(labels))}) "
               "AND cl.score >= ?")
        for clip_id, video_id, begin, end, label, score in conn.execute(sql, (*chunk, *labels, min_score)):
            entry = per_clip.get(clip_id)
            if entry is None:
                per_clip[clip_id] = [video_id, begin, end, {label: score}]
            elif score > entry[3].get(label, -1.0):  # a label twice in one clip's top-k: its best
                entry[3][label] = score
    per_video: dict[int, list[ClipHit]] = {}
    for video_id, begin, end, held in per_clip.values():
        if mode == "all" and len(held) < len(labels):
            continue
        score = min(held.values()) if mode == "all" else max(held.values())
        per_video.setdefault(video_id, []).append(ClipHit(begin, end, score, tuple(x for x in labels if x in held)))
    return per_video


def _best_videos(scores: dict[int, float], limit: int | None) -> list[int]:
    """The videos that can make the first `limit` places: those at least as good as the limit-th
    best (a video's score is its best clip's; ties are broken by the ranges)."""
    if limit is None or len(scores) <= limit:
        return list(scores)
    cut = sorted(scores.values(), reverse=True)[limit - 1]
    return [video_id for video_id, score in scores.items() if score >= cut]


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
    scores = _video_scores(conn, labels, min_score, mode)
    per_video = _clip_hits(conn, labels, min_score, mode, _best_videos(scores, limit))
    ranked = rank_videos({video_id: merge_ranges(clips, labels) for video_id, clips in per_video.items()})
    chosen = ranked if limit is None else ranked[:limit]
    paths = _paths(conn, [video_id for video_id, _, _ in chosen])
    videos = tuple(VideoHits(paths[video_id], score, ranges) for video_id, score, ranges in chosen)
    return SearchResult(labels, mode, min_score, len(scores), videos)


def _paths(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        out.update((i, from_db(p)) for i, p in conn.execute(f"SELECT id, path FROM videos WHERE id IN ({marks})", chunk))
    return out


def lookup_video(conn: sqlite3.Connection, path: str) -> tuple[int, str] | None:
    """(id, stored path) of the video `path` names: exactly as stored, else the one stored path
    that is the same file; None when the index has no such video."""
    import os

    row = conn.execute("SELECT id, path FROM videos WHERE path = ?", (to_db(path),)).fetchone()
    if row is not None:
        return row[0], from_db(row[1])
    target = os.path.realpath(path)
    stored = ((i, from_db(p)) for i, p in conn.execute("SELECT id, path FROM videos"))
    same = [(i, p) for i, p in stored if os.path.realpath(p) == target]
    return same[0] if len(same) == 1 else None


def find_video(conn: sqlite3.Connection, path: str, where: str = "the index") -> tuple[int, str]:
    """`lookup_video`, or UsageError (with the closest stored paths) when the index has no such video."""
    found = lookup_video(conn, path)
    if found is not None:
        return found
    names = [from_db(p) for (p,) in conn.execute("SELECT path FROM videos")]
    close = difflib.get_close_matches(path, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"{path}: not a video of {where}{hint}")


def _embeddings(conn: sqlite3.Connection, where: str):
    """(ids, paths, float32 matrix [videos, dim]) of every stored embedding.

    Raises:
        UsageError: the index holds none.
    """
    import numpy as np

    rows = conn.execute("SELECT id, path, embedding FROM videos WHERE status = 'ok' AND embedding IS NOT NULL").fetchall()
    if not rows:
        raise UsageError(f"{where} holds no embeddings: write it with `uvtag batch DIR --out {where} --embed`")
    matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), -1)
    return [r[0] for r in rows], [from_db(r[1]) for r in rows], matrix


def similar(conn: sqlite3.Connection, path: str, *, limit: int | None = 10, where: str = "the index") -> SimilarResult:
    """The videos whose stored embeddings are nearest to that of `path` (a video in the index).

    Raises:
        UsageError: the index holds no embeddings, `path` is not in it, or has none.
    """
    video_id, stored = find_video(conn, path, where)
    ids, paths, matrix = _embeddings(conn, where)
    if video_id not in ids:
        raise UsageError(f"{stored}: has no embedding in {where} (failed, or written without --embed)")
    return _nearest(stored, matrix[ids.index(video_id)], matrix, paths, {stored}, meta_model(conn), limit)


def similar_to(conn: sqlite3.Connection, name: str, vector, *, limit: int | None = 10,
               where: str = "the index") -> SimilarResult:
    """The videos whose stored embeddings are nearest to `vector` (a video `name` outside the index).

    Raises:
        UsageError: the index holds no embeddings, or ones of another size.
    """
    ids, paths, matrix = _embeddings(conn, where)
    if len(vector) != matrix.shape[1]:
        raise UsageError(f"{name}: a {len(vector)}-dimensional embedding; {where} holds {matrix.shape[1]}-dimensional ones")
    return _nearest(name, vector, matrix, paths, set(), meta_model(conn), limit)


def clip_settings(conn: sqlite3.Connection) -> tuple[float, float | None]:
    """(clip_sec, stride_sec) the index's clips were most often cut with (stride None: back to
    back), read from its first clips, so a new video can be embedded the same way."""
    from collections import Counter

    rows = conn.execute("SELECT video_id, start_sec, end_sec FROM clips ORDER BY id LIMIT 5000").fetchall()
    if not rows:
        raise UsageError("the index holds no clips to read the clip length from")
    lengths = Counter(round(e - s, 3) for _, s, e in rows)
    steps = Counter(round(b[1] - a[1], 3) for a, b in zip(rows, rows[1:]) if a[0] == b[0])
    clip = lengths.most_common(1)[0][0]
    stride = steps.most_common(1)[0][0] if steps else clip
    return clip, None if stride == clip else stride


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
    return None if row is None else from_db(row[0])
