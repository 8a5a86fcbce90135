"""Timeline of a localize result: window scores as curves, segments as coloured bars (PNG or SVG).

Layout, top to bottom (all sizes in pixels, computed by `timeline_layout`): a title line, a legend
line (one swatch per curve class), the curve panel (score 0..1 on y, one polyline per class through
the window centres), one bar row per class that has segments (its name on the left, a filled bar
over [start_sec, end_sec) of each segment, nothing else drawn on the row), and the time axis in
seconds. x is linear in time over [0, duration_sec]; `time_to_x` is the mapping both formats use.

Each class keeps one colour (`PALETTE`, in the order of `timeline_classes`) for its curve and its
bars. Window records carry only their top-k labels, so a class missing from a window's top-k is
drawn at score 0 there. PNGs are drawn with OpenCV, whose Hershey font is ASCII only: other
characters in labels are drawn as `?` (the SVG keeps them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from uvtag.errors import UsageError
from uvtag.outputs.files import check_output, displayable
from uvtag.results import ClipPrediction, LabelScore, LocalizationResult, Segment, VideoInfo

PLOT_FORMATS = ("png", "svg")
PALETTE: tuple[tuple[int, int, int], ...] = (  # RGB, distinct and readable on white
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (23, 190, 207), (188, 189, 34), (127, 127, 127),
)
BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
GRID = (225, 225, 225)
_MARGIN_LEFT, _MARGIN_RIGHT = 170, 24  # room for class names on the left
_TITLE_H, _LEGEND_H, _CURVE_H, _GAP_H = 28, 24, 200, 14
_ROW_H, _ROW_GAP, _AXIS_H = 20, 6, 40
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class TimelineLayout:
    """Pixel geometry of a timeline image (x grows right, y grows down; ranges are half-open)."""

    width: int
    height: int
    plot_x0: int
    plot_x1: int
    curve_y0: int
    curve_y1: int
    bar_rows: tuple[tuple[str, int, int], ...]  # (class, y0, y1) per bar row
    axis_y: int


def timeline_layout(width: int, bar_labels: Sequence[str]) -> TimelineLayout:
    """The geometry for an image `width` pixels wide with one bar row per label in `bar_labels`."""
    if width < _MARGIN_LEFT + _MARGIN_RIGHT + 100:
        raise UsageError(f"plot width {width} is too small (at least {_MARGIN_LEFT + _MARGIN_RIGHT + 100} px)")
    curve_y0 = _TITLE_H + _LEGEND_H
    curve_y1 = curve_y0 + _CURVE_H
    rows, y = [], curve_y1 + _GAP_H
    for label in bar_labels:
        rows.append((label, y, y + _ROW_H))
        y += _ROW_H + _ROW_GAP
    return TimelineLayout(width, y + _AXIS_H, _MARGIN_LEFT, width - _MARGIN_RIGHT, curve_y0, curve_y1, tuple(rows), y)


def time_to_x(t_sec: float, duration_sec: float, layout: TimelineLayout) -> float:
    """x pixel position of time `t_sec` on the timeline (float; callers round)."""
    return layout.plot_x0 + (layout.plot_x1 - layout.plot_x0) * min(max(t_sec / duration_sec, 0.0), 1.0)


def bar_columns(segment: Segment, duration_sec: float, layout: TimelineLayout) -> tuple[int, int]:
    """Half-open pixel columns [x0, x1) a segment's bar covers (at least one column)."""
    x0 = int(round(time_to_x(segment.start_sec, duration_sec, layout)))
    x1 = int(round(time_to_x(segment.end_sec, duration_sec, layout)))
    return x0, max(x1, x0 + 1)


def nice_ticks(duration_sec: float, max_ticks: int = 10) -> list[float]:
    """Round tick times in seconds (steps of 1, 2 or 5 x 10^n) from 0 to at most `duration_sec`."""
    if duration_sec <= 0:
        return [0.0]
    raw = duration_sec / max(max_ticks, 1)
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    return [round(i * step, 6) for i in range(int(duration_sec / step + 1e-9) + 1)]


