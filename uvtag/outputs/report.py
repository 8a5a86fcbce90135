"""The batch report (`uvtag batch --report`): a batch output file read back into report rows,
thumbnails decoded from the videos, one self-contained HTML file written (see `report_page`).

The rows come from the batch output (csv, jsonl or json, as `uvtag.batch.merge` reads it: a file
cut short by a kill is read up to its last complete video; a video complete in the file wins over
its failures). Names are shown relative to the common folder of all the report's videos, so
`a/01.mp4` and `a/sub/01.mp4` stay apart; links are relative to the report's folder.
Thumbnails are `THUMB_HEIGHT` px JPEGs at evenly spread frames, fewer per video in large
reports (`thumbnail_count`), so that 5,000 videos still make a file a browser opens quickly.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from uvtag.errors import UsageError, UvtagError
from uvtag.outputs.files import ENCODING, atomic_write, check_output, output_error
from uvtag.outputs.report_page import ClipSpan, ReportVideo, RunDetails, Thumbnail, report_html
from uvtag.results import LabelScore
from uvtag.video.reader import open_video

__all__ = ["THUMB_HEIGHT", "check_report_path", "display_names", "read_report_videos", "relative_href",
           "thumbnail_count", "thumbnail_indices", "thumbnails", "write_report"]

THUMB_HEIGHT = 72  # px, as stored and as shown
MAX_THUMBS = 6  # per video, in reports of up to THUMB_BUDGET / MAX_THUMBS videos
MIN_THUMBS = 2  # per video however large the report
THUMB_BUDGET = 3000  # thumbnails in a whole report, beyond MIN_THUMBS a video


def thumbnail_count(num_videos: int) -> int:
    """Thumbnails per video for a report of `num_videos`: MAX_THUMBS, down to MIN_THUMBS for large ones."""
    return max(MIN_THUMBS, min(MAX_THUMBS, THUMB_BUDGET // max(num_videos, 1)))


def thumbnail_indices(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over a video (centres of equal parts), ascending, unique."""
    if num_frames <= 0 or count <= 0:
        return []
    return sorted({min(num_frames - 1, int((k + 0.5) * num_frames / count)) for k in range(count)})


def thumbnails(path: str | os.PathLike[str], count: int = MAX_THUMBS, height: int = THUMB_HEIGHT,
               backend: str | None = None, quality: int = 75) -> tuple[Thumbnail, ...]:
    """JPEG stills `height` pixels tall at evenly spread frames of a video, each with its time.

    Raises:
        VideoError: the video cannot be opened or decoded.
    """
    with open_video(path, backend) as reader:
        info = reader.info
        width = max(2, int(round(info.width * height / max(info.height, 1))))
        indices = thumbnail_indices(info.num_frames, count)
        frames = reader.get_frames(indices, size=(height, width))
        fps = info.fps if info.fps > 0 else (info.num_frames / info.duration_sec if info.duration_sec else 1.0)
    out = []
    for index, frame in zip(indices, frames):
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
        if ok:
            out.append(Thumbnail(index / fps, data.tobytes(), int(frame.shape[1]), int(frame.shape[0])))
    return tuple(out)


