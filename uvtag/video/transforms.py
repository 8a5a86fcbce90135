"""Pure tensor ops that turn sampled uint8 frames into the official test-time views.

Official order (`slowfast/datasets/{utils,transform}.py`, test mode), reproduced bit for bit on
x86 CPU torch:

1. normalize at full resolution, layout T x H x W x C: x / 255, - mean, / std, all float32;
2. permute to C x T x H x W (a non-contiguous view, as the official code passes it on);
3. short-side resize to the crop size: `F.interpolate(bilinear, align_corners=False)` on that 4-D
   tensor (C acts as the batch, T as the channels), skipped when the short side already equals it;
4. crop crop x crop at spatial index 0 / 1 / 2 (left / centre / right; top / centre / bottom for
   portrait frames).

The resize runs once per clip and every crop is cut from the same resized tensor.

Memory: steps 1-3 hold full-resolution float32 frames. Resizing frame by frame
(`normalized_resized` on one frame, then `crop_views` on the frames put back together) gives the
same bits as the clip's one resize wherever torch's CPU bilinear kernel treats every plane on its
own (`resize_frame_by_frame`), so a caller can then hold one full-resolution frame at a time;
`check_full_resolution` refuses frames whose full-resolution working set would pass
`MAX_FULL_RES_BYTES`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from uvtag.errors import VideoError

CHANNEL_ORDERS = ("RGB", "BGR")
_LOOKUP_CHUNK = 1 << 16  # values looked up at a time: the int64 index of a chunk is 512 KiB
# Most bytes of full-resolution frames (decoded uint8 plus normalised float32) that the exact
# protocol may hold at once. 1 GiB lets frames be resized one by one up to 8192 x 8192 (15 bytes a
# pixel: 1.0 GB) and refuses larger ones (11000 x 11000 would need 1.8 GB).
MAX_FULL_RES_BYTES = 1 << 30
_BYTES_DECODED = 3  # a decoded uint8 RGB pixel
_BYTES_NORMALISED = 3 + 12  # a pixel being normalised: its uint8 copy and its float32 value
# torch's CPU bilinear resize of an [N, C, H, W] float tensor loops over every (n, c) plane alone
# (its generic kernel) unless the output's H + W is at most 128, or C is 3 on one thread; those
# take a channels-last kernel whose rounding depends on C (here C is the clip's T).
_PLANEWISE_MIN_SIDES = 129


@lru_cache(maxsize=16)
def _normalize_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """float32 [256, C]: entry [v, c] is the official normalisation of value v in channel c."""
    values = torch.arange(256, dtype=torch.uint8).float()[:, None]  # [256, 1]
    values = values / 255.0
    values = values - torch.tensor(mean, dtype=torch.float32)
    values = values / torch.tensor(std, dtype=torch.float32)  # [256, C]
    return values.contiguous()


def _as_uint8_tensor(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Check frames are uint8 [T, H, W, C] and return them as a CPU tensor (numpy: no copy)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a torch tensor or numpy array, got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4:
        raise ValueError(f"frames must be T x H x W x C, got shape {tuple(frames.shape)}")
    return frames.cpu()


def normalize(
    frames: torch.Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Scale uint8 frames to float32 and normalise per channel, exactly as the official code.

    Equal, bit for bit, to `((x.float() / 255.0) - tensor(mean)) / tensor(std)` in float32; it is
    computed by a 256-entry table per channel built with those same operations and indexed with
    the uint8 values (no float arithmetic per pixel). The values are looked up `_LOOKUP_CHUNK` at
    a time, so the only memory beyond the output is one chunk's int64 index.

    Args:
        frames: uint8 [T, H, W, C] (torch or numpy; a GPU tensor is copied to the CPU).
        mean: C per-channel means, in the same channel order as `frames`, on the 0..1 scale.
        std: C per-channel standard deviations, same order and scale.

    Returns:
        float32 [T, H, W, C], contiguous, on the CPU.
    """
    frames = _as_uint8_tensor(frames)
    num_channels = frames.shape[-1]
    if len(mean) != num_channels or len(std) != num_channels:
        raise ValueError(
            f"mean and std need {num_channels} values (one per channel), "
            f"got {len(mean)} and {len(std)}"
        )
    lut = _normalize_lut(tuple(float(m) for m in mean), tuple(float(s) for s in std)).numpy()
    values = np.ascontiguousarray(frames.numpy()).reshape(-1)
    out = np.empty(frames.shape, dtype=np.float32)
    _lookup(lut, values, out.reshape(-1))
    return torch.from_numpy(out)


