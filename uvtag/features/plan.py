"""The pure part of `uvtag features`: window settings, output file names, manifest records.

A video's features go to `<name>.npy` under the output folder, `<name>` being its path relative
to the input folder it was found under (the file name for a video given as a file; see
`uvtag.batch.shard.shard_key`) without the extension: `clips/a/run.mp4` found under `clips`
becomes `a/run.npy`, the name ActionFormer and OpenTAD look for (the annotation's video id plus
`.npy`). Where two videos of one run would share a file (`run.mp4` and `run.mkv`), those keep
their extension (`a/run.mp4.npy`). `--pool mean` adds `<name>.mean.npy`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import PurePosixPath
from typing import Any

from uvtag import __version__
from uvtag.batch.shard import shard_key
from uvtag.errors import UsageError
from uvtag.results import SCHEMA_VERSION, VideoFeatures
from uvtag.video.files import UnreadableFolder

POOLS = ("none", "mean")
FEATURES_SUFFIX = ".npy"
MEAN_SUFFIX = ".mean.npy"
WINDOW_MODES = ("clip", "window")  # consecutive clips (as `batch`), sliding windows (as `localize`)


@dataclass(frozen=True)
class FeatureSettings:
    """What every video of one features run shares (a resumed run must match it).

    Attributes:
        model: the model's name.
        embed_dim: C, the length of one row.
        sampled_frames: frames the model samples from each window.
        mode: "clip" (`--clip`) or "window" (`--window`); it only records how the user asked.
        window_sec, stride_sec: window length and step between window starts, in seconds.
        pool: "none", or "mean" for one pooled vector per video.
    """

    model: str
    embed_dim: int
    sampled_frames: int
    mode: str
    window_sec: float
    stride_sec: float
    pool: str = "none"
    uvtag_version: str = __version__

    def shared(self) -> dict[str, Any]:
        """The fields that every manifest record of the run repeats (and a resume compares)."""
        return {"model": self.model, "embed_dim": self.embed_dim, "sampled_frames": self.sampled_frames,
                "window_mode": self.mode, "window_sec": self.window_sec, "stride_sec": self.stride_sec,
                "pool": self.pool}


def _seconds(flag: str, value: float | None) -> float | None:
    if value is not None and not (isinstance(value, Real) and math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a positive number of seconds, got {value!r}")
    return value


def window_settings(window_sec: float | None, stride_sec: float | None, clip_sec: float | None,
                    default_clip_sec: float) -> tuple[str, float, float]:
    """(mode, window_sec, stride_sec) from `--window`, `--stride` and `--clip`. Pure.

    `--window W` gives sliding windows (stride default W / 2, as `localize`); `--clip C`, or
    neither, consecutive clips (stride default C, as `batch`; C default `default_clip_sec`).

    Raises:
        UsageError: both `--window` and `--clip`, or a length that is not a positive number.
    """
    window, stride, clip = _seconds("--window", window_sec), _seconds("--stride", stride_sec), _seconds("--clip", clip_sec)
    if window is not None and clip is not None:
        raise UsageError("--window (sliding windows) and --clip (consecutive clips) both set the windows; give one")
    if window is not None:
        return "window", float(window), float(window / 2 if stride is None else stride)
    length = float(clip if clip is not None else default_clip_sec)
    return "clip", length, float(length if stride is None else stride)


def check_pool(pool: str) -> str:
    """`pool` if it is one of `POOLS`, else UsageError."""
    if pool not in POOLS:
        raise UsageError(f"--pool {pool!r}: choose one of {', '.join(POOLS)}")
    return pool


def _files(name: str, pooled: bool) -> list[str]:
    return [name + FEATURES_SUFFIX] + ([name + MEAN_SUFFIX] if pooled else [])


def feature_names(paths: Sequence[str | os.PathLike[str]], inputs: Sequence[str | os.PathLike[str]],
                  pooled: bool = False) -> dict[str, str]:
    """Each video's output name ('/'-separated, relative to the output folder, without `.npy`). Pure.

    Unreadable folders among `paths` get no name. See the module docstring for the rule.

    Raises:
        UsageError: two videos would still share a file (the same relative path under two inputs).
    """
    keys = {str(p): shard_key(p, inputs) for p in paths if not isinstance(p, UnreadableFolder)}
    names = {p: str(PurePosixPath(k).with_suffix("")) if PurePosixPath(k).suffix else k for p, k in keys.items()}
    for attempt in range(2):
        owner: dict[str, str] = {}
        clashes: set[str] = set()
        for path, name in names.items():
            for f in _files(name, pooled):
                if f in owner and owner[f] != path:
                    clashes.update((path, owner[f]))
                    if attempt:
                        raise UsageError(f"{owner[f]} and {path} would both write {f}: give them in "
                                         "separate runs (another --out)")
                owner.setdefault(f, path)
        if not clashes:
            break
        names.update({p: keys[p] for p in clashes})  # keep the extension where stems collide
    return names


def feature_record(features: VideoFeatures, settings: FeatureSettings, name: str) -> dict[str, Any]:
    """The manifest record of one finished video (JSON-ready). Pure.

    Per video: where its arrays are, how many rows, the start and end second of every row, and
    the numbers a temporal action localisation config needs: fps, `feat_stride` (frames between
    window starts) and `num_frames` (frames a window spans) at that fps.
    """
    info = features.info
    return {
        "schema_version": SCHEMA_VERSION, "record": "video", "path": features.path,
        "features": name + FEATURES_SUFFIX, "mean": name + MEAN_SUFFIX if settings.pool == "mean" else None,
        "num_rows": len(features.spans), **settings.shared(),
        "fps": info.fps, "feat_stride": features.feat_stride, "num_frames": features.num_frames,
        "duration_sec": info.duration_sec, "num_video_frames": info.num_frames,
        "start_sec": [s for s, _ in features.spans], "end_sec": [e for _, e in features.spans],
        "uvtag_version": settings.uvtag_version,
    }