def relative_href(target: str | os.PathLike[str], report_dir: str | os.PathLike[str]) -> str:
    """A URL-quoted link to `target` relative to the folder of the report (a name that is not
    UTF-8 is quoted byte for byte, so the link still opens that file)."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(report_dir))
    return quote(os.fsencode(Path(rel).as_posix()), safe="/")


def display_names(paths: Sequence[str]) -> list[str]:
    """Each path relative to the deepest folder holding all of them (a lone video: its file name)."""
    if not paths:
        return []
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return [Path(os.path.relpath(p, root)).as_posix() for p in absolute]


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _from_csv(text: str) -> tuple[list[LabelScore], list[ClipSpan], float | None, str]:
    """(top, clips, duration, error) of one csv block."""
    top: list[tuple[int, LabelScore]] = []
    clips: list[ClipSpan] = []
    duration, error = None, ""
    for row in csv.reader(io.StringIO(text, newline="")):
        kind, start, end, rank, label, index, score, message = row[0], *row[2:]
        if kind == "failure":
            error = message
        elif kind == "clip" and rank == "1":
            clips.append(ClipSpan(float(start), float(end), label, float(score)))
        elif kind == "video":
            duration = _float(end)
            if label:
                top.append((int(rank), LabelScore(label, int(index), float(score))))
    return [ls for _, ls in sorted(top, key=lambda pair: pair[0])], clips, duration, error


def _from_record(record: dict) -> tuple[list[LabelScore], list[ClipSpan], float | None, str]:
    """(top, clips, duration, error) of one json/jsonl record."""
    if record.get("record") == "failure":
        return [], [], None, f"{record.get('kind', 'error')}: {record.get('error', '')}"
    ranked = sorted(record.get("top") or [], key=lambda r: int(r.get("rank", 0)))
    top = [LabelScore(str(r["label"]), int(r.get("class_index", -1)), float(r["score"])) for r in ranked]
    clips = [ClipSpan(float(c["start_sec"]), float(c["end_sec"]), str(c["top"][0]["label"]), float(c["top"][0]["score"]))
             for c in record.get("clips") or [] if c.get("top")]
    duration = (record.get("video") or {}).get("duration_sec")
    return top, clips, float(duration) if duration is not None else None, ""


def read_report_videos(results_path: str | os.PathLike[str], report_path: str | os.PathLike[str], *,
                       num_thumbnails: int | None = None, backend: str | None = None) -> list[ReportVideo]:
    """The report's videos, in the batch file's order, with thumbnails decoded from the videos.

    Args:
        results_path: a batch output (csv, jsonl or json).
        report_path: where the report goes (links are relative to its folder).
        num_thumbnails: per video; None: `thumbnail_count` of the number of videos; 0: none.
        backend: video decoder for the thumbnails.

    A video that can no longer be decoded keeps its labels, with no thumbnails.

    Raises:
        UsageError: the file is not a uvtag batch output.
    """
    from uvtag.batch.merge import MergeSummary, pick_blocks, read_batch_file

    blocks = pick_blocks([read_batch_file(results_path)[0]], None, MergeSummary())
    folder = Path(report_path).parent
    names = display_names([b.path for b in blocks])
    count = thumbnail_count(sum(b.kind == "video" for b in blocks)) if num_thumbnails is None else num_thumbnails
    parsed = [_from_csv(b.text) if b.fmt == "csv" else _from_record(b.record or {}) for b in blocks]

    def stills(index: int) -> tuple[Thumbnail, ...]:
        if parsed[index][3] or not count:
            return ()
        try:
            return thumbnails(blocks[index].path, count, backend=backend)
        except UvtagError:
            return ()

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # the decoders release the GIL
        stills_of = list(pool.map(stills, range(len(blocks))))
    return [ReportVideo(b.path, name, relative_href(b.path, folder), tuple(top), tuple(clips), duration, thumbs, error)
            for b, name, (top, clips, duration, error), thumbs in zip(blocks, names, parsed, stills_of)]


def write_report(results_path: str | os.PathLike[str], report_path: str | os.PathLike[str], *,
                 details: RunDetails | None = None, num_thumbnails: int | None = None,
                 backend: str | None = None, overwrite: bool = False) -> int:
    """Write the HTML report of a batch output to `report_path` (its folder is created); returns
    the number of videos and failures in it.

    `details` fills the header (the source file, uvtag's version and the date are filled in
    where it leaves them empty).

    Raises:
        UsageError: see `check_report_path`; the results are not a uvtag batch output.
        OutputError: the report cannot be written.
    """
    from uvtag import __version__

    out = check_report_path(report_path, overwrite)
    videos = read_report_videos(results_path, out, num_thumbnails=num_thumbnails, backend=backend)
    details = details or RunDetails()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    filled = dataclasses.replace(details, source=details.source or Path(results_path).name,
                                 source_href=details.source_href or relative_href(results_path, out.parent),
                                 version=details.version or __version__, date=details.date or now)
    text = report_html(videos, filled, f"uvtag report: {Path(results_path).name}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(out.parent, e) from None
    atomic_write(out, text.encode(*ENCODING))
    return len(videos)


def check_report_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Validate a report path: .html, not a directory, not there yet unless `overwrite`; a folder
    that does not exist is fine (`write_report` creates it) unless a file stands in its place.

    Raises:
        UsageError: any of these fails.
    """
    out = Path(path)
    suffixes, wrong = (".html", ".htm"), "the report is written as .html"
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{out}: {ancestor} is a file, not a folder")
    if ancestor != out.parent and out.suffix.lower() in suffixes:
        return out  # its folder is created when the report is written
    return check_output(out, overwrite, suffixes=suffixes, wrong_suffix=wrong)
