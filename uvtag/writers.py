"""Machine-readable outputs for classify, batch and localize (the tables for people are the CLI's).

Conventions for every format: times are seconds with the unit in the name (`start_sec`), scores
are probabilities in [0, 1], labels carry their 1-based `rank` and 0-based `class_index`, JSON
records carry `schema_version` (`uvtag.results.SCHEMA_VERSION`). Files are UTF-8; a path that is
not valid UTF-8 on disk is written back byte for byte (surrogateescape). JSON floats are written
at full precision; CSV writes times to the millisecond (`%.3f`) and scores to 6 decimals.

classify (`CLASSIFY_WRITERS`)
    json   one object: {schema_version, model, videos: [video record]}.
    jsonl  one video record per line, each with schema_version.
    csv    one row per (video, rank): path, rank, label, class_index, score, duration_sec, num_views.
    A video record is {schema_version?, record: "video", path, model, video: VideoInfo fields,
    num_views, top: [{rank, label, class_index, score}], clips: [{start_sec, end_sec, top}]}.

batch (`BatchWriter`, formats csv / jsonl / json), kill-safe and resumable
    csv    columns `BATCH_CSV_COLUMNS`: row_type (clip | video | failure), path, start_sec,
           end_sec, rank, label, class_index, score, error. One `clip` row per (clip, rank), then
           the video summary as one `video` row per rank spanning [0, duration_sec], written from
           the last rank down to rank 1: the rank-1 `video` row is always the last row of a video,
           so its presence proves the video complete even if a kill cut a write at a line
           boundary. A failure is one `failure` row (path, error = "Kind: message").
    jsonl  one line per video (video record) or failure ({record: "failure", path, kind, error}).
    json   one document {schema_version, model, videos: [...], failures: [...]}, rewritten
           atomically (temp file + os.replace) after every video, so it is always valid; the cost
           grows with the batch (prefer csv / jsonl for thousands of videos).
    Failures go in the same file as the videos (no sidecar). A video is complete when its
    summary is present; resume retries failed videos, so a `failure` row may be followed by
    that video's rows from a later run: the video rows are authoritative.

localize (`LOCALIZE_WRITERS`)
    json         {schema_version, path, model, video, params, segments, windows} with per-window top-k.
    csv          one row per segment: path, label, class_index, start_sec, end_sec, score.
    activitynet  the ActivityNet v1.3 detection result format {version: "VERSION 1.3",
                 results: {video_id: [{label, score, segment: [start, end]}]}, external_data};
                 video_id is the file stem.
    srt / vtt    one cue per elementary interval between segment boundaries, listing every label
                 active there (best score first), so overlapping segments all show in a player.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from uvtag.errors import UsageError
from uvtag.results import (
    SCHEMA_VERSION,
    Failure,
    LabelScore,
    LocalizationResult,
    Segment,
    VideoPrediction,
)

CLASSIFY_FORMATS = ("json", "jsonl", "csv")
BATCH_FORMATS = ("csv", "jsonl", "json")
LOCALIZE_FORMATS = ("json", "csv", "activitynet", "srt", "vtt")
ALL_FORMATS = ("json", "jsonl", "csv", "activitynet", "srt", "vtt")
_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".srt": "srt", ".vtt": "vtt"}

CLASSIFY_CSV_COLUMNS = ("path", "rank", "label", "class_index", "score", "duration_sec", "num_views")
BATCH_CSV_COLUMNS = (
    "row_type", "path", "start_sec", "end_sec", "rank", "label", "class_index", "score", "error"
)
LOCALIZE_CSV_COLUMNS = ("path", "label", "class_index", "start_sec", "end_sec", "score")
ACTIVITYNET_VERSION = "VERSION 1.3"
_ENCODING = ("utf-8", "surrogateescape")


def format_from_path(path: str | os.PathLike[str], explicit: str | None = None,
                     allowed: Sequence[str] = ALL_FORMATS) -> str:
    """The output format: `explicit` if given, else from the extension of `path`.

    Args:
        path: output file.
        explicit: a `--format` value, or None.
        allowed: the formats the command supports.

    Raises:
        UsageError: unknown or unsupported format, or an extension that names none.
    """
    name, choices = Path(path).name, ", ".join(allowed)
    if explicit is not None:
        fmt = explicit.lower()
        if fmt not in allowed:
            raise UsageError(f"unknown or unsupported output format {explicit!r}; use one of {choices}")
        return fmt
    fmt = _EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is not None and fmt not in allowed:
        raise UsageError(f"{name}: {fmt} output is not available here; use one of {choices}")
    if fmt is None:
        raise UsageError(
            f"{name}: cannot tell the output format from the extension; "
            f"give a {', '.join('.' + f for f in allowed if f in _EXTENSIONS.values())} file "
            f"or use --format ({choices})"
        )
    return fmt


# ---------------------------------------------------------------- records shared by the formats

def _label_records(top: Iterable[LabelScore]) -> list[dict[str, Any]]:
    return [
        {"rank": rank, "label": ls.label, "class_index": ls.index, "score": ls.score}
        for rank, ls in enumerate(top, start=1)
    ]


def video_record(prediction: VideoPrediction) -> dict[str, Any]:
    """The JSON record of one classified video (see module docstring)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "record": "video",
        "path": prediction.path,
        "model": prediction.model,
        "video": dataclasses.asdict(prediction.info),
        "num_views": prediction.num_views,
        "top": _label_records(prediction.top),
        "clips": [
            {"start_sec": c.start_sec, "end_sec": c.end_sec, "top": _label_records(c.top)}
            for c in prediction.clips
        ],
    }


