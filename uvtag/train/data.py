"""Training data: labelled videos from a folder or a CSV, or the built-in synthetic motion set.

Sources:
- a folder with one sub-folder of videos per class (class name = sub-folder name);
- a CSV with a header `path,label` and optional `start_sec,end_sec` (relative paths are relative
  to the CSV's folder);
- `synthetic:motion`, clips drawn on the fly by `uvtag.synth` (nothing on disk).

Every clip is a function of (seed, epoch, index): `ClipDataset.__getitem__` builds its own
`numpy.random.Generator` from those numbers, so worker processes and a resumed run see exactly
the same samples.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from uvtag.errors import UsageError, UvtagError, VideoError
from uvtag.train.augment import crop_and_resize, jpeg_degrade, random_resized_crop_box, train_clip_indices
from uvtag.video.files import VIDEO_EXTENSIONS, find_videos
from uvtag.video.reader import open_video
from uvtag.video.sampling import sample_span_indices, timestamps_to_frame_range
from uvtag.video.transforms import normalize, spatial_indices, to_views

__all__ = ["SYNTHETIC_MOTION", "ClipDataset", "Preprocess", "SyntheticMotion", "VideoItem", "VideoSource",
           "read_csv", "read_folder", "split_items"]

SYNTHETIC_MOTION = "synthetic:motion"


@dataclass(frozen=True)
class VideoItem:
    """One labelled video (or a span of it, in seconds)."""

    path: str
    label: int
    start_sec: float | None = None
    end_sec: float | None = None


@dataclass(frozen=True)
class Preprocess:
    """How clips are fed: frames, crop side, normalisation, augmentation."""

    frames: int
    size: int
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    crop_scale: tuple[float, float] = (0.4, 1.0)  # random-resized-crop area (of the centre square)
    flip: bool = False  # horizontal flips (only for direction-free classes)
    jpeg_prob: float = 0.0  # chance of a JPEG round trip (codec artefacts) on a training clip
    jitter: str = "segment"  # training sampler: "segment" (official) or "shared" (evenly spaced frames)


# ---------------------------------------------------------------------- listing videos


def read_folder(root: str | Path) -> tuple[list[VideoItem], tuple[str, ...]]:
    """Videos in `root/<class>/...`; classes sorted by name. Raises UsageError for empty classes."""
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UsageError(f"{root}: no class sub-folders (expected one folder of videos per class)")
    items: list[VideoItem] = []
    for k, name in enumerate(classes):
        videos = find_videos([root / name], VIDEO_EXTENSIONS)
        if not videos:
            raise UsageError(f"{root / name}: class {name!r} has no videos (remove the folder or add videos)")
        items += [VideoItem(str(p), k) for p in videos]
    return items, tuple(classes)


def _float_or_none(text: str | None, where: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a number of seconds") from None


def read_csv(path: str | Path, labels: Sequence[str] | None = None) -> tuple[list[VideoItem], tuple[str, ...]]:
    """Rows `path,label[,start_sec,end_sec]` (with that header). Classes: `labels` or sorted names."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the CSV ({e})") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise UsageError(f"{path}: expected a header line with columns path,label[,start_sec,end_sec] and rows")
    names = tuple(labels) if labels is not None else tuple(sorted({r["label"].strip() for r in rows}))
    index = {n: i for i, n in enumerate(names)}
    items = []
    for line, r in enumerate(rows, start=2):
        where = f"{path}:{line}"
        label = (r.get("label") or "").strip()
        if label not in index:
            raise UsageError(f"{where}: label {label!r} is not one of the {len(names)} classes")
        video = Path((r.get("path") or "").strip())
        start, end = _float_or_none(r.get("start_sec"), where), _float_or_none(r.get("end_sec"), where)
        if start is not None and end is not None and end <= start:
            raise UsageError(f"{where}: end_sec {end} is not after start_sec {start}")
        items.append(VideoItem(str(video if video.is_absolute() else path.parent / video), index[label], start, end))
    counts = Counter(i.label for i in items)
    empty = [n for k, n in enumerate(names) if counts[k] == 0]
    if empty:
        raise UsageError(f"{path}: class {empty[0]!r} has no rows ({len(empty)} empty classes)")
    return items, names


def split_items(items: Sequence[VideoItem], fraction: float, seed: int) -> tuple[list[VideoItem], list[VideoItem]]:
    """Stratified split: about `fraction` of each class (at least one if it has 2+) to validation."""
    rng = np.random.default_rng([seed, 7])
    train, val = [], []
    for label in sorted({i.label for i in items}):
        group = [i for i in items if i.label == label]
        order = rng.permutation(len(group))
        n_val = min(len(group) - 1, max(1, round(fraction * len(group)))) if fraction > 0 else 0
        val += [group[j] for j in order[:n_val]]
        train += [group[j] for j in order[n_val:]]
    return train, val


# ---------------------------------------------------------------------- clip sources