def timeline_classes(result: LocalizationResult, top_classes: int = 5) -> tuple[list[str], list[str]]:
    """(curve classes: the `top_classes` with the highest window score, best first;
    bar classes: those with segments, in colour order). Colour order is curves, then the rest."""
    peak: dict[str, float] = {}
    for w in result.windows:
        for ls in w.top:
            peak[ls.label] = max(peak.get(ls.label, 0.0), ls.score)
    curves = sorted(peak, key=lambda k: (-peak[k], k))[:top_classes]
    with_segments = list(dict.fromkeys(s.label for s in sorted(result.segments, key=lambda s: -s.score)))
    order = curves + [c for c in with_segments if c not in curves]
    return curves, [c for c in order if c in with_segments]


def class_colours(result: LocalizationResult, top_classes: int = 5) -> dict[str, tuple[int, int, int]]:
    """RGB colour of each class on the timeline."""
    curves, bars = timeline_classes(result, top_classes)
    order = curves + [c for c in bars if c not in curves]
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(order)}


def curve_points(windows: Sequence[ClipPrediction], label: str) -> list[tuple[float, float]]:
    """(window centre in seconds, score) of `label` in each window; 0 where it is not in the top-k."""
    return [((w.start_sec + w.end_sec) / 2, next((ls.score for ls in w.top if ls.label == label), 0.0))
            for w in windows]


def _duration(result: LocalizationResult) -> float:
    ends = [result.info.duration_sec] + [w.end_sec for w in result.windows] + [s.end_sec for s in result.segments]
    return max(max(ends), 1e-6)


def _score_to_y(score: float, layout: TimelineLayout) -> float:
    return layout.curve_y1 - (layout.curve_y1 - layout.curve_y0) * min(max(score, 0.0), 1.0)


def _title(result: LocalizationResult) -> str:
    name, model = displayable(Path(result.path).name), displayable(result.model)
    return f"{name}  |  {model}  |  {len(result.segments)} segments, window {result.window_sec:g} s"


# ---------------------------------------------------------------- PNG (OpenCV)


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _text(img: np.ndarray, text: str, x: float, y: float, colour=INK, scale: float = 0.45, right: bool = False) -> None:
    text = _ascii(text)
    if right:
        (w, _h), _ = cv2.getTextSize(text, _FONT, scale, 1)
        x -= w
    cv2.putText(img, text, (int(x), int(y)), _FONT, scale, colour, 1, cv2.LINE_AA)