def failure_record(failure: Failure) -> dict[str, Any]:
    """The JSON record of one video that could not be processed."""
    return {"schema_version": SCHEMA_VERSION, "record": "failure", "path": failure.path,
            "kind": failure.kind, "error": failure.error}


def _segment_record(seg: Segment) -> dict[str, Any]:
    return {"label": seg.label, "class_index": seg.index, "start_sec": seg.start_sec,
            "end_sec": seg.end_sec, "score": seg.score}


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _sec(value: float) -> str:
    return f"{value:.3f}"


def _score(value: float) -> str:
    return f"{value:.6f}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- classify

class ClassifyWriter:
    """Writes a list of classified videos to an open text file."""

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        raise NotImplementedError


class ClassifyJson(ClassifyWriter):
    """One JSON document; `model` is the first video's (each video record repeats its own)."""

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        model = predictions[0].model if predictions else None
        videos = [{k: v for k, v in video_record(p).items() if k != "schema_version"}
                  for p in predictions]
        json.dump({"schema_version": SCHEMA_VERSION, "model": model, "videos": videos},
                  file, ensure_ascii=False, indent=2)
        file.write("\n")


class ClassifyJsonl(ClassifyWriter):
    """One video record per line, for appending and streaming tools (jq, pandas.read_json)."""

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        file.writelines(_json_line(video_record(p)) for p in predictions)


class ClassifyCsv(ClassifyWriter):
    """Long layout, one row per (video, rank), so any top-k fits the same columns."""

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        rows: list[Sequence[Any]] = [CLASSIFY_CSV_COLUMNS]
        for p in predictions:
            rows += [(p.path, rank, ls.label, ls.index, _score(ls.score), _sec(p.info.duration_sec),
                      p.num_views) for rank, ls in enumerate(p.top, start=1)]
        file.write(_csv_text(rows))


CLASSIFY_WRITERS: dict[str, type[ClassifyWriter]] = {
    "json": ClassifyJson, "jsonl": ClassifyJsonl, "csv": ClassifyCsv,
}


# ---------------------------------------------------------------- localize

class LocalizeWriter:
    """Writes the localization result of one video to an open text file."""

    def write(self, result: LocalizationResult, file: TextIO) -> None:
        raise NotImplementedError


class LocalizeJson(LocalizeWriter):
    """Everything: video info, the settings, segments and per-window top-k."""

    def write(self, result: LocalizationResult, file: TextIO) -> None:
        record = {
            "schema_version": SCHEMA_VERSION,
            "path": result.path,
            "model": result.model,
            "video": dataclasses.asdict(result.info),
            "params": {"window_sec": result.window_sec, "stride_sec": result.stride_sec,
                       **result.params},
            "segments": [_segment_record(s) for s in result.segments],
            "windows": [{"start_sec": w.start_sec, "end_sec": w.end_sec,
                         "top": _label_records(w.top)} for w in result.windows],
        }
        json.dump(record, file, ensure_ascii=False, indent=2)
        file.write("\n")


class LocalizeCsv(LocalizeWriter):
    """Segments only, one row each; `path` first so files from many videos concatenate."""

    def write(self, result: LocalizationResult, file: TextIO) -> None:
        rows: list[Sequence[Any]] = [LOCALIZE_CSV_COLUMNS]
        rows += [(result.path, s.label, s.index, _sec(s.start_sec), _sec(s.end_sec),
                  _score(s.score)) for s in result.segments]
        file.write(_csv_text(rows))


