"""Pure frame-index maths: the official test-time sampler, multi-clip offsets, spans of a video.

The official UniFormerV2 test loaders pick F frames per clip by "sparse" (segment) sampling
(`slowfast/datasets/decoder.py:get_seq_frames`, `sth.py:Sth.get_seq_frames`). For a video of
n decoded frames, F frames per clip, K clips and clip index k in [0, K)::

    seg     = max(0.0, (n - 1) / F)          # float64
    d       = seg / (K + 1)
    index_i = min(round(seg * i) + int(d * (k + 1)), n - 1)      i = 0 .. F-1

`round` is round-half-to-even (numpy's and Python's), `int` truncates, and both products are
float64 in that order: other roundings change 500 of the 960 reference clips. The
Something-Something loader uses the same expression without `max(0, .)` and the clamp, and returns
1-based file numbers; here every sampler returns 0-based frame indices.

Every index returned is 0-based, into the frames a reader decodes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

SAMPLERS = ("kinetics", "sth")  # Kinetics/K710/MiT (decord videos) and Something-Something (JPEGs)
_FRAME_EPS = 1e-6  # frames: tolerance when a span edge times fps is an integer up to float error
_TIME_EPS_SEC = 1e-6  # seconds: the same tolerance for per-frame timestamps


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")


def sample_clip_indices(
    num_frames: int,
    frames_per_clip: int,
    clip_index: int,
    num_clips: int,
    sampler: str = "kinetics",
) -> list[int]:
    """Frame indices of one test clip, exactly as the official loader picks them.

    Args:
        num_frames: n, frames in the video as the decoder counts them (>= 1).
        frames_per_clip: F, frames the model takes per clip (>= 1).
        clip_index: k, which of the K temporal clips, 0 <= k < K.
        num_clips: K, temporal clips per video (>= 1).
        sampler: "kinetics" (`get_seq_frames`, Kinetics/K710/MiT) or "sth" (`Sth.get_seq_frames`,
            Something-Something; its 1-based file numbers minus 1).

    Returns:
        F 0-based frame indices, non-decreasing; short videos repeat frames.
    """
    _check_int("num_frames", num_frames, 1)
    _check_int("frames_per_clip", frames_per_clip, 1)
    _check_int("num_clips", num_clips, 1)
    _check_int("clip_index", clip_index, 0)
    if clip_index >= num_clips:
        raise ValueError(f"clip_index must be < num_clips ({num_clips}), got {clip_index}")
    _check_sampler(sampler)

    if sampler == "kinetics":
        seg = max(0.0, float(num_frames - 1) / frames_per_clip)
    else:
        seg = float(num_frames - 1) / frames_per_clip
    offset = int(seg / (num_clips + 1) * (clip_index + 1))
    indices = [int(round(seg * i)) + offset for i in range(frames_per_clip)]
    if sampler == "kinetics":
        indices = [min(i, num_frames - 1) for i in indices]
    return indices


def sample_span_indices(
    start_frame: int,
    end_frame: int,
    frames_per_clip: int,
    clip_index: int = 0,
    num_clips: int = 1,
    sampler: str = "kinetics",
) -> list[int]:
    """Frame indices of one clip inside the frame range [start_frame, end_frame).

    The official sampler applied to the sub-video of `end_frame - start_frame` frames, then shifted
    by `start_frame`; the whole video (0, n) gives `sample_clip_indices(n, ...)`.

    Returns:
        `frames_per_clip` 0-based indices into the whole video, all in [start_frame, end_frame).
    """
    _check_int("start_frame", start_frame, 0)
    _check_int("end_frame", end_frame, 1)
    if end_frame <= start_frame:
        raise ValueError(f"empty frame range [{start_frame}, {end_frame})")
    local = sample_clip_indices(
        end_frame - start_frame, frames_per_clip, clip_index, num_clips, sampler
    )
    return [start_frame + i for i in local]


def span_to_frame_range(
    start_sec: float, end_sec: float, fps: float, num_frames: int
) -> tuple[int, int]:
    """Frames of a constant-frame-rate video that a time span [start_sec, end_sec) holds.

    Convention: frame i covers [i / fps, (i + 1) / fps), and a span holds the frames whose start
    time i / fps lies in [start_sec, end_sec), so spans that tile the time line split the frames
    without overlap. The range is clipped to [0, num_frames). A span that overlaps the video but
    holds no frame start (shorter than one frame) gets the one frame covering start_sec.
    Products `t * fps` within 1e-6 frames of an integer count as that integer.

    Args:
        start_sec, end_sec: the span in seconds, start_sec < end_sec.
        fps: frames per second (> 0).
        num_frames: frames in the video (>= 1).

    Returns:
        (start_frame, end_frame), a non-empty half-open range of 0-based frame indices.
    """
    _check_int("num_frames", num_frames, 1)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    _check_span(start_sec, end_sec)
    duration_sec = num_frames / fps
    if start_sec >= duration_sec or end_sec <= 0:
        raise ValueError(
            f"span [{start_sec}, {end_sec}) s lies outside the video (0 to {duration_sec:.6g} s)"
        )
    start = max(0, math.ceil(start_sec * fps - _FRAME_EPS))
    end = min(num_frames, math.ceil(end_sec * fps - _FRAME_EPS))
    if end <= start:
        start = min(num_frames - 1, max(0, math.floor(start_sec * fps + _FRAME_EPS)))
        end = start + 1
    return start, end


def timestamps_to_frame_range(
    start_sec: float, end_sec: float, frame_times_sec: Sequence[float]
) -> tuple[int, int]:
    """Frames of a (possibly variable-frame-rate) video that a time span [start_sec, end_sec) holds.

    Frame i starts at frame_times_sec[i] and lasts until the next frame starts. A span holds the
    frames whose start time lies in [start_sec, end_sec) (1e-6 s tolerance at the edges). A span
    that holds no frame start gets the one frame covering start_sec (the last frame for spans
    starting after it; its end is unknown).

    Args:
        start_sec, end_sec: the span in seconds, start_sec < end_sec.
        frame_times_sec: presentation time of every decoded frame in seconds, non-decreasing.

    Returns:
        (start_frame, end_frame), a non-empty half-open range of 0-based frame indices.
    """
    if len(frame_times_sec) == 0:
        raise ValueError("frame_times_sec is empty: the video has no frames")
    _check_span(start_sec, end_sec)
    if any(b < a for a, b in zip(frame_times_sec, frame_times_sec[1:])):
        raise ValueError("frame_times_sec must be non-decreasing")
    if end_sec <= frame_times_sec[0]:
        raise ValueError(
            f"span [{start_sec}, {end_sec}) s ends before the first frame "
            f"({frame_times_sec[0]:.6g} s)"
        )
    start = bisect.bisect_left(frame_times_sec, start_sec - _TIME_EPS_SEC)
    end = bisect.bisect_left(frame_times_sec, end_sec - _TIME_EPS_SEC)
    if end <= start:
        start = max(0, bisect.bisect_right(frame_times_sec, start_sec + _TIME_EPS_SEC) - 1)
        end = start + 1
    return start, end


def _check_span(start_sec: float, end_sec: float) -> None:
    if not (math.isfinite(start_sec) and math.isfinite(end_sec)):
        raise ValueError(f"span [{start_sec}, {end_sec}) s is not finite")
    if end_sec <= start_sec:
        raise ValueError(f"span [{start_sec}, {end_sec}) s is empty: end must be after start")
