"""Batch output (`BatchWriter`): one file streamed video by video, kill-safe and resumable.

Formats (records as in `uvtag.outputs.formats`):
    csv    columns `BATCH_CSV_COLUMNS`: row_type (clip | video | failure), path, start_sec,
           end_sec, rank, label, class_index, score, error. One `clip` row per (clip, rank), then
           the video summary as one `video` row per rank spanning [0, duration_sec], rank 1 first.
           Every clip ranks as many labels as the summary, so a video is complete once its `video`
           rows hold every rank from 1 to the highest rank of its `clip` rows (`CsvBlocks`): that
           holds only after the summary's last row, even if a kill cut a write at a line boundary.
           Files written with the summary from the last rank down to rank 1 read the same way.
           A failure is one `failure` row (path, error = "Kind: message").
    jsonl  one line per video (video record) or failure ({record: "failure", path, kind, error}).
    json   one document {schema_version, model, videos: [...], failures: [...]}, rewritten
           atomically (temp file + os.replace) after every video, so it is always valid; the cost
           grows with the batch (prefer csv / jsonl for thousands of videos).
    Failures go in the same file as the videos (no sidecar). A video is complete when its
    summary is present; resume retries failed videos, so a `failure` row may be followed by
    that video's rows from a later run: the video rows are authoritative.

One run at a time: an open writer holds an exclusive lock (`flock`) on `<out>.lock` beside the
output, which holds its pid and is removed on close; a second writer on the same output raises
OutputError naming that pid. The kernel drops the lock when its process dies, so a killed run
never blocks the next one (its lock file is simply reused). An OSError while writing (a full
disk...) is an OutputError: every video written before it stays in the file, and `--resume`
continues from there.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # no flock on this platform: writers run unlocked
    fcntl = None  # type: ignore[assignment]

from uvtag.errors import OutputError, UsageError, one_line
from uvtag.outputs.files import ENCODING, atomic_write, check_output, output_error, write_all
from uvtag.outputs.formats import csv_text, failure_record, format_score, format_sec, json_line, video_record
from uvtag.results import SCHEMA_VERSION, Failure, VideoPrediction

__all__ = ["BATCH_CSV_COLUMNS", "BATCH_CSV_HEADER", "BATCH_FORMATS", "BatchWriter", "CsvBlocks", "csv_rows", "lock_path"]

BATCH_FORMATS = ("csv", "jsonl", "json", "sqlite")  # sqlite: the tag index, `uvtag.index.writer.IndexWriter`
BATCH_CSV_COLUMNS = (
    "row_type", "path", "start_sec", "end_sec", "rank", "label", "class_index", "score", "error"
)


BATCH_CSV_HEADER = csv_text([BATCH_CSV_COLUMNS])


def csv_rows(text: str, start: int, name: str, hint: str = "") -> Iterator[tuple[list[str], str]]:
    """(row, its exact text) for each complete batch CSV row of `text` from offset `start`.

    Stops quietly at a last row cut short by a kill (or a torn quoted field); raises UsageError
    (`hint` appended) for a row that uvtag did not write: other quoting or another column count.
    """
    pos = start
    reader = csv.reader(io.StringIO(text[pos:], newline=""))
    while True:
        try:
            row = next(reader)
        except (StopIteration, csv.Error):  # end, or a quoted field torn by a kill
            return
        raw = csv_text([row])
        if text[pos : pos + len(raw)] != raw or len(row) != len(BATCH_CSV_COLUMNS):
            if pos + len(raw) >= len(text):  # the last row, cut short by a kill
                return
            raise UsageError(f"{name}: the row near character {pos} is not uvtag's{hint}")
        pos += len(raw)
        yield row, raw


class CsvBlocks:
    """Tells where each block of a batch CSV ends: a `failure` row, or a video's last `video` row.

    A video's block is complete once its `video` rows hold every rank from 1 to R, R being the
    highest rank of its `clip` rows (1 if it has none), or once it has a `video` row without a
    rank (a summary with no labels). Rows 1..R in that order (what the writer writes) and R..1
    (files written rank 1 last) both complete on their last row and on no row before it. A row
    of another path than the open block's starts a new block (the open one was cut short).
    """

    def __init__(self) -> None:
        self._path: str | None = None
        self._clip_rank = 0
        self._ranks: set[int] = set()

    def add(self, kind: str, path: str, rank: str) -> bool:
        """Take the next row (its row_type, path and rank); True when it completes a block."""
        if path != self._path:
            self._path, self._clip_rank, self._ranks = path, 0, set()
        number = int(rank) if rank.isdigit() else 0
        if kind == "clip":
            self._clip_rank = max(self._clip_rank, number)
            return False
        if kind == "video" and rank:
            self._ranks.add(number)
            if not self._ranks.issuperset(range(1, max(self._clip_rank, 1) + 1)):
                return False
        elif kind != "video" and kind != "failure":
            return False
        self._path = None
        return True


_RESUME_HINT = "; every video written before is in it: fix that and continue with --resume"


def lock_path(out: Path) -> Path:
    """The lock file of batch output `out`: `<out>.lock` in the same folder."""
    return out.with_name(out.name + ".lock")


def _lock_holder(fd: int) -> str:
    """The pid written in an open lock file, as text ("unknown pid" if there is none yet)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f"pid {text}" if text.isdigit() else "unknown pid"


