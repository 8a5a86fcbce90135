"""uvtag.outputs.video and `--render`: frame count, duration, timestamps, capped size, captions where they belong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY_LABELS
from uvtag.outputs import video
from uvtag.cli import app
from uvtag.errors import UsageError
from uvtag.results import LabelScore, LocalizationResult, Segment, VideoInfo, VideoPrediction
from uvtag.video.reader import open_video
from videogen import frame_index_of, vfr_pts_ms, write_video

runner = CliRunner()


def band_stats(frame: np.ndarray, band_h: int) -> tuple[int, float]:
    """(pixels of caption text, mean brightness) of the bottom `band_h` rows of an RGB frame."""
    band = frame[-band_h:].astype(int)
    return int(np.all(band > 180, axis=2).sum()), float(band.mean())


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("render")
    return write_video(d / "src.mp4", num_frames=60, fps=20, size=(240, 320))


def test_pure_helpers():
    assert video.capped_size(1080, 1920, 720) == (720, 1280)
    assert video.capped_size(240, 320, 120) == (120, 160)
    assert video.capped_size(72, 96, 720) == (72, 96)  # never upscaled
    assert video.capped_size(101, 77, 1000) == (100, 76)  # even sides for yuv420p
    with pytest.raises(UsageError):
        video.capped_size(100, 100, 1)
    caps = [video.Caption(1.0, 2.0, ("a",)), video.Caption(2.0, 3.0, ("a", "b"))]
    assert [video.caption_at(caps, t) for t in (0.5, 1.0, 1.99, 2.0, 3.0)] == [(), ("a",), ("a",), ("a", "b"), ()]
    segs = (Segment("run", 0, 0.0, 4.0, 0.6), Segment("jump", 1, 2.0, 6.0, 0.9))
    result = LocalizationResult("v.mp4", "m", VideoInfo("v.mp4", 1, 1.0, 6.0, 2, 2), 4.0, 2.0, (), segs)
    assert video.localization_captions(result) == [
        video.Caption(0.0, 2.0, ("run 0.60",)), video.Caption(2.0, 4.0, ("jump 0.90", "run 0.60")),
        video.Caption(4.0, 6.0, ("jump 0.90",))]
    pred = VideoPrediction("v.mp4", "m", result.info, (LabelScore("run", 0, 0.7), LabelScore("jump", 1, 0.2)), 1)
    (cap,) = video.classification_captions(pred)
    assert cap.lines == ("1. run 0.70", "2. jump 0.20") and video.caption_at([cap], 1e6) == cap.lines


def test_rendered_video_keeps_frames_and_timing_and_draws_captions_only_when_active(source, tmp_path):
    captions = [video.Caption(1.0, 2.0, ("walking 0.90",))]
    out = video.render_video(source, tmp_path / "a.mp4", captions, max_height=120)
    assert (out.num_frames, out.height, out.width) == (60, 120, 160)
    with open_video(source) as src, open_video(out.path) as dst:
        assert (dst.info.num_frames, dst.info.height, dst.info.width, dst.info.codec) == (60, 120, 160, "h264")
        assert dst.info.fps == pytest.approx(src.info.fps) and dst.info.duration_sec == pytest.approx(src.info.duration_sec)
        np.testing.assert_allclose(dst.timestamps_sec(), src.timestamps_sec(), atol=1e-4)
        rendered = dst.get_frames(range(60))
        plain = src.get_frames(range(60), size=(120, 160))
    _, _, band_h = video.caption_band(120, 1)
    for i in range(60):
        assert frame_index_of(rendered[i]) == i  # same frames, same order
        text, bright = band_stats(rendered[i], band_h)
        plain_text, plain_bright = band_stats(plain[i], band_h)
        assert plain_text == 0
        if 1.0 <= i / 20 < 2.0:
            assert text > 30 and bright < 0.6 * plain_bright, i  # dark band with white text
        else:
            assert text == 0 and abs(bright - plain_bright) < 4, i  # untouched
    above = np.abs(rendered[:, : 120 - band_h].astype(int) - plain[:, : 120 - band_h]).mean()
    assert above < 4  # only the band changes


def test_vfr_source_keeps_its_timestamps(tmp_path):
    src = write_video(tmp_path / "vfr.mp4", num_frames=45, pts_ms=vfr_pts_ms(45))
    out = video.render_video(src, tmp_path / "vfr_out.mp4", [video.Caption(0.0, 99.0, ("x",))])
    with open_video(src) as a, open_video(out.path) as b:
        assert b.info.num_frames == 45
        np.testing.assert_allclose(b.timestamps_sec(), a.timestamps_sec(), atol=1e-4)


def test_output_path_checks(source, tmp_path):
    with pytest.raises(UsageError, match=r"\.mp4"):
        video.check_render_path(tmp_path / "a.avi")
    (tmp_path / "b.mp4").write_bytes(b"old")
    with pytest.raises(UsageError, match="exists"):
        video.render_video(source, tmp_path / "b.mp4", [])
    assert (tmp_path / "b.mp4").read_bytes() == b"old"


def test_classify_render_draws_the_top_labels_on_every_frame(tiny_checkpoint, source, tmp_path):
    dst = tmp_path / "c.mp4"
    result = runner.invoke(app, ["classify", str(source), "-m", tiny_checkpoint, "--fast", "-k", "2", "-f", "json",
                                 "--render", str(dst), "--render-height", "160", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    top = json.loads(result.stdout)["videos"][0]["top"]
    assert top[0]["label"] in TINY_LABELS
    with open_video(dst) as r:
        assert (r.info.num_frames, r.info.height, r.info.width) == (60, 160, 212)
        frames = r.get_frames([0, 30, 59])
    _, _, band_h = video.caption_band(160, 2)
    for f in frames:
        text, _ = band_stats(f, band_h)
        assert text > 40
    again = runner.invoke(app, ["classify", str(source), str(source), "-m", tiny_checkpoint, "--render", str(dst)])
    assert again.exit_code == 2 and "one video" in again.stderr


def test_localize_render_follows_the_segments(tiny_checkpoint, source, tmp_path):
    dst, saved = tmp_path / "l.mp4", tmp_path / "l.json"
    result = runner.invoke(app, ["localize", str(source), "-m", tiny_checkpoint, "-w", "1", "-s", "0.5",
                                 "--threshold", "0", "--out", str(saved), "--render", str(dst), "-q"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    segments = json.loads(saved.read_text())["segments"]
    with open_video(dst) as r:
        assert r.info.num_frames == 60 and r.info.duration_sec == pytest.approx(3.0)
        frames, times = r.get_frames(range(60)), r.timestamps_sec()
    for frame, t in zip(frames, times):
        active = sum(1 for s in segments if s["start_sec"] <= t < s["end_sec"])
        text, _ = band_stats(frame, video.caption_band(240, max(active, 1))[2])
        assert (text > 30) == (active > 0), t
