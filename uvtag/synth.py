"""Synthetic motion videos: one object on a background doing one of nine on-screen actions.

Classes (`MOTION_CLASSES`), judged on screen: `moving left/right/up/down` (the object translates
steadily along the axis over at least a third of the frame), `rotating clockwise/counterclockwise`
(an asymmetric shape turns at least 90 degrees in place), `growing`/`shrinking` (it scales by at
least 1.8x in place) and `still` (no motion). The first eight are the direction classes: they
differ from their partner only in the order of the frames.

Everything is random per seed: shape (irregular polygon, ellipse or star with a marker dot,
letter), colours, size, position, speed, background (smooth colour noise, stripes, checkerboard,
gradient, fine grain), per-frame sensor noise, distractors (static shapes, flickering specks),
resolution (64 to 640 px, aspect 1:2 to 2:1), frame rate (10 to 60), duration (1.5 to 5 s), codec.

A `Scene` renders any frame from its index alone (pure drawing with numpy/OpenCV), so training can
render just the frames it samples; `write_video` encodes every frame with PyAV. An untrimmed video
is a `Scene` whose track holds several actions back to back (`random_untrimmed`), with the object
carried over from one action to the next.

Coordinates: pixels, origin top-left, y down. Angles in degrees, positive = counterclockwise on
screen (OpenCV's convention), so "rotating clockwise" means a decreasing angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "CODECS",
    "DIRECTION_CLASSES",
    "MOTION_CLASSES",
    "STRICT",
    "TRAINING",
    "Action",
    "MotionRanges",
    "Scene",
    "clip_rng",
    "random_clip",
    "random_untrimmed",
    "window_in_action",
    "write_video",
]

MOTION_CLASSES = (
    "moving left", "moving right", "moving up", "moving down",
    "rotating clockwise", "rotating counterclockwise", "growing", "shrinking", "still",
)
DIRECTION_CLASSES = MOTION_CLASSES[:8]
# codec -> (container suffix, PyAV encoder, options, pixel format)
CODECS: dict[str, tuple[str, str, dict[str, str], str]] = {
    "h264": (".mp4", "libx264", {"preset": "ultrafast", "crf": "23"}, "yuv420p"),
    "hevc": (".mp4", "libx265", {"preset": "ultrafast", "x265-params": "log-level=error"}, "yuv420p"),
    "vp9": (".webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "b": "800k"}, "yuv420p"),
    "mpeg4": (".avi", "mpeg4", {"qscale": "4"}, "yuv420p"),
    "mjpeg": (".avi", "mjpeg", {"qscale": "4"}, "yuvj420p"),
}
SPRITE = 128  # side of the square canvas shapes are drawn on, in pixels
_LETTERS = "FGJKLPQR47EY"  # no rotational symmetry


@dataclass(frozen=True)
class MotionRanges:
    """How much each action moves over its whole duration (uniform in these ranges)."""

    travel: tuple[float, float] = (0.35, 0.6)  # translation, as a fraction of the frame side it crosses
    turn_deg: tuple[float, float] = (90.0, 270.0)  # rotation (<= 34 degrees between 8 sampled frames)
    zoom: tuple[float, float] = (1.8, 2.6)  # growth factor (shrinking uses its inverse)
    duration_sec: tuple[float, float] = (1.5, 5.0)
    fps: tuple[int, int] = (10, 60)
    short_side: tuple[int, int] = (64, 480)  # log-uniform; long side = short x aspect, <= 640
    size: tuple[float, float] = (0.25, 0.42)  # object size as a fraction of the short side (16-27 px at 64 px)


STRICT = MotionRanges()  # the ranges the module docstring states (tests, demo)
# object size range in untrimmed videos, as a fraction of the short side: what trimmed clips span
# (growing starts at 0.25 / 1.6 = 0.156; shrinking's large end is capped at 0.6). A lower bound of
# 0.08 would let earlier actions shrink an object to 5 px at the 64 px input.
UNTRIMMED_SIZE = (0.15, 0.6)
# training also sees the smaller amounts a 2 s localize window covers (half of a 4 s action)
TRAINING = MotionRanges(travel=(0.17, 0.7), turn_deg=(45.0, 280.0), zoom=(1.33, 2.8), duration_sec=(1.0, 5.0),
                        short_side=(64, 288))  # smaller canvases: cheaper to draw, same 64 px input


@dataclass(frozen=True)
class Pose:
    """Object state: centre (x, y) in pixels, angle in degrees (ccw), size (side) in pixels."""

    x: float
    y: float
    angle: float
    size: float


@dataclass(frozen=True)
class Action:
    """One action of a track: the pose moves linearly from `start` to `end` over [t0, t1) seconds."""

    label: str
    t0: float
    t1: float
    start: Pose
    end: Pose

    def pose(self, t: float) -> Pose:
        """Pose at time t (seconds), clamped to the action."""
        a = min(max((t - self.t0) / max(self.t1 - self.t0, 1e-9), 0.0), 1.0)
        s, e = self.start, self.end
        size = s.size * (e.size / s.size) ** a  # constant relative growth rate
        return Pose(s.x + a * (e.x - s.x), s.y + a * (e.y - s.y), s.angle + a * (e.angle - s.angle), size)


@dataclass
class Scene:
    """A renderable video: static background, object sprite, distractors, a track of actions."""

    height: int
    width: int
    fps: float
    num_frames: int
    background: np.ndarray  # uint8 [H, W, 3]
    sprite: np.ndarray  # uint8 [SPRITE, SPRITE, 3]
    alpha: np.ndarray  # float32 [SPRITE, SPRITE], 1 inside the object
    actions: list[Action]
    noise: list[np.ndarray] = field(default_factory=list)  # int16 [H, W, 3] per-frame noise bank
    specks: int = 0  # flickering distractor specks per frame
    seed: int = 0
    codec: str = "h264"

    @property
    def duration_sec(self) -> float:
        """num_frames / fps."""
        return self.num_frames / self.fps

    @property
    def label(self) -> str:
        """The action of a single-action scene."""
        return self.actions[0].label

    def segments(self) -> list[tuple[float, float, str]]:
        """(start_sec, end_sec, label) of every action."""
        return [(a.t0, a.t1, a.label) for a in self.actions]

    def pose(self, t: float) -> Pose:
        """Object pose at time t (seconds)."""
        for a in self.actions:
            if t < a.t1:
                return a.pose(t)
        return self.actions[-1].pose(t)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` (time index / fps) as uint8 [H, W, 3] RGB; the same every call."""
        img = self.background.copy()
        _paste(img, self.sprite, self.alpha, self.pose(index / self.fps))
        if self.specks or self.noise:
            rng = np.random.default_rng((self.seed, index))
            _specks(img, rng, self.specks)
            if self.noise:
                bank = self.noise[int(rng.integers(len(self.noise)))]
                img = np.clip(img.astype(np.int16) + bank, 0, 255).astype(np.uint8)
        return img

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [T, H, W, 3] for the given frame indices."""
        return np.stack([self.frame(int(i)) for i in indices])


# ---------------------------------------------------------------------- drawing


def _paste(img: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, pose: Pose) -> None:
    """Alpha-blend the sprite, rotated/scaled/placed by `pose`, into img (in place)."""
    h, w = img.shape[:2]
    r = pose.size * 0.75 + 2  # bounding radius of the rotated square sprite, with a margin
    x0, y0 = max(int(pose.x - r), 0), max(int(pose.y - r), 0)
    x1, y1 = min(int(pose.x + r) + 1, w), min(int(pose.y + r) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    m = cv2.getRotationMatrix2D((SPRITE / 2, SPRITE / 2), pose.angle, pose.size / SPRITE)
    m[0, 2] += pose.x - SPRITE / 2 - x0
    m[1, 2] += pose.y - SPRITE / 2 - y0
    size = (x1 - x0, y1 - y0)
    a = cv2.warpAffine(alpha, m, size, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    rgb = cv2.warpAffine(sprite, m, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    roi = img[y0:y1, x0:x1]
    roi[:] = (roi * (1 - a) + rgb * a).astype(np.uint8)


def _specks(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Small random rectangles at random places: distractor noise with no coherent motion."""
    h, w = img.shape[:2]
    side = max(2, min(h, w) // 40)
    for _ in range(count):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        s = int(rng.integers(1, side + 1))
        img[y : y + s, x : x + s] = rng.integers(0, 256, 3)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cells = int(rng.integers(3, 12))
    grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(0.04, 0.3) * min(h, w)
    wave = 0.5 + 0.5 * np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
    a, b = _colour(rng), _colour(rng)
    return a + wave[..., None] * (b - a)


def _checker(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cell = max(2, int(rng.uniform(0.05, 0.25) * min(h, w)))
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy // cell + xx // cell) % 2).astype(np.float32)[..., None]
    a, b = _colour(rng), _colour(rng)
    return a + mask * (b - a)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    ramp = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
    ramp = np.broadcast_to(ramp[None, :], (h, w)) if ramp.size == w else np.broadcast_to(ramp[:, None], (h, w))
    a, b = _colour(rng), _colour(rng)
    return a + ramp[..., None] * (b - a)


def _background(rng: np.random.Generator, h: int, w: int, clutter: float = 1.0) -> np.ndarray:
    """A textured background, uint8 [h, w, 3]: one or two blended patterns plus fine grain.

    `clutter` in [0, 1] scales texture contrast and grain (0: a flat colour).
    """
    makers = (_smooth_noise, _stripes, _checker, _gradient)
    img = makers[int(rng.integers(4))](rng, h, w)
    if rng.random() < 0.5:
        mix = rng.uniform(0.2, 0.6)
        img = (1 - mix) * img + mix * makers[int(rng.integers(4))](rng, h, w)
    contrast = rng.uniform(0.3, 1.0) * clutter  # pale backgrounds too
    img = img.mean(axis=(0, 1)) + contrast * (img - img.mean(axis=(0, 1)))
    grain = rng.uniform(0, 20) * clutter
    if grain > 1:
        img = img + rng.normal(0, grain, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, kind: str) -> np.ndarray:
    """uint8 [SPRITE, SPRITE] mask of an asymmetric shape filling most of the canvas."""
    mask = np.zeros((SPRITE, SPRITE), np.uint8)
    c, r = SPRITE / 2, SPRITE * 0.45
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.45, 1.0, n) * r
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
        if cv2.countNonZero(mask) < 0.15 * SPRITE * SPRITE:  # a sliver: fall back to a fuller shape
            return _shape_mask(rng, "star")
    elif kind == "ellipse":
        axes = (int(r), int(r * rng.uniform(0.4, 0.75)))
        cv2.ellipse(mask, (int(c), int(c)), axes, 0, 0, 360, 255, -1)
    elif kind == "star":
        # 3 or 4 arms, one of them clearly longer: turns of up to 45 degrees between sampled frames
        # stay unambiguous (a 6-arm star turned 40 degrees looks like one turned 20 degrees back)
        n = int(rng.integers(3, 5))
        inner = rng.uniform(0.35, 0.55)
        angles = np.arange(2 * n) * math.pi / n + rng.uniform(0, math.pi)
        radii = np.where(np.arange(2 * n) % 2 == 0, 0.7 * r, 0.7 * r * inner)
        radii[0] = r  # the long arm
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    else:  # letter
        letter = _LETTERS[int(rng.integers(len(_LETTERS)))]
        font = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)[int(rng.integers(3))]
        (tw, th), _ = cv2.getTextSize(letter, font, 1.0, 1)
        scale = 0.8 * SPRITE / max(tw, th)
        thick = max(6, int(scale * rng.uniform(2.5, 4.5)))
        (tw, th), _ = cv2.getTextSize(letter, font, scale, thick)
        cv2.putText(mask, letter, (int(c - tw / 2), int(c + th / 2)), font, scale, 255, thick, cv2.LINE_AA)
    return mask