def take_lock(out: Path) -> int:
    """Lock `out` for this process: the open, locked `<out>.lock` (with our pid in it), or -1
    where the platform or filesystem has no flock.

    The file is checked to still be the one at its path once locked, since a writer that closes
    removes it: locking a removed file would lock nothing.

    Raises:
        OutputError: another process holds the lock, or the lock file cannot be created.
    """
    if fcntl is None:
        return -1
    lock = lock_path(out)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise output_error(lock, e, f"; it locks {out.name} against a second run") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise OutputError(f"{out}: another uvtag run ({holder}) is writing this file; wait for "
                              "it to finish or give another --out") from None
        except OSError:  # a filesystem without flock: nothing to lock with
            os.close(fd)
            return -1
        try:
            on_disk = os.stat(lock)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(fd)
        if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)  # removed by the writer that held it before: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError as e:
        drop_lock(out, fd)
        raise output_error(lock, e, f"; it locks {out.name} against a second run") from None
    return fd


def drop_lock(out: Path, fd: int) -> None:
    """Remove `<out>.lock` while still holding it, then release it (fd -1: nothing held)."""
    if fd < 0:
        return
    try:
        os.unlink(lock_path(out))
    except OSError:  # already gone, or a read-only folder: the released lock is harmless
        pass
    os.close(fd)


class _RowCodec:
    """How one append-only batch format encodes blocks and reads back a possibly torn file."""

    header = ""

    def video(self, prediction: VideoPrediction) -> str:
        raise NotImplementedError

    def failure(self, failure: Failure) -> str:
        raise NotImplementedError

    def scan(self, text: str, name: str) -> tuple[set[str], int]:
        """(complete video paths, length in characters of the prefix to keep)."""
        raise NotImplementedError


class _CsvRows(_RowCodec):
    header = BATCH_CSV_HEADER

    def video(self, prediction: VideoPrediction) -> str:
        p = prediction
        rows: list[Sequence[Any]] = [
            ("clip", p.path, format_sec(c.start_sec), format_sec(c.end_sec), rank, ls.label, ls.index,
             format_score(ls.score), "")
            for c in p.clips for rank, ls in enumerate(c.top, start=1)
        ]
        summary = [("video", p.path, format_sec(0.0), format_sec(p.info.duration_sec), rank, ls.label,
                    ls.index, format_score(ls.score), "") for rank, ls in enumerate(p.top, start=1)]
        if not summary:  # still one terminal row, with no label
            summary = [("video", p.path, format_sec(0.0), format_sec(p.info.duration_sec), "", "", "", "", "")]
        clip_rank = max((len(c.top) for c in p.clips), default=0)
        if p.top and clip_rank > len(p.top):  # no summary row would complete the block (see CsvBlocks)
            raise ValueError(f"{p.path}: its clips rank {clip_rank} labels, its summary {len(p.top)}")
        if clip_rank < len(p.top):  # rank 1 last: the summary's rank R would end the block early
            summary.reverse()
        return csv_text(rows + summary)

    def failure(self, failure: Failure) -> str:
        error = one_line(f"{failure.kind}: {failure.error}")
        return csv_text([("failure", failure.path, "", "", "", "", "", "", error)])

    def scan(self, text: str, name: str) -> tuple[set[str], int]:
        if not text.startswith(self.header):
            if self.header.startswith(text):  # killed while writing the header
                return set(), 0
            raise UsageError(f"{name}: not a uvtag batch CSV (its header differs); cannot resume it")
        done: set[str] = set()
        pos = keep = len(self.header)
        blocks = CsvBlocks()
        for row, raw in csv_rows(text, pos, name, "; cannot resume it"):
            pos += len(raw)
            if blocks.add(row[0], row[1], row[4]):
                keep = pos  # a block ends here
                if row[0] == "video":
                    done.add(row[1])
        return done, keep


