"""Spatial preprocessing against the official outputs (tests/data/protocol/*.pt), bit for bit.

Bit-exactness of the resized tensors holds for x86 CPU torch kernels (AVX2 / AVX-512) with the
official call shape; the fixtures were made with torch 2.13.0 on CPU.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from uvtag.video import transforms
from uvtag.video.sampling import sample_clip_indices
from uvtag.video.transforms import (
    crop_offsets,
    crop_views,
    normalize,
    normalized_resized,
    resize_frame_by_frame,
    resized_shape,
    short_side_resize,
    spatial_indices,
    to_views,
    uniform_crop,
)

DATA = Path(__file__).parent / "data" / "protocol"
INDEX = json.loads((DATA / "protocol_index.json").read_text())
MEAN, STD = INDEX["mean"], INDEX["std"]
SPATIAL = {rec["file"]: rec for rec in INDEX["spatial"]}


def _load(name: str) -> dict[str, torch.Tensor]:
    return torch.load(DATA / name, map_location="cpu", weights_only=True)


def _official_normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """The official statement sequence (utils.tensor_normalize), as the reference."""
    x = x.float()
    x = x / 255.0
    x = x - torch.tensor(mean)
    x = x / torch.tensor(std)
    return x


@pytest.mark.parametrize(
    ("mean", "std"),
    [
        ([0.45, 0.45, 0.45], [0.225, 0.225, 0.225]),
        ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ([0.0, 0.1, 0.9], [1.0, 0.3, 0.07]),
    ],
)
def test_normalize_table_is_bit_identical_for_all_values(mean, std) -> None:
    values = torch.arange(256, dtype=torch.uint8)
    frames = values[:, None].expand(256, 3).reshape(1, 16, 16, 3)  # every value in every channel
    got = normalize(frames, mean, std)
    want = _official_normalize(frames, mean, std)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)


def test_normalize_random_means_and_numpy_input() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 7, 5, 3), dtype=np.uint8)
    for _ in range(20):
        mean = rng.uniform(0, 1, 3).tolist()
        std = rng.uniform(0.01, 2, 3).tolist()
        got = normalize(frames, mean, std)
        assert torch.equal(got, _official_normalize(torch.from_numpy(frames), mean, std))


def test_normalize_differs_from_folded_constants() -> None:
    """The check above can fail: a common rewrite changes the last bits of some values."""
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 256, 1).expand(1, 1, 256, 3)
    folded = (values.float() - 114.75) / 57.375
    assert not torch.equal(normalize(values, MEAN, STD), folded)


def test_normalize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        normalize(torch.zeros(1, 2, 2, 3), MEAN, STD)
    with pytest.raises(ValueError, match="T x H x W x C"):
        normalize(torch.zeros(2, 2, 3, dtype=torch.uint8), MEAN, STD)
    with pytest.raises(ValueError, match="one per channel"):
        normalize(torch.zeros(1, 2, 2, 3, dtype=torch.uint8), [0.5], [0.5])


@pytest.mark.parametrize("name", sorted(SPATIAL))
def test_resized_shape_and_offsets_match_index(name: str) -> None:
    rec = SPATIAL[name]
    _, h, w, _ = rec["video_shape_THWC"]
    for crop, info in rec["crops"].items():
        crop = int(crop)
        assert list(resized_shape(h, w, crop)) == info["resized_HW"]
        assert ((h, w) == resized_shape(h, w, crop)) == info["resize_skipped"]
        h2, w2 = info["resized_HW"]
        for s, yx in enumerate(info["crop_offsets_yx"]):
            assert list(crop_offsets(h2, w2, crop, s)) == yx


def test_floor_hazard_gives_14() -> None:
    assert resized_shape(22, 30, 11) == (11, 14)
    assert resized_shape(30, 22, 11) == (14, 11)


def test_resized_shape_rules() -> None:
    assert resized_shape(224, 398, 224) == (224, 398)  # short side already equal: unchanged
    assert resized_shape(720, 1280, 224) == (224, 398)
    assert resized_shape(1280, 720, 224) == (398, 224)
    assert resized_shape(100, 100, 224) == (224, 224)  # upsampling, square
    with pytest.raises(ValueError):
        resized_shape(0, 10, 4)


def test_crop_offsets_rules() -> None:
    assert crop_offsets(224, 398, 224, 0) == (0, 0)
    assert crop_offsets(224, 398, 224, 1) == (0, 87)
    assert crop_offsets(224, 398, 224, 2) == (0, 174)
    assert crop_offsets(17, 12, 12, 1) == (3, 0)  # ceil(2.5) on the vertical axis
    with pytest.raises(ValueError, match="spatial_index"):
        crop_offsets(20, 20, 16, 3)
    with pytest.raises(ValueError, match="cannot crop"):
        crop_offsets(10, 20, 12, 1)


@pytest.mark.parametrize(("mean", "std"), [(MEAN, STD), ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
def test_normalize_chunk_edges_and_strided_input_are_bit_identical(monkeypatch, mean, std) -> None:
    monkeypatch.setattr(transforms, "_LOOKUP_CHUNK", 7)  # 2 pixels a chunk: every edge case, small input
    rng = np.random.default_rng(1)
    frames = torch.from_numpy(rng.integers(0, 256, size=(2, 9, 11, 3), dtype=np.uint8))
    strided = frames.flip(-1)[:, 1:, ::2]  # reversed channels, a row and every other column dropped
    for x in (frames, strided, frames[:, :1, :1]):
        assert torch.equal(normalize(x, mean, std), _official_normalize(x, mean, std))


@pytest.mark.parametrize(("mean", "std"), [(MEAN, STD), ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
def test_normalize_peak_memory_is_its_output(mean, std) -> None:
    """Only the float32 output and one chunk's index are allocated (np.take on the whole stack
    made an int64 copy of every value: 3x the output at peak)."""
    frames = np.random.default_rng(2).integers(0, 256, size=(4, 256, 512, 3), dtype=np.uint8)
    normalize(frames[:, :1, :1], mean, std)  # the table is built (and cached) outside the measurement
    output_bytes = frames.size * 4  # 6 MiB
    tracemalloc.start()
    try:
        out = normalize(frames, mean, std)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == frames.shape
    assert peak < output_bytes + 2 * 2**20, peak


@pytest.mark.parametrize(
    ("frames", "height", "width", "crop"),
    [(8, 240, 320, 224), (16, 230, 410, 224), (32, 340, 360, 336), (8, 400, 300, 224), (8, 72, 96, 64),
     (4, 72, 96, 64), (2, 100, 102, 64), (8, 224, 300, 224), (8, 72, 96, 32), (8, 100, 101, 64), (3, 72, 96, 64)],
)
def test_frame_by_frame_resize_is_exact_where_it_is_used(frames, height, width, crop) -> None:
    clip = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (frames, height, width, 3), dtype=np.uint8))
    whole = to_views(clip, crop, MEAN, STD, [0, 1, 2])
    parts = torch.cat([normalized_resized(clip[t : t + 1], crop, MEAN, STD) for t in range(frames)], dim=1)
    if resize_frame_by_frame(height, width, crop, frames):
        assert torch.equal(crop_views(parts, crop, [0, 1, 2]), whole)
    else:  # output sides summing to 128 or less, or 3 frames: torch's channels-last kernel
        assert sum(resized_shape(height, width, crop)) <= 128 or frames == 3


@pytest.mark.parametrize("name", sorted(SPATIAL))
def test_spatial_cases_bit_exact(name: str) -> None:
    data = _load(name)
    for crop in SPATIAL[name]["crops"]:
        want = data[f"crop{crop}"]  # [3 crops, 3, T, c, c]
        got = to_views(data["video"], int(crop), MEAN, STD, [0, 1, 2])
        assert got.shape == want.shape
        assert got.dtype == torch.float32
        assert torch.equal(got, want), (name, (got - want).abs().max().item())


def test_e2e_k400_all_views_bit_exact() -> None:
    data = _load("e2e_k400_n50.pt")
    meta = INDEX["e2e"]
    n, f, k_total, s_total, crop = meta["n"], meta["F"], meta["K"], meta["S"], meta["crop"]
    video = data["video"]
    assert video.shape[0] == n
    crops = spatial_indices(s_total, "kinetics")
    views = []
    for k in range(k_total):
        idx = sample_clip_indices(n, f, k, k_total, "kinetics")
        first = k * len(crops)  # official item order v = k * S + s
        for v in range(first, first + len(crops)):
            assert idx == data["indices"][v].tolist()
            assert data["clip_of_view"][v].item() == k
            assert data["spatial_idx_of_view"][v].item() == crops[v - first]
        views.extend(to_views(video[idx], crop, MEAN, STD, crops))
    got = torch.stack(views)
    assert torch.equal(got, data["views"]), (got - data["views"]).abs().max().item()


def test_resize_order_matters_on_e2e() -> None:
    """Resizing before normalising (a plausible mistake) is detected by the exact comparison."""
    data = _load("e2e_k400_n50.pt")
    frames = data["video"][data["indices"][0]]
    x = frames.permute(3, 0, 1, 2).float()
    x = short_side_resize(x, 32)
    x = ((x / 255.0).permute(1, 2, 3, 0) - torch.tensor(MEAN)) / torch.tensor(STD)
    wrong = uniform_crop(x.permute(3, 0, 1, 2), 32, 0)
    assert not torch.equal(wrong, data["views"][0])


def test_short_side_resize_skips_and_keeps_identity() -> None:
    x = torch.randn(3, 2, 12, 20)
    assert short_side_resize(x, 12) is x
    assert short_side_resize(x, 10).shape == (3, 2, 10, 16)
    with pytest.raises(ValueError, match="C x T x H x W"):
        short_side_resize(torch.randn(2, 12, 20), 10)


def test_bgr_reverses_channels() -> None:
    data = _load("spatial_landscape_36x60.pt")
    video = data["video"]
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    bgr = to_views(video, 24, mean, std, [1], channel_order="BGR")
    want = to_views(video.flip(-1).contiguous(), 24, mean[::-1], std[::-1], [1])
    assert torch.equal(bgr, want)
    rgb = to_views(video, 24, mean, std, [1])
    assert torch.equal(bgr[:, 0], to_views(video, 24, mean, std, [1])[:, 2])
    assert not torch.equal(bgr, rgb)
    # with the official equal per-channel mean/std, BGR is exactly the channel flip of RGB
    official_bgr = to_views(video, 24, MEAN, STD, [0, 1, 2], channel_order="BGR")
    assert torch.equal(official_bgr, to_views(video, 24, MEAN, STD, [0, 1, 2]).flip(1))
    with pytest.raises(ValueError, match="channel_order"):
        to_views(video, 24, MEAN, STD, [1], channel_order="bgr")


def test_to_views_numpy_input_and_shape() -> None:
    data = _load("spatial_portrait_30x18.pt")
    got = to_views(data["video"].numpy(), 16, MEAN, STD, [2, 0])
    assert got.shape == (2, 3, 2, 16, 16)
    assert torch.equal(got, data["crop16"][[2, 0]])


def test_spatial_indices() -> None:
    assert spatial_indices(3, "kinetics") == [0, 1, 2]
    assert spatial_indices(3, "sth") == [0, 1, 2]
    assert spatial_indices(1, "kinetics") == [1]  # centre
    assert spatial_indices(1, "sth") == [0]  # the Sth loader has no centre rule
    with pytest.raises(ValueError):
        spatial_indices(4, "kinetics")
    with pytest.raises(ValueError):
        spatial_indices(1, "uniform")


def test_call_shape_matters_on_e2e() -> None:
    """Interpolating with T as the batch ([T, C, H, W]) differs by 1 ulp here; ours must not."""
    data = _load("e2e_k400_n50.pt")
    frames = data["video"][data["indices"][0]]
    x = normalize(frames, MEAN, STD).permute(3, 0, 1, 2)  # [C, T, H, W]
    ours = short_side_resize(x, 32)
    t_batch = short_side_resize(x.permute(1, 0, 2, 3), 32).permute(1, 0, 2, 3)
    assert ours.shape == t_batch.shape == (3, 8, 32, 42)
    assert not torch.equal(ours, t_batch)
    assert torch.allclose(ours, t_batch, atol=1e-5, rtol=0)
    assert torch.equal(uniform_crop(ours, 32, 0), data["views"][0])