class ActivityNetJson(LocalizeWriter):
    """ActivityNet v1.3 detection results, as read by the official evaluation code.

    `external_data.used` is true: UniFormerV2 starts from CLIP and Kinetics pretraining.
    """

    def write(self, result: LocalizationResult, file: TextIO) -> None:
        video_id = Path(result.path).stem
        document = {
            "version": ACTIVITYNET_VERSION,
            "results": {video_id: [{"label": s.label, "score": s.score,
                                    "segment": [s.start_sec, s.end_sec]} for s in result.segments]},
            "external_data": {
                "used": True,
                "details": f"uvtag: UniFormerV2 {result.model} (CLIP-initialised, Kinetics "
                           "pretrained) scored on sliding windows",
            },
        }
        json.dump(document, file, ensure_ascii=False, indent=2)
        file.write("\n")


def subtitle_cues(segments: Sequence[Segment]) -> list[tuple[float, float, list[Segment]]]:
    """Split overlapping segments into elementary intervals, each with its active segments.

    Returns:
        `(start_sec, end_sec, active)` for each interval between consecutive segment boundaries
        where at least one segment is active; `active` is sorted by descending score.
    """
    cuts = sorted({t for s in segments for t in (s.start_sec, s.end_sec)})
    cues = []
    for start, end in zip(cuts, cuts[1:]):
        active = [s for s in segments if s.start_sec <= start and s.end_sec >= end]
        if active:
            cues.append((start, end, sorted(active, key=lambda s: (-s.score, s.index))))
    return cues