def _sprite(rng: np.random.Generator, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object RGB and alpha on the SPRITE canvas; its colour stands out from the background."""
    kind = ("polygon", "ellipse", "star", "letter")[int(rng.integers(4))]
    mask = _shape_mask(rng, kind)
    bg_mean = background.reshape(-1, 3).mean(0)
    colour = _colour(rng)
    for _ in range(30):
        if np.abs(colour - bg_mean).sum() > 200:
            break
        colour = _colour(rng)
    else:
        colour = np.where(bg_mean > 127, 20.0, 235.0).astype(np.float32)
    rgb = np.empty((SPRITE, SPRITE, 3), np.float32)
    rgb[:] = colour
    if rng.random() < 0.4:  # two-tone stripes across the object
        second = np.clip(colour + rng.choice([-1, 1], 3) * rng.uniform(40, 90, 3), 0, 255)
        band = max(6, int(rng.integers(10, 30)))
        rgb[(np.arange(SPRITE) // band) % 2 == 1] = second
    if kind in ("ellipse", "star") or rng.random() < 0.3:  # an off-centre marker dot
        dot = np.where(colour > 127, 0.0, 255.0)
        cv2.circle(rgb, (int(SPRITE * 0.68), int(SPRITE * 0.5)), int(SPRITE * 0.12), dot.tolist(), -1)
    if rng.random() < 0.6:  # an outline
        edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((9, 9), np.uint8)) > 0
        rgb[edge] = 0.0 if colour.mean() > 110 else 255.0
        mask = np.maximum(mask, cv2.dilate(mask, np.ones((5, 5), np.uint8)))
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (3, 3), 0)
    return np.clip(rgb, 0, 255).astype(np.uint8), alpha


# ---------------------------------------------------------------------- motion


def _motion(rng: np.random.Generator, label: str, here: Pose, h: int, w: int, ranges: MotionRanges) -> Pose:
    """The end pose of `label` started at `here` (translation axis lengths from `ranges`)."""
    if label.startswith("moving"):
        side = w if label in ("moving left", "moving right") else h
        d = rng.uniform(*ranges.travel) * side
        dx, dy = {"moving left": (-d, 0), "moving right": (d, 0), "moving up": (0, -d), "moving down": (0, d)}[label]
        return replace(here, x=here.x + dx, y=here.y + dy)
    if label.startswith("rotating"):
        turn = rng.uniform(*ranges.turn_deg)
        return replace(here, angle=here.angle + (turn if label == "rotating counterclockwise" else -turn))
    if label in ("growing", "shrinking"):
        z = rng.uniform(*ranges.zoom)
        return replace(here, size=here.size * (z if label == "growing" else 1 / z))
    return here


def _start_pose(rng: np.random.Generator, label: str, h: int, w: int, ranges: MotionRanges) -> tuple[Pose, Pose]:
    """A start and end pose for `label` whose path is centred near the middle of the frame."""
    short = min(h, w)
    size = rng.uniform(*ranges.size) * short
    if label == "growing":
        size = size / 1.6
    angle = rng.uniform(0, 360)
    here = Pose(0.0, 0.0, angle, size)
    end = _motion(rng, label, here, h, w, ranges)
    if label == "shrinking":  # keep the large end inside the frame
        here = replace(here, size=min(here.size * 1.5, 0.6 * short))
        end = replace(end, size=here.size * end.size / size)
    if label == "growing":
        cap = 0.6 * short / end.size
        if cap < 1:
            here, end = replace(here, size=here.size * cap), replace(end, size=end.size * cap)
    jitter = 0.12 * short
    cx = w / 2 + rng.uniform(-jitter, jitter) - (end.x - here.x) / 2
    cy = h / 2 + rng.uniform(-jitter, jitter) - (end.y - here.y) / 2
    return replace(here, x=cx, y=cy), replace(end, x=cx + end.x, y=cy + end.y)


def clip_rng(split: str, *key: int) -> np.random.Generator:
    """A generator for one clip: `split` names a seed space ("train", "val", "test", "demo").

    Seed spaces never overlap, so test clips are never training clips.
    """
    spaces = {"train": 0, "val": 1, "test": 2, "demo": 3}
    return np.random.default_rng([spaces[split], *key])


def _canvas(rng: np.random.Generator, ranges: MotionRanges) -> tuple[int, int]:
    lo, hi = ranges.short_side
    short = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    aspect = math.exp(rng.uniform(math.log(1.0), math.log(2.0)))
    long = min(640, int(round(short * aspect)))
    short, long = short // 2 * 2, long // 2 * 2  # yuv420p needs even sides
    return (short, long) if rng.random() < 0.7 else (long, short)  # (h, w): mostly landscape


def _scene(rng: np.random.Generator, h: int, w: int, fps: float, num_frames: int, actions: list[Action],
           clutter: float = 1.0) -> Scene:
    """Background, distractors, sprite and noise for a track; `clutter` in [0, 1] scales the mess."""
    background = _background(rng, h, w, clutter)
    for _ in range(int(rng.integers(0, 3) * clutter + 0.5)):  # static distractor shapes
        ds, da = _sprite(rng, background)
        pose = Pose(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 360), rng.uniform(0.06, 0.14) * min(h, w))
        _paste(background, ds, da, pose)
    sprite, alpha = _sprite(rng, background)
    sigma = rng.uniform(0, 14) * clutter
    noise = [] if sigma < 2 else [rng.normal(0, sigma, (h, w, 3)).astype(np.int16) for _ in range(3)]
    return Scene(h, w, fps, num_frames, background, sprite, alpha, actions, noise, int(rng.integers(0, 16) * clutter),
                 int(rng.integers(2**31)), CODECS_ORDER[int(rng.integers(len(CODECS_ORDER)))])


CODECS_ORDER = tuple(CODECS)


def random_clip(rng: np.random.Generator, label: str | None = None, ranges: MotionRanges = STRICT,
                clutter: float = 1.0) -> Scene:
    """A trimmed clip of one action (random label unless given), ready to render or encode.

    `clutter` in [0, 1] scales background texture, noise and distractors (1: the full dataset).
    """
    label = label or MOTION_CLASSES[int(rng.integers(len(MOTION_CLASSES)))]
    h, w = _canvas(rng, ranges)
    fps = int(rng.integers(ranges.fps[0], ranges.fps[1] + 1))
    duration = rng.uniform(*ranges.duration_sec)
    num_frames = max(2, int(round(duration * fps)))
    start, end = _start_pose(rng, label, h, w, ranges)
    action = Action(label, 0.0, num_frames / fps, start, end)
    return _scene(rng, h, w, fps, num_frames, [action], clutter)


def random_untrimmed(
    rng: np.random.Generator, num_actions: int, action_sec: tuple[float, float] = (2.5, 4.0),
    ranges: MotionRanges = STRICT, labels: Sequence[str] | None = None, clutter: float = 1.0,
) -> Scene:
    """One object doing `num_actions` random actions back to back (no two alike in a row).

    The object keeps its pose from one action to the next unless the next action would take it
    out of the centred square (what a centre crop sees) or make it too small or large; then it
    restarts from a fresh pose (a jump, like a cut), so that every action is done by an object of
    the sizes the trimmed clips show (UNTRIMMED_SIZE). Short side at least 160 px. `labels`, if
    given, fixes the actions (len(labels) == num_actions; the random stream is otherwise the same).
    """
    if labels is not None and len(labels) != num_actions:
        raise ValueError(f"{len(labels)} labels for {num_actions} actions")
    h, w = _canvas(rng, replace(ranges, short_side=(max(ranges.short_side[0], 160), ranges.short_side[1])))
    ranges = replace(ranges, travel=(ranges.travel[0], min(ranges.travel[1], 0.45)))  # paths stay near the centre
    fps = int(rng.integers(ranges.fps[0], ranges.fps[1] + 1))
    actions: list[Action] = []
    t, here, previous = 0.0, None, None
    smallest, largest = (f * min(h, w) for f in UNTRIMMED_SIZE)
    for i in range(num_actions):
        if labels is not None:
            label = labels[i]
        else:
            label = previous
            while label == previous:
                label = MOTION_CLASSES[int(rng.integers(len(MOTION_CLASSES)))]
        length = round(rng.uniform(*action_sec) * fps) / fps
        start, end = _start_pose(rng, label, h, w, ranges)
        if here is not None:
            moved = replace(end, x=end.x - start.x + here.x, y=end.y - start.y + here.y,
                            angle=end.angle - start.angle + here.angle, size=here.size * end.size / start.size)
            if _inside_centre(moved, h, w) and smallest <= moved.size <= largest:
                start, end = here, moved
        actions.append(Action(label, t, t + length, start, end))
        t, here, previous = t + length, end, label
    return _scene(rng, h, w, fps, int(round(t * fps)), actions, clutter)


def window_in_action(t0: float, t1: float, duration: float, length: float, rng: np.random.Generator,
                     min_share: float = 0.7) -> tuple[float, float]:
    """A random [start, end) window of about `length` seconds inside [0, duration) that spends at
    least `min_share` of itself inside the action [t0, t1) (shortened to fit short actions)."""
    length = min(length, (t1 - t0) / min_share, duration)
    lo, hi = max(0.0, t0 - (1 - min_share) * length), min(duration - length, t1 - min_share * length)
    start = float(rng.uniform(lo, hi)) if hi > lo else min(max(t0, 0.0), duration - length)
    return start, start + length


def _inside_centre(p: Pose, h: int, w: int) -> bool:
    """Whole object inside the centred square (the view a centre crop keeps)."""
    m, half = p.size / 2, min(h, w) / 2
    return abs(p.x - w / 2) <= half - m and abs(p.y - h / 2) <= half - m


# ---------------------------------------------------------------------- encoding


def write_video(scene: Scene, path: str | Path, codec: str | None = None) -> Path:
    """Encode every frame of `scene` with PyAV; the suffix of `path` is replaced by the codec's."""
    codec = codec or scene.codec
    suffix, encoder, options, pix_fmt = CODECS[codec]
    path = Path(path).with_suffix(suffix)
    with av_open(path) as out:
        stream = out.add_stream(encoder, rate=Fraction(scene.fps).limit_denominator(1001), options=dict(options))
        stream.height, stream.width = scene.height, scene.width
        stream.pix_fmt = pix_fmt
        for i in range(scene.num_frames):
            out.mux(stream.encode(_av_frame(scene.frame(i))))
        out.mux(stream.encode())
    return path


def av_open(path: Path):
    """PyAV output container (imported lazily: only encoding needs it)."""
    import av

    return av.open(str(path), "w")


def _av_frame(rgb: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def write_examples(
    folder: str | Path, split: str = "demo", seed: int = 0, num_actions: int = 6,
) -> tuple[list[tuple[Path, str]], Path, list[tuple[float, float, str]]]:
    """One encoded clip per class (codecs in turn) and one untrimmed video, written into `folder`.

    Returns ([(clip path, true label)], untrimmed path, its true (start_sec, end_sec, label) list).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for k, label in enumerate(MOTION_CLASSES):
        scene = random_clip(clip_rng(split, seed, k), label)
        name = f"{k + 1:02d}_{label.replace(' ', '_')}"
        clips.append((write_video(scene, folder / name, CODECS_ORDER[k % len(CODECS_ORDER)]), label))
    long = random_untrimmed(clip_rng(split, seed, 1000), num_actions)
    path = write_video(long, folder / "untrimmed", "h264")
    return clips, path, long.segments()
