"""Pure: the official test views of a video (clips x crops) and how their scores are combined.

The official loader emits K x S items per video in the order v = k * S + s (clip k = v // S,
crop s = v % S). `tools/test_net.py` takes a softmax per view and `TestMeter` sums the views of a
video. Here the views are averaged instead: the mean is the sum divided by the number of views, so
the ranking (and the argmax) is the same and the result stays a probability distribution.

A video gets at most `MAX_VIEWS` views (`check_view_count`, checked before any view is built).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from uvtag.errors import UsageError
from uvtag.results import LabelScore
from uvtag.video.sampling import sample_clip_indices
from uvtag.video.transforms import spatial_indices


# Most views (clips x crops) one video may have: 33x the largest official protocol (10 clips x
# 3 crops). Every view is held at once (B/16 8x224: 4.8 MB of float32 each), so 1,000 views are
# already ~5 GB; a larger count is a mistyped --num-clips.
MAX_VIEWS = 1_000


def check_view_count(num_clips: int, num_crops: int) -> int:
    """The number of views, num_clips x num_crops; UsageError (one line) above `MAX_VIEWS`."""
    count = num_clips * num_crops
    if count > MAX_VIEWS:
        raise UsageError(
            f"{num_clips:,} clips x {num_crops} crops make {count:,} views of one video, more than "
            f"the {MAX_VIEWS:,} allowed; use a smaller --num-clips"
        )
    return count


@dataclass(frozen=True)
class View:
    """One test view: a temporal clip of the video and a spatial crop position."""

    clip_index: int  # k in [0, num_clips)
    spatial_index: int  # 0 / 1 / 2 = left / centre / right (top / centre / bottom for portrait)
    frame_indices: tuple[int, ...]  # 0-based frame indices of the clip


def official_views(
    num_frames: int,
    frames_per_clip: int,
    num_clips: int,
    num_crops: int,
    sampler: str = "kinetics",
) -> list[View]:
    """The official test views of a video of `num_frames` decoded frames.

    Args:
        num_frames: frames in the video as the reader counts them (>= 1).
        frames_per_clip: F, the checkpoint's frames per clip.
        num_clips: K temporal clips.
        num_crops: S spatial crops (1 to 3).
        sampler: "kinetics" or "sth" (picks the sampler and the 1-crop position).

    Returns:
        K * S views ordered v = k * S + s, like the official loader.

    Raises:
        ValueError: a bad argument; UsageError: more than `MAX_VIEWS` views.
    """
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"num_clips must be an int >= 1, got {num_clips!r}")
    crops = spatial_indices(num_crops, sampler)
    check_view_count(num_clips, len(crops))
    views = []
    for k in range(num_clips):
        frames = tuple(sample_clip_indices(num_frames, frames_per_clip, k, num_clips, sampler))
        views.extend(View(k, s, frames) for s in crops)
    return views


def aggregate(logits: torch.Tensor) -> torch.Tensor:
    """Video scores from per-view logits: softmax per view, then the mean over views.

    Args:
        logits: [V, K] raw class scores of V views (any float dtype).

    Returns:
        float32 [K] probabilities summing to 1; argmax equal to the official sum of softmaxes.
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be [V, K] with V >= 1, got shape {tuple(logits.shape)}")
    return torch.softmax(logits.float(), dim=-1).mean(dim=0)


def aggregate_groups(
    logits: torch.Tensor, group_ids: Sequence[int] | torch.Tensor
) -> torch.Tensor:
    """`aggregate` for many videos or windows whose views share one batch.

    Args:
        logits: [N, K] raw class scores of N views.
        group_ids: N ints; view n belongs to group group_ids[n]. Groups are numbered 0..G-1 and
            every group needs at least one view.

    Returns:
        float32 [G, K]; row g is `aggregate` of the views of group g.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {tuple(logits.shape)}")
    ids = torch.as_tensor(group_ids, dtype=torch.int64, device=logits.device).flatten()
    if ids.shape[0] != logits.shape[0]:
        raise ValueError(f"{ids.shape[0]} group ids for {logits.shape[0]} views")
    if ids.numel() == 0:
        raise ValueError("no views to aggregate")
    if int(ids.min()) < 0:
        raise ValueError(f"group ids must be >= 0, got {int(ids.min())}")
    num_groups = int(ids.max()) + 1
    counts = torch.bincount(ids, minlength=num_groups)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"groups {empty} have no views (ids must be 0..G-1 without gaps)")
    probs = torch.softmax(logits.float(), dim=-1)
    sums = torch.zeros(num_groups, probs.shape[1], dtype=probs.dtype, device=probs.device)
    sums.index_add_(0, ids, probs)
    return sums / counts[:, None].to(probs.dtype)


def top_k(probs: torch.Tensor, labels: Sequence[str], k: int) -> tuple[LabelScore, ...]:
    """The k best classes, best first; equal scores keep the lower class index first.

    Args:
        probs: [K] class scores of one video or window.
        labels: K class names, in class-index order.
        k: how many to return (>= 1); more than K returns all K.
    """
    if probs.ndim != 1:
        raise ValueError(f"probs must be [K], got shape {tuple(probs.shape)}")
    if len(labels) != probs.shape[0]:
        raise ValueError(f"{len(labels)} labels for {probs.shape[0]} classes")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    values, order = torch.sort(probs.detach().float().cpu(), descending=True, stable=True)
    return tuple(
        LabelScore(label=labels[i], index=i, score=float(v))
        for v, i in zip(values[:k].tolist(), order[:k].tolist())
    )