def _timestamp(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


class _Subtitles(LocalizeWriter):
    """One cue per elementary interval (see `subtitle_cues`); text lines are `label (score)`."""

    header = ""
    separator = ","
    numbered = True

    def _text(self, label: str) -> str:
        return _one_line(label)

    def write(self, result: LocalizationResult, file: TextIO) -> None:
        file.write(self.header)
        number = 0
        for start, end, active in subtitle_cues(result.segments):
            first, last = _timestamp(start, self.separator), _timestamp(end, self.separator)
            if first == last:  # shorter than the millisecond resolution
                continue
            number += 1
            lines = [f"{self._text(s.label)} ({s.score:.2f})" for s in active]
            index = f"{number}\n" if self.numbered else ""
            file.write(f"{index}{first} --> {last}\n" + "\n".join(lines) + "\n\n")


class SrtSubtitles(_Subtitles):
    """SubRip: numbered cues, `HH:MM:SS,mmm` times."""


class VttSubtitles(_Subtitles):
    """WebVTT: `WEBVTT` header, `HH:MM:SS.mmm` times; `&`, `<` and `-->` escaped in cue text."""

    header = "WEBVTT\n\n"
    separator = "."
    numbered = False

    def _text(self, label: str) -> str:
        text = _one_line(label).replace("&", "&amp;").replace("<", "&lt;")
        return text.replace("-->", "--&gt;")


LOCALIZE_WRITERS: dict[str, type[LocalizeWriter]] = {
    "json": LocalizeJson, "csv": LocalizeCsv, "activitynet": ActivityNetJson,
    "srt": SrtSubtitles, "vtt": VttSubtitles,
}


# ---------------------------------------------------------------- whole-file output

def _refuse_existing(path: Path, overwrite: bool, hint: str) -> None:
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a file name for the output")
    if path.exists() and not overwrite:
        raise UsageError(f"{path.name} exists; {hint}")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file next to `path`, fsync it, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles: the rename is still done
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_classification(predictions: Sequence[VideoPrediction], path: str | os.PathLike[str],
                         fmt: str, *, overwrite: bool = False) -> None:
    """Write classify results to `path` atomically; an existing file needs `overwrite=True`."""
    out = Path(path)
    _refuse_existing(out, overwrite, "use --overwrite to replace it")
    buffer = io.StringIO()
    CLASSIFY_WRITERS[fmt]().write(predictions, buffer)
    _atomic_write(out, buffer.getvalue().encode(*_ENCODING))


def write_localization(result: LocalizationResult, path: str | os.PathLike[str], fmt: str, *,
                       overwrite: bool = False) -> None:
    """Write a localize result to `path` atomically; an existing file needs `overwrite=True`."""
    out = Path(path)
    _refuse_existing(out, overwrite, "use --overwrite to replace it")
    buffer = io.StringIO()
    LOCALIZE_WRITERS[fmt]().write(result, buffer)
    _atomic_write(out, buffer.getvalue().encode(*_ENCODING))


# ---------------------------------------------------------------- batch (streaming, resumable)

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
    header = _csv_text([BATCH_CSV_COLUMNS])

    def video(self, prediction: VideoPrediction) -> str:
        p = prediction
        rows: list[Sequence[Any]] = [
            ("clip", p.path, _sec(c.start_sec), _sec(c.end_sec), rank, ls.label, ls.index,
             _score(ls.score), "")
            for c in p.clips for rank, ls in enumerate(c.top, start=1)
        ]
        summary = [("video", p.path, _sec(0.0), _sec(p.info.duration_sec), rank, ls.label,
                    ls.index, _score(ls.score), "") for rank, ls in enumerate(p.top, start=1)]
        if not summary:  # still one terminal row, with no label
            summary = [("video", p.path, _sec(0.0), _sec(p.info.duration_sec), "", "", "", "", "")]
        return _csv_text(rows + summary[::-1])  # rank 1 last: it marks the video complete

    def failure(self, failure: Failure) -> str:
        error = _one_line(f"{failure.kind}: {failure.error}")
        return _csv_text([("failure", failure.path, "", "", "", "", "", "", error)])

    def scan(self, text: str, name: str) -> tuple[set[str], int]:
        if not text.startswith(self.header):
            if self.header.startswith(text):  # killed while writing the header
                return set(), 0
            raise UsageError(f"{name}: not a uvtag batch CSV (its header differs); cannot resume it")
        done: set[str] = set()
        pos = keep = len(self.header)
        reader = csv.reader(io.StringIO(text[pos:], newline=""))
        while True:
            try:
                row = next(reader)
            except (StopIteration, csv.Error):  # end, or a torn quoted field at the end
                break
            raw = _csv_text([row])
            if text[pos : pos + len(raw)] != raw:
                if pos + len(raw) >= len(text):  # the last row, cut short by a kill
                    break
                raise UsageError(f"{name}: a row near character {pos} is not uvtag's; cannot resume it")
            pos += len(raw)
            if len(row) != len(BATCH_CSV_COLUMNS):
                raise UsageError(f"{name}: a row has {len(row)} columns, expected "
                                 f"{len(BATCH_CSV_COLUMNS)}; cannot resume it")
            kind, path, rank = row[0], row[1], row[4]
            if kind == "failure" or (kind == "video" and rank in ("1", "")):
                keep = pos  # a block ends here
                if kind == "video":
                    done.add(path)
        return done, keep


class _JsonlRows(_RowCodec):
    def video(self, prediction: VideoPrediction) -> str:
        return _json_line(video_record(prediction))

    def failure(self, failure: Failure) -> str:
        return _json_line(failure_record(failure))

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

    @classmethod
    def open(cls, path: str | os.PathLike[str], fmt: str, resume: bool = False,
             overwrite: bool = False) -> BatchWriter:
        """Open `path` for a batch in format `fmt` (csv, jsonl or json).

        Args:
            path: output file.
            fmt: one of `BATCH_FORMATS`.
            resume: continue an existing file: keep its complete videos (see `completed`) and
                cut off what a kill left half written. A missing file starts fresh.
            overwrite: replace an existing file.

        Raises:
            UsageError: the file exists and neither flag is set, both flags are set, or the file
                to resume is not a uvtag batch file of this format.
        """
        out = Path(path)
        if fmt not in BATCH_FORMATS:
            raise UsageError(f"batch cannot write {fmt!r}; use one of {', '.join(BATCH_FORMATS)}")
        if resume and overwrite:
            raise UsageError("--resume and --overwrite cannot be used together")
        _refuse_existing(out, resume or overwrite,
                         "use --resume to continue it or --overwrite to replace it")
        if fmt == "json":
            return _JsonBatchWriter.start(out, resume)
        return _AppendBatchWriter.start(out, _ROW_CODECS[fmt](), resume)

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
        """Release the file (everything written is already on disk)."""

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AppendBatchWriter(BatchWriter):
    """csv / jsonl: each video is one os.write of its whole block, then os.fsync."""

    def __init__(self, path: Path, completed: set[str], codec: _RowCodec, fd: int) -> None:
        super().__init__(path, completed)
        self._codec = codec
        self._fd = fd

    @classmethod
    def start(cls, path: Path, codec: _RowCodec, resume: bool) -> _AppendBatchWriter:
        done: set[str] = set()
        if resume and path.exists():
            text = path.read_bytes().decode(*_ENCODING)
            done, keep = codec.scan(text, path.name)
            os.truncate(path, len(text[:keep].encode(*_ENCODING)))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            if keep == 0:
                _write_all(fd, codec.header.encode(*_ENCODING))
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            _write_all(fd, codec.header.encode(*_ENCODING))
        os.fsync(fd)
        return cls(path, done, codec, fd)

    def _append(self, text: str) -> None:
        if self._fd < 0:
            raise ValueError(f"{self.path.name}: batch writer is closed")
        _write_all(self._fd, text.encode(*_ENCODING))
        os.fsync(self._fd)

    def write_video(self, prediction: VideoPrediction) -> None:
        self._append(self._codec.video(prediction))
        self._completed.add(prediction.path)

    def write_failure(self, failure: Failure) -> None:
        self._append(self._codec.failure(failure))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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
                loaded = json.loads(path.read_bytes().decode(*_ENCODING))
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
        _atomic_write(self.path, text.encode(*_ENCODING))

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
