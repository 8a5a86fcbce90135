"""Bounds on the work one command may ask for, through the real CLI: windows, views, frame sizes.

Each refusal is one line on stderr (no traceback) with the computed number in it. Tests that would
run for long without the bound lower the module constant instead of asking for a huge count.
"""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import uvtag
import uvtag.infer.views as views_module
import uvtag.infer.windows as windows_module
from conftest import TINY_LABELS, tiny_config
from uvtag.cli import app
from uvtag.errors import VideoError
from uvtag.infer.views import official_views
from uvtag.video import transforms
from uvtag.video.reader import open_video
from uvtag.video.transforms import resize_frame_by_frame, to_views
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
    args = ("classify", clip_3s, "-m", tiny_checkpoint, "--num-clips", "3", "--num-crops", "3", "-q", "-f", "json")
    assert invoke(*args).exit_code == 0
    monkeypatch.setattr(views_module, "MAX_VIEWS", 6)  # the checkpoint's own 2 x 3 views still pass
    result = invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert "3 clips x 3 crops make 9 views of one video, more than the 6 allowed" in error_line(result)


# ---------------------------------------------------------------- classify: full-resolution frames


def _uvtag_model(folder: Path, input_resolution: int, t_size: int = 4, channel_order: str = "RGB") -> Path:
    """A tiny random uvtag checkpoint (2 clips x 3 crops) with the given input size and frames."""
    from uvtag.model import build_model
    from uvtag.model.weights import save_checkpoint

    torch.manual_seed(0)
    config = dataclasses.replace(tiny_config(), input_resolution=input_resolution, patch_size=input_resolution // 4,
                                 t_size=t_size)
    model = build_model(config)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    path = folder / f"tiny_{input_resolution}px_t{t_size}_{channel_order}.pt"
    save_checkpoint(path, model, TINY_LABELS, {"protocol": {"num_clips": 2, "num_crops": 3, "channel_order": channel_order}})
    return path


def _reference_views(tagger, reader) -> torch.Tensor:
    """The official transform applied to each whole clip (all its frames decoded at once)."""
    ck = tagger.checkpoint
    views = official_views(reader.info.num_frames, ck.num_frames, ck.num_clips, ck.num_crops, ck.sampler)
    clips = list(dict.fromkeys(v.frame_indices for v in views))
    crops = sorted({v.spatial_index for v in views})
    return torch.cat([to_views(reader.get_frames(list(c)), ck.input_size, ck.mean, ck.std, crops, ck.channel_order)
                      for c in clips])


@pytest.fixture
def one_thread():
    """torch on one thread, where a 3-frame clip's resize takes the channels-last kernel too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "input_resolution, t_size, channel_order, by_frame",
    [(64, 8, "RGB", True), (64, 4, "BGR", True), (32, 8, "RGB", False), (64, 3, "RGB", False)],
)
def test_classify_views_are_the_official_clip_transform(tmp_path, one_thread, input_resolution, t_size,
                                                        channel_order, by_frame):
    """Frame by frame where that is exact, whole clips where it is not (the last two cases differ in
    the last bits when resized frame by frame): either way, the official clip transform's bits."""
    video = write_video(tmp_path / "v.mp4", num_frames=30, size=(72, 96))  # resized to 64 x 85 or 32 x 42
    model = _uvtag_model(tmp_path, input_resolution, t_size, channel_order)
    tagger = uvtag.load(model, device="cpu", progress=False)
    assert resize_frame_by_frame(72, 96, input_resolution, t_size) is by_frame
    with open_video(video) as reader:
        got = tagger.classify_views(reader)
        want = _reference_views(tagger, reader)
    assert got.shape == (6, 3, t_size, input_resolution, input_resolution)
    assert torch.equal(got, want)


def test_classify_refuses_frames_above_the_full_resolution_bound(tiny_checkpoint, clip_3s, monkeypatch):
    args = ("classify", clip_3s, "-m", tiny_checkpoint, "-q", "-f", "json")
    assert invoke(*args).exit_code == 0
    # the tiny model's clip path holds 4 frames normalising plus 8 decoded: 96 x 72 x 84 = 581 KiB
    monkeypatch.setattr(transforms, "MAX_FULL_RES_BYTES", 500 * 1024)
    result = invoke(*args)
    assert result.exit_code == 3 and json.loads(result.stdout)["videos"] == []
    line = error_line(result)
    assert "three_seconds.mp4: 96x72 frames need 567 KiB at full resolution" in line
    assert "(at most 500 KiB); downscale the video first" in line


def test_the_default_bound_refuses_11000_square_frames_and_takes_8192():
    with pytest.raises(VideoError, match=r"^big\.mp4: 11000x11000 frames need 1\.69 GiB .*at most 1 GiB"):
        transforms.check_full_resolution("big.mp4", 11000, 11000, 1)
    transforms.check_full_resolution("big.mp4", 8192, 8192, 1)


def test_classify_memory_follows_the_resized_size_not_the_source(tmp_path):
    """1920 x 1080 frames, 2 clips of 4: numpy allocations peak at about one full-resolution frame
    normalised (15 bytes a pixel), where decoding and normalising whole clips needs 8 decoded
    frames plus 4 normalised (84 bytes a pixel)."""
    video = write_video(tmp_path / "hd.mp4", num_frames=12, size=(1080, 1920))
    model = _uvtag_model(tmp_path, 64)  # 64 x 113 after the resize: frame by frame is exact
    one_frame = 1920 * 1080 * 15
    tracemalloc.start()
    try:
        result = invoke("classify", video, "-m", model, "-q", "-f", "json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["videos"][0]["num_views"] == 6
    assert peak < 2 * one_frame, f"peak {peak / 2**20:.0f} MiB"
