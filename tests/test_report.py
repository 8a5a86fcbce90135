"""uvtag.outputs.report and `batch --report`: thumbnails, rows, and the page as a real headless Chromium shows it."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from uvtag.outputs import report as report
from uvtag.cli import app
from uvtag.results import LabelScore
from videogen import frame_index_of, write_bytes, write_video

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Rows(HTMLParser):
    """Collects the attributes of every <tr class="video ..."> and every <img>/<a> of the document."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "video" in (a.get("class") or "").split():
            self.rows.append(a)
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "a":
            self.links.append(a.get("href") or "")


def parse(text: str) -> _Rows:
    p = _Rows()
    p.feed(text)
    return p


def hex_rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def test_thumbnails_are_jpegs_of_evenly_spread_frames(tmp_path):
    video = write_video(tmp_path / "v.mp4", num_frames=60, fps=20, size=(120, 160))
    assert report.thumbnail_indices(60, 6) == [5, 15, 25, 35, 45, 55]
    assert report.thumbnail_indices(3, 6) == [0, 1, 2] and report.thumbnail_indices(0, 6) == []
    thumbs = report.thumbnails(video, count=6, height=96)
    assert len(thumbs) == 6
    for jpeg, index in zip(thumbs, [5, 15, 25, 35, 45, 55]):
        img = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert img.shape == (96, 128, 3) and frame_index_of(img) == index


def test_html_escapes_and_links_relative(tmp_path):
    assert report.relative_href(tmp_path / "v" / "a b.mp4", tmp_path / "r") == "../v/a%20b.mp4"
    rows = [report.ReportRow("/x/<b>.mp4", (LabelScore("<script>", 0, 0.5),), (b"\xff\xd8",), (("out", "o.csv"),)),
            report.ReportRow("/x/bad.mp4", (), error="VideoError: file is empty")]
    text = report.report_html(rows)
    assert "<script>" not in text and "&lt;script&gt;" in text
    parsed = parse(text)
    assert [r["class"] for r in parsed.rows] == ["video ok", "video failed"]
    assert parsed.images == ["data:image/jpeg;base64,/9g="] and parsed.links == ["o.csv"]
    assert "1 videos tagged, 1 failed" in text and "http" not in text.replace('href="http', "")


@pytest.fixture(scope="module")
def batch_report(tiny_checkpoint, tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("report")
    videos = d / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", num_frames=40, fps=20, size=(72, 96))
    write_video(videos / "b é.mp4", num_frames=30, fps=15, size=(72, 96))
    write_bytes(videos / "broken.mp4", b"not a video\n" * 10)
    out, html_path = d / "tags.csv", d / "out" / "report.html"
    html_path.parent.mkdir()
    result = runner.invoke(app, ["batch", str(videos), "--out", str(out), "--report", str(html_path), "-m",
                                 tiny_checkpoint, "--clip", "1", "--no-isolate", "-q"], catch_exceptions=False)
    assert result.exit_code == 3, result.stderr  # one video failed
    return out, html_path


def test_batch_report_rows_and_links(batch_report):
    out, html_path = batch_report
    parsed = parse(html_path.read_text(encoding="utf-8"))
    assert [(Path(r["data-path"]).name, r["class"]) for r in parsed.rows] == [
        ("a.mp4", "video ok"), ("b é.mp4", "video ok"), ("broken.mp4", "video failed")]
    assert len(parsed.images) == 12 and all(s.startswith("data:image/jpeg;base64,") for s in parsed.images)
    assert "../tags.csv" in parsed.links and "../videos/b%20%C3%A9.mp4" in parsed.links
    for href in set(parsed.links):  # every link resolves to a file next to the report
        assert (html_path.parent / href.replace("%20", " ").replace("%C3%A9", "é")).exists(), href


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, timeout=120, text=True)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_in_headless_chromium(batch_report, tmp_path):
    _, html_path = batch_report
    dom = _chromium("--dump-dom", html_path.resolve().as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = parse(dom.stdout)
    assert [r["class"] for r in parsed.rows] == ["video ok", "video ok", "video failed"]
    shot = tmp_path / "shot.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1200,700", html_path.resolve().as_uri(), tmp=tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    img = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB).astype(int)
    assert img.shape[:2] == (700, 1200)
    ok = np.abs(img - hex_rgb(report.OK_COLOUR)).max(axis=2) <= 8
    failed = np.abs(img - hex_rgb(report.FAILED_COLOUR)).max(axis=2) <= 8
    column = int(np.median(np.flatnonzero(ok.any(axis=0))))
    ok_rows, failed_rows = _runs(ok[:, column]), _runs(failed[:, column])
    assert len(ok_rows) == 2 and len(failed_rows) == 1, (ok_rows, failed_rows)
    assert ok_rows[1][0] > ok_rows[0][1] and failed_rows[0][0] > ok_rows[1][1]  # top to bottom, failure last
    assert all(b - a >= 40 for a, b in ok_rows)  # each row as tall as its thumbnails
    # the inline thumbnails are painted: the test videos' pure red cells show in both ok rows
    red = (img[:, :, 0] > 235) & (img[:, :, 1] < 30) & (img[:, :, 2] < 30)  # not the failure red
    for a, b in ok_rows:
        assert red[a:b].sum() > 100
    assert red[failed_rows[0][0] : failed_rows[0][1]].sum() == 0
