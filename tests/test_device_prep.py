"""uvtag.infer.device_prep (uint8 frames to the model's device, preprocessed there) against the host path.

Measured tolerances (this file's cases, CPU device):
- frames at the resized size (the decoder resized them; `preprocess="uint8"`): clips and scores
  bit-identical to the host path (normalisation uses the official float32 ops);
- frames resized on the device (`preprocess="device"`) against the decoder's swscale bilinear,
  which scales the Y'CbCr planes before converting (chroma from its half-resolution plane) where
  the device resizes RGB: the reference fixture's 48x64 uniform-noise frames to 32x42 (the worst
  case: every pixel an edge) mean 7.7 levels, max 59; the barcode video's 72x96 frames to 24x32
  centre crop mean 2.5, 99th percentile 39, max 62 (saturated colour edges); tag_clips scores: see
  DEVICE_SCORE_TOLERANCE (measured 7.1e-4 on motion-tiny), top-1 identical.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

import uvtag
from tests.videogen import write_video
from uvtag.errors import UsageError
from uvtag.infer.device_prep import (
    ClipPrep,
    channels_first,
    normalise,
    prepare_clip,
    prepare_frame,
    resize_short_side,
    to_device,
)
from uvtag.model.zoo import KINETICS_MEAN, KINETICS_STD
from uvtag.video.reader import open_video
from uvtag.video.transforms import normalize, resized_shape, to_views

DATA = Path(__file__).parent / "data" / "protocol"
NOISE_MEAN_LEVELS = 8.0  # measured 7.7
EDGES_MEAN_LEVELS, EDGES_P99_LEVELS = 3.0, 48.0  # measured 2.5 and 39 (centre crop)
DEVICE_SCORE_TOLERANCE = 0.005  # measured 7.1e-4 (motion-tiny, 1 s clips)


def _frames(t=3, h=24, w=40, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_normalise_is_bit_identical_to_the_official_normalisation():
    frames = _frames()
    host = normalize(frames, KINETICS_MEAN, KINETICS_STD).permute(3, 0, 1, 2)
    ours = normalise(channels_first(torch.from_numpy(frames)), KINETICS_MEAN, KINETICS_STD)
    assert ours.dtype == torch.float32 and torch.equal(ours, host)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (24, 24)])
def test_clips_at_the_resized_size_equal_the_host_path(order, index, shape):
    frames = _frames(4, *shape, seed=index)
    prep = ClipPrep(24, KINETICS_MEAN, KINETICS_STD, order, index)
    host = to_views(frames, 24, KINETICS_MEAN, KINETICS_STD, [index], order)[0]
    assert torch.equal(prepare_clip(frames, prep, "cpu"), host)
    assert torch.equal(prepare_clip(torch.from_numpy(frames).permute(3, 0, 1, 2), prep, "cpu", "CTHW"), host)
    for t in range(4):  # frame by frame, as span_clips feeds them
        assert torch.equal(prepare_frame(frames[t], prep, "cpu"), host[:, t])


def test_the_comparison_sees_a_wrong_crop_or_order():
    frames = _frames(2, 24, 40)
    host = to_views(frames, 24, KINETICS_MEAN, KINETICS_STD, [1], "RGB")[0]
    assert not torch.equal(prepare_clip(frames, ClipPrep(24, KINETICS_MEAN, KINETICS_STD, "RGB", 0), "cpu"), host)
    assert not torch.equal(prepare_clip(frames, ClipPrep(24, KINETICS_MEAN, KINETICS_STD, "BGR", 1), "cpu"), host)


def _levels(clip: torch.Tensor) -> torch.Tensor:
    """Normalised RGB [3, ...] back to 0..255 levels (Kinetics constants)."""
    shape = (3,) + (1,) * (clip.ndim - 1)
    return (clip * torch.tensor(KINETICS_STD).reshape(shape) + torch.tensor(KINETICS_MEAN).reshape(shape)) * 255


def _swscale_resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What the decoder's scaler gives: swscale bilinear on the YUV picture, as PyAV's host path."""
    out = []
    for f in frames:
        yuv = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
        out.append(yuv.reformat(width=size[1], height=size[0], format="rgb24", interpolation="BILINEAR").to_ndarray())
    return np.stack(out)


