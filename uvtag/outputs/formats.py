"""Machine-readable outputs for classify and localize, and the records batch shares with them (the tables for people are the CLI's).

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

batch: see `uvtag.batch.output` (streaming, kill-safe, resumable).

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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from uvtag.errors import UsageError, one_line
from uvtag.outputs.files import ENCODING, atomic_write, check_output
from uvtag.results import (
    SCHEMA_VERSION,
    Failure,
    LabelScore,
    LocalizationResult,
    Segment,
    VideoPrediction,
)

CLASSIFY_FORMATS = ("json", "jsonl", "csv")
LOCALIZE_FORMATS = ("json", "csv", "activitynet", "srt", "vtt")
ALL_FORMATS = ("json", "jsonl", "csv", "activitynet", "srt", "vtt")  # every format of every command

CLASSIFY_CSV_COLUMNS = ("path", "rank", "label", "class_index", "score", "duration_sec", "num_views")
LOCALIZE_CSV_COLUMNS = ("path", "label", "class_index", "start_sec", "end_sec", "score")
ACTIVITYNET_VERSION = "VERSION 1.3"


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


def json_line(record: dict[str, Any]) -> str:
    """One JSON record and its newline (non-ASCII kept)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """CSV text of `rows`, "\n" line ends; any string reads back intact with a CSV reader.

    Fields are quoted as the csv module's QUOTE_MINIMAL does for "\r\n" line ends, so a field
    holding a "\r" or a "\n" (as well as a comma or a quote) is quoted; each row's "\r\n" is then
    written as "\n". A row that needs no quotes is written as plain comma-separated text.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        lines.append(buffer.getvalue()[:-2] + "\n")
    return "".join(lines)


def format_sec(value: float) -> str:
    """Seconds in CSV: to the millisecond."""
    return f"{value:.3f}"


def format_score(value: float) -> str:
    """A score in CSV: 6 decimals."""
    return f"{value:.6f}"


# ---------------------------------------------------------------- classify

class ClassifyWriter:
    """Writes a list of classified videos to an open text file."""

    format: str  # the --format name
    extension: str  # the file extension it is chosen by (json is chosen over activitynet for .json)

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        raise NotImplementedError


class ClassifyJson(ClassifyWriter):
    """One JSON document; `model` is the first video's (each video record repeats its own)."""

    format, extension = "json", ".json"

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        model = predictions[0].model if predictions else None
        videos = [{k: v for k, v in video_record(p).items() if k != "schema_version"}
                  for p in predictions]
        json.dump({"schema_version": SCHEMA_VERSION, "model": model, "videos": videos},
                  file, ensure_ascii=False, indent=2)
        file.write("\n")


class ClassifyJsonl(ClassifyWriter):
    """One video record per line, for appending and streaming tools (jq, pandas.read_json)."""

    format, extension = "jsonl", ".jsonl"

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        file.writelines(json_line(video_record(p)) for p in predictions)


class ClassifyCsv(ClassifyWriter):
    """Long layout, one row per (video, rank), so any top-k fits the same columns."""

    format, extension = "csv", ".csv"

    def write(self, predictions: Sequence[VideoPrediction], file: TextIO) -> None:
        rows: list[Sequence[Any]] = [CLASSIFY_CSV_COLUMNS]
        for p in predictions:
            rows += [(p.path, rank, ls.label, ls.index, format_score(ls.score), format_sec(p.info.duration_sec),
                      p.num_views) for rank, ls in enumerate(p.top, start=1)]
        file.write(csv_text(rows))


CLASSIFY_WRITERS: dict[str, type[ClassifyWriter]] = {w.format: w for w in (ClassifyJson, ClassifyJsonl, ClassifyCsv)}


# ---------------------------------------------------------------- localize

class LocalizeWriter:
    """Writes the localization result of one video to an open text file."""

    format: str
    extension: str

    def write(self, result: LocalizationResult, file: TextIO) -> None:
        raise NotImplementedError


class LocalizeJson(LocalizeWriter):
    """Everything: video info, the settings, segments and per-window top-k."""

    format, extension = "json", ".json"

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

    format, extension = "csv", ".csv"

    def write(self, result: LocalizationResult, file: TextIO) -> None:
        rows: list[Sequence[Any]] = [LOCALIZE_CSV_COLUMNS]
        rows += [(result.path, s.label, s.index, format_sec(s.start_sec), format_sec(s.end_sec),
                  format_score(s.score)) for s in result.segments]
        file.write(csv_text(rows))


class ActivityNetJson(LocalizeWriter):
    """ActivityNet v1.3 detection results, as read by the official evaluation code.

    `external_data.used` is true: UniFormerV2 starts from CLIP and Kinetics pretraining.
    """

    format, extension = "activitynet", ".json"

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
        return one_line(label)

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

    format, extension = "srt", ".srt"


class VttSubtitles(_Subtitles):
    """WebVTT: `WEBVTT` header, `HH:MM:SS.mmm` times; `&`, `<` and `-->` escaped in cue text."""

    format, extension = "vtt", ".vtt"

    header = "WEBVTT\n\n"
    separator = "."
    numbered = False

    def _text(self, label: str) -> str:
        text = one_line(label).replace("&", "&amp;").replace("<", "&lt;")
        return text.replace("-->", "--&gt;")


LOCALIZE_WRITERS: dict[str, type[LocalizeWriter]] = {
    w.format: w for w in (LocalizeJson, LocalizeCsv, ActivityNetJson, SrtSubtitles, VttSubtitles)
}
# file extension -> format, from the writers: .json means json (activitynet needs --format)
_EXTENSIONS: dict[str, str] = {}
for _writer in (*CLASSIFY_WRITERS.values(), *LOCALIZE_WRITERS.values()):
    _EXTENSIONS.setdefault(_writer.extension, _writer.format)
_EXTENSIONS.update({".sqlite": "sqlite", ".db": "sqlite"})  # batch's tag index (uvtag.index)


# ---------------------------------------------------------------- whole-file output

def get_writer(result: Sequence[VideoPrediction] | LocalizationResult, fmt: str) -> ClassifyWriter | LocalizeWriter:
    """The writer of format `fmt` for `result`: classify writers for a list of videos, localize
    writers for a LocalizationResult (UsageError for a format that kind of result has not)."""
    writers: Mapping[str, type] = LOCALIZE_WRITERS if isinstance(result, LocalizationResult) else CLASSIFY_WRITERS
    if fmt not in writers:
        raise UsageError(f"--format {fmt!r} is not available here; use one of {', '.join(writers)}")
    return writers[fmt]()


def write_result(result: Sequence[VideoPrediction] | LocalizationResult, out: str | os.PathLike[str] | TextIO,
                 fmt: str, *, overwrite: bool = False) -> None:
    """Write `result` in format `fmt`: to an open text file as is, or to a path atomically (an
    existing file needs `overwrite=True`)."""
    writer = get_writer(result, fmt)
    if hasattr(out, "write"):
        writer.write(result, out)
        return
    path = check_output(out, overwrite)
    buffer = io.StringIO()
    writer.write(result, buffer)
    atomic_write(path, buffer.getvalue().encode(*ENCODING))
