"""The synthetic motion generator: labels true on screen, determinism, encoding, untrimmed tracks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from uvtag import synth
from uvtag.video.reader import open_video


def _clips(n: int, split: str = "test", ranges=synth.STRICT):
    return [synth.random_clip(synth.clip_rng(split, 99, i), synth.MOTION_CLASSES[i % 9], ranges) for i in range(n)]


def test_every_strict_clip_meets_the_class_definition():
    for scene in _clips(180):
        (action,) = scene.actions
        s, e, h, w = action.start, action.end, scene.height, scene.width
        label = scene.label
        assert 64 <= min(h, w) and max(h, w) <= 640 and h % 2 == 0 and w % 2 == 0
        assert 10 <= scene.fps <= 60 and 1.5 - 0.05 <= scene.duration_sec <= 5.0 + 0.05
        assert scene.codec in synth.CODECS
        moved = (e.x - s.x, e.y - s.y)
        if label.startswith("moving"):
            axis, sign = {"moving left": (0, -1), "moving right": (0, 1), "moving up": (1, -1), "moving down": (1, 1)}[label]
            side = w if axis == 0 else h
            assert sign * moved[axis] >= side / 3 and moved[1 - axis] == 0
            assert (s.angle, s.size) == (e.angle, e.size)
        else:
            assert moved == (0, 0)
        if label.startswith("rotating"):
            turn = e.angle - s.angle
            assert abs(turn) >= 90 and (turn > 0) == (label == "rotating counterclockwise")
        if label in ("growing", "shrinking"):
            zoom = e.size / s.size
            assert (zoom if label == "growing" else 1 / zoom) >= 1.8
        if label == "still":
            assert s == e


def _object_centroid(scene: synth.Scene, index: int) -> np.ndarray:
    """Where the object is, found from pixels: paint it on a flat background and diff."""
    plain = synth.Scene(scene.height, scene.width, scene.fps, scene.num_frames,
                        np.zeros_like(scene.background), np.full_like(scene.sprite, 255), scene.alpha, scene.actions)
    mask = plain.frame(index).max(axis=2) > 127
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean(), mask.sum()])


@pytest.mark.parametrize("label", synth.MOTION_CLASSES)
def test_rendered_pixels_move_as_labelled(label):
    scene = synth.random_clip(synth.clip_rng("test", 5, synth.MOTION_CLASSES.index(label)), label)
    a, b = _object_centroid(scene, 0), _object_centroid(scene, scene.num_frames - 1)
    dx, dy, area = b[0] - a[0], b[1] - a[1], b[2] / a[2]
    step = 0.3 * min(scene.height, scene.width)
    expected = {"moving left": dx < -step, "moving right": dx > step, "moving up": dy < -step, "moving down": dy > step,
                "growing": area > 2.5, "shrinking": area < 0.4}
    if label in expected:
        assert expected[label], (dx, dy, area)
    else:  # rotation and still stay in place; still keeps its exact pixels
        assert abs(dx) < 3 and abs(dy) < 3
    if label == "still":
        assert abs(area - 1) < 1e-6


def test_frames_are_a_function_of_the_seed_and_index():
    one = synth.random_clip(synth.clip_rng("train", 1, 2, 3))
    two = synth.random_clip(synth.clip_rng("train", 1, 2, 3))
    other = synth.random_clip(synth.clip_rng("val", 1, 2, 3))
    idx = [0, one.num_frames // 2, one.num_frames - 1]
    assert np.array_equal(one.frames(idx), two.frames(idx))
    assert np.array_equal(one.frame(idx[1]), one.frames(idx)[1])  # random access = same frame
    assert one.frames(idx).dtype == np.uint8 and one.frames(idx).shape == (3, one.height, one.width, 3)
    assert not (one.height == other.height and np.array_equal(one.frame(0), other.frame(0)))


def test_classes_and_direction_partners():
    assert len(synth.MOTION_CLASSES) == 9 and synth.MOTION_CLASSES[-1] == "still"
    assert set(synth.DIRECTION_CLASSES) == set(synth.MOTION_CLASSES) - {"still"}


@pytest.mark.parametrize("codec", sorted(synth.CODECS))
def test_every_codec_encodes_a_readable_video(tmp_path, codec):
    rng = synth.clip_rng("test", 7, len(codec))
    scene = synth.random_clip(rng, "moving right", synth.MotionRanges(duration_sec=(1.5, 1.6), short_side=(64, 100)))
    path = synth.write_video(scene, tmp_path / "clip", codec)
    assert path.suffix == synth.CODECS[codec][0]
    with open_video(path) as reader:
        info = reader.info
        assert info.num_frames == scene.num_frames
        assert (info.height, info.width) == (scene.height, scene.width)
        assert math.isclose(info.fps, scene.fps, rel_tol=1e-3)
        decoded = reader.get_frames([scene.num_frames // 2])[0].astype(int)
    drawn = scene.frame(scene.num_frames // 2).astype(int)
    assert np.abs(decoded - drawn).mean() < 20  # lossy, but the same picture


def test_untrimmed_track_is_contiguous_with_known_boundaries():
    for seed in range(20):
        scene = synth.random_untrimmed(synth.clip_rng("test", 3, seed), 8)
        segs = scene.segments()
        assert len(segs) == 8 and segs[0][0] == 0.0
        assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))  # back to back
        assert all(a[2] != b[2] for a, b in zip(segs, segs[1:]))  # no label twice in a row
        assert all(2.5 - 1e-6 <= e - s <= 4.0 + 0.1 for s, e, _ in segs)
        assert abs(scene.duration_sec - segs[-1][1]) < 1.0 / scene.fps + 1e-9
        assert min(scene.height, scene.width) >= 160
        # the pose at each boundary is the end of one action or a fresh start (never mid-way)
        for a in scene.actions:
            assert scene.pose(a.t0 + 1e-9).size == pytest.approx(a.start.size, rel=1e-6)
            # objects stay in the trimmed clips' size range (a fresh shrinking clip can end at 0.144)
            short = min(scene.height, scene.width)
            assert 0.14 * short <= min(a.start.size, a.end.size) and max(a.start.size, a.end.size) <= 0.6 * short + 1e-9


def test_untrimmed_track_with_given_labels():
    labels = ("moving left", "rotating clockwise", "moving right")
    scene = synth.random_untrimmed(synth.clip_rng("test", 4, 0), 3, (1.0, 4.0), labels=labels, clutter=0.0)
    assert tuple(label for _, _, label in scene.segments()) == labels
    assert scene.noise == [] and scene.specks == 0  # clutter 0: clean scene
    free = synth.random_untrimmed(synth.clip_rng("test", 3, 0), 8)  # labels drawn: the stream is unchanged
    assert free.segments() == synth.random_untrimmed(synth.clip_rng("test", 3, 0), 8).segments()
    with pytest.raises(ValueError):
        synth.random_untrimmed(synth.clip_rng("test", 4, 0), 2, labels=labels)


def test_window_in_action_stays_mostly_inside_the_action():
    rng = np.random.default_rng(0)
    starts = []
    for _ in range(2000):
        t0 = rng.uniform(0, 5)
        t1 = t0 + rng.uniform(0.3, 4)
        duration = t1 + rng.uniform(0, 4)
        length = rng.uniform(1, 2.5)
        a, b = synth.window_in_action(t0, t1, duration, length, rng)
        assert 0 <= a < b <= duration + 1e-9 and b - a <= length + 1e-9
        assert min(b, t1) - max(a, t0) >= 0.7 * (b - a) - 1e-9  # at least 70% inside the action
        starts.append(a - t0)
    assert min(starts) < -0.1 and max(starts) > 0.5  # windows do reach across the action's edges


def test_write_examples(tmp_path):
    clips, long, truth = synth.write_examples(tmp_path, "demo", 1, num_actions=6)
    assert [label for _, label in clips] == list(synth.MOTION_CLASSES)
    assert all(p.is_file() and p.stat().st_size > 0 for p, _ in clips)
    assert {p.suffix for p, _ in clips} == {".mp4", ".webm", ".avi"}
    assert long.is_file() and len(truth) == 6
