"""uvtag.video.colour against libswscale (PyAV's rgb24 reformat) on the same YUV pictures.

Measured tolerances (max abs difference in uint8 levels, ours vs swscale's rgb24):
- even heights, any width (odd included), BT.601 and BT.709, limited and full range, random
  and smooth pictures and decoded videos: 0 (bit-identical: swscale's unscaled fixed-point path);
- odd heights of 7 rows and more, in-gamut smooth pictures: at most 3 (BT.601/709 limited: 3;
  full range: 2), mean under 1.1; swscale's general scaler interpolates the chroma rows with
  its own filter weights and rounding there.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from tests.videogen import make_frame, write_rotated, write_video
from uvtag.video.backends import yuv420_planes
from uvtag.video.colour import ColourSpec, fixed_point, nv12_to_rgb, rotate, spec_of, yuv420_to_rgb
from uvtag.video.reader import open_video

SPECS = [ColourSpec(m, r) for m in ("bt601", "bt709") for r in ("limited", "full")]
_TAGS = {"bt601": 6, "bt709": 1}  # AVCOL_SPC_SMPTE170M, AVCOL_SPC_BT709
ODD_HEIGHT_TOLERANCE = 3


def _frame(y: np.ndarray, u: np.ndarray, v: np.ndarray, spec: ColourSpec) -> av.VideoFrame:
    """An av.VideoFrame holding these planes, tagged with `spec`."""
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, data in zip(frame.planes, (y, u, v)):
        padded = np.zeros((data.shape[0], plane.line_size), np.uint8)
        padded[:, : data.shape[1]] = data
        plane.update(padded.tobytes())
    frame.colorspace = _TAGS[spec.matrix]
    frame.color_range = 2 if spec.range == "full" else 1
    return frame


def _random_planes(rng, height, width):
    ch, cw = (height + 1) // 2, (width + 1) // 2
    return (rng.integers(0, 256, (height, width), dtype=np.uint8),
            rng.integers(0, 256, (ch, cw), dtype=np.uint8), rng.integers(0, 256, (ch, cw), dtype=np.uint8))


def _smooth_planes(height, width):
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = np.mgrid[0 : (height + 1) // 2, 0 : (width + 1) // 2]
    y = (60 + 100 * np.sin(xx / 7 + yy / 5) ** 2).astype(np.uint8)
    return y, (128 + 60 * np.sin(cx / 4)).astype(np.uint8), (128 + 60 * np.cos(cy / 3)).astype(np.uint8)


def _ours(y, u, v, spec) -> np.ndarray:
    rgb = yuv420_to_rgb(torch.from_numpy(y), torch.from_numpy(u), torch.from_numpy(v), spec)
    return rgb.permute(1, 2, 0).numpy()  # [H, W, 3] like swscale's rgb24


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.matrix}-{s.range}")
@pytest.mark.parametrize("size", [(64, 64), (8, 13), (10, 14), (2, 2), (36, 100), (4, 1)])
def test_even_heights_are_bit_identical_to_swscale(spec, size):
    rng = np.random.default_rng(sum(size))
    for planes in (_random_planes(rng, *size), _smooth_planes(*size)):
        frame = _frame(*planes, spec)
        assert spec_of(frame.colorspace, frame.color_range, frame.format.name) == spec
        expected = frame.to_ndarray(format="rgb24")
        assert _diff(_ours(*planes, spec), expected).max() == 0


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.matrix}-{s.range}")
@pytest.mark.parametrize("size", [(7, 8), (9, 13), (31, 45)])
def test_odd_heights_are_within_the_stated_tolerance(spec, size):
    planes = _smooth_planes(*size)
    diff = _diff(_ours(*planes, spec), _frame(*planes, spec).to_ndarray(format="rgb24"))
    assert diff.max() <= ODD_HEIGHT_TOLERANCE
    assert diff.mean() < 1.2


def test_a_wrong_matrix_or_range_would_be_seen():
    """The comparisons above can fail: BT.709 read as BT.601 (or full as limited) is far off."""
    planes = _smooth_planes(16, 16)
    expected = _frame(*planes, ColourSpec("bt709")).to_ndarray(format="rgb24")
    assert _diff(_ours(*planes, ColourSpec("bt601")), expected).max() > 10
    assert _diff(_ours(*planes, ColourSpec("bt709", "full")), expected).max() > 10


def _encode(path, spec: ColourSpec | None, size=(72, 96), codec="libx264", frames=4):
    """A short video whose stream carries `spec`'s tags (None: untagged, as most files)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=30, options={"preset": "ultrafast"} if codec == "libx264" else {})
        stream.height, stream.width = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if spec is not None:
            stream.codec_context.colorspace = _TAGS[spec.matrix]
            stream.codec_context.color_range = 2 if spec.range == "full" else 1
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(make_frame(i, size[1], size[0]), format="rgb24")
            if spec is not None:
                frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709" if spec.matrix == "bt709" else "ITU601",
                                       dst_color_range="JPEG" if spec.range == "full" else "MPEG")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("spec", [None, *SPECS], ids=lambda s: "untagged" if s is None else f"{s.matrix}-{s.range}")