def test_resize_on_the_device_is_close_to_the_decoders_on_the_reference_fixture():
    video = torch.load(DATA / "e2e_k400_n50.pt", weights_only=True)["video"][:8].numpy()  # [8, 48, 64, 3]
    full = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray(format="rgb24")
                     for f in video])  # the same pictures through 4:2:0, as a decoder would hold them
    size = resized_shape(48, 64, 32)
    ours = resize_short_side(channels_first(torch.from_numpy(full)), 32).permute(1, 2, 3, 0).numpy()
    diff = np.abs(ours - _swscale_resized(video, size).astype(np.float32))
    assert ours.shape == (8, *size, 3)
    assert diff.mean() <= NOISE_MEAN_LEVELS
    assert np.array_equal(ours, np.round(ours))  # uint8 levels, as a decoder's scaler gives


def test_resize_on_the_device_is_close_to_the_decoders_on_a_video(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=6, size=(72, 96))
    prep = ClipPrep(24, KINETICS_MEAN, KINETICS_STD)
    with open_video(path) as reader:
        full = reader.get_frames(range(6))
        decoded = reader.get_frames(range(6), size=resized_shape(72, 96, 24))
    host = prepare_clip(decoded, prep, "cpu")
    ours = prepare_clip(full, prep, "cpu")
    diff = (_levels(ours) - _levels(host)).abs()
    print("barcode crop levels mean", float(diff.mean()), "p99", np.percentile(diff.numpy(), 99), "max", float(diff.max()))
    assert diff.mean() <= EDGES_MEAN_LEVELS and np.percentile(diff.numpy(), 99) <= EDGES_P99_LEVELS


def test_upscaling_small_frames_works():
    clip = prepare_clip(_frames(2, 12, 20), ClipPrep(16, KINETICS_MEAN, KINETICS_STD), "cpu")
    assert clip.shape == (3, 2, 16, 16) and torch.isfinite(clip).all()


def test_to_device_keeps_cpu_frames_without_a_copy_and_checks_dtype():
    frames = torch.from_numpy(_frames(1, 4, 4))
    assert to_device(frames, "cpu").data_ptr() == frames.data_ptr()
    with pytest.raises(ValueError, match="uint8"):
        to_device(frames.float(), "cpu")
    with pytest.raises(ValueError, match="layout"):
        channels_first(frames, "HWC")
    with pytest.raises(ValueError, match="3 channels"):
        channels_first(frames, "CTHW")
    with pytest.raises(ValueError, match="channel_order"):
        ClipPrep(16, KINETICS_MEAN, KINETICS_STD, "RBG")


@pytest.fixture(scope="module")
def motion_video(tmp_path_factory) -> Path:
    from uvtag.synth import random_clip, write_video as write_scene

    scene = random_clip(np.random.default_rng(1), "moving right")
    return write_scene(scene, tmp_path_factory.mktemp("prep") / "moving.mp4", codec="h264")


def _scores(tagger, path, preprocess):
    tagger.preprocess = preprocess
    result = tagger.tag_clips(path, clip_sec=1.0, top=3)
    return np.stack([[s.score for s in c.top] for c in result.clips]), [c.top[0].label for c in result.clips]


def test_uint8_and_device_paths_give_the_host_scores(motion_video):
    tagger = uvtag.load("motion-tiny", device="cpu")
    host, host_top = _scores(tagger, motion_video, "host")
    uint8, uint8_top = _scores(tagger, motion_video, "uint8")
    device, device_top = _scores(tagger, motion_video, "device")
    assert np.array_equal(uint8, host) and uint8_top == host_top
    assert device_top == host_top
    print("device-resize score max abs difference", np.abs(device - host).max())
    assert np.abs(device - host).max() <= DEVICE_SCORE_TOLERANCE


def test_tiny_checkpoint_scores_on_the_reference_fixture_video(tiny_checkpoint, tmp_path):
    """The reference fixture's 48x64 video, encoded, tagged by the official tiny model both ways."""
    video = torch.load(DATA / "e2e_k400_n50.pt", weights_only=True)["video"].numpy()
    path = tmp_path / "e2e.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "0"})
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        for f in video:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    tagger = uvtag.load(tiny_checkpoint, device="cpu")
    host, _ = _scores(tagger, path, "host")
    uint8, _ = _scores(tagger, path, "uint8")
    assert np.array_equal(uint8, host)