def _view(frames: np.ndarray, pre: Preprocess, rng: np.random.Generator | None) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [3, T, size, size]: augmented (rng) or the test centre view."""
    if rng is None:
        return to_views(frames, pre.size, pre.mean, pre.std, spatial_indices(1))[0]
    if pre.jpeg_prob and rng.random() < pre.jpeg_prob:
        frames = jpeg_degrade(frames, int(rng.integers(20, 90)))
    box = random_resized_crop_box(frames.shape[1], frames.shape[2], rng, pre.crop_scale)
    interp = cv2.INTER_LINEAR if rng.random() < 0.7 else cv2.INTER_AREA  # the test resize aliases; decoders do not
    frames = crop_and_resize(frames, box, pre.size, interp)
    if pre.flip and rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    return normalize(frames, pre.mean, pre.std).permute(3, 0, 1, 2).contiguous()


class VideoSource:
    """Clips read from video files: train-time jittered sampling, test-time sampling otherwise."""

    def __init__(self, items: Sequence[VideoItem], labels: Sequence[str]) -> None:
        self.items = list(items)
        self.labels = tuple(labels)

    def __len__(self) -> int:
        return len(self.items)

    def label(self, index: int) -> int:
        """Class index of item `index`."""
        return self.items[index].label

    def frames(self, index: int, num: int, rng: np.random.Generator | None, jitter: str = "segment") -> np.ndarray:
        """uint8 [num, H, W, 3] frames of item `index` (raises VideoError if unreadable)."""
        item = self.items[index]
        with open_video(item.path) as reader:
            first, stop = 0, reader.info.num_frames
            if item.start_sec is not None or item.end_sec is not None:
                start = item.start_sec or 0.0
                end = item.end_sec if item.end_sec is not None else reader.info.duration_sec + 1.0
                first, stop = timestamps_to_frame_range(start, end, reader.timestamps_sec())
            if rng is None:
                indices = sample_span_indices(first, stop, num)
            else:
                indices = train_clip_indices(first, stop, num, rng, jitter)
            return reader.get_frames(indices)

    def check(self, progress: Callable[[int], None] | None = None) -> tuple["VideoSource", list[str]]:
        """The readable items only, plus one reason per unreadable video."""
        good, bad = [], []
        for i, item in enumerate(self.items):
            try:
                with open_video(item.path) as reader:
                    if reader.info.num_frames < 1:
                        raise VideoError(f"{item.path}: no frames")
                good.append(item)
            except UvtagError as e:
                bad.append(str(e))
            if progress:
                progress(i + 1)
        return VideoSource(good, self.labels), bad


class SyntheticMotion:
    """`size` synthetic motion clips per epoch (balanced classes), drawn by `uvtag.synth`.

    Args:
        size: clips per epoch.
        split: seed space ("train" or "val"); validation clips are the same every epoch.
        seed: run seed.
        training_ranges: draw the wider training motion amounts (see `uvtag.synth.TRAINING`).
        untrimmed: share of training items cut from an untrimmed video instead (the labelled action
            between two others, a 1-2.5 s window at least 70% inside it, the object in whatever pose
            the previous action left it): what `localize` windows see.
    """

    def __init__(self, size: int, split: str = "train", seed: int = 0, training_ranges: bool = True,
                 untrimmed: float = 0.0) -> None:
        from uvtag import synth

        self.size, self.split, self.seed, self.untrimmed = size, split, seed, untrimmed
        self.labels = synth.MOTION_CLASSES
        self.ranges = synth.TRAINING if training_ranges else synth.STRICT

    def __len__(self) -> int:
        return self.size

    def label(self, index: int) -> int:
        """Class index of item `index` (classes cycle: balanced)."""
        return index % len(self.labels)

    def frames(self, index: int, num: int, rng: np.random.Generator | None, epoch: int = 0,
               jitter: str = "segment") -> np.ndarray:
        """Render the `num` sampled frames of clip `index` (uint8 [num, H, W, 3])."""
        from uvtag import synth

        key = (self.seed, index) if rng is None else (self.seed, epoch, index)
        # training mixes clean and cluttered scenes: clean ones teach motion first, cluttered ones robustness
        clutter = 1.0 if rng is None else float(rng.uniform(0.0, 1.0))
        if rng is not None and self.untrimmed > 0 and rng.random() < self.untrimmed:
            return self._window_frames(synth.clip_rng(self.split, *key, 1), index, num, rng, clutter, jitter)
        scene = synth.random_clip(synth.clip_rng(self.split, *key), self.labels[self.label(index)], self.ranges, clutter)
        if rng is None:
            indices = sample_span_indices(0, scene.num_frames, num)
        else:
            indices = train_clip_indices(0, scene.num_frames, num, rng, jitter)
        return scene.frames(indices)

    def _window_frames(self, srng: np.random.Generator, index: int, num: int, rng: np.random.Generator,
                       clutter: float, jitter: str) -> np.ndarray:
        from uvtag import synth

        label = self.labels[self.label(index)]
        others = [c for c in self.labels if c != label]
        before, after = (others[int(k)] for k in srng.integers(len(others), size=2))
        scene = synth.random_untrimmed(srng, 3, (1.0, 4.0), self.ranges, labels=(before, label, after), clutter=clutter)
        action = scene.actions[1]
        start, end = synth.window_in_action(action.t0, action.t1, scene.duration_sec, float(rng.uniform(1.0, 2.5)), rng)
        f0 = min(int(round(start * scene.fps)), scene.num_frames - 1)
        f1 = min(max(int(round(end * scene.fps)), f0 + 1), scene.num_frames)
        return scene.frames(train_clip_indices(f0, f1, num, rng, jitter))


class ClipDataset(torch.utils.data.Dataset):
    """(clip float32 [3, T, size, size], label) pairs from a source; augmented when `train`.

    Unreadable videos met during training are replaced by the next item (counted in `failures`
    of the worker that met them; the up-front check in `uvtag.train.loop` catches most).
    """

    def __init__(self, source, pre: Preprocess, train: bool, seed: int = 0) -> None:
        self.source, self.pre, self.train, self.seed = source, pre, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the samples of `epoch` (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self.source)):
            i = (index + attempt) % len(self.source)
            rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
            try:
                if isinstance(self.source, SyntheticMotion):
                    frames = self.source.frames(i, self.pre.frames, rng, self.epoch, self.pre.jitter)
                else:
                    frames = self.source.frames(i, self.pre.frames, rng, self.pre.jitter)
            except VideoError:
                continue
            return _view(frames, self.pre, rng), self.source.label(i)
        raise UsageError("no readable video in the dataset")