def _lookup(lut: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """out[i] = lut[values[i], i % C] for flat channel-last uint8 `values`, chunk by chunk.

    np.take turns its indices into int64 first (8 bytes a value); one chunk at a time keeps that
    copy small. Equal tables for every channel (all official checkpoints) use one column.
    """
    num_channels = lut.shape[1]
    same = bool((lut == lut[:, :1]).all())
    table = np.ascontiguousarray(lut[:, 0]) if same else lut.reshape(-1)  # [256] or [256 * C]
    step = max(1, _LOOKUP_CHUNK // num_channels) * num_channels  # whole pixels per chunk
    channel = np.tile(np.arange(num_channels, dtype=np.intp), step // num_channels)
    for start in range(0, values.size, step):
        chunk = values[start : start + step]
        index = chunk.astype(np.intp)
        if not same:  # row v of channel c is entry v * C + c of the flat table
            index *= num_channels
            index += channel[: chunk.size]
        np.take(table, index, out=out[start : start + step], mode="clip")  # uint8: always in range


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Size after the official short-side resize (`random_short_side_scale_jitter`, test mode).

    Frames whose short side equals `size` keep their size; otherwise the short side becomes
    `size` and the long side `floor(long / short * size)` in float64 (divide, then multiply:
    22 x 30 to 11 gives 11 x 14, not 11 x 15).

    Returns:
        (new_height, new_width) in pixels.
    """
    if min(height, width, size) < 1:
        raise ValueError(f"sizes must be positive, got {height} x {width} -> {size}")
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(math.floor((float(height) / width) * size)), size
    return size, int(math.floor((float(width) / height) * size))


def short_side_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the short side is `size`, exactly as the official test transform.

    Args:
        x: float [C, T, H, W]; interpolated with C as the batch and T as the channels (this call
            shape is part of bit-exactness).
        size: target short side in pixels.

    Returns:
        float [C, T, H', W'] with (H', W') = resized_shape(H, W, size); `x` itself when the short
        side already equals `size`.
    """
    if x.ndim != 4:
        raise ValueError(f"expected C x T x H x W, got shape {tuple(x.shape)}")
    height, width = int(x.shape[2]), int(x.shape[3])
    new_shape = resized_shape(height, width, size)
    if new_shape == (height, width):
        return x
    return F.interpolate(x, size=new_shape, mode="bilinear", align_corners=False)


def crop_offsets(height: int, width: int, size: int, spatial_index: int) -> tuple[int, int]:
    """Top-left corner (y, x) of the official `uniform_crop` of a size x size square.

    The centre (index 1) uses ceil((side - size) / 2). Portrait frames (h > w) move along y:
    0 = top, 2 = bottom; landscape and square frames move along x: 0 = left, 2 = right.

    Returns:
        (y, x) in pixels of the resized frame.
    """
    if spatial_index not in (0, 1, 2):
        raise ValueError(f"spatial_index must be 0, 1 or 2, got {spatial_index!r}")
    if size < 1 or height < size or width < size:
        raise ValueError(f"cannot crop {size} x {size} from {height} x {width}")
    y = math.ceil((height - size) / 2)
    x = math.ceil((width - size) / 2)
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[spatial_index]
    else:
        x = {0: 0, 1: x, 2: width - size}[spatial_index]
    return y, x


def uniform_crop(x: torch.Tensor, size: int, spatial_index: int) -> torch.Tensor:
    """Crop [..., H, W] to [..., size, size] at the official offsets (a view, no copy)."""
    y0, x0 = crop_offsets(int(x.shape[-2]), int(x.shape[-1]), size, spatial_index)
    return x[..., y0 : y0 + size, x0 : x0 + size]


def spatial_indices(num_crops: int, sampler: str = "kinetics") -> list[int]:
    """Spatial crop indices the official test loader uses for `num_crops` crops per clip.

    With 3 crops both loaders use [0, 1, 2]. With 1 crop the Kinetics-family loader takes the
    centre ([1]) while the Something-Something loader takes crop 0 ([0]).
    """
    if sampler not in ("kinetics", "sth"):
        raise ValueError(f"unknown sampler {sampler!r}; expected kinetics or sth")
    if isinstance(num_crops, bool) or num_crops not in (1, 2, 3):
        raise ValueError(f"num_crops must be 1, 2 or 3, got {num_crops!r}")
    if num_crops == 1 and sampler == "kinetics":
        return [1]
    return list(range(num_crops))


def normalized_resized(
    frames: torch.Tensor | np.ndarray,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    channel_order: str = "RGB",
) -> torch.Tensor:
    """Steps 1-3 of the official transform: normalise, permute, short-side resize.

    Args:
        frames: uint8 [T, H, W, 3] RGB frames of one clip.
        crop_size: c, the checkpoint's input size (short side is resized to it).
        mean, std: per-channel values on the 0..1 scale, given in RGB order.
        channel_order: the order the model expects: "RGB" (Kinetics family) or "BGR"
            (Something-Something, whose official loader feeds OpenCV's BGR). "BGR" reverses the
            channels of the frames and of mean/std before normalising.

    Returns:
        float32 [3, T, H', W'] with (H', W') = resized_shape(H, W, c).
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be RGB or BGR, got {channel_order!r}")
    frames = _as_uint8_tensor(frames)
    if frames.shape[-1] != 3:
        raise ValueError(f"frames must have 3 channels (RGB), got shape {tuple(frames.shape)}")
    if channel_order == "BGR":
        frames = frames.flip(-1)
        mean, std = list(mean)[::-1], list(std)[::-1]
    x = normalize(frames, mean, std)  # [T, H, W, C]
    x = x.permute(3, 0, 1, 2)  # [C, T, H, W], non-contiguous like the official call
    return short_side_resize(x, crop_size)  # [C, T, H', W']


def crop_views(x: torch.Tensor, crop_size: int, spatial_indices: Sequence[int]) -> torch.Tensor:
    """Step 4: the crops of a resized clip [3, T, H', W'], stacked to float32 [S, 3, T, c, c]."""
    if len(spatial_indices) == 0:
        raise ValueError("spatial_indices is empty: no view to make")
    return torch.stack([uniform_crop(x, crop_size, s) for s in spatial_indices])


def to_views(
    frames: torch.Tensor | np.ndarray,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    spatial_indices: Sequence[int],
    channel_order: str = "RGB",
) -> torch.Tensor:
    """All spatial views of one clip: normalise once, resize once, crop once per index.

    Args:
        frames: uint8 [T, H, W, 3] RGB frames of one clip.
        crop_size, mean, std, channel_order: see `normalized_resized`.
        spatial_indices: S crop positions (see `spatial_indices`).

    Returns:
        float32 [S, 3, T, c, c].
    """
    if len(spatial_indices) == 0:
        raise ValueError("spatial_indices is empty: no view to make")
    x = normalized_resized(frames, crop_size, mean, std, channel_order)
    return crop_views(x, crop_size, spatial_indices)


def resize_frame_by_frame(height: int, width: int, crop_size: int, frames_per_clip: int) -> bool:
    """Whether resizing each frame alone gives, bit for bit, the resize of the whole clip.

    True when no resize happens, for one-frame clips, and where torch's bilinear kernel treats
    each plane alone (output height + width above 128, clips of other than 3 frames); then
    `crop_views(cat([normalized_resized(frame) ...], dim=1))` equals `to_views(clip)`.
    """
    new_height, new_width = resized_shape(height, width, crop_size)
    if (new_height, new_width) == (height, width) or frames_per_clip == 1:
        return True
    return new_height + new_width >= _PLANEWISE_MIN_SIDES and frames_per_clip != 3


def full_resolution_bytes(height: int, width: int, frames_normalised: int, frames_waiting: int = 0) -> int:
    """Bytes of full-resolution frames held at once: `frames_normalised` frames being normalised
    together (15 bytes a pixel) plus `frames_waiting` decoded uint8 frames (3 bytes a pixel).
    The decoder's own buffers are not counted."""
    pixels = height * width
    return pixels * (_BYTES_NORMALISED * frames_normalised + _BYTES_DECODED * frames_waiting)


def check_full_resolution(
    source: str, height: int, width: int, frames_normalised: int, frames_waiting: int = 0
) -> None:
    """VideoError (one line naming `source`) when `full_resolution_bytes` passes `MAX_FULL_RES_BYTES`."""
    need = full_resolution_bytes(height, width, frames_normalised, frames_waiting)
    if need > MAX_FULL_RES_BYTES:
        raise VideoError(
            f"{source}: {width}x{height} frames need {_format_bytes(need)} at full resolution for the exact "
            f"test protocol (at most {_format_bytes(MAX_FULL_RES_BYTES)}); downscale the video first, or use "
            "`uvtag batch`, which resizes while decoding"
        )


def _format_bytes(count: int) -> str:
    """1.69 GiB, 12.5 MiB, 98.4 KiB or 512 B."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"