class _JsonlRows(_RowCodec):
    def video(self, prediction: VideoPrediction) -> str:
        return json_line(video_record(prediction))

    def failure(self, failure: Failure) -> str:
        return json_line(failure_record(failure))

    def scan(self, text: str, name: str) -> tuple[set[str], int]:
        done: set[str] = set()
        keep = 0
        lines = text.split("\n")
        for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a kill only tears the unterminated last line
                raise UsageError(f"{name}: line {number} is not JSON; cannot resume it") from None
            if not isinstance(record, dict) or record.get("record") not in ("video", "failure"):
                raise UsageError(f"{name}: line {number} is not a uvtag batch record; cannot resume it")
            keep += len(line) + 1
            if record["record"] == "video":
                done.add(record["path"])
        return done, keep


_ROW_CODECS: dict[str, type[_RowCodec]] = {"csv": _CsvRows, "jsonl": _JsonlRows}


class BatchWriter:
    """Streams batch results to one file; every finished video is on disk before the next starts.

    Use `BatchWriter.open(...)`, then `completed()`, `write_video(...)`, `write_failure(...)` and
    `close()` (or a `with` block). See the module docstring for the layouts.
    """

    def __init__(self, path: Path, completed: set[str]) -> None:
        self.path = path
        self._completed = completed
        self._lock = -1

    @classmethod
    def open(cls, path: str | os.PathLike[str], fmt: str, resume: bool = False,
             overwrite: bool = False) -> BatchWriter:
        """Open `path` for a batch in format `fmt` (csv, jsonl, json, or sqlite: an `IndexWriter`,
        same interface, serialised by SQLite's lock instead of `<out>.lock`).

        Args:
            path: output file.
            fmt: one of `BATCH_FORMATS`.
            resume: continue an existing file: keep its complete videos (see `completed`) and
                cut off what a kill left half written. A missing file starts fresh.
            overwrite: replace an existing file.

        Raises:
            UsageError: the file exists and neither flag is set, both flags are set, or the file
                to resume is not a uvtag batch file of this format.
            OutputError: another writer has `path` open (see the module docstring), or the file
                cannot be read or written.
        """
        out = Path(path)
        if fmt not in BATCH_FORMATS:
            raise UsageError(f"batch cannot write {fmt!r}; use one of {', '.join(BATCH_FORMATS)}")
        if resume and overwrite:
            raise UsageError("--resume and --overwrite cannot be used together")
        if fmt == "sqlite":
            from uvtag.index.writer import IndexWriter

            return IndexWriter.open(out, resume, overwrite)  # type: ignore[return-value]
        lock = take_lock(out)  # before looking at the file: another run may be creating it
        try:
            check_output(out, resume or overwrite, hint="use --resume to continue it or --overwrite to replace it")
            if fmt == "json":
                writer: BatchWriter = _JsonBatchWriter.start(out, resume)
            else:
                writer = _AppendBatchWriter.start(out, _ROW_CODECS[fmt](), resume)
        except BaseException:
            drop_lock(out, lock)
            raise
        writer._lock = lock
        return writer

    def completed(self) -> set[str]:
        """Paths (exactly as written) of the videos already complete in the file."""
        return set(self._completed)

    def write_video(self, prediction: VideoPrediction) -> None:
        """Write one video (clips and summary) and force it to disk before returning."""
        raise NotImplementedError

    def write_failure(self, failure: Failure) -> None:
        """Record a video that could not be processed, and force it to disk."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file and its lock (everything written is already on disk)."""
        drop_lock(self.path, self._lock)
        self._lock = -1

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_output(path: Path) -> str:
    """The text of an output file to resume.

    Raises:
        OutputError: it cannot be read.
    """
    try:
        return path.read_bytes().decode(*ENCODING)
    except OSError as e:
        reason = e.strerror or str(e)
        raise OutputError(f"{path}: cannot read it to resume ({reason})") from None