def test_classify_is_the_exact_path_whatever_the_preprocess(motion_video):
    tagger = uvtag.load("motion-tiny", device="cpu")
    with tagger.open(motion_video) as reader:
        exact = tagger.classify_views(reader)
    tagger.preprocess = "device"
    with tagger.open(motion_video) as reader:
        assert torch.equal(tagger.classify_views(reader), exact)


def test_unknown_preprocess_is_a_usage_error():
    tagger = uvtag.load("motion-tiny", device="cpu")
    with pytest.raises(UsageError, match="preprocess"):
        type(tagger)(tagger.predictor.model, tagger.checkpoint, tagger.labels, preprocess="gpu")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_prep_equals_the_cpu_one():
    prep = ClipPrep(24, KINETICS_MEAN, KINETICS_STD, "BGR", 2)
    frames = _frames(4, 24, 40)
    on_gpu = prepare_clip(frames, prep, "cuda")
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), prepare_clip(frames, prep, "cpu"))
    big = _frames(2, 72, 96)  # resized on the device: float kernels may round a level apart
    diff = (_levels(prepare_clip(big, prep, "cuda").cpu()) - _levels(prepare_clip(big, prep, "cpu"))).abs()
    assert diff.max() <= 1.01


@cuda
def test_cuda_scores_of_the_uint8_and_device_paths(motion_video):
    tagger = uvtag.load("motion-tiny", device="cuda", precision="fp32")
    host, host_top = _scores(tagger, motion_video, "host")
    uint8, _ = _scores(tagger, motion_video, "uint8")
    device, device_top = _scores(tagger, motion_video, "device")
    assert np.array_equal(uint8, host)
    assert device_top == host_top and np.abs(device - host).max() <= DEVICE_SCORE_TOLERANCE


def test_yuv_planes_give_the_clips_of_rgb_frames(tmp_path):
    from tests.videogen import write_rotated
    from uvtag.video.colour import Yuv420Frame

    src = write_video(tmp_path / "v.mp4", num_frames=4, size=(72, 96))
    prep = ClipPrep(24, KINETICS_MEAN, KINETICS_STD, "RGB", 0)
    for path in (src, write_rotated(src, tmp_path / "r.mp4", 90)):
        with open_video(path) as reader:
            rgb = dict(reader.iter_frames(range(4)))
            raw = dict(reader.iter_frames(range(4), raw=True))
            resized = dict(reader.iter_frames(range(2), size=(24, 32), raw=True))
        assert all(isinstance(f, Yuv420Frame) for f in raw.values())
        assert all(isinstance(f, np.ndarray) for f in resized.values())  # a size asks the decoder to scale
        for i in range(4):
            assert torch.equal(raw[i].to_rgb().permute(1, 2, 0), torch.from_numpy(rgb[i]))
            assert torch.equal(prepare_frame(raw[i], prep, "cpu"), prepare_frame(rgb[i], prep, "cpu"))


def test_device_path_scores_are_the_same_from_planes_or_rgb(motion_video):
    planes = uvtag.load("motion-tiny", device="cpu")
    rgb = uvtag.load("motion-tiny", device="cpu", isolate=True)  # isolated readers send RGB
    assert np.array_equal(_scores(planes, motion_video, "device")[0], _scores(rgb, motion_video, "device")[0])


def test_frames_swscale_must_convert_stay_rgb_in_raw_mode(tmp_path):
    """4:4:4 (or a matrix colour.py lacks) is not sent as planes: the decoder's RGB comes instead."""
    from uvtag.video.colour import Yuv420Frame

    path = tmp_path / "v444.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv444p"
        for i in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(_frames(1, 48, 64, seed=i)[0], format="rgb24")))
        out.mux(stream.encode())
    with open_video(path) as reader:
        frames = dict(reader.iter_frames(range(3), raw=True))
    assert all(isinstance(f, np.ndarray) and not isinstance(f, Yuv420Frame) and f.shape == (48, 64, 3)
               for f in frames.values())
