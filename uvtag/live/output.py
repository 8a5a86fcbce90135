"""Outputs that grow while a stream is watched: every event is on disk (flushed) when written.

jsonl  one record per event, each with `schema_version` and `type`: "start", "window", "segment",
       "lag", "gap", "end" (fields: `event_record`). A segment line carries `label`,
       `class_index`, `start_sec`, `end_sec` and `score`, as `localize`'s segments do.
srt    one numbered cue per segment, appended when the segment closes (`label (score)`).
vtt    the same as WebVTT: the `WEBVTT` header first; `&`, `<` and `-->` escaped in cue text.

Segments are final when written, and the segmenter releases them in start order, so cues never
go back in time. Unlike `localize`'s subtitles (which cut overlapping segments into elementary
intervals, knowing all of them), each segment is its own cue; players show overlapping cues
together. A file cut off by a kill holds every event written before it, each line whole.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TextIO

from uvtag.errors import one_line
from uvtag.live.events import Ended, Event, Gap, Lagged, SegmentClosed, Started, WindowScored
from uvtag.results import SCHEMA_VERSION

WATCH_FORMATS = ("jsonl", "srt", "vtt")
_TYPES = {Started: "start", WindowScored: "window", SegmentClosed: "segment", Lagged: "lag", Gap: "gap", Ended: "end"}


def event_record(event: Event) -> dict[str, Any]:
    """The JSON record of one event: {schema_version, type, ...the event's fields}; a window's
    `top` is [{rank, label, class_index, score}], a segment's fields are inlined."""
    record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "type": _TYPES[type(event)]}
    if isinstance(event, SegmentClosed):
        s = event.segment
        record.update(label=s.label, class_index=s.index, start_sec=s.start_sec, end_sec=s.end_sec,
                      score=s.score, wall_time=event.wall_time)
    elif isinstance(event, WindowScored):
        record.update(index=event.index, start_sec=event.start_sec, end_sec=event.end_sec,
                      wall_time=event.wall_time, latency_sec=event.latency_sec,
                      top=[{"rank": r, "label": ls.label, "class_index": ls.index, "score": ls.score}
                           for r, ls in enumerate(event.top, start=1)])
    else:
        record.update(dataclasses.asdict(event))
    return record


def _cue_time(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


class Appender:
    """Writes events to an open text file as they come, flushing each one."""

    format: str

    def __init__(self, file: TextIO) -> None:
        self.file = file

    def write(self, event: Event) -> None:
        text = self.text(event)
        if text:
            self.file.write(text)
            self.file.flush()

    def text(self, event: Event) -> str:
        raise NotImplementedError


class JsonlAppender(Appender):
    """Every event, one JSON line each."""

    format = "jsonl"

    def text(self, event: Event) -> str:
        return json.dumps(event_record(event), ensure_ascii=False) + "\n"


class SrtAppender(Appender):
    """SubRip: a numbered cue per closed segment."""

    format = "srt"
    separator = ","

    def __init__(self, file: TextIO) -> None:
        super().__init__(file)
        self.number = 0

    def cue_text(self, label: str) -> str:
        return one_line(label)

    def text(self, event: Event) -> str:
        if not isinstance(event, SegmentClosed):
            return ""
        s = event.segment
        first, last = _cue_time(s.start_sec, self.separator), _cue_time(s.end_sec, self.separator)
        if first == last:  # shorter than the millisecond resolution
            return ""
        self.number += 1
        return f"{self.index()}{first} --> {last}\n{self.cue_text(s.label)} ({s.score:.2f})\n\n"

    def index(self) -> str:
        return f"{self.number}\n"


class VttAppender(SrtAppender):
    """WebVTT: the header (written at once, so even an empty file is valid), then unnumbered cues."""

    format = "vtt"
    separator = "."

    def __init__(self, file: TextIO) -> None:
        super().__init__(file)
        file.write("WEBVTT\n\n")
        file.flush()

    def cue_text(self, label: str) -> str:
        text = one_line(label).replace("&", "&amp;").replace("<", "&lt;")
        return text.replace("-->", "--&gt;")

    def index(self) -> str:
        return ""


APPENDERS: dict[str, type[Appender]] = {a.format: a for a in (JsonlAppender, SrtAppender, VttAppender)}


def appender(file: TextIO, fmt: str) -> Appender:
    """The appender of format `fmt` ("jsonl", "srt" or "vtt") writing to `file`."""
    return APPENDERS[fmt](file)
