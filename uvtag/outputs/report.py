"""Self-contained HTML report of a batch: one row per video, opens from disk with no server.

Each row (`<tr class="video ok">`, or `video failed` for a video that could not be processed)
has a coloured marker cell (`OK_COLOUR` / `FAILED_COLOUR`), the file name with a link to the
video, its top labels with scores as bars, a strip of thumbnails and links to the outputs.
Thumbnails are JPEGs inlined as base64 `data:` URIs, so the file can be mailed or archived
alone; links are relative to the report's folder. Nothing is loaded from the network.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from uvtag.errors import UvtagError
from uvtag.outputs.files import check_output
from uvtag.results import LabelScore
from uvtag.video.reader import open_video

OK_COLOUR = "#1a9850"
FAILED_COLOUR = "#d73027"
_CSS = f"""
body {{ font-family: sans-serif; margin: 16px; color: #222; }}
table {{ border-collapse: separate; border-spacing: 0 8px; }}
td {{ vertical-align: middle; padding: 4px 10px; background: #f6f6f6; }}
td.mark {{ width: 14px; padding: 0; }}
tr.ok td.mark {{ background: {OK_COLOUR}; }}
tr.failed td.mark {{ background: {FAILED_COLOUR}; }}
td.name {{ min-width: 120px; max-width: 260px; overflow-wrap: anywhere; }}
td.labels {{ min-width: 220px; }}
td.strip {{ white-space: nowrap; }}
.label {{ white-space: nowrap; font-size: 13px; }}
.bar {{ display: inline-block; height: 8px; background: #4a7ab5; margin-right: 6px; }}
.strip img {{ height: 64px; margin-right: 2px; }}
.error {{ color: {FAILED_COLOUR}; }}
"""


@dataclass(frozen=True)
class ReportRow:
    """One video of the report."""

    path: str
    top: tuple[LabelScore, ...]
    thumbnails: tuple[bytes, ...] = ()  # JPEG files
    links: tuple[tuple[str, str], ...] = ()  # (text, href)
    error: str = ""  # non-empty for a video that failed


def thumbnail_indices(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over a video (centres of equal parts), ascending, unique."""
    if num_frames <= 0 or count <= 0:
        return []
    return sorted({min(num_frames - 1, int((k + 0.5) * num_frames / count)) for k in range(count)})


def thumbnails(path: str | os.PathLike[str], count: int = 6, height: int = 64, backend: str | None = None,
               quality: int = 80) -> tuple[bytes, ...]:
    """JPEG thumbnails `height` pixels tall at evenly spread times of a video (raises VideoError)."""
    with open_video(path, backend) as reader:
        info = reader.info
        width = max(2, int(round(info.width * height / max(info.height, 1))))
        frames = reader.get_frames(thumbnail_indices(info.num_frames, count), size=(height, width))
    out = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out.append(data.tobytes())
    return tuple(out)


def relative_href(target: str | os.PathLike[str], report_dir: str | os.PathLike[str]) -> str:
    """A URL-quoted link to `target` relative to the folder of the report."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(report_dir))
    return quote(Path(rel).as_posix(), safe="/")


def _row_html(row: ReportRow, number: int) -> str:
    name = html.escape(Path(row.path).name)
    links = " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in row.links)
    if row.error:
        labels = f'<span class="error">{html.escape(row.error)}</span>'
    else:
        labels = "<br>".join(
            f'<span class="label"><span class="bar" style="width:{max(1, round(80 * ls.score))}px"></span>'
            f"{html.escape(ls.label)} {ls.score:.3f}</span>" for ls in row.top)
    strip = "".join(f'<img alt="frame" src="data:image/jpeg;base64,{base64.b64encode(t).decode()}">'
                    for t in row.thumbnails)
    status = "failed" if row.error else "ok"
    middle = (f'<td class="labels" colspan="2">{labels}</td>' if row.error
              else f'<td class="labels">{labels}</td><td class="strip">{strip}</td>')
    return (f'<tr class="video {status}" data-path="{html.escape(row.path)}"><td class="mark"></td>'
            f'<td class="num">{number}</td><td class="name">{name}</td>{middle}<td class="links">{links}</td></tr>')


def report_html(rows: Sequence[ReportRow], title: str = "uvtag report", note: str = "") -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    failed = sum(1 for r in rows if r.error)
    body = "\n".join(_row_html(r, i) for i, r in enumerate(rows, start=1))
    summary = f"{len(rows) - failed} videos tagged, {failed} failed"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f'<p class="summary">{summary}{" · " + html.escape(note) if note else ""}</p>\n'
            f'<table id="videos">\n<tr><th></th><th>#</th><th>video</th><th>top labels</th><th>frames</th>'
            f"<th>links</th></tr>\n{body}\n</table>\n</body></html>\n")


def batch_report_rows(results_path: str | os.PathLike[str], report_path: str | os.PathLike[str], *,
                      num_thumbnails: int = 6, backend: str | None = None) -> list[ReportRow]:
    """Rows for every video of a batch output file (csv/jsonl/json), thumbnails decoded from the videos.

    A video that can no longer be decoded keeps its labels, with no thumbnails.
    """
    from uvtag.eval.readers import read_predictions

    videos, failures = read_predictions(results_path)
    folder = Path(report_path).parent
    output_link = (Path(results_path).name, relative_href(results_path, folder))
    rows = []
    for v in videos:
        try:
            thumbs = thumbnails(v.path, num_thumbnails, backend=backend) if num_thumbnails else ()
        except UvtagError:
            thumbs = ()
        rows.append(ReportRow(v.path, v.top, thumbs, (("video", relative_href(v.path, folder)), output_link)))
    rows += [ReportRow(f.path, (), (), (("video", relative_href(f.path, folder)), output_link),
                       error=f"{f.kind}: {f.error}") for f in failures]
    return rows


def write_report(results_path: str | os.PathLike[str], report_path: str | os.PathLike[str], *,
                 num_thumbnails: int = 6, backend: str | None = None, overwrite: bool = False) -> int:
    """Write the HTML report of a batch output to `report_path`; returns the number of rows."""
    out = Path(report_path)
    check_report_path(out, overwrite)
    rows = batch_report_rows(results_path, out, num_thumbnails=num_thumbnails, backend=backend)
    out.write_text(report_html(rows, f"uvtag report: {Path(results_path).name}"), encoding="utf-8")
    return len(rows)


def check_report_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Validate a report path (.html in an existing folder, not there yet unless `overwrite`)."""
    return check_output(path, overwrite, suffixes=(".html", ".htm"), wrong_suffix="the report is written as .html")
