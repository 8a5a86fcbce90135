"""The batch report as one HTML page: markup, CSS and inline JavaScript, from typed rows. Pure.

Layout: a header with the run's details and counts, the failures with their reasons
(`<section id="failures">`), a filter form (label, minimum score, name, sort; shown only when
JavaScript runs), then one card per tagged video (`<li class="video">` in `<ol id="videos">`):
its path relative to the videos' common folder (a link to the file), duration and clip count,
the video-level top-k as label / bar / score columns, a timeline strip with one element per clip
(`a.clip`, coloured by its top label, `aria-label` "start–end label score" shown on hover and
focus, a link to the video at the clip's start), the same timeline as text (runs of one label),
and thumbnails stamped with their time, each a link to the video at that time (`video.mp4#t=SEC`).

Without JavaScript every video and failure is shown; the script filters and reorders cards, and
makes each timeline strip one stop of the Tab key (arrow keys, Home and End move between its
clips; without it every clip is a stop).
The page loads nothing from the network; thumbnails are inline JPEG `data:` URIs with their size
given and `loading="lazy"`, and cards use `content-visibility: auto`, so long reports open fast.
Text colours reach 4.5:1 against their backgrounds; clip colours 3:1 against the page.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from uvtag.outputs.files import displayable
from uvtag.results import LabelScore

__all__ = ["CLIP_COLOURS", "ClipSpan", "ReportVideo", "RunDetails", "Thumbnail", "clock", "label_colours",
           "report_html", "runs"]

# Okabe-Ito and Tableau hues, darkened where needed to reach 3:1 against white
CLIP_COLOURS = ("#1f77b4", "#c75d00", "#2ca02c", "#9467bd", "#8c564b", "#c2378f", "#0f7f8a", "#7a7a00",
                "#d62728", "#5f6b7a", "#3b4cc0", "#a0522d")
OK_COLOUR = "#1a7f45"
FAILED_COLOUR = "#b3261e"
MAX_RUNS_SHOWN = 12  # runs of one label listed as text per video; the strip shows every clip


@dataclass(frozen=True)
class Thumbnail:
    """One still of a video: `jpeg` is a JPEG file `width` x `height` pixels, taken at `time_sec`."""

    time_sec: float
    jpeg: bytes
    width: int
    height: int


@dataclass(frozen=True)
class ClipSpan:
    """One clip of a video, [start_sec, end_sec], with its top label."""

    start_sec: float
    end_sec: float
    label: str
    score: float


@dataclass(frozen=True)
class ReportVideo:
    """One video of the report; a non-empty `error` marks a video that could not be tagged."""

    path: str  # as written in the batch output
    name: str  # as shown: relative to the common folder of the report's videos
    href: str  # link to the video, relative to the report
    top: tuple[LabelScore, ...] = ()
    clips: tuple[ClipSpan, ...] = ()
    duration_sec: float | None = None
    thumbnails: tuple[Thumbnail, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class RunDetails:
    """What the header says about the run; None (or "") leaves a detail out."""

    source: str = ""  # the batch output's file name
    source_href: str = ""
    model: str = ""
    clip_sec: float | None = None
    stride_sec: float | None = None
    top_k: int | None = None
    version: str = ""
    date: str = ""
    wall_sec: float | None = None
    tagged: int | None = None  # this run's counts
    skipped: int | None = None
    failed: int | None = None
    total: int | None = None


def clock(seconds: float, decimals: int = 0) -> str:
    """`m:ss` (or `h:mm:ss`) with `decimals` digits after the seconds; 62.5 s -> "1:02.5" (decimals=1)."""
    scale = 10**decimals
    ticks = int(round(max(seconds, 0.0) * scale))
    whole, frac = divmod(ticks, scale)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return text + (f".{frac:0{decimals}d}" if decimals else "")


def _seconds(value: float) -> str:
    """A time for a media fragment (`#t=`): seconds, up to 3 decimals, no trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def runs(clips: Sequence[ClipSpan]) -> list[tuple[float, float, str, float]]:
    """Consecutive clips with the same top label merged: (start_sec, end_sec, label, best score)."""
    out: list[tuple[float, float, str, float]] = []
    for c in clips:
        if out and out[-1][2] == c.label:
            start, _, label, best = out[-1]
            out[-1] = (start, c.end_sec, label, max(best, c.score))
        else:
            out.append((c.start_sec, c.end_sec, c.label, c.score))
    return out


