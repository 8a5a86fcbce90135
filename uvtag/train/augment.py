"""Pure train-time maths: jittered frame sampling, random-resized-crop boxes, flips, codec noise.

All randomness comes from a `numpy.random.Generator` passed in, so a sample is a function of its
seed (resume after a kill replays exactly the same data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["DIRECTION_WORDS", "JITTERS", "crop_and_resize", "jpeg_degrade", "labels_allow_flip",
           "random_resized_crop_box", "train_clip_indices"]

JITTERS = ("segment", "shared")  # training sampler offsets: per segment, or one for the clip
# a class name with one of these words changes meaning under a horizontal flip
DIRECTION_WORDS = ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "east", "west")


def train_clip_indices(start: int, stop: int, frames: int, rng: np.random.Generator,
                       jitter: str = "segment") -> list[int]:
    """Segment-based training sampler: one frame from each of `frames` equal segments.

    The train-time twin of the official test sampler (which takes a fixed point per segment).
    `jitter` "segment" (the official recipe) draws a random point in each segment independently;
    "shared" draws one offset for all segments, so frames stay evenly spaced as at test time
    (steady motion stays steady: useful where the classes are about motion itself).

    Args:
        start, stop: the half-open frame range to sample from (stop > start).
        frames: F, frames per clip.
    Returns:
        F non-decreasing 0-based indices in [start, stop); short ranges repeat frames.
    """
    if stop <= start or frames < 1:
        raise ValueError(f"cannot sample {frames} frames from [{start}, {stop})")
    if jitter not in JITTERS:
        raise ValueError(f"jitter must be one of {', '.join(JITTERS)}, got {jitter!r}")
    seg = (stop - start) / frames
    offsets = rng.uniform(0.0, 1.0, frames) if jitter == "segment" else np.full(frames, rng.uniform(0.0, 1.0))
    return [min(start + int(seg * (i + offsets[i])), stop - 1) for i in range(frames)]


def random_resized_crop_box(
    height: int, width: int, rng: np.random.Generator,
    scale: tuple[float, float] = (0.4, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(y, x, h, w) of a random crop covering `scale` of the *square centre-cropped* area.

    Area is relative to the largest centred square (the test-time view), so scale 1 with
    ratio 1 reproduces the centre crop. Falls back to that square after 10 tries.
    """
    side = min(height, width)
    for _ in range(10):
        area = side * side * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(area * aspect)))
        h = int(round(math.sqrt(area / aspect)))
        if 0 < h <= height and 0 < w <= width:
            y = int(rng.integers(0, height - h + 1))
            x = int(rng.integers(0, width - w + 1))
            return y, x, h, w
    return (height - side) // 2, (width - side) // 2, side, side


def crop_and_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Cut `box` (y, x, h, w) from uint8 [T, H, W, 3] frames and resize to [T, size, size, 3]."""
    y, x, h, w = box
    return np.stack([cv2.resize(f[y : y + h, x : x + w], (size, size), interpolation=interpolation) for f in frames])


def jpeg_degrade(frames: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip every frame through JPEG at `quality` (1-100): block and ringing artefacts."""
    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        out.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else f)
    return np.stack(out)


def labels_allow_flip(labels: Sequence[str]) -> bool:
    """False when any class name is direction-sensitive (flipping would swap its meaning)."""
    words = {w for name in labels for w in name.lower().replace("-", " ").replace("_", " ").split()}
    return not words & set(DIRECTION_WORDS)
