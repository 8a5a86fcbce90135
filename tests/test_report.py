"""uvtag.outputs.report(_page) and `batch --report`: rows read back from every batch format,
thumbnails with their times, and the page as headless Chromium renders it at 1280 and 390 px
(overflow, the timeline of an untrimmed video, the label filter, thumbnail links, names, contrast)."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from uvtag import synth
from uvtag.cli import app
from uvtag.outputs import report
from uvtag.outputs import report_page as page
from uvtag.results import LabelScore
from videogen import frame_index_of, write_bytes, write_video

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
UNTRIMMED = "untrimmed <growing>.mp4"  # a name that must be escaped
TRUTH = [(0.0, 3.0, "growing"), (3.0, 6.0, "shrinking")]


class _Tags(HTMLParser):
    """The attributes of every tag of a document, by tag name, and the text of <pre id=probe>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.probe = ""
        self._in_probe = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.setdefault(tag, []).append(a)
        self._in_probe = tag == "pre" and a.get("id") == "probe"

    def handle_endtag(self, tag):
        self._in_probe = False

    def handle_data(self, data):
        if self._in_probe:
            self.probe += data


def parse(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    return p


def _untrimmed(path: Path) -> Path:
    """Growing for 3 s, then shrinking for 3 s (160 px tall, 12 fps)."""
    ranges = replace(synth.STRICT, short_side=(160, 160), fps=(12, 12))
    scene = synth.random_untrimmed(synth.clip_rng("test", 4242, 0), 2, action_sec=(3.0, 3.0), ranges=ranges,
                                   labels=("growing", "shrinking"), clutter=0.3)
    assert scene.segments() == TRUTH
    return synth.write_video(scene, path.with_suffix(".mp4"), "h264")


@pytest.fixture(scope="module")
def batch_report(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("report")
    videos = d / "videos"
    (videos / "a" / "sub").mkdir(parents=True)
    write_video(videos / "a" / "01.mp4", num_frames=40, fps=20, size=(72, 96))
    write_video(videos / "a" / "sub" / "01.mp4", num_frames=30, fps=15, size=(96, 72))
    _untrimmed(d / "u").rename(videos / UNTRIMMED)
    write_bytes(videos / "a" / "broken.mp4", b"not a video\n" * 10)
    out, html_path = d / "tags.csv", d / "out" / "new" / "report.html"  # its folder does not exist
    result = runner.invoke(app, ["batch", str(videos), "--out", str(out), "--report", str(html_path), "-m",
                                 "motion-tiny", "--clip", "1", "-k", "3", "--no-isolate", "-q"],
                           catch_exceptions=False)
    assert result.exit_code == 3, result.output  # one video failed
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    return {"dir": d, "videos": videos, "out": out, "html": html_path, "rows": rows}


# ------------------------------------------------------------------ library

def test_thumbnails_carry_their_times_and_frames(tmp_path):
    video = write_video(tmp_path / "v.mp4", num_frames=60, fps=20, size=(120, 160))
    assert report.thumbnail_indices(60, 6) == [5, 15, 25, 35, 45, 55]
    assert report.thumbnail_indices(3, 6) == [0, 1, 2] and report.thumbnail_indices(0, 6) == []
    thumbs = report.thumbnails(video, count=6, height=96)
    assert [t.time_sec for t in thumbs] == [i / 20 for i in (5, 15, 25, 35, 45, 55)]
    for t, index in zip(thumbs, [5, 15, 25, 35, 45, 55]):
        img = cv2.imdecode(np.frombuffer(t.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (96, 128, 3) == (t.height, t.width, 3)
        assert frame_index_of(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)) == index


def test_large_reports_get_fewer_thumbnails():
    assert report.thumbnail_count(10) == report.MAX_THUMBS
    assert report.thumbnail_count(1000) == 3 and report.thumbnail_count(5000) == report.MIN_THUMBS


def test_names_are_relative_to_the_common_folder(tmp_path):
    paths = [str(tmp_path / "v" / "a" / "01.mp4"), str(tmp_path / "v" / "a" / "sub" / "01.mp4")]
    assert report.display_names(paths) == ["01.mp4", "sub/01.mp4"]
    assert report.display_names(paths + [str(tmp_path / "v" / "b.mp4")]) == ["a/01.mp4", "a/sub/01.mp4", "b.mp4"]
    assert report.display_names([paths[0]]) == ["01.mp4"]
    assert report.relative_href(tmp_path / "v" / "a b.mp4", tmp_path / "r") == "../v/a%20b.mp4"


def test_a_name_that_is_not_utf8_gets_a_working_link_and_a_utf8_page(tmp_path):
    import os
    from urllib.parse import unquote_to_bytes

    videos = tmp_path / "v"
    videos.mkdir()
    name = os.fsdecode(os.path.join(os.fsencode(videos), b"caf\xe9.mp4"))  # a Latin-1 name on disk
    os.rename(write_video(videos / "made.mp4", num_frames=20, fps=10, size=(72, 96)), name)
    out, html_path = tmp_path / "labels.jsonl", tmp_path / "r" / "report.html"
    result = runner.invoke(app, ["batch", str(videos), "--out", str(out), "--report", str(html_path), "-m", "motion-tiny",
                                 "-q", "--no-isolate"])
    assert result.exit_code == 0, result.output
    text = html_path.read_bytes().decode("utf-8")  # strict: the page is valid UTF-8
    hrefs = {a["href"].partition("#")[0] for a in parse(text).tags["a"] if "caf" in a.get("href", "")}
    assert hrefs == {"../v/caf%E9.mp4"}
    assert unquote_to_bytes(hrefs.pop()) == b"../v/caf\xe9.mp4"  # resolves to the file's own bytes
    assert "caf\ufffd.mp4" in text  # shown as a browser shows such a name


def test_clock_and_runs():
    assert page.clock(0) == "0:00" and page.clock(62.5, 1) == "1:02.5" and page.clock(3725) == "1:02:05"
    clips = [page.ClipSpan(0, 1, "a", 0.5), page.ClipSpan(1, 2, "a", 0.7), page.ClipSpan(2, 3, "b", 0.4)]
    assert page.runs(clips) == [(0, 2, "a", 0.7), (2, 3, "b", 0.4)]


def test_html_escapes_and_has_no_network():
    video = page.ReportVideo("/x/<b>.mp4", "<b>.mp4", "%3Cb%3E.mp4", (LabelScore("<script>", 0, 0.5),),
                             (page.ClipSpan(0, 1, "<script>", 0.5),), 1.0,
                             (page.Thumbnail(0.5, b"\xff\xd8", 4, 3),))
    failed = page.ReportVideo("/x/bad.mp4", "bad.mp4", "bad.mp4", error="VideoError: <file> is empty")
    text = page.report_html([video, failed], page.RunDetails(model="<m>"))
    assert "<script>" not in text.replace("<script>\n(function", "") and "&lt;script&gt;" in text
    assert "&lt;file&gt;" in text and "&lt;m&gt;" in text
    tags = parse(text)
    assert [a["class"] for a in tags.tags["li"] if "video" in a.get("class", "").split()] == ["video"]
    assert [a["src"] for a in tags.tags["img"]] == ["data:image/jpeg;base64,/9g="]
    assert all(a["loading"] == "lazy" and a["width"] and a["height"] for a in tags.tags["img"])
    assert "http://" not in text and "https://" not in text and "src=\"http" not in text


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_every_batch_format_gives_the_same_rows(batch_report, tmp_path, fmt):
    csv_rows = report.read_report_videos(batch_report["out"], tmp_path / "r.html", num_thumbnails=0)
    out = tmp_path / f"tags.{fmt}"
    result = runner.invoke(app, ["batch", str(batch_report["videos"]), "--out", str(out), "-m", "motion-tiny",
                                 "--clip", "1", "-k", "3", "--no-isolate", "-q"])
    assert result.exit_code == 3, result.output
    rows = report.read_report_videos(out, tmp_path / "r.html", num_thumbnails=0)
    rows.sort(key=lambda v: bool(v.error))  # json lists the failures after the videos
    csv_rows.sort(key=lambda v: bool(v.error))
    assert [(v.path, v.name, v.error.split(":")[0], [ls.label for ls in v.top], v.duration_sec) for v in rows] == [
        (v.path, v.name, v.error.split(":")[0], [ls.label for ls in v.top], v.duration_sec) for v in csv_rows]
    for a, b in zip(rows, csv_rows):  # CSV keeps 6 decimals and milliseconds
        assert [(c.label, round(c.start_sec, 3)) for c in a.clips] == [(c.label, c.start_sec) for c in b.clips]
        assert np.allclose([c.score for c in a.clips], [c.score for c in b.clips], atol=1e-6)


def test_a_csv_with_summaries_rank_k_first_reads_the_same(batch_report, tmp_path):
    text = batch_report["out"].read_text(encoding="utf-8").splitlines(keepends=True)
    old, run = [], []
    for line in text:  # each video's `video` rows reversed: rank k first, rank 1 last
        if line.startswith("video,"):
            run.append(line)
            continue
        old, run = old + run[::-1] + [line], []
    (tmp_path / "old.csv").write_text("".join(old + run[::-1]), encoding="utf-8")
    new = report.read_report_videos(batch_report["out"], tmp_path / "r.html", num_thumbnails=0)
    assert report.read_report_videos(tmp_path / "old.csv", tmp_path / "r.html", num_thumbnails=0) == new


# ------------------------------------------------------------------ CLI

def test_batch_report_counts_and_links_match_the_csv(batch_report):
    rows, html_path = batch_report["rows"], batch_report["html"]
    tags = parse(html_path.read_text(encoding="utf-8"))
    cards = [a for a in tags.tags["li"] if a.get("class") == "video"]
    videos = list(dict.fromkeys(r["path"] for r in rows if r["row_type"] == "video"))
    assert [a["data-path"] for a in cards] == videos and len(videos) == 3
    failed = [a["data-path"] for a in tags.tags["li"] if a.get("id", "").startswith("f")]
    assert failed == [r["path"] for r in rows if r["row_type"] == "failure"] and Path(failed[0]).name == "broken.mp4"
    for href in {a["href"].split("#")[0] for a in tags.tags["a"] if a.get("href") and a["href"][0] != "#"}:
        target = html_path.parent / href.replace("%20", " ").replace("%3C", "<").replace("%3E", ">")
        assert target.exists(), href  # every link resolves to a file next to the report
    assert "../../tags.csv" in [a.get("href") for a in tags.tags["a"]]


def test_a_resumed_batch_reports_every_video_and_this_runs_counts(batch_report, tmp_path):
    out = tmp_path / "tags.csv"
    shutil.copy(batch_report["out"], out)
    html_path = tmp_path / "report.html"
    result = runner.invoke(app, ["batch", str(batch_report["videos"]), "--out", str(out), "--resume", "--report",
                                 str(html_path), "-m", "motion-tiny", "--clip", "1", "-k", "3", "--no-isolate", "-q"])
    assert result.exit_code == 3, result.output  # the broken video is retried and fails again
    text = html_path.read_text(encoding="utf-8")
    tags = parse(text)
    assert len([a for a in tags.tags["li"] if a.get("class") == "video"]) == 3
    assert len([a for a in tags.tags["li"] if a.get("id", "").startswith("f")]) == 1  # once, though written twice
    assert "this run: 0 tagged, 3 already done, 1 failed of 4" in text
    assert "<dt>model</dt><dd>motion-tiny</dd>" in text and "<dt>clip</dt><dd>1 s</dd>" in text


def test_report_refuses_a_file_in_place_of_its_folder(batch_report, tmp_path):
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["batch", str(batch_report["videos"] / "a" / "01.mp4"), "--out",
                                 str(tmp_path / "t.csv"), "--report", str(tmp_path / "file" / "r.html"),
                                 "-m", "motion-tiny", "-q"])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    assert not (tmp_path / "t.csv").exists()  # refused before any work
    result = runner.invoke(app, ["batch", str(batch_report["videos"]), "--out", str(tmp_path / "t.csv"),
                                 "--report", str(tmp_path / "new" / "r.txt"), "-m", "motion-tiny", "-q"])
    assert result.exit_code == 2 and "written as .html" in result.output


# ------------------------------------------------------------------ in headless Chromium

_PROBE = r"""<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" SANDBOX src="SRC" style="border:0;width:WIDTHpx;height:900px"></iframe><pre id="probe"></pre>
<script>
// Measures the report as rendered in the frame (a viewport WIDTH px wide), then writes JSON into #probe.
var steps = STEPS, frame = document.getElementById('page');
function frames(w, n) { return new Promise(function (done) {
  (function next(k) { if (!k) return done(); setTimeout(function () { next(k - 1); }, 50); })(n); }); }
frame.addEventListener('load', function () {
  measure().catch(function (e) { document.getElementById('probe').textContent = JSON.stringify({error: String(e.stack || e)}); });
});
async function measure() {
  var w = frame.contentWindow, doc = frame.contentDocument, out = {width: w.innerWidth, steps: []};
  function visible(el) { return el.getClientRects().length > 0 && w.getComputedStyle(el).visibility !== 'hidden'; }
  function shownPaths() {
    return Array.prototype.filter.call(doc.querySelectorAll('li.video'), visible)
      .map(function (li) { return li.getAttribute('data-path'); });
  }
  function rgb(text) { var m = text.match(/[\d.]+/g).map(Number); return m.length > 3 ? m : m.concat([1]); }
  function background(el) {  // the colour behind el: its ancestors' backgrounds composited on white
    var layers = [];
    for (var e = el; e; e = e.parentElement) {
      var c = rgb(w.getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    var base = [255, 255, 255];
    for (var i = layers.length - 1; i >= 0; i--)
      base = base.map(function (v, k) { return layers[i][k] * layers[i][3] + v * (1 - layers[i][3]); });
    return base;
  }
  function lum(c) {
    var l = c.slice(0, 3).map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
  }
  function ratio(a, b) { var x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
  function keyWalk(strip) {  // Tab stops in the strip, and the clip focused after each key
    var clips = Array.prototype.slice.call(strip.querySelectorAll('a.clip')), seen = [];
    var stops = clips.filter(function (a) { return a.tabIndex >= 0; }).length;
    clips[0].focus();
    ['ArrowRight', 'ArrowRight', 'End', 'ArrowRight', 'ArrowLeft', 'Home', 'ArrowLeft'].forEach(function (key) {
      doc.activeElement.dispatchEvent(new w.KeyboardEvent('keydown', {key: key, bubbles: true, cancelable: true}));
      seen.push(clips.indexOf(doc.activeElement));
    });
    doc.activeElement.blur();
    return {stops: stops, seen: seen, clips: clips.length};
  }
  await frames(w, 2);
  out.scrollWidth = doc.documentElement.scrollWidth;
  out.outside = [];
  out.lowContrast = [];
  out.videos = [];
  var cards = doc.querySelectorAll('li.video');
  for (var i = 0; i < cards.length; i++) {  // each card on screen, so its content is rendered
    var li = cards[i];
    li.scrollIntoView();
    await frames(w, 2);
    var strip = li.querySelector('.strip'), s = strip && strip.getBoundingClientRect(), clips = [];
    if (strip) strip.querySelectorAll('a.clip').forEach(function (a) {
      var r = a.getBoundingClientRect();
      a.focus();
      clips.push({left: r.left, width: r.width, label: a.getAttribute('data-label'),
                  colour: w.getComputedStyle(a).backgroundColor, tip: w.getComputedStyle(a, '::after').content,
                  focused: doc.activeElement === a, contrast: ratio(rgb(w.getComputedStyle(a).backgroundColor), background(li))});
      a.blur();
    });
    out.videos.push({
      path: li.getAttribute('data-path'), name: li.querySelector('.name').innerText, runs: li.querySelector('.runs').innerText,
      duration: parseFloat(li.getAttribute('data-duration')), strip: s && {left: s.left, width: s.width, clips: clips},
      keys: strip && keyWalk(strip),
      nameLines: li.querySelector('.name a').getClientRects().length,
      scoreRights: Array.prototype.map.call(li.querySelectorAll('.score'), function (e) { return e.getBoundingClientRect().right; }),
      barLefts: Array.prototype.map.call(li.querySelectorAll('.bar'), function (e) { return e.getBoundingClientRect().left; }),
      thumbs: Array.prototype.map.call(li.querySelectorAll('a.thumb'), function (a) {
        var img = a.querySelector('img'), r = img.getBoundingClientRect();
        return {href: a.getAttribute('href'), stamp: a.innerText.trim(), src: img.getAttribute('src'), height: r.height,
                lazy: img.loading, painted: img.complete && img.naturalWidth > 0};
      })});
  }
  doc.querySelectorAll('body *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && visible(el) && (r.right > w.innerWidth + 0.5 || r.left < -0.5))
      out.outside.push(el.tagName + '.' + el.className + ' ' + r.left + '..' + r.right);
    var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
    if (!own || !visible(el)) return;
    var k = ratio(rgb(w.getComputedStyle(el).color), background(el));
    if (k < 4.5) out.lowContrast.push(el.tagName + ' "' + el.textContent.trim().slice(0, 30) + '" ' + k.toFixed(2));
  });
  out.failures = Array.prototype.map.call(doc.querySelectorAll('#failures li'), function (li) { return li.innerText; });
  out.failureLink = !!doc.querySelector('header a[href="#failures"]');
  out.injected = doc.querySelectorAll('growing').length;
  var form = doc.getElementById('controls');
  out.controls = visible(form);
  out.shownAtStart = shownPaths();
  if (out.controls) steps.forEach(function (step) {
    form.elements.label.value = step.label;
    form.elements.min.value = String(step.min);
    form.elements.sort.value = step.sort || 'order';
    form.elements.min.dispatchEvent(new w.Event('input', {bubbles: true}));
    out.steps.push({shown: shownPaths(), text: doc.getElementById('shown').textContent});
  });
  document.getElementById('probe').textContent = JSON.stringify(out);
}
</script></body></html>
"""


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--allow-file-access-from-files",
             f"--user-data-dir={tmp / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, timeout=180, text=True)


def _probe(html_path: Path, width: int, steps: list[dict], tmp: Path, scripts: bool = True) -> dict:
    """Open the report in a frame `width` px wide (a viewport of that width: a headless window
    cannot be made narrower than 500 px) and return what the probe page measured in it.

    `scripts=False` sandboxes the frame so that the report's script does not run.
    """
    probe = html_path.with_name(f".probe-{width}.html")  # same folder: the links resolve alike
    probe.write_text(_PROBE.replace("SRC", html_path.name).replace("WIDTH", str(width)).replace("STEPS", json.dumps(steps))
                     .replace("SANDBOX", "" if scripts else 'sandbox="allow-same-origin"'), encoding="utf-8")
    try:
        run = _chromium("--dump-dom", "--virtual-time-budget=30000", f"--window-size={width + 100},1000",
                        probe.resolve().as_uri(), tmp=tmp)
    finally:
        probe.unlink()
    assert run.returncode == 0, run.stderr[-2000:]
    found = parse(run.stdout).probe
    assert found, run.stdout[-2000:]
    return json.loads(found)


def _best_scores(rows: list[dict], label: str) -> dict[str, float]:
    """Per video, the best score of `label` among its video top-k and its clips' top labels."""
    best: dict[str, float] = {}
    for r in rows:
        if r["row_type"] == "video" or (r["row_type"] == "clip" and r["rank"] == "1"):
            if r["label"] == label:
                best[r["path"]] = max(best.get(r["path"], 0.0), float(r["score"]))
    return best


@pytest.fixture(scope="module")
def rendered(batch_report, tmp_path_factory) -> dict:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    rows = batch_report["rows"]
    scores = sorted(_best_scores(rows, "shrinking").values())
    assert len(scores) >= 2
    cut = round((scores[-1] + scores[-2]) / 2, 4)  # between the two best: one video passes
    steps = [{"label": "shrinking", "min": 0}, {"label": "shrinking", "min": cut}, {"label": "", "min": 0},
             {"label": "", "min": 0, "sort": "name"}]
    tmp = tmp_path_factory.mktemp("chromium")
    return {"steps": steps, "cut": cut,
            **{w: _probe(batch_report["html"], w, steps, tmp) for w in (1280, 390, 360)}}


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390, 360])
def test_no_horizontal_overflow_and_readable_contrast(rendered, width):
    got = rendered[width]
    assert got["width"] == width
    assert got["scrollWidth"] <= width and got["outside"] == []
    assert got["lowContrast"] == []
    assert all(c["contrast"] >= 3 for v in got["videos"] for c in v["strip"]["clips"])
    for v in got["videos"]:  # the names have room; bars and scores line up in columns
        assert v["nameLines"] == 1, v["name"]
        assert len(v["scoreRights"]) == 3 and max(v["scoreRights"]) - min(v["scoreRights"]) < 0.5
        assert max(v["barLefts"]) - min(v["barLefts"]) < 0.5


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_the_timeline_shows_the_untrimmed_videos_actions_in_order_at_their_times(rendered, width):
    (video,) = [v for v in rendered[width]["videos"] if v["name"] == UNTRIMMED]  # escaped, shown as written
    assert rendered[width]["injected"] == 0
    strip, duration = video["strip"], video["duration"]
    assert duration == pytest.approx(6.0) and len(strip["clips"]) == 6
    spans = []
    for c in strip["clips"]:  # pixels back to seconds
        start = (c["left"] - strip["left"]) / strip["width"] * duration
        spans.append((start, start + c["width"] / strip["width"] * duration, c["label"], c["colour"]))
    for (start, end, label, _), (t0, t1, truth) in zip([spans[0], spans[3]], TRUTH):
        assert label == truth and start == pytest.approx(t0, abs=0.05)
    assert [s[2] for s in spans] == ["growing"] * 3 + ["shrinking"] * 3
    assert spans[2][1] == pytest.approx(3.0, abs=0.05) and spans[-1][1] == pytest.approx(6.0, abs=0.05)
    assert len({s[3] for s in spans[:3]}) == 1 and len({s[3] for s in spans[3:]}) == 1 and spans[0][3] != spans[3][3]
    assert video["runs"].split("\n") == ["0:00–0:03 growing", "0:03–0:06 shrinking"]
    first = strip["clips"][0]  # keyboard focus shows the clip's times, label and score
    assert first["focused"] and first["tip"].startswith('"0:00.0–0:01.0 growing 0.')


