"""uvtag.outputs.timeline and `uvtag plot` / `localize --plot`: image size, bar colours where the segments are."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner
from videogen import write_video

from uvtag.cli import app
from uvtag.errors import UsageError
from uvtag.outputs import timeline as plot
from uvtag.outputs.formats import LocalizeJson
from uvtag.results import ClipPrediction, LabelScore, LocalizationResult, Segment, VideoInfo

runner = CliRunner()
DURATION = 20.0


def make_result() -> LocalizationResult:
    """20 s video, windows of 4 s every 2 s; 'run' peaks early, 'jump' late, 'wave' weak."""
    windows = []
    for k in range(9):
        start = 2.0 * k
        run, jump = max(0.0, 0.9 - 0.15 * k), min(0.95, 0.1 * k)
        top = sorted([("run", 0, run), ("jump", 1, jump), ("wave", 2, 0.05)], key=lambda x: -x[2])
        windows.append(ClipPrediction(start, start + 4.0, tuple(LabelScore(*t) for t in top)))
    segments = (Segment("run", 0, 0.0, 6.0, 0.8), Segment("jump", 1, 10.0, 14.5, 0.7),
                Segment("jump", 1, 16.0, 20.0, 0.9), Segment("clap", 3, 3.0, 5.0, 0.4))
    info = VideoInfo("/videos/match.mp4", 600, 30.0, DURATION, 640, 360)
    return LocalizationResult("/videos/match.mp4", "tiny", info, 4.0, 2.0, tuple(windows), segments)


def expected_columns(layout: plot.TimelineLayout, start: float, end: float) -> tuple[float, float]:
    span = layout.plot_x1 - layout.plot_x0
    return layout.plot_x0 + span * start / DURATION, layout.plot_x0 + span * end / DURATION


def read_png(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_png_size_and_segment_bars_exactly_where_the_segments_are(tmp_path):
    result = make_result()
    plot.save_timeline(result, tmp_path / "t.png", width=900)
    img = read_png(tmp_path / "t.png")
    curves, bars = plot.timeline_classes(result)
    layout = plot.timeline_layout(900, bars)
    assert img.shape == (layout.height, 900, 3)
    assert [label for label, _, _ in layout.bar_rows] == bars and set(bars) == {"run", "jump", "clap"}
    colours = plot.class_colours(result)
    assert len(set(colours.values())) == len(colours)  # one colour per class
    for label, y0, y1 in layout.bar_rows:
        for y in (y0, (y0 + y1) // 2, y1 - 1):
            row = img[y, layout.plot_x0 - 2 :]
            mine = np.all(row == colours[label], axis=1)
            expected = np.zeros_like(mine)
            for seg in result.segments:
                if seg.label == label:
                    a, b = expected_columns(layout, seg.start_sec, seg.end_sec)
                    cols = np.arange(mine.size) + layout.plot_x0 - 2
                    assert mine[(cols >= a + 1) & (cols < b - 1)].all(), (label, seg)
                    expected |= (cols >= a - 1) & (cols < b + 1)
            assert mine.any() and not (mine & ~expected).any(), label  # nowhere else on the row
            others = [c for k, c in colours.items() if k != label]
            assert not any(np.all(row == c, axis=1).any() for c in others)  # no other class on this row
            assert np.all(row[~mine] == plot.BACKGROUND)  # the rest of the bar row is blank
        assert (img[y1:y1 + 3, layout.plot_x0:] == plot.BACKGROUND).all()  # gap under each row


def test_curves_are_drawn_in_their_class_colours_inside_the_curve_panel(tmp_path):
    result = make_result()
    img = plot.draw_timeline(result, width=900, top_classes=2)
    curves, bars = plot.timeline_classes(result, 2)
    assert curves == ["run", "jump"]  # highest window scores first; 'wave' not drawn
    layout = plot.timeline_layout(900, bars)
    panel = img[layout.curve_y0 : layout.curve_y1, layout.plot_x0 : layout.plot_x1].astype(int)
    colours = plot.class_colours(result, 2)
    for label in curves:
        near = np.abs(panel - colours[label]).sum(axis=2) < 30
        assert near.sum() > 200, label
    # 'run' starts at 0.9 at the first window centre (2 s): its colour is there, near y(0.9)
    x = int(round(plot.time_to_x(2.0, DURATION, layout))) - layout.plot_x0
    y = int(round(layout.curve_y1 - 0.9 * (layout.curve_y1 - layout.curve_y0))) - layout.curve_y0
    assert (np.abs(panel[y - 3 : y + 4, x - 3 : x + 4] - colours["run"]).sum(axis=2) < 30).any()


def test_svg_has_the_same_geometry(tmp_path):
    result = make_result()
    plot.save_timeline(result, tmp_path / "t.svg", width=900)
    root = ET.fromstring((tmp_path / "t.svg").read_text())
    ns = {"s": "http://www.w3.org/2000/svg"}
    _, bars = plot.timeline_classes(result)
    layout = plot.timeline_layout(900, bars)
    assert (root.get("width"), root.get("height")) == ("900", str(layout.height))
    rows = {label: (y0, y1) for label, y0, y1 in layout.bar_rows}
    colours = plot.class_colours(result)
    rects = root.findall("s:rect[@class='segment']", ns)
    assert len(rects) == len(result.segments)
    for rect, seg in zip(rects, sorted(result.segments, key=lambda s: bars.index(s.label))):
        x0, x1 = plot.bar_columns(seg, DURATION, layout)
        a, b = expected_columns(layout, seg.start_sec, seg.end_sec)
        assert abs(x0 - a) <= 1 and abs(x1 - b) <= 1
        assert (int(rect.get("x")), int(rect.get("width"))) == (x0, x1 - x0)
        assert int(rect.get("y")) == rows[seg.label][0]
        assert rect.get("fill") == "#%02x%02x%02x" % colours[seg.label]
    assert [p.get("data-label") for p in root.findall("s:polyline", ns)] == ["wave", "jump", "run"]
    assert "match.mp4" in (tmp_path / "t.svg").read_text()


def test_ticks_and_formats():
    assert plot.nice_ticks(20.0) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert plot.nice_ticks(7200.0) == [i * 1000.0 for i in range(8)]
    assert plot.nice_ticks(0.3) == pytest.approx([0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
    with pytest.raises(UsageError, match=".png or .svg"):
        plot.plot_format("x.jpg")


def test_localize_json_round_trip(tmp_path):
    result = make_result()
    buffer = io.StringIO()
    LocalizeJson().write(result, buffer)
    (tmp_path / "r.json").write_text(buffer.getvalue())
    back = plot.load_localization(tmp_path / "r.json")
    assert (back.segments, back.windows, back.info) == (result.segments, result.windows, result.info)
    assert (back.window_sec, back.stride_sec) == (4.0, 2.0)


def test_localize_plot_and_plot_command(tiny_checkpoint, tmp_path):
    video = write_video(tmp_path / "v.mp4", num_frames=120, fps=20, size=(48, 64))
    png, saved = tmp_path / "t.png", tmp_path / "r.json"
    result = runner.invoke(app, ["localize", str(video), "-m", tiny_checkpoint, "-w", "2", "-s", "1",
                                 "--threshold", "0", "--out", str(saved), "--plot", str(png), "-q"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(saved.read_text())
    assert doc["segments"]  # threshold 0: every window's best label is active
    loaded = plot.load_localization(saved)
    _, bars = plot.timeline_classes(loaded)
    assert read_png(png).shape == (plot.timeline_layout(1200, bars).height, 1200, 3)
    svg = tmp_path / "t.svg"
    result = runner.invoke(app, ["plot", str(saved), "--out", str(svg), "--width", "700"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert len(ET.fromstring(svg.read_text()).findall("{http://www.w3.org/2000/svg}rect[@class='segment']")) == len(doc["segments"])
    again = runner.invoke(app, ["plot", str(saved), "--out", str(svg)])
    assert again.exit_code == 2 and "exists" in again.stderr
    bad = runner.invoke(app, ["plot", str(video), "--out", str(tmp_path / "x.png")])
    assert bad.exit_code == 2 and "v.mp4" in bad.stderr


def test_bad_extra_outputs_are_refused_before_any_work(tmp_path):
    video = write_video(tmp_path / "v.mp4", num_frames=10, fps=10, size=(48, 64))
    for extra, message in ((["--plot", str(tmp_path / "t.jpg")], ".png or .svg"),
                           (["--render", str(tmp_path / "r.avi")], ".mp4"),
                           (["--plot", str(tmp_path / "missing" / "t.png")], "does not exist")):
        result = runner.invoke(app, ["localize", str(video), "-m", str(tmp_path / "no-model.pt"), *extra])
        assert result.exit_code == 2 and message in result.stderr, result.stderr  # not the missing model


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_a_video_name_that_is_not_utf8_is_plotted(tmp_path, suffix):
    import os

    name = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4"))  # a Latin-1 name on disk
    os.rename(write_video(tmp_path / "made.mp4", num_frames=30, fps=10, size=(72, 96)), name)
    out = tmp_path / f"plot.{suffix}"
    result = runner.invoke(app, ["localize", name, "-m", "motion-tiny", "-w", "1", "-q", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    if suffix == "svg":
        title = ET.fromstring(out.read_bytes().decode("utf-8")).find("{http://www.w3.org/2000/svg}text")
        assert title is not None and title.text.startswith("caf\ufffd.mp4  |  motion-tiny")
    else:
        assert cv2.imread(str(out)) is not None
