"""The bundled motion-tiny model against its acceptance checks, through the real entry points.

- 300 fresh encoded clips (seed space "test", never used by training or validation; the
  resolutions, frame rates, durations and codecs of `synth.STRICT`): `uvtag classify` (official views)
  then `uvtag eval` reproduce the top-1 recorded in the zoo and weights/MOTION_TINY.md.
- The same clips with their sampled frames shuffled in time: the direction classes the model
  recognises fall to chance (it reads the order of the frames, not their appearance).
- Untrimmed videos of 6 to 10 actions: `uvtag localize`, scored by `uvtag eval`, reproduce the
  card's mAP at tIoU 0.5 and 0.75; actions recovered at tIoU >= 0.5 are counted.

The top-1 target (>= 97%) is met (97.7%); the other target, every action recovered, is not:
the bundled model finds 71 of 80. That check is a strict expected failure, so the suite stays
green while the gap is visible in every run, and it turns into a failure (remove the marker)
when a model that finds every action is bundled.
Figures print with `pytest -s`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import uvtag
from uvtag import synth
from uvtag.cli import app
from uvtag.cli.demo import MOTION_SEGMENTS, MOTION_STRIDE_SEC, MOTION_WINDOW_SEC
from uvtag.infer.segments import temporal_iou
from uvtag.infer.views import aggregate
from uvtag.model.zoo import MOTION_TINY_TOP1

NUM_CLIPS = 300
NUM_UNTRIMMED = 10
TOP1_FLOOR = 0.93  # the measured figure less a margin: a regression guard, not the target
MAP50_FLOOR = 0.75
CARD_MAP = (0.879, 0.707)  # mAP at tIoU 0.5 and 0.75 in weights/MOTION_TINY.md (10 videos, 80 actions)
NOT_YET = "the bundled model finds 71 of 80 actions, not every one (see weights/MOTION_TINY.md)"
runner = CliRunner()


def _invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".csv")


@pytest.fixture(scope="module")
def fresh_clips(tmp_path_factory) -> Path:
    """300 encoded clips, balanced over the 9 classes, in one sub-folder per class, plus truth.csv."""
    root = tmp_path_factory.mktemp("fresh")
    for k in range(NUM_CLIPS):
        label = synth.MOTION_CLASSES[k % len(synth.MOTION_CLASSES)]
        scene = synth.random_clip(synth.clip_rng("test", 0, k), label, synth.STRICT)
        folder = root / label.replace(" ", "_")
        folder.mkdir(exist_ok=True)
        synth.write_video(scene, folder / f"{k:03d}")  # the scene's random codec
    rows = ["path,label"] + [f"{p.relative_to(root)},{p.parent.name.replace('_', ' ')}" for p in _videos(root)]
    (root / "truth.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def classified(fresh_clips, tmp_path_factory) -> dict:
    """`uvtag classify` on the 300 clips (official views), scored by `uvtag eval`: its JSON report."""
    out = tmp_path_factory.mktemp("classified")
    _invoke("classify", *_videos(fresh_clips), "--model", "motion-tiny", "--out", out / "preds.jsonl", "--quiet",
            "--device", "cpu")  # the model card's figures are CPU float32
    _invoke("eval", out / "preds.jsonl", "--gt", fresh_clips / "truth.csv", "--out", out / "metrics.json", "--quiet")
    report = json.loads((out / "metrics.json").read_text())
    per_class = " ".join(f"{c['label']}: {c['accuracy']:.2f}" for c in report["per_class"])
    print(f"\nmotion-tiny top-1 on {NUM_CLIPS} fresh clips: {report['top1']:.4f} ({per_class})")
    return report


def test_fresh_clips_cover_the_specified_variety(fresh_clips):
    videos = _videos(fresh_clips)
    assert len(videos) == NUM_CLIPS
    assert {p.suffix for p in videos} == {".mp4", ".webm", ".avi"}  # h264/hevc, vp9, mpeg4/mjpeg
    scenes = [synth.random_clip(synth.clip_rng("test", 0, k), synth.MOTION_CLASSES[k % 9], synth.STRICT)
              for k in range(0, NUM_CLIPS, 7)]
    assert min(min(s.height, s.width) for s in scenes) < 100 and max(max(s.height, s.width) for s in scenes) > 400
    assert min(s.fps for s in scenes) < 20 and max(s.fps for s in scenes) > 45


def test_eval_reproduces_the_model_card_top1(classified):
    assert classified["num_matched"] == NUM_CLIPS
    assert abs(classified["top1"] - MOTION_TINY_TOP1) <= 1 / NUM_CLIPS + 1e-9  # the zoo / card figure, to one clip
    assert classified["top1"] >= TOP1_FLOOR


def test_top1_reaches_97_percent(classified):
    assert classified["top1"] >= 0.97


def test_shuffled_frames_drop_the_direction_classes_to_chance(fresh_clips, classified):
    """For each direction class the model recognises, shuffling the sampled frames must break it."""
    known = {c["label"] for c in classified["per_class"] if c["label"] in synth.DIRECTION_CLASSES and c["accuracy"] >= 0.85}
    assert len(known) >= 4
    tagger = uvtag.load("motion-tiny", device="cpu")
    rng = np.random.default_rng(0)
    ordered, shuffled = [], []
    for path in _videos(fresh_clips):
        label = path.parent.name.replace("_", " ")
        if label not in known:
            continue
        with tagger.open(path) as reader:
            views = tagger.classify_views(reader)  # the official test views, as classify builds them
        t = views.shape[2]
        perm = rng.permutation(t)
        while (np.diff(perm) > 0).all() or (np.diff(perm) < 0).all():  # neither in order nor reversed
            perm = rng.permutation(t)
        want = tagger.labels.index(label)
        ordered.append(int(aggregate(tagger.predictor.logits(views)).argmax()) == want)
        shuffled.append(int(aggregate(tagger.predictor.logits(views[:, :, perm.tolist()])).argmax()) == want)
    acc_ordered, acc_shuffled = float(np.mean(ordered)), float(np.mean(shuffled))
    print(f"\n{len(ordered)} clips of {len(known)} direction classes: ordered {acc_ordered:.3f}, "
          f"frames shuffled {acc_shuffled:.3f} (a class vs its time-reversed partner: chance 0.5)")
    assert acc_ordered >= 0.85
    # each direction class differs from its partner only in the order of the frames: without order, a coin flip at best
    assert acc_shuffled <= 0.6, "the model recognises direction without the order of the frames"


@pytest.fixture(scope="module")
def localized(tmp_path_factory) -> dict:
    """`uvtag localize` on untrimmed videos of 6 to 10 actions, `uvtag eval` at tIoU 0.5 and 0.75."""
    root = tmp_path_factory.mktemp("untrimmed")
    truth, outputs, missed, actions = {}, [], [], 0
    for k in range(NUM_UNTRIMMED):
        scene = synth.random_untrimmed(synth.clip_rng("test", 1, k), num_actions=6 + k % 5)
        path = synth.write_video(scene, root / f"untrimmed{k}", "h264")
        out = root / f"untrimmed{k}.json"
        _invoke("localize", path, "--model", "motion-tiny", "--window", MOTION_WINDOW_SEC, "--stride", MOTION_STRIDE_SEC,
                "--threshold", MOTION_SEGMENTS["threshold"], "--smooth", MOTION_SEGMENTS["smooth_windows"],
                "--min-duration", MOTION_SEGMENTS["min_duration_sec"], "--merge-gap", MOTION_SEGMENTS["merge_gap_sec"],
                "--nms-iou", MOTION_SEGMENTS["nms_iou"], "--format", "activitynet", "--out", out, "--quiet",
                "--device", "cpu")
        outputs.append(out)
        found = [(d["label"], tuple(d["segment"])) for d in json.loads(out.read_text())["results"][path.stem]]
        truth[path.stem] = {"subset": "test", "annotations": [{"label": lab, "segment": [t0, t1]}
                                                              for t0, t1, lab in scene.segments()]}
        for t0, t1, label in scene.segments():
            actions += 1
            best = max((temporal_iou((t0, t1), seg) for lab, seg in found if lab == label), default=0.0)
            if best < 0.5:
                missed.append(f"{path.stem} {label} {t0:.2f}-{t1:.2f}s (best tIoU {best:.2f})")
    (root / "gt.json").write_text(json.dumps({"database": truth}), encoding="utf-8")
    _invoke("eval", *outputs, "--gt", root / "gt.json", "--tiou", "0.5,0.75", "--out", root / "metrics.json", "--quiet")
    report = json.loads((root / "metrics.json").read_text())
    print(f"\nlocalize, {NUM_UNTRIMMED} videos, {actions} actions: mAP@0.5 {report['mAP'][0]:.3f}, "
          f"mAP@0.75 {report['mAP'][1]:.3f}, recovered at tIoU >= 0.5: {actions - len(missed)}/{actions}")
    return {"report": report, "missed": missed, "actions": actions}


def test_localize_finds_the_actions_of_untrimmed_videos(localized):
    assert localized["actions"] >= 6 * NUM_UNTRIMMED
    assert localized["report"]["mAP"][0] >= MAP50_FLOOR
    assert localized["report"]["mAP"][0] >= localized["report"]["mAP"][1]  # stricter overlap, lower mAP
    assert localized["report"]["mAP"] == pytest.approx(CARD_MAP, abs=0.03)  # the card's figures


@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_localize_recovers_every_action(localized):
    assert not localized["missed"], "not found at tIoU >= 0.5: " + "; ".join(localized["missed"])