@needs_chromium
def test_the_label_filter_hides_and_shows_the_right_videos(batch_report, rendered):
    rows = batch_report["rows"]
    best = _best_scores(rows, "shrinking")
    videos = list(dict.fromkeys(r["path"] for r in rows if r["row_type"] == "video"))
    names = dict(zip(videos, report.display_names(videos)))
    expected = [[p for p in videos if p in best], [p for p in videos if best.get(p, -1) >= rendered["cut"]], videos,
                sorted(videos, key=names.get)]
    assert len(expected[1]) == 1 and len(expected[0]) > 1  # the filter has something to hide
    for width in (1280, 390):
        assert rendered[width]["controls"]
        shown = [s["shown"] for s in rendered[width]["steps"]]
        assert shown == expected
        assert rendered[width]["steps"][1]["text"] == f"Showing 1 of {len(videos)} videos"


@needs_chromium
def test_thumbnails_link_to_their_times(batch_report, rendered):
    for width in (1280, 390):
        (video,) = [v for v in rendered[width]["videos"] if v["name"] == "a/01.mp4"]
        assert len(video["thumbs"]) == report.MAX_THUMBS
        for t in video["thumbs"]:
            href, _, fragment = t["href"].partition("#t=")
            assert href == "../../videos/a/01.mp4" and t["lazy"] == "lazy" and t["height"] == report.THUMB_HEIGHT
            jpeg = base64.b64decode(t["src"].split(",", 1)[1])
            frame = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert float(fragment) == pytest.approx(frame_index_of(frame) / 20, abs=1e-3)  # the frame shown, 20 fps
            assert t["stamp"] == page.clock(float(fragment), 1)


