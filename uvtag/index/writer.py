"""`IndexWriter`: batch results into a tag index (`uvtag.index.schema`), one transaction per video.

It has `BatchWriter`'s interface (`completed()`, `write_video`, `write_failure`, `close`, a `with`
block), so every runner (in-process, worker processes, Ray, shards) writes into a database
exactly as into a file. Each video (its row, clips, clip labels and video labels) is one
transaction, committed to disk before `write_video` returns: a killed run loses at most the
video in flight, and `--resume` skips every committed one.

Any number of writers may share one database (shards of an array job, a merge next to a run):
each video's transaction takes the write lock first (BEGIN IMMEDIATE), then looks at what is
already there, so no video is ever written twice: a complete video is kept as it is (the first
writer wins), and a failure is replaced by a later failure or by the video itself. Unlike the
file formats there is no `<out>.lock`: SQLite's own lock serialises the writers.

A database holds one model's results: the first video that names its model records it in
`meta`, and a video of another model, or whose class indices name other labels, raises
UsageError before anything of it is written.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from uvtag.errors import OutputError, UsageError, one_line
from uvtag.index.schema import connect_writer, from_db, meta, to_db
from uvtag.outputs.files import check_output, fsync_dir, output_error
from uvtag.results import Failure, VideoPrediction
from uvtag.video.files import folders_above

_RESUME_HINT = "; every video committed before is in it: fix that and continue with --resume"


def _remove_database(path: Path) -> None:
    """Delete a database and its WAL and shared-memory files (for --overwrite)."""
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            name.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputError(f"{name}: cannot remove it to overwrite ({e.strerror or e})") from None


def video_embedding(prediction: VideoPrediction) -> bytes | None:
    """The stored embedding of a video: the L2-normalised mean of its clip embeddings as
    little-endian float32 bytes, or None when the prediction carries none."""
    clips = getattr(prediction, "embeddings", None)
    if clips is None:
        return None
    import numpy as np

    mean = np.asarray(clips, dtype=np.float64).reshape(len(clips), -1).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype("<f4").tobytes()


def embed_file(tagger: Any, path: str, clip_sec: float, stride_sec: float | None):
    """The embedding `video_embedding` stores, for a video file outside the index (float32 [C]),
    computed with `tagger` (a loaded `uvtag.tagger.Tagger`) on clips cut as given."""
    import numpy as np

    prediction = tagger.tag_clips(path, clip_sec=clip_sec, stride_sec=stride_sec, top=1, embed=True)
    return np.frombuffer(video_embedding(prediction), dtype="<f4")


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


class IndexWriter:
    """Streams batch results into a SQLite tag index; see the module docstring.

    Use `IndexWriter.open(...)`, then `completed()`, `write_video(...)`, `write_failure(...)` and
    `close()` (or a `with` block).
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, completed: set[str]) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._completed = completed
        self.duplicates = 0  # videos another writer had already written

    @classmethod
    def open(cls, path: str | os.PathLike[str], resume: bool = False, overwrite: bool = False, *,
             durable: bool = True) -> IndexWriter:
        """Open (or create) the database at `path` for writing.

        Args:
            resume: continue an existing database (its complete videos are `completed()`); a
                missing one is created. Shards writing into one database each pass `resume`.
            overwrite: replace an existing database.
            durable: commit every video to disk (False: only for a file renamed into place once
                complete, as `uvtag merge` does).

        Raises:
            UsageError: the file exists and neither flag is set, both are set, or it is not a
                uvtag tag index of this schema version.
            OutputError: it cannot be created, read or written.
        """
        out = Path(path)
        if resume and overwrite:
            raise UsageError("--resume and --overwrite cannot be used together")
        check_output(out, resume or overwrite, hint="use --resume to continue it or --overwrite to replace it")
        if overwrite:
            _remove_database(out)
        conn = connect_writer(out, durable)
        try:
            done = {from_db(p) for (p,) in conn.execute("SELECT path FROM videos WHERE status = 'ok'")}
        except sqlite3.Error as e:
            conn.close()
            raise OutputError(f"{out}: cannot read it to resume ({e})") from None
        return cls(out, conn, done)

    def completed(self) -> set[str]:
        """Paths (exactly as written) of the videos complete in the database when it was opened,
        plus those written since."""
        return set(self._completed)

    def write_video(self, prediction: VideoPrediction) -> None:
        """Write one video (row, clips, labels, embedding) in one transaction, committed to disk."""
        if self._write(prediction.path, lambda conn, old: self._insert_video(conn, prediction, old)):
            self._completed.add(prediction.path)

    def write_failure(self, failure: Failure) -> None:
        """Record a video that could not be processed (unless it is complete already)."""
        self._write(failure.path, lambda conn, old: self._insert_failure(conn, failure, old))

    def _write(self, path: str, insert) -> bool:
        """Run `insert(conn, old row id or None)` in one immediate transaction, unless `path` is
        already complete; True when the video is complete afterwards."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT id, status FROM videos WHERE path = ?", (to_db(path),)).fetchone()
                if row is not None and row[1] == "ok":
                    conn.execute("ROLLBACK")
                    self.duplicates += 1
                    return True
                done = insert(conn, None if row is None else row[0])
                conn.execute("COMMIT")
                return done
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise OutputError(f"{self.path}: cannot write it ({one_line(e)}){_RESUME_HINT}") from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"{self.path.name}: index writer is closed")
        return self._conn

    def _check_model(self, conn: sqlite3.Connection, prediction: VideoPrediction, embedding: bytes | None) -> None:
        """Refuse a video of another model (or label list, or embedding size) than the database's."""
        stored = meta(conn)
        known = stored.get("model")
        if known is not None and prediction.model and prediction.model != known:
            raise UsageError(f"{self.path}: holds videos tagged by {known}; {prediction.path} was tagged by "
                             f"{prediction.model}: write each model's results into its own database")
        if known is None and prediction.model:
            conn.execute("INSERT INTO meta (key, value) VALUES ('model', ?)", (to_db(prediction.model),))
        labels = dict(conn.execute("SELECT class_index, label FROM labels").fetchall())
        indices = {label: index for index, label in labels.items()}
        for ls in {(ls.index, ls.label) for top in [prediction.top, *(c.top for c in prediction.clips)] for ls in top}:
            index, label = ls
            if labels.setdefault(index, label) != label:
                clash = f"class {index} is {labels[index]!r} in it but {label!r}"
            elif indices.setdefault(label, index) != index:
                clash = f"{label!r} is class {indices[label]} in it but class {index}"
            else:
                continue
            raise UsageError(f"{self.path}: {clash} for {prediction.path}: another label list; "
                             "write it into its own database")
        conn.executemany("INSERT OR IGNORE INTO labels (class_index, label) VALUES (?, ?)", labels.items())
        if embedding is not None:
            dim, known_dim = len(embedding) // 4, stored.get("embedding_dim")
            if known_dim is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('embedding_dim', ?)", (str(dim),))
            elif int(known_dim) != dim:
                raise UsageError(f"{self.path}: holds {known_dim}-dimensional embeddings; {prediction.path} has {dim}")

    def _insert_video(self, conn: sqlite3.Connection, p: VideoPrediction, old: int | None) -> bool:
        embedding = video_embedding(p)
        self._check_model(conn, p, embedding)
        if old is not None:
            conn.execute("DELETE FROM videos WHERE id = ?", (old,))
        # a folder that could not be listed, now listed: its failure row is no longer true
        conn.executemany("DELETE FROM videos WHERE status = 'failed' AND path = ?",
                         [(to_db(folder),) for folder in folders_above(p.path)])
        i = p.info
        video_id = conn.execute(
            "INSERT INTO videos (path, status, model, duration_sec, fps, num_frames, width, height, rotation, "
            "codec, backend, size_bytes, num_views, embedding, dim) VALUES (?, 'ok', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (to_db(p.path), to_db(p.model) if p.model else None, i.duration_sec, _or_none(i.fps),
             _or_none(i.num_frames), _or_none(i.width), _or_none(i.height), i.rotation, i.codec or None, i.backend or None, _size(p.path), p.num_views,
             embedding, None if embedding is None else len(embedding) // 4),
        ).lastrowid
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM clips").fetchone()[0]
        conn.executemany("INSERT INTO clips (id, video_id, start_sec, end_sec) VALUES (?, ?, ?, ?)",
                         [(first + n, video_id, c.start_sec, c.end_sec) for n, c in enumerate(p.clips)])
        conn.executemany("INSERT INTO clip_labels (clip_id, video_id, rank, label, class_index, score) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [(first + n, video_id, rank, ls.label, ls.index, ls.score)
                          for n, c in enumerate(p.clips) for rank, ls in enumerate(c.top, start=1)])
        conn.executemany("INSERT INTO video_labels (video_id, rank, label, class_index, score) VALUES (?, ?, ?, ?, ?)",
                         [(video_id, rank, ls.label, ls.index, ls.score) for rank, ls in enumerate(p.top, start=1)])
        return True

    def _insert_failure(self, conn: sqlite3.Connection, failure: Failure, old: int | None) -> bool:
        if old is not None:
            conn.execute("DELETE FROM videos WHERE id = ?", (old,))
        conn.execute("INSERT INTO videos (path, status, error, error_kind, size_bytes) VALUES (?, 'failed', ?, ?, ?)",
                     (to_db(failure.path), to_db(one_line(failure.error)), failure.kind, _size(failure.path)))
        return False

    def close(self) -> None:
        """Close the database (every video written is already committed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as e:
                raise OutputError(f"{self.path}: cannot close it ({one_line(e)}){_RESUME_HINT}") from None

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _or_none(value: Any) -> Any:
    """A metadata value, None where the source left it out (0 or empty)."""
    return value if value else None


def write_database(path: str | os.PathLike[str], results: Iterable[VideoPrediction | Failure]) -> int:
    """Write `results` (videos and failures, one each) as a new tag index at `path`, atomically:
    built in a temp file beside it, which replaces `path` only once complete (an existing
    database at `path` is replaced). Returns the number of videos written.

    Raises:
        UsageError: results of two models, or of two label lists.
        OutputError: the file cannot be written.
    """
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    written = 0
    try:
        _remove_database(tmp)
        with IndexWriter.open(tmp, overwrite=True, durable=False) as writer:
            for result in results:
                if isinstance(result, Failure):
                    writer.write_failure(result)
                else:
                    writer.write_video(result)
                    written += 1
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            for stale in (out.with_name(out.name + "-wal"), out.with_name(out.name + "-shm")):
                if stale.exists():
                    stale.unlink()  # another database's log must never be applied to this one
            os.replace(tmp, out)
        except OSError as e:
            raise output_error(out, e, "; it was left untouched") from None
        fsync_dir(out.parent)
    finally:
        _remove_database(tmp)
    return written