def _sync(fd: int) -> None:
    """os.fsync, except on a file that cannot be synced (EINVAL: a pipe or a device)."""
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise


class _AppendBatchWriter(BatchWriter):
    """csv / jsonl: each video is one os.write of its whole block, then os.fsync."""

    def __init__(self, path: Path, completed: set[str], codec: _RowCodec, fd: int) -> None:
        super().__init__(path, completed)
        self._codec = codec
        self._fd = fd

    @classmethod
    def start(cls, path: Path, codec: _RowCodec, resume: bool) -> _AppendBatchWriter:
        done: set[str] = set()
        keep = 0
        existing = resume and path.exists()
        if existing:
            text = _read_output(path)
            done, keep = codec.scan(text, path.name)
        fd = -1
        try:
            if existing:
                os.truncate(path, len(text[:keep].encode(*ENCODING)))
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            if keep == 0:
                write_all(fd, codec.header.encode(*ENCODING))
            _sync(fd)
        except OSError as e:
            if fd >= 0:
                os.close(fd)
            raise output_error(path, e, _RESUME_HINT if keep else "") from None
        return cls(path, done, codec, fd)

    def _append(self, text: str) -> None:
        if self._fd < 0:
            raise ValueError(f"{self.path.name}: batch writer is closed")
        try:
            write_all(self._fd, text.encode(*ENCODING))
            _sync(self._fd)
        except OSError as e:
            raise output_error(self.path, e, _RESUME_HINT) from None

    def write_video(self, prediction: VideoPrediction) -> None:
        self._append(self._codec.video(prediction))
        self._completed.add(prediction.path)

    def write_failure(self, failure: Failure) -> None:
        self._append(self._codec.failure(failure))

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        try:
            if fd >= 0:
                os.close(fd)
        except OSError as e:
            raise output_error(self.path, e, _RESUME_HINT) from None
        finally:
            super().close()


class _JsonBatchWriter(BatchWriter):
    """json: the whole document is rewritten atomically after each video or failure."""

    def __init__(self, path: Path, completed: set[str], document: dict[str, Any]) -> None:
        super().__init__(path, completed)
        self._document = document

    @classmethod
    def start(cls, path: Path, resume: bool) -> _JsonBatchWriter:
        document: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "model": None,
                                    "videos": [], "failures": []}
        if resume and path.exists():
            try:
                loaded = json.loads(_read_output(path))
            except json.JSONDecodeError as e:
                raise UsageError(f"{path.name}: not valid JSON ({e}); cannot resume it") from None
            if not (isinstance(loaded, dict) and isinstance(loaded.get("videos"), list)
                    and isinstance(loaded.get("failures"), list)):
                raise UsageError(f"{path.name}: not a uvtag batch JSON document; cannot resume it")
            document = loaded
        writer = cls(path, {v["path"] for v in document["videos"]}, document)
        writer._save()
        return writer

    def _save(self) -> None:
        text = json.dumps(self._document, ensure_ascii=False, indent=1) + "\n"
        atomic_write(self.path, text.encode(*ENCODING), _RESUME_HINT)

    def write_video(self, prediction: VideoPrediction) -> None:
        record = {k: v for k, v in video_record(prediction).items() if k != "schema_version"}
        if self._document["model"] is None:
            self._document["model"] = prediction.model
        self._document["videos"].append(record)
        self._save()
        self._completed.add(prediction.path)

    def write_failure(self, failure: Failure) -> None:
        record = {k: v for k, v in failure_record(failure).items() if k != "schema_version"}
        self._document["failures"].append(record)
        self._save()
