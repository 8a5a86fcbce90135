"""Clips prepared on the model's device: uint8 frames in, normalised float32 crops out.

The host path (`uvtag.video.transforms`) normalises on the CPU and hands the model float32
clips: 4 bytes a value cross to the GPU, and the CPU spends its time on arithmetic the GPU does
in microseconds. Here the frames cross as uint8 (4x fewer bytes; pinned and non-blocking on
CUDA), and the rest runs as torch ops on the device:

1. layout to [3, T, H, W] (from [T, H, W, 3] as decoders give them, or already channel first);
2. RGB -> BGR for models that want it (Something-Something), mean and std reversed with it;
3. short-side resize to the crop size when the frames are not at `resized_shape` already:
   bilinear with antialiasing (a triangle filter as wide as the scale, like the decoder's
   swscale bilinear), rounded to uint8 levels as a decoder's scaler gives them;
4. the crop at the checkpoint's spatial index (`transforms.crop_offsets`);
5. normalisation: (x / 255 - mean) / std in float32.

Step 5 uses the same float32 operations as the official normalisation, so frames already at
the resized size (the decoder resized them, as `Tagger.span_clips` does) give clips bit-identical
to the host path on the CPU. Frames resized here differ from the decoder's resize by a few
levels (tests/test_device_prep.py states the measured bounds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uvtag.video.colour import Yuv420Frame
from uvtag.video.transforms import CHANNEL_ORDERS, crop_offsets, resized_shape, spatial_indices

LAYOUTS = ("THWC", "CTHW")


@dataclasses.dataclass(frozen=True)
class ClipPrep:
    """How to turn frames into one model input: crop size, normalisation, channel order, crop position."""

    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "RGB"
    spatial_index: int = 1

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values, got {len(self.mean)} and {len(self.std)}")

    @classmethod
    def for_checkpoint(cls, checkpoint, spatial_index: int | None = None) -> "ClipPrep":
        """The one-crop input of a zoo `Checkpoint` (centre crop; crop 0 for Something-Something)."""
        index = spatial_indices(1, checkpoint.sampler)[0] if spatial_index is None else spatial_index
        return cls(checkpoint.input_size, tuple(checkpoint.mean), tuple(checkpoint.std),
                   checkpoint.channel_order, index)


def to_device(frames: torch.Tensor | np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 frames onto `device`: pinned and non-blocking on CUDA; no copy on the CPU."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    device = torch.device(device)
    if frames.device.type == device.type and (device.index is None or frames.device == device):
        return frames
    if device.type == "cuda" and frames.device.type == "cpu":
        return frames.contiguous().pin_memory().to(device, non_blocking=True)
    return frames.to(device)


def channels_first(frames: torch.Tensor, layout: str = "THWC") -> torch.Tensor:
    """[T, H, W, 3] ("THWC") or [3, T, H, W] ("CTHW") -> [3, T, H, W] (a view)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if frames.ndim != 4:
        raise ValueError(f"frames must be 4-D ({layout}), got shape {tuple(frames.shape)}")
    x = frames.permute(3, 0, 1, 2) if layout == "THWC" else frames
    if x.shape[0] != 3:
        raise ValueError(f"frames must have 3 channels, got shape {tuple(frames.shape)} as {layout}")
    return x


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """[3, T, H, W] levels (uint8 or float) -> float32 [3, T, H', W'], (H', W') = resized_shape.

    Bilinear with antialiasing, centre-aligned, rounded and clamped to 0..255; frames already at
    the resized size are only cast.
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    new_shape = resized_shape(height, width, size)
    if new_shape == (height, width):
        return x.float()
    frames = x.float().permute(1, 0, 2, 3)  # [T, 3, H, W]: frames as the batch
    out = F.interpolate(frames, size=new_shape, mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).permute(1, 0, 2, 3)


def crop(x: torch.Tensor, size: int, spatial_index: int) -> torch.Tensor:
    """The official crop of [..., H, W] at `spatial_index` (a view)."""
    y0, x0 = crop_offsets(int(x.shape[-2]), int(x.shape[-1]), size, spatial_index)
    return x[..., y0 : y0 + size, x0 : x0 + size]


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[3, ...] levels -> float32 (x / 255 - mean) / std per channel, with the official float32 ops."""
    shape = (3,) + (1,) * (x.ndim - 1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).reshape(shape)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).reshape(shape)
    return (x.float() / 255.0 - m) / s


def prepare_clip(frames: torch.Tensor | np.ndarray, prep: ClipPrep, device: torch.device | str,
                 layout: str = "THWC") -> torch.Tensor:
    """uint8 RGB frames of one clip -> float32 [3, T, c, c] on `device`, ready for the model.

    Args:
        frames: uint8 [T, H, W, 3] or [3, T, H, W] (see `layout`), RGB, at any size: frames not
            at `resized_shape(H, W, c)` are resized on the device.
        prep: crop size, mean/std (RGB order, 0..1 scale), channel order and crop position.
        device: where the model runs (the frames are copied there as uint8).
    """
    x = channels_first(to_device(frames if isinstance(frames, torch.Tensor) else np.asarray(frames), device), layout)
    mean, std = prep.mean, prep.std
    if prep.channel_order == "BGR":
        x, mean, std = x.flip(0), mean[::-1], std[::-1]
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if resized_shape(height, width, prep.crop_size) == (height, width):
        x = crop(x, prep.crop_size, prep.spatial_index)  # crop the uint8 frames: less to normalise
    else:
        x = crop(resize_short_side(x, prep.crop_size), prep.crop_size, prep.spatial_index)
    return normalise(x, mean, std)


def prepare_frame(frame: torch.Tensor | np.ndarray | Yuv420Frame, prep: ClipPrep,
                  device: torch.device | str) -> torch.Tensor:
    """One uint8 [H, W, 3] RGB frame -> float32 [3, c, c] on `device` (`prepare_clip` of one frame).

    When the frame is already at the resized size, only the crop crosses to the device. A
    `Yuv420Frame` crosses as its planes (1.5 bytes a pixel) and is converted to RGB and rotated
    on the device (`uvtag.video.colour`: the same RGB as the decoder's for even heights).
    """
    if isinstance(frame, Yuv420Frame):
        return prepare_clip(frame.to_rgb(device)[:, None], prep, device, "CTHW")[:, 0]
    if isinstance(frame, np.ndarray):
        frame = torch.from_numpy(np.ascontiguousarray(frame))
    height, width = int(frame.shape[0]), int(frame.shape[1])
    if resized_shape(height, width, prep.crop_size) == (height, width):
        frame = crop(frame.permute(2, 0, 1), prep.crop_size, prep.spatial_index).permute(1, 2, 0)  # c x c: no resize
    return prepare_clip(frame[None], prep, device)[:, 0]