def test_decoded_frames_match_swscale(tmp_path, spec):
    path = _encode(tmp_path / "v.mp4", spec, size=(72, 98))
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            got = spec_of(frame.colorspace, frame.color_range, frame.format.name)
            assert got == (spec or ColourSpec())
            assert _diff(_ours(*yuv420_planes(frame), got), frame.to_ndarray(format="rgb24")).max() == 0


def test_mjpeg_full_range_frames_match_swscale(tmp_path):
    path = _encode(tmp_path / "v.avi", None, codec="mjpeg")
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        spec = spec_of(frame.colorspace, frame.color_range, frame.format.name)
        assert frame.format.name == "yuvj420p" and spec == ColourSpec("bt601", "full")
        assert _diff(_ours(*yuv420_planes(frame), spec), frame.to_ndarray(format="rgb24")).max() == 0


def test_nv12_equals_planar():
    y, u, v = _random_planes(np.random.default_rng(3), 10, 13)
    uv = np.stack([u, v], axis=-1).reshape(u.shape[0], -1)  # Cb, Cr alternating
    for spec in SPECS:
        planar = yuv420_to_rgb(torch.from_numpy(y), torch.from_numpy(u), torch.from_numpy(v), spec)
        assert torch.equal(nv12_to_rgb(torch.from_numpy(y), torch.from_numpy(uv), spec), planar)


def test_frames_convert_together_as_alone():
    rng = np.random.default_rng(4)
    frames = [_random_planes(rng, 6, 8) for _ in range(3)]
    stacked = [torch.from_numpy(np.stack(p)) for p in zip(*frames)]
    together = yuv420_to_rgb(*stacked, ColourSpec("bt709"))
    assert together.shape == (3, 3, 6, 8)
    for i, planes in enumerate(frames):
        assert np.array_equal(together[i].permute(1, 2, 0).numpy(), _ours(*planes, ColourSpec("bt709")))


def test_float_output_holds_the_same_levels():
    y, u, v = (torch.from_numpy(p) for p in _random_planes(np.random.default_rng(5), 4, 6))
    assert torch.equal(yuv420_to_rgb(y, u, v, dtype=torch.float32), yuv420_to_rgb(y, u, v).float())


def test_rotation_matches_the_cpu_reader(tmp_path):
    src = write_video(tmp_path / "v.mp4", num_frames=3, size=(72, 96))
    for degrees in (90, 180, 270):
        rotated = write_rotated(src, tmp_path / f"r{degrees}.mp4", degrees)
        with open_video(rotated, backend="pyav") as reader:
            expected = reader.get_frames([0, 1])
        with av.open(str(rotated)) as container:
            frames = [f for _, f in zip(range(2), container.decode(video=0))]
        for frame, want in zip(frames, expected):
            rgb = rotate(yuv420_to_rgb(*(torch.from_numpy(p) for p in yuv420_planes(frame))), frame.rotation)
            assert _diff(rgb.permute(1, 2, 0).numpy(), want).max() == 0


def test_fixed_point_coefficients_are_swscales():
    k = fixed_point(ColourSpec("bt601", "limited"))
    assert (k.y, k.y_offset, k.vr, k.ub, k.ug, k.vg) == (9539, 128, 13075, 16525, -3209, -6660)
    k = fixed_point(ColourSpec("bt709", "full"))
    assert (k.y, k.y_offset) == (8192, 0) and k.ug < 0 and k.vg < 0


def test_unsupported_tags_and_bad_planes():
    assert spec_of(9, 1) is None  # BT.2020: the caller keeps the decoder's conversion
    assert spec_of(2, 0) == ColourSpec("bt601", "limited")
    assert spec_of(1, 0, "yuvj420p") == ColourSpec("bt709", "full")
    with pytest.raises(ValueError, match="matrix"):
        ColourSpec("bt2020")
    y = torch.zeros(4, 6, dtype=torch.uint8)
    with pytest.raises(ValueError, match="chroma"):
        yuv420_to_rgb(y, torch.zeros(2, 2, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        yuv420_to_rgb(y.float(), torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NV12"):
        nv12_to_rgb(y, torch.zeros(2, 5, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_conversion_equals_the_cpu_one():
    rng = np.random.default_rng(6)
    for size in [(720, 1280), (9, 13), (31, 45)]:
        planes = [torch.from_numpy(p) for p in _random_planes(rng, *size)]
        for spec in SPECS:
            on_gpu = yuv420_to_rgb(*(p.cuda() for p in planes), spec)
            assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), yuv420_to_rgb(*planes, spec))
