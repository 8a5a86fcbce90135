"""Bounds on the work one command may ask for, through the real CLI: windows, views, frame sizes.

Each refusal is one line on stderr (no traceback) with the computed number in it. Tests that would
run for long without the bound lower the module constant instead of asking for a huge count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import uvtag.infer.views as views_module
import uvtag.infer.windows as windows_module
from uvtag.cli import app
from videogen import write_video

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    """The single line a refused command writes on stderr (asserts there is exactly one)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def clip_3s(tmp_path_factory) -> Path:
    """3 s of 20 fps video (60 frames)."""
    return write_video(tmp_path_factory.mktemp("bounds") / "three_seconds.mp4", num_frames=60, fps=20)


# ---------------------------------------------------------------- localize and batch: windows


def test_localize_refuses_a_stride_that_makes_too_many_windows(tiny_checkpoint, clip_3s):
    result = invoke("localize", clip_3s, "-m", tiny_checkpoint, "--window", "1", "--stride", "1e-9", "-q")
    assert result.exit_code == 2
    line = error_line(result)
    assert "2,000,000,000 windows" in line and "1,000,000 allowed" in line and "--stride" in line


def test_localize_window_bound_is_the_module_constant(tiny_checkpoint, clip_3s, monkeypatch):
    # 3 s, 1 s windows every 0.1 s: 21 windows, fine by default, refused under a bound of 20
    args = ("localize", clip_3s, "-m", tiny_checkpoint, "--window", "1", "--stride", "0.1", "-q", "-f", "json")
    assert invoke(*args).exit_code == 0
    monkeypatch.setattr(windows_module, "MAX_WINDOWS", 20)
    result = invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert "21 windows, more than the 20 allowed" in error_line(result)


def test_batch_refuses_a_clip_stride_that_makes_too_many_clips(tiny_checkpoint, clip_3s, tmp_path):
    out = tmp_path / "labels.csv"
    result = invoke("batch", clip_3s, "--out", out, "-m", tiny_checkpoint, "--clip", "1", "--stride", "1e-9",
                    "--no-isolate", "-q")
    assert result.exit_code == 3  # batch records the video as failed and goes on
    line = error_line(result)
    assert "2,000,000,000 clips" in line and "1,000,000 allowed" in line
    assert "2,000,000,000 clips" in out.read_text()  # the failure row says why


def test_batch_clip_bound_is_the_module_constant(tiny_checkpoint, clip_3s, tmp_path, monkeypatch):
    monkeypatch.setattr(windows_module, "MAX_WINDOWS", 5)
    out = tmp_path / "labels.csv"
    result = invoke("batch", clip_3s, "--out", out, "-m", tiny_checkpoint, "--clip", "0.5", "--no-isolate", "-q")
    assert result.exit_code == 3
    assert "6 clips, more than the 5 allowed" in error_line(result)


# ---------------------------------------------------------------- classify: views


def test_classify_refuses_too_many_clips(tiny_checkpoint, clip_3s):
    result = invoke("classify", clip_3s, "-m", tiny_checkpoint, "--num-clips", "1000000", "-q")
    assert result.exit_code == 2
    line = error_line(result)
    assert "1,000,000 clips x 3 crops make 3,000,000 views" in line and "--num-clips" in line


def test_classify_view_bound_is_the_module_constant(tiny_checkpoint, clip_3s, monkeypatch):
    args = ("classify", clip_3s, "-m", tiny_checkpoint, "--num-clips", "2", "--num-crops", "3", "-q", "-f", "json")
    assert invoke(*args).exit_code == 0
    monkeypatch.setattr(views_module, "MAX_VIEWS", 5)
    result = invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert "2 clips x 3 crops make 6 views of one video, more than the 5 allowed" in error_line(result)
