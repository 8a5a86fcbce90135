"""Training: pure pieces (sampler, crops, schedule, flips, metrics), datasets, the loop, resume after a kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from uvtag import synth
from uvtag.cli import app
from uvtag.errors import UsageError
from uvtag.model.weights import read_checkpoint
from uvtag.train.augment import labels_allow_flip, random_resized_crop_box, train_clip_indices
from uvtag.train.data import VideoItem, VideoSource, read_csv, read_folder, split_items
from uvtag.train.schedule import lr_at

runner = CliRunner()


# ---------------------------------------------------------------------- pure pieces


def test_train_sampler_takes_one_frame_per_segment():
    rng = np.random.default_rng(0)
    for start, stop, f in ((0, 100, 8), (10, 14, 8), (5, 6, 4), (0, 37, 8)):
        for _ in range(20):
            idx = train_clip_indices(start, stop, f, rng)
            assert len(idx) == f and idx == sorted(idx) and start <= idx[0] and idx[-1] < stop
            seg = (stop - start) / f
            assert all(start + math.floor(seg * i) <= j <= start + seg * (i + 1) for i, j in enumerate(idx))
    with pytest.raises(ValueError):
        train_clip_indices(5, 5, 8, rng)


def test_shared_jitter_keeps_frames_evenly_spaced():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        idx = train_clip_indices(0, 160, 8, rng, "shared")  # 20 frames per segment
        steps = np.diff(idx)
        assert len(idx) == 8 and (steps >= 19).all() and (steps <= 21).all()  # one offset: equal steps, up to rounding
        assert 0 <= idx[0] < 20
        seen.add(idx[0])
    assert len(seen) > 10  # the offset is random
    with pytest.raises(ValueError, match="jitter"):
        train_clip_indices(0, 160, 8, rng, "wobbly")


def test_random_resized_crop_box_stays_inside_and_covers_the_scale():
    rng = np.random.default_rng(1)
    for h, w in ((64, 64), (72, 128), (300, 90)):
        side = min(h, w)
        for _ in range(50):
            y, x, ch, cw = random_resized_crop_box(h, w, rng, (0.5, 1.0))
            assert 0 <= y and y + ch <= h and 0 <= x and x + cw <= w
            assert 0.4 * side * side <= ch * cw <= 1.1 * side * side
    assert random_resized_crop_box(40, 60, rng, (1.0, 1.0), (1.0, 1.0)) == (0, 10, 40, 40)


def test_schedule_warms_up_then_follows_a_cosine():
    total, warm, base, low = 100, 10, 1e-3, 1e-5
    assert lr_at(0, total, warm, base, low) == pytest.approx(1e-4)
    assert lr_at(9, total, warm, base, low) == pytest.approx(base)
    assert lr_at(10, total, warm, base, low) == pytest.approx(base)
    assert lr_at(55, total, warm, base, low) == pytest.approx((base + low) / 2)
    assert lr_at(100, total, warm, base, low) == pytest.approx(low)
    values = [lr_at(s, total, warm, base, low) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_flip_is_off_for_direction_classes():
    assert not labels_allow_flip(synth.MOTION_CLASSES)
    assert not labels_allow_flip(["pushing something from left to right", "other"])
    assert not labels_allow_flip(["turning_counterclockwise"])
    assert labels_allow_flip(["walking", "running", "moving up", "moving down"])


# ---------------------------------------------------------------------- datasets


def _tiny_folder(root: Path, labels=("moving left", "moving right"), per_class: int = 3) -> Path:
    small = synth.MotionRanges(duration_sec=(1.0, 1.2), short_side=(64, 72), fps=(10, 12))
    for k, label in enumerate(labels):
        folder = root / label.replace(" ", "_")
        folder.mkdir(parents=True)
        for i in range(per_class):
            synth.write_video(synth.random_clip(synth.clip_rng("test", 40, k, i), label, small), folder / f"c{i}", "mjpeg")
    return root


def test_folder_dataset_and_its_errors(tmp_path):
    root = _tiny_folder(tmp_path / "data")
    items, labels = read_folder(root)
    assert labels == ("moving_left", "moving_right") and len(items) == 6
    assert [i.label for i in items] == [0, 0, 0, 1, 1, 1]
    (root / "empty_class").mkdir()
    with pytest.raises(UsageError, match="empty_class.*has no videos"):
        read_folder(root)
    with pytest.raises(UsageError, match="no class sub-folders"):
        read_folder(tmp_path / "data" / "empty_class")


def test_csv_dataset_and_its_errors(tmp_path):
    (tmp_path / "a.csv").write_text("path,label,start_sec,end_sec\nx.mp4,run,,\n/abs/y.mp4,walk,1.5,3\n")
    items, labels = read_csv(tmp_path / "a.csv")
    assert labels == ("run", "walk")
    assert items[0] == VideoItem(str(tmp_path / "x.mp4"), 0, None, None)
    assert items[1] == VideoItem("/abs/y.mp4", 1, 1.5, 3.0)
    (tmp_path / "b.csv").write_text("file,class\nx.mp4,run\n")
    with pytest.raises(UsageError, match="header"):
        read_csv(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("path,label,start_sec,end_sec\nx.mp4,run,3,2\n")
    with pytest.raises(UsageError, match="c.csv:2: end_sec"):
        read_csv(tmp_path / "c.csv")
    with pytest.raises(UsageError, match="class 'jump' has no rows"):
        read_csv(tmp_path / "a.csv", labels=["run", "walk", "jump"])


def test_unreadable_videos_are_skipped_with_a_count(tmp_path):
    root = _tiny_folder(tmp_path / "data")
    (root / "moving_left" / "broken.mp4").write_bytes(b"not a video at all" * 20)
    (root / "moving_right" / "empty.mp4").write_bytes(b"")
    items, labels = read_folder(root)
    good, bad = VideoSource(items, labels).check()
    assert len(good) == 6 and len(bad) == 2
    assert any("broken.mp4" in b for b in bad) and any("empty.mp4" in b for b in bad)


def test_stratified_split_keeps_every_class_in_training():
    items = [VideoItem(f"{k}_{i}", k) for k in range(3) for i in range(10)] + [VideoItem("lonely", 3)]
    train, val = split_items(items, 0.2, seed=0)
    assert sorted(i.label for i in val) == [0, 0, 1, 1, 2, 2]
    assert {i.label for i in train} == {0, 1, 2, 3}
    assert split_items(items, 0.2, seed=0) == (train, val)


# ---------------------------------------------------------------------- the loop, through the CLI


def _train_args(data: str, out: Path, epochs: int, extra=()) -> list[str]:
    return ["train", data, "--out", str(out), "--epochs", str(epochs), "--batch-size", "4", "--workers", "0",
            "--frames", "4", "--lr", "3e-3", "--warmup-epochs", "0.5", "--seed", "3", "--quiet", *extra]


def test_train_from_folder_writes_a_model_that_classify_uses(tmp_path):
    root = _tiny_folder(tmp_path / "data")
    (root / "moving_left" / "broken.mp4").write_bytes(b"junk" * 100)
    result = runner.invoke(app, _train_args(str(root), tmp_path / "run", 2, ["--val-split", "0.34", "--num-crops", "3"]))
    assert result.exit_code == 0, result.output
    loaded = read_checkpoint(tmp_path / "run" / "model.pt")
    assert loaded.layout == "uvtag" and loaded.labels == ("moving_left", "moving_right")
    assert loaded.config.t_size == 4 and loaded.config.temporal_downsample and not loaded.config.no_lmhra
    history = loaded.meta["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["train_loss"]) for h in history)
    assert loaded.meta["protocol"]["num_crops"] == 3
    video = next((root / "moving_right").glob("*.avi"))
    result = runner.invoke(app, ["classify", str(video), "-m", str(tmp_path / "run" / "model.pt"), "-f", "json", "-q"])
    assert result.exit_code == 0, result.output
    assert '"moving_' in result.output
    # a second run into the same folder without --resume is refused
    again = runner.invoke(app, _train_args(str(root), tmp_path / "run", 2))
    assert again.exit_code == 2 and "--resume" in again.output


def test_train_reports_an_empty_class(tmp_path):
    root = _tiny_folder(tmp_path / "data")
    (root / "nothing_here").mkdir()
    result = runner.invoke(app, _train_args(str(root), tmp_path / "run", 1))
    assert result.exit_code == 2 and "'nothing_here' has no videos" in result.output


def test_init_from_a_zoo_model_keeps_the_backbone_and_renews_the_head(tmp_path, monkeypatch):
    import dataclasses

    from uvtag.model import build_model
    from uvtag.model.weights import save_checkpoint
    from uvtag.model.zoo import CHECKPOINTS, get_checkpoint
    from uvtag.train.init import model_config

    # a zoo entry whose file is already in the cache (no download): a random full-design model, 5 classes
    config = model_config("tiny", 5, 8, dropout=0.0, drop_path=0.0)
    entry = dataclasses.replace(get_checkpoint("sthv2_uniformerv2_b16_16x224"), name="zoo-test", config=config,
                                labels=None, num_frames=8, input_size=64, filename="zoo-test.pt", urls=(), sha256=None)
    monkeypatch.setitem(CHECKPOINTS, "zoo-test", entry)
    monkeypatch.setenv("UVTAG_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    torch.manual_seed(5)
    source = build_model(config)
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.1)
    save_checkpoint(tmp_path / "cache" / "zoo-test.pt", source, [f"c{i}" for i in range(5)], {})
    root = _tiny_folder(tmp_path / "data")
    args = _train_args(str(root), tmp_path / "run", 1, ["--init", "zoo-test", "--lr", "1e-9", "--frames", "8"])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    tuned = read_checkpoint(tmp_path / "run" / "model.pt")
    assert tuned.labels == ("moving_left", "moving_right")
    assert tuned.state_dict["backbone.transformer.proj.2.weight"].shape[0] == 2  # a new head
    key = "backbone.transformer.resblocks.0.attn.in_proj_weight"
    assert torch.allclose(source.state_dict()[key], tuned.state_dict[key], atol=1e-6)  # lr 1e-9: backbone kept


def test_init_from_a_zoo_model_of_the_same_classes_keeps_its_head():
    """Continued training (`--init motion-tiny` on synthetic:motion) starts from the whole model."""
    from uvtag.model.zoo import motion_tiny_config
    from uvtag.train.init import init_model

    bundled = read_checkpoint(Path(__file__).resolve().parents[1] / "weights" / "motion-tiny.pt").state_dict
    head, key = "backbone.transformer.proj.2.weight", "backbone.transformer.resblocks.0.attn.in_proj_weight"
    kept = init_model(motion_tiny_config(), "motion-tiny", "tiny", offline=True, labels=synth.MOTION_CLASSES).state_dict()
    assert torch.equal(kept[head], bundled[head]) and torch.equal(kept[key], bundled[key])
    other = tuple(reversed(synth.MOTION_CLASSES))  # same names, another order: a new head
    renewed = init_model(motion_tiny_config(), "motion-tiny", "tiny", offline=True, labels=other).state_dict()
    assert not torch.equal(renewed[head], bundled[head]) and torch.equal(renewed[key], bundled[key])


def test_train_from_a_uvtag_checkpoint_file(tmp_path):
    """`--init FILE`: continue from an earlier run's model.pt (same classes: the head is kept)."""
    source = Path(__file__).resolve().parents[1] / "weights" / "motion-tiny.pt"
    args = ["train", "synthetic:motion", "--out", str(tmp_path / "run"), "--init", str(source), "--epochs", "1",
            "--train-size", "9", "--val-size", "9", "--batch-size", "9", "--workers", "0", "--lr", "1e-12",
            "--jitter", "shared", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    before, after = read_checkpoint(source).state_dict, read_checkpoint(tmp_path / "run" / "model.pt").state_dict
    head = "backbone.transformer.proj.2.weight"
    assert torch.allclose(before[head], after[head], atol=1e-6)  # lr ~0: the kept head is unchanged
    bad = tmp_path / "plain.pt"
    torch.save({k: v for k, v in before.items()}, bad)  # an official-layout state dict, not a uvtag file
    result = runner.invoke(app, ["train", "synthetic:motion", "--out", str(tmp_path / "run2"), "--init", str(bad), "--quiet"])
    assert result.exit_code == 2 and "uvtag checkpoint" in result.output
    result = runner.invoke(app, ["train", "synthetic:motion", "--out", str(tmp_path / "run3"), "--jitter", "wobbly", "--quiet"])
    assert result.exit_code == 2 and "--jitter" in result.output


_SYNTH_TINY = ["--train-size", "24", "--val-size", "9", "--init", "random", "--dropout", "0.2"]


def test_class_weights_change_how_often_classes_are_drawn(tmp_path):
    from uvtag.train.data import ClipDataset, Preprocess, SyntheticMotion
    from uvtag.train.loop import TrainSettings, _train_order, parse_class_weights

    labels = synth.MOTION_CLASSES
    weights = parse_class_weights("rotating clockwise=4, rotating counterclockwise=4,still=0", labels)
    assert weights.tolist() == [1, 1, 1, 1, 4, 4, 1, 1, 0]
    source = SyntheticMotion(900, "train", 0)
    dataset = ClipDataset(source, Preprocess(frames=4, size=32), True)
    settings = TrainSettings(data="synthetic:motion", out=str(tmp_path))
    order = _train_order(dataset, settings, 0, weights)
    drawn = np.bincount([source.label(i) for i in order], minlength=9) / len(order)
    assert drawn[8] == 0 and abs(drawn[4] - 4 / 14) < 0.04 and abs(drawn[0] - 1 / 14) < 0.03
    assert order == _train_order(dataset, settings, 0, weights)  # a function of (seed, epoch): resume replays it
    assert sorted(_train_order(dataset, settings, 0, None)) == list(range(900))  # unweighted: a permutation
    for bad in ("rotating=2", "still", "still=x", "still=-1", ",".join(f"{n}=0" for n in labels)):
        with pytest.raises(UsageError):
            parse_class_weights(bad, labels)
    args = _train_args("synthetic:motion", tmp_path / "run", 1, _SYNTH_TINY + ["--class-weight", "still=3"])
    assert runner.invoke(app, args).exit_code == 0
    args = _train_args("synthetic:motion", tmp_path / "run2", 1, _SYNTH_TINY + ["--class-weight", "jumping=3"])
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "one of the classes" in result.output


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from uvtag.cli import app; app()", *args]


def test_training_resumes_after_a_kill_and_ends_where_an_uninterrupted_run_ends(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # on the CPU: CUDA's backward kernels are not bit-deterministic, even between two uninterrupted runs
    args = lambda out: _train_args("synthetic:motion", out, 4, _SYNTH_TINY + ["--device", "cpu"])  # noqa: E731
    subprocess.run(_cli(*args(straight)), check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen(_cli(*args(killed)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "last.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through epoch 2 (or later)
    proc.wait()
    done = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= done < 4, "the kill came too late to test a resume"
    resumed = subprocess.run(_cli(*args(killed), "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = read_checkpoint(straight / "model.pt")
    b = read_checkpoint(killed / "model.pt")
    assert a.meta["training"]["history"] == [
        {**h, "seconds": a.meta["training"]["history"][i]["seconds"]} for i, h in enumerate(b.meta["training"]["history"])
    ]
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key


def test_untrimmed_windows_are_mixed_into_synthetic_training(tmp_path):
    from uvtag.train.data import SyntheticMotion

    mixed, plain = SyntheticMotion(40, "train", 0, untrimmed=1.0), SyntheticMotion(40, "train", 0)
    short_sides = []
    for i in range(9):
        a = mixed.frames(i, 4, np.random.default_rng([0, 0, i]), 0, "shared")
        b = plain.frames(i, 4, np.random.default_rng([0, 0, i]), 0, "shared")
        assert a.shape[0] == b.shape[0] == 4 and a.dtype == np.uint8
        assert min(a.shape[1:3]) >= 160  # untrimmed scenes have a short side of at least 160 px
        short_sides.append(min(b.shape[1:3]))
    assert min(short_sides) < 160  # trimmed training clips go down to 64 px
    assert np.array_equal(mixed.frames(3, 4, None), plain.frames(3, 4, None))  # validation clips stay trimmed
    out = tmp_path / "run"
    result = runner.invoke(app, _train_args("synthetic:motion", out, 1, [*_SYNTH_TINY, "--untrimmed", "0.5"]))
    assert result.exit_code == 0, result.output
    assert read_checkpoint(out / "model.pt").meta["training"]["settings"]["untrimmed"] == 0.5


def test_resume_of_a_state_saved_before_a_setting_existed(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, _train_args("synthetic:motion", out, 1, _SYNTH_TINY)).exit_code == 0
    state = torch.load(out / "last.pt", weights_only=True)
    settings = json.loads(state["settings"])
    del settings["untrimmed"]  # as written by uvtag before --untrimmed
    state["settings"] = json.dumps(settings)
    torch.save(state, out / "last.pt")
    result = runner.invoke(app, _train_args("synthetic:motion", out, 2, [*_SYNTH_TINY, "--resume"]))
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, _train_args("synthetic:motion", out, 3, [*_SYNTH_TINY, "--untrimmed", "0.2", "--resume"]))
    assert result.exit_code == 2 and "untrimmed" in result.output


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, _train_args("synthetic:motion", out, 1, _SYNTH_TINY)).exit_code == 0
    result = runner.invoke(app, _train_args("synthetic:motion", out, 2, [*_SYNTH_TINY[:-2], "--dropout", "0.3", "--resume"]))
    assert result.exit_code == 2 and "dropout" in result.output