def draw_timeline(result: LocalizationResult, width: int = 1200, top_classes: int = 5) -> np.ndarray:
    """The timeline as an RGB image, uint8 [layout.height, width, 3]."""
    curves, bars = timeline_classes(result, top_classes)
    colours = class_colours(result, top_classes)
    layout = timeline_layout(width, bars)
    duration = _duration(result)
    img = np.full((layout.height, width, 3), BACKGROUND, np.uint8)
    _text(img, _title(result), 8, 19, scale=0.5)
    x = layout.plot_x0
    for label in curves:
        cv2.rectangle(img, (x, _TITLE_H + 6), (x + 14, _TITLE_H + 16), colours[label], -1)
        _text(img, label, x + 18, _TITLE_H + 16)
        x += 30 + cv2.getTextSize(_ascii(label), _FONT, 0.45, 1)[0][0]
    for score in (0.0, 0.25, 0.5, 0.75, 1.0):  # horizontal grid inside the curve panel only
        y = int(round(_score_to_y(score, layout)))
        cv2.line(img, (layout.plot_x0, y), (layout.plot_x1, y), GRID, 1)
        _text(img, f"{score:.2f}", layout.plot_x0 - 6, y + 4, right=True)
    _text(img, "score", 8, layout.curve_y0 + 14)
    for t in nice_ticks(duration):
        xt = int(round(time_to_x(t, duration, layout)))
        cv2.line(img, (xt, layout.curve_y0), (xt, layout.curve_y1), GRID, 1)
        cv2.line(img, (xt, layout.axis_y), (xt, layout.axis_y + 5), INK, 1)
        _text(img, f"{t:g}", xt - 8, layout.axis_y + 20)
    cv2.line(img, (layout.plot_x0, layout.axis_y), (layout.plot_x1, layout.axis_y), INK, 1)
    _text(img, "time (s)", layout.plot_x1, layout.axis_y + 36, right=True)
    cv2.rectangle(img, (layout.plot_x0, layout.curve_y0), (layout.plot_x1, layout.curve_y1), INK, 1)
    for label in reversed(curves):  # best class drawn last, on top
        pts = [(time_to_x(t, duration, layout), _score_to_y(s, layout)) for t, s in curve_points(result.windows, label)]
        if pts:
            arr = np.round(np.array(pts)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(img, [arr], False, colours[label], 2, cv2.LINE_AA)
    for label, y0, y1 in layout.bar_rows:
        _text(img, label, layout.plot_x0 - 8, (y0 + y1) / 2 + 5, right=True)
        for seg in result.segments:
            if seg.label == label:
                x0, x1 = bar_columns(seg, duration, layout)
                img[y0:y1, x0:x1] = colours[label]
    return img


# ---------------------------------------------------------------- SVG (text)


def _rgb(colour: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % colour


def timeline_svg(result: LocalizationResult, width: int = 1200, top_classes: int = 5) -> str:
    """The same timeline as `draw_timeline`, as a standalone SVG document (same pixel geometry)."""
    curves, bars = timeline_classes(result, top_classes)
    colours = class_colours(result, top_classes)
    layout = timeline_layout(width, bars)
    duration = _duration(result)
    font = 'font-family="sans-serif" font-size="12"'
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{layout.height}" '
           f'viewBox="0 0 {width} {layout.height}">',
           f'<rect x="0" y="0" width="{width}" height="{layout.height}" fill="{_rgb(BACKGROUND)}"/>',
           f'<text x="8" y="19" font-family="sans-serif" font-size="14">{escape(_title(result))}</text>']
    x = layout.plot_x0
    for label in curves:
        out.append(f'<rect x="{x}" y="{_TITLE_H + 6}" width="14" height="10" fill="{_rgb(colours[label])}"/>')
        out.append(f'<text x="{x + 18}" y="{_TITLE_H + 16}" {font}>{escape(label)}</text>')
        x += 30 + 7 * len(label)
    for score in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _score_to_y(score, layout)
        out.append(f'<line x1="{layout.plot_x0}" y1="{y:.1f}" x2="{layout.plot_x1}" y2="{y:.1f}" stroke="{_rgb(GRID)}"/>')
        out.append(f'<text x="{layout.plot_x0 - 6}" y="{y + 4:.1f}" text-anchor="end" {font}>{score:.2f}</text>')
    for t in nice_ticks(duration):
        xt = time_to_x(t, duration, layout)
        out.append(f'<line x1="{xt:.1f}" y1="{layout.curve_y0}" x2="{xt:.1f}" y2="{layout.curve_y1}" stroke="{_rgb(GRID)}"/>')
        out.append(f'<text x="{xt:.1f}" y="{layout.axis_y + 20}" text-anchor="middle" {font}>{t:g}</text>')
    out.append(f'<line x1="{layout.plot_x0}" y1="{layout.axis_y}" x2="{layout.plot_x1}" y2="{layout.axis_y}" stroke="{_rgb(INK)}"/>')
    out.append(f'<text x="{layout.plot_x1}" y="{layout.axis_y + 36}" text-anchor="end" {font}>time (s)</text>')
    out.append(f'<rect x="{layout.plot_x0}" y="{layout.curve_y0}" width="{layout.plot_x1 - layout.plot_x0}" '
               f'height="{layout.curve_y1 - layout.curve_y0}" fill="none" stroke="{_rgb(INK)}"/>')
    for label in reversed(curves):
        pts = " ".join(f"{time_to_x(t, duration, layout):.1f},{_score_to_y(s, layout):.1f}"
                       for t, s in curve_points(result.windows, label))
        out.append(f'<polyline class="curve" data-label="{escape(label, {chr(34): "&quot;"})}" points="{pts}" '
                   f'fill="none" stroke="{_rgb(colours[label])}" stroke-width="2"/>')
    for label, y0, y1 in layout.bar_rows:
        out.append(f'<text x="{layout.plot_x0 - 8}" y="{(y0 + y1) / 2 + 5:.1f}" text-anchor="end" {font}>{escape(label)}</text>')
        for seg in result.segments:
            if seg.label == label:
                x0, x1 = bar_columns(seg, duration, layout)
                out.append(f'<rect class="segment" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" '
                           f'fill="{_rgb(colours[label])}"><title>{escape(label)} {seg.start_sec:.2f}-'
                           f'{seg.end_sec:.2f} s ({seg.score:.2f})</title></rect>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- files


def plot_format(path: str | os.PathLike[str]) -> str:
    """`png` or `svg` from the file extension; UsageError otherwise."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise UsageError(f"{Path(path).name}: a timeline is written as .png or .svg")
    return fmt


def save_timeline(result: LocalizationResult, path: str | os.PathLike[str], *, width: int = 1200,
                  top_classes: int = 5, overwrite: bool = False) -> None:
    """Write the timeline of `result` to `path` (.png or .svg); an existing file needs `overwrite`."""
    fmt = plot_format(Path(path))
    out = check_output(path, overwrite)
    if fmt == "svg":
        out.write_text(timeline_svg(result, width, top_classes), encoding="utf-8")
        return
    ok, data = cv2.imencode(".png", cv2.cvtColor(draw_timeline(result, width, top_classes), cv2.COLOR_RGB2BGR))
    if not ok:
        raise UsageError(f"{out}: could not encode the PNG")
    out.write_bytes(data.tobytes())


def load_localization(path: str | os.PathLike[str]) -> LocalizationResult:
    """A `LocalizationResult` read back from a uvtag localize JSON (`uvtag localize --out x.json`)."""
    src = Path(path)
    try:
        doc = json.loads(src.read_bytes().decode("utf-8", "surrogateescape"))
    except OSError as e:
        raise UsageError(f"{src}: cannot read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{src}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or "segments" not in doc or "windows" not in doc:
        raise UsageError(f"{src}: not a uvtag localize JSON (needs 'segments' and 'windows'; "
                         "write one with `uvtag localize VIDEO --out result.json`)")
    try:
        fields = {f.name for f in dataclasses.fields(VideoInfo)}
        info = VideoInfo(**{k: v for k, v in doc["video"].items() if k in fields})
        params = dict(doc.get("params") or {})
        windows = tuple(ClipPrediction(float(w["start_sec"]), float(w["end_sec"]), _labels(w["top"]))
                        for w in doc["windows"])
        segments = tuple(Segment(str(s["label"]), int(s.get("class_index", -1)), float(s["start_sec"]),
                                 float(s["end_sec"]), float(s["score"])) for s in doc["segments"])
        return LocalizationResult(str(doc["path"]), str(doc.get("model", "")), info,
                                  float(params.pop("window_sec", 0.0)), float(params.pop("stride_sec", 0.0)),
                                  windows, segments, params=params)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{src}: malformed localize JSON ({type(e).__name__}: {e})") from None


def _labels(records: Sequence[dict]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(str(r["label"]), int(r.get("class_index", -1)), float(r["score"])) for r in records)