@needs_chromium
def test_same_named_files_and_failures_are_told_apart(rendered):
    for width in (1280, 390):
        got = rendered[width]
        assert sorted(v["name"] for v in got["videos"]) == ["a/01.mp4", "a/sub/01.mp4", UNTRIMMED]
        assert got["failureLink"] and len(got["failures"]) == 1
        assert got["failures"][0].startswith("a/broken.mp4\nVideoError: ")


@needs_chromium
def test_without_javascript_everything_is_shown(batch_report, tmp_path):
    got = _probe(batch_report["html"], 390, [], tmp_path, scripts=False)
    assert not got["controls"]  # the filter needs the script; nothing else does
    assert len(got["shownAtStart"]) == 3 and len(got["failures"]) == 1
    assert all(v["strip"] and v["runs"] and len(v["thumbs"]) == report.MAX_THUMBS for v in got["videos"])
    assert all(v["keys"]["stops"] == v["keys"]["clips"] for v in got["videos"])  # every clip a Tab stop
    assert got["scrollWidth"] <= 390 and got["outside"] == []


@needs_chromium
def test_a_timeline_strip_is_one_tab_stop_walked_with_arrow_keys(rendered):
    for width in (1280, 390):
        (video,) = [v for v in rendered[width]["videos"] if v["name"] == UNTRIMMED]
        keys = video["keys"]
        n = keys["clips"]
        assert n >= 4 and keys["stops"] == 1
        # Right, Right, End, Right (stays at the last), Left, Home, Left (stays at the first)
        assert keys["seen"] == [1, 2, n - 1, n - 1, n - 2, 0, 0]