def label_colours(videos: Sequence[ReportVideo]) -> dict[str, int]:
    """Palette index per clip label: the most frequent labels get distinct colours, the rest share."""
    counts = Counter(c.label for v in videos for c in v.clips)
    ordered = sorted(counts, key=lambda label: (-counts[label], label))
    return {label: i % len(CLIP_COLOURS) for i, label in enumerate(ordered)}


def _e(text: object) -> str:
    """Escaped for HTML; bytes of a file name that are not UTF-8 show as U+FFFD (the page is UTF-8)."""
    return html.escape(displayable(str(text)), quote=True)


_CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0 auto;padding:1rem;max-width:1500px;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fff}
a{color:#0b57d0}
h1{font-size:1.5rem;margin:0 0 .25rem}
h2{font-size:1.15rem;margin:1.25rem 0 .5rem}
.source{margin:0 0 .5rem;overflow-wrap:anywhere}
dl.run{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;margin:.5rem 0;padding:0}
dl.run div{display:flex;gap:.35rem;min-width:0}
dl.run dt{color:#4a4f57}
dl.run dd{margin:0;font-weight:600;overflow-wrap:anywhere;min-width:0}
.counts{margin:.5rem 0 0}
#failures ul{list-style:none;margin:0;padding:0;display:grid;gap:.4rem}
#failures li{background:#fdf1f0;border-left:6px solid __FAILED__;padding:.5rem .75rem;border-radius:4px;overflow-wrap:anywhere}
.reason{color:#8c1d18;display:block}
#controls{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin:1rem 0 .5rem;padding:.75rem;background:#f3f4f6;border-radius:6px}
#controls[hidden]{display:none}
#controls label{display:flex;flex-direction:column;font-size:.85rem;color:#3c4048;min-width:0;max-width:100%}
#controls select,#controls input{font:inherit;padding:.3rem .4rem;border:1px solid #767c85;border-radius:4px;background:#fff;color:#1b1b1b;max-width:100%}
#controls input[type=number]{width:6rem}
#shown{margin:.25rem 0 .75rem;color:#3c4048}
.legend{display:flex;flex-wrap:wrap;gap:.25rem .9rem;margin:.5rem 0;padding:0;list-style:none;font-size:.85rem}
.sw{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;vertical-align:-.1rem;margin-right:.3rem}
ol.videos{list-style:none;margin:0;padding:0;display:grid;gap:.75rem}
li.video{display:grid;align-items:start;grid-template-columns:minmax(0,1fr);gap:.6rem 1.5rem;padding:.75rem .9rem;background:#f5f6f8;border-left:6px solid __OK__;border-radius:6px;min-width:0;content-visibility:auto;contain-intrinsic-size:auto 220px}
li.video[hidden]{display:none}
@media (min-width:900px){li.video{grid-template-columns:minmax(11rem,17rem) minmax(13rem,19rem) minmax(0,1fr)}}
.name{font-size:1rem;margin:0;overflow-wrap:anywhere;font-weight:600}
.meta{color:#4a4f57;font-size:.85rem;margin:.15rem 0 0}
ol.top{list-style:none;margin:0;padding:0;display:grid;gap:.15rem;align-content:start}
ol.top li{display:grid;grid-template-columns:minmax(0,1fr) 4.5rem 3.4rem;gap:.5rem;align-items:center;font-size:.9rem}
ol.top .label{overflow-wrap:anywhere}
.bar{display:block;height:.55rem;background:#dfe2e7;border-radius:2px;overflow:hidden}
.bar i{display:block;height:100%;background:#2f5f98}
.score{text-align:right;font-variant-numeric:tabular-nums}
.when{min-width:0}
.strip{position:relative;display:flex;height:1.75rem;margin-top:1.9rem;background:#dfe2e7;border-radius:3px}
.strip a.clip{display:block;flex:none;height:100%;border-right:1px solid #fff}
.strip a.clip:last-child{border-right:0}
.strip a.clip:hover::after,.strip a.clip:focus::after{content:attr(aria-label);position:absolute;left:0;right:0;bottom:calc(100% + 3px);padding:.1rem .4rem;background:#1b1b1b;color:#fff;border-radius:3px;font-size:.8rem;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;pointer-events:none}
.strip a.clip:focus{outline:0;box-shadow:inset 0 0 0 3px #1b1b1b,inset 0 0 0 5px #fff}
.axis{display:flex;justify-content:space-between;font-size:.75rem;color:#4a4f57;font-variant-numeric:tabular-nums}
ol.runs{list-style:none;margin:.2rem 0 .5rem;padding:0;display:flex;flex-wrap:wrap;gap:.1rem .9rem;font-size:.85rem}
ol.runs li{min-width:0;overflow-wrap:anywhere}
.thumbs{display:flex;flex-wrap:wrap;gap:.35rem}
a.thumb{display:block;position:relative;text-decoration:none;max-width:100%}
a.thumb img{display:block;height:72px;width:auto;max-width:100%;object-fit:cover;border-radius:3px;background:#dfe2e7}
a.thumb span{position:absolute;right:2px;bottom:2px;padding:0 .25rem;background:rgba(0,0,0,.78);color:#fff;font-size:.75rem;border-radius:2px;font-variant-numeric:tabular-nums}
a:focus-visible{outline:3px solid #1b1b1b;outline-offset:2px}
.none{color:#4a4f57}
""".replace("__FAILED__", FAILED_COLOUR).replace("__OK__", OK_COLOUR)
_CSS += "".join(f".k{i}{{background:{c}}}" for i, c in enumerate(CLIP_COLOURS))

_JS = """
(function () {
  var list = document.getElementById('videos'), form = document.getElementById('controls');
  if (!list || !form) return;
  var shown = document.getElementById('shown'), total = list.children.length, sortedBy = 'order';
  var items = Array.prototype.map.call(list.children, function (li, order) {
    var labels = {};
    (li.getAttribute('data-labels') || '').split('|').forEach(function (pair) {
      var cut = pair.lastIndexOf(' ');
      if (cut > 0) labels[pair.slice(0, cut)] = parseFloat(pair.slice(cut + 1));
    });
    var best = 0;
    for (var k in labels) best = Math.max(best, labels[k]);
    return {li: li, order: order, labels: labels, best: best, name: li.getAttribute('data-name'),
            duration: parseFloat(li.getAttribute('data-duration') || '0')};
  });
  function score(item, label) { return label ? item.labels[label] : item.best; }
  function apply() {
    var label = form.elements.label.value, min = parseFloat(form.elements.min.value) || 0;
    var text = form.elements.q.value.trim().toLowerCase(), how = form.elements.sort.value, count = 0;
    items.forEach(function (item) {
      var s = score(item, label);
      var keep = s !== undefined && s >= min && (!text || item.name.toLowerCase().indexOf(text) >= 0);
      if (item.li.hidden === keep) item.li.hidden = !keep;
      if (keep) count++;
    });
    shown.textContent = 'Showing ' + count + ' of ' + total + ' videos';
    if (how === sortedBy && how !== 'score') return;  // only a score order follows the label
    sortedBy = how;
    var sorted = items.slice().sort(function (a, b) {
      if (how === 'name') return a.name < b.name ? -1 : a.name > b.name ? 1 : a.order - b.order;
      if (how === 'score') return ((score(b, label) || 0) - (score(a, label) || 0)) || a.order - b.order;
      if (how === 'duration') return (b.duration - a.duration) || a.order - b.order;
      return a.order - b.order;
    });
    sorted.forEach(function (item) { list.appendChild(item.li); });
  }
  form.hidden = false;
  form.addEventListener('input', apply);
  form.addEventListener('change', apply);
  form.addEventListener('submit', function (e) { e.preventDefault(); apply(); });
  apply();
  // a timeline strip is one stop of the Tab key; arrow keys, Home and End move between its clips
  Array.prototype.forEach.call(list.querySelectorAll('.strip'), function (strip) {
    Array.prototype.forEach.call(strip.children, function (a, i) { a.tabIndex = i ? -1 : 0; });
    strip.setAttribute('aria-label', 'clips over time (arrow keys move between clips)');
  });
  list.addEventListener('keydown', function (e) {
    var a = e.target, strip = a.parentNode;
    if (!strip || !strip.classList || !strip.classList.contains('strip')) return;
    var clips = strip.children, i = Array.prototype.indexOf.call(clips, a), to;
    if (e.key === 'ArrowRight' || e.key === 'ArrowDown') to = Math.min(i + 1, clips.length - 1);
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') to = Math.max(i - 1, 0);
    else if (e.key === 'Home') to = 0;
    else if (e.key === 'End') to = clips.length - 1;
    else return;
    e.preventDefault();
    a.tabIndex = -1;
    clips[to].tabIndex = 0;
    clips[to].focus();
  });
})();
"""


def _details(d: RunDetails, clip_sec: float | None) -> str:
    clip = d.clip_sec if d.clip_sec is not None else clip_sec
    items = [("model", d.model), ("clip", f"{clip:g} s" if clip is not None else ""),
             ("stride", f"{d.stride_sec:g} s" if d.stride_sec is not None else ("= clip" if clip is not None else "")),
             ("top-k", d.top_k if d.top_k is not None else ""), ("uvtag", d.version), ("date", d.date),
             ("wall time", f"{d.wall_sec:.1f} s" if d.wall_sec is not None else "")]
    return "".join(f"<div><dt>{name}</dt><dd>{_e(value)}</dd></div>" for name, value in items if value != "")


def _counts(videos: Sequence[ReportVideo], failures: Sequence[ReportVideo], d: RunDetails) -> str:
    failed = (f'<a href="#failures">{len(failures)} failed</a>' if failures else "0 failed")
    text = f"<strong>{len(videos)}</strong> videos tagged, {failed}"
    if d.total is not None:
        text += (f" · this run: {d.tagged or 0} tagged, {d.skipped or 0} already done, {d.failed or 0} failed "
                 f"of {d.total}")
    return f'<p class="counts">{text}</p>'


def _top_html(top: Sequence[LabelScore]) -> str:
    if not top:
        return '<p class="none">no labels</p>'
    rows = "".join(f'<li><span class="label">{_e(ls.label)}</span><span class="bar"><i style="width:'
                   f'{100 * min(max(ls.score, 0.0), 1.0):.1f}%"></i></span><span class="score">{ls.score:.3f}</span></li>'
                   for ls in top)
    return f'<ol class="top" aria-label="video labels">{rows}</ol>'


def _strip_html(v: ReportVideo, colours: dict[str, int]) -> str:
    if not v.clips:
        return ""
    duration = v.duration_sec or max(c.end_sec for c in v.clips) or 1.0
    parts = []
    for i, c in enumerate(v.clips):  # clip i is drawn until the next one starts
        end = v.clips[i + 1].start_sec if i + 1 < len(v.clips) else max(c.end_sec, duration)
        width = 100 * max(min(end, duration) - c.start_sec, 0.0) / duration
        tip = f"{clock(c.start_sec, 1)}–{clock(c.end_sec, 1)} {c.label} {c.score:.3f}"
        parts.append(f'<a class="clip k{colours.get(c.label, 0)}" style="width:{width:.3f}%" href="{_e(v.href)}#t='
                     f'{_seconds(c.start_sec)}" data-start="{_seconds(c.start_sec)}" data-end="{_seconds(c.end_sec)}" '
                     f'data-label="{_e(c.label)}" aria-label="{_e(tip)}"></a>')
    merged = runs(v.clips)
    text = "".join(f'<li><span class="sw k{colours.get(label, 0)}"></span>{clock(start)}–{clock(end)} {_e(label)}</li>'
                   for start, end, label, _ in merged[:MAX_RUNS_SHOWN])
    if len(merged) > MAX_RUNS_SHOWN:
        text += f"<li>… {len(merged) - MAX_RUNS_SHOWN} more</li>"
    return (f'<div class="strip" role="group" aria-label="clips over time">{"".join(parts)}</div>'
            f'<div class="axis" aria-hidden="true"><span>0:00</span><span>{clock(duration)}</span></div>'
            f'<ol class="runs" aria-label="timeline">{text}</ol>')


def _thumbs_html(v: ReportVideo, display_height: int = 72) -> str:
    if not v.thumbnails:
        return ""
    cells = []
    for t in v.thumbnails:
        width = max(1, round(t.width * display_height / max(t.height, 1)))
        data = base64.b64encode(t.jpeg).decode("ascii")
        cells.append(f'<a class="thumb" href="{_e(v.href)}#t={_seconds(t.time_sec)}"><img loading="lazy" '
                     f'decoding="async" width="{width}" height="{display_height}" alt="frame at '
                     f'{clock(t.time_sec, 1)}" src="data:image/jpeg;base64,{data}"><span>{clock(t.time_sec, 1)}'
                     "</span></a>")
    return f'<div class="thumbs">{"".join(cells)}</div>'


def _label_scores(v: ReportVideo) -> str:
    """`label score|label score` with each label's best score in the video's top-k and its clips."""
    best: dict[str, float] = {}
    for label, score in [(ls.label, ls.score) for ls in v.top] + [(c.label, c.score) for c in v.clips]:
        best[label] = max(best.get(label, 0.0), score)
    return "|".join(f"{label} {score:.4f}" for label, score in best.items())


def _video_html(v: ReportVideo, number: int, colours: dict[str, int]) -> str:
    duration = f"{clock(v.duration_sec, 1)}" if v.duration_sec is not None else "duration unknown"
    meta = f"{duration} · {len(v.clips)} clip{'s' if len(v.clips) != 1 else ''}"
    return (f'<li class="video" id="v{number}" data-path="{_e(v.path)}" data-name="{_e(v.name)}" '
            f'data-duration="{v.duration_sec or 0:.3f}" data-labels="{_e(_label_scores(v))}">'
            f'<div><h3 class="name"><a href="{_e(v.href)}" title="{_e(v.path)}">{_e(v.name)}</a></h3>'
            f'<p class="meta">{meta}</p></div>{_top_html(v.top)}'
            f'<div class="when">{_strip_html(v, colours)}{_thumbs_html(v)}</div></li>')


def _failures_html(failures: Sequence[ReportVideo]) -> str:
    if not failures:
        return ""
    items = "".join(f'<li id="f{i}" data-path="{_e(f.path)}"><a href="{_e(f.href)}" title="{_e(f.path)}">'
                    f'{_e(f.name)}</a><span class="reason">{_e(f.error)}</span></li>'
                    for i, f in enumerate(failures, start=1))
    return f'<section id="failures"><h2>Failures ({len(failures)})</h2><ul>{items}</ul></section>'


def _controls_html(videos: Sequence[ReportVideo]) -> str:
    counts = Counter(label for v in videos for label in {ls.label for ls in v.top} | {c.label for c in v.clips})
    options = "".join(f'<option value="{_e(label)}">{_e(label)} ({n})</option>' for label, n in sorted(counts.items()))
    return ('<form id="controls" hidden role="search" aria-label="filter and sort the videos">'
            f'<label>label<select name="label"><option value="">any label</option>{options}</select></label>'
            '<label>min score<input name="min" type="number" min="0" max="1" step="0.05" value="0"></label>'
            '<label>name contains<input name="q" type="search"></label>'
            '<label>sort<select name="sort"><option value="order">as tagged</option><option value="name">name</option>'
            '<option value="score">score (high first)</option><option value="duration">duration (long first)</option>'
            '</select></label></form><p id="shown" aria-live="polite"></p>')


def _legend_html(colours: dict[str, int]) -> str:
    shown = list(colours)[: len(CLIP_COLOURS)]
    if not shown:
        return ""
    items = "".join(f'<li><span class="sw k{colours[label]}"></span>{_e(label)}</li>' for label in shown)
    return f'<ul class="legend" aria-label="clip colours">{items}</ul>'


def _common_clip_sec(videos: Sequence[ReportVideo]) -> float | None:
    """The most common clip length in the report (ms precision), for a run that did not say it."""
    lengths = Counter(round(c.end_sec - c.start_sec, 3) for v in videos for c in v.clips)
    return lengths.most_common(1)[0][0] if lengths else None


def report_html(videos: Sequence[ReportVideo], details: RunDetails = RunDetails(), title: str = "uvtag report") -> str:
    """The whole report as one HTML document (UTF-8, no external resources); failures are the
    entries of `videos` with an `error`."""
    tagged = [v for v in videos if not v.error]
    failures = [v for v in videos if v.error]
    colours = label_colours(tagged)
    source = (f'<p class="source">results: <a href="{_e(details.source_href)}">{_e(details.source)}</a></p>'
              if details.source else "")
    cards = "\n".join(_video_html(v, i, colours) for i, v in enumerate(tagged, start=1))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            f'<header><h1>{_e(title)}</h1>{source}<dl class="run">{_details(details, _common_clip_sec(tagged))}</dl>'
            f"{_counts(tagged, failures, details)}</header>\n{_failures_html(failures)}\n"
            f'<main><h2>Videos</h2>{_legend_html(colours)}{_controls_html(tagged)}'
            f'<ol class="videos" id="videos">\n{cards}\n</ol></main>\n<script>{_JS}</script>\n</body></html>\n')
