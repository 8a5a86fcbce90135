"""`uvtag features` end to end: array shapes and row times, output names, the classifier applied to
the features against the scores `batch` writes, kill safety and resume, failures, and the pure
planning functions behind them."""

from __future__ import annotations

import json
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

import uvtag
from uvtag.cli import app
from uvtag.errors import UsageError
from uvtag.features import MANIFEST_NAME, feature_names, read_manifest, window_settings
from uvtag.infer.windows import clip_spans
from uvtag.results import VideoFeatures
from uvtag.synth import clip_rng, random_clip, write_video as write_scene
from videogen import write_bytes, write_video

runner = CliRunner()
MODEL = ["-m", "motion-tiny"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Two folders of motion clips, the same file name in both, and a clip shorter than a window."""
    root = tmp_path_factory.mktemp("archive")
    for k, (folder, label) in enumerate([("a", "moving left"), ("a", "growing"), ("b", "moving left")]):
        (root / folder).mkdir(exist_ok=True)
        name = "left" if label == "moving left" else "grow"
        write_scene(random_clip(clip_rng("test", 11, k), label), root / folder / name, "h264")
    write_video(root / "b" / "short.mp4", num_frames=12, fps=24, size=(48, 64))  # 0.5 s
    return root


@pytest.fixture(scope="module")
def motion_tiny():
    return uvtag.load("motion-tiny", device="cpu")


def _records(out: Path) -> dict[str, dict]:
    return {r["path"]: r for r in read_manifest(out) if r["record"] == "video"}


def test_features_shapes_times_and_names(archive, tmp_path, motion_tiny):
    out = tmp_path / "feats"
    result = invoke("features", archive, "--out", out, *MODEL, "--window", "1", "--stride", "0.25", "--pool", "mean")
    assert result.exit_code == 0, result.stderr
    assert "4 extracted, 0 already done, 0 failed of 4" in result.stderr
    records = _records(out)
    assert sorted(r["features"] for r in records.values()) == ["a/grow.npy", "a/left.npy", "b/left.npy", "b/short.npy"]
    for path, r in records.items():
        rows = np.load(out / r["features"])
        assert rows.dtype == np.float32 and rows.shape == (r["num_rows"], 96) and r["embed_dim"] == 96
        duration = r["duration_sec"]
        assert list(zip(r["start_sec"], r["end_sec"])) == clip_spans(duration, 1.0, 0.25)
        if duration >= 1.0:  # every row a 1 s window, every 0.25 s, the last one ending at the end
            assert all(abs(e - s - 1.0) < 1e-6 for s, e in zip(r["start_sec"], r["end_sec"]))
            assert all(abs(s - 0.25 * i) < 1e-6 for i, s in enumerate(r["start_sec"][:-1]))
            assert abs(r["end_sec"][-1] - duration) < 1e-5
        else:  # shorter than one window: the whole video, one row
            assert r["start_sec"] == [0.0] and r["num_rows"] == 1
        assert r["feat_stride"] == pytest.approx(0.25 * r["fps"], abs=1e-3) and r["num_frames"] == pytest.approx(r["fps"], abs=1e-3)
        assert (r["window_mode"], r["window_sec"], r["stride_sec"], r["model"], r["sampled_frames"]) == \
            ("window", 1.0, 0.25, "motion-tiny", 8)
        assert r["uvtag_version"] == uvtag.__version__
        np.testing.assert_allclose(np.load(out / r["mean"]), rows.mean(axis=0), rtol=1e-6, atol=1e-7)
        alone = motion_tiny.features(path, window_sec=1.0, stride_sec=0.25)  # the Python API, video by video
        assert isinstance(alone, VideoFeatures) and alone.spans == tuple(zip(r["start_sec"], r["end_sec"]))
        np.testing.assert_allclose(alone.features, rows, rtol=1e-5, atol=1e-5)
    assert not list(out.rglob("*.tmp"))


def test_features_times_classifier_are_the_scores_batch_writes(archive, tmp_path, motion_tiny):
    labels = tmp_path / "labels.jsonl"
    assert invoke("batch", archive, "--out", labels, *MODEL, "--clip", "0.5", "-k", "9", "-q").exit_code == 0
    out = tmp_path / "feats"
    assert invoke("features", archive, "--out", out, *MODEL, "--clip", "0.5", "-q").exit_code == 0
    records = _records(out)
    head = motion_tiny.predictor.model.head
    batch = [json.loads(line) for line in labels.read_text().splitlines()]
    assert len(batch) == len(records) == 4
    for video in batch:
        r = records[video["path"]]
        assert [(c["start_sec"], c["end_sec"]) for c in video["clips"]] == list(zip(r["start_sec"], r["end_sec"]))
        with torch.inference_mode():
            probs = torch.softmax(head(torch.from_numpy(np.load(out / r["features"]))), dim=-1).numpy()
        for clip, p in zip(video["clips"], probs):
            scores = np.zeros(9)
            for label in clip["top"]:
                scores[label["class_index"]] = label["score"]
            np.testing.assert_allclose(p, scores, rtol=0, atol=1e-6)


def test_same_names_in_different_folders_and_extensions(tmp_path):
    for rel in ("x/clip.mp4", "y/clip.mp4", "y/clip.webm", "y/z/other.avi"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    paths = [tmp_path / p for p in ("x/clip.mp4", "y/clip.mp4", "y/clip.webm", "y/z/other.avi")]
    names = feature_names(paths, [tmp_path])
    assert [names[str(p)] for p in paths] == ["x/clip", "y/clip.mp4", "y/clip.webm", "y/z/other"]
    pooled = feature_names([tmp_path / "a.mp4", tmp_path / "a.mean.mp4"], [tmp_path], pooled=True)
    assert sorted(pooled.values()) == ["a.mean.mp4", "a.mp4"]  # a.mean.npy is a's pooled vector
    with pytest.raises(UsageError, match="would both write"):
        feature_names([tmp_path / "x/clip.mp4", tmp_path / "y/clip.mp4"], [tmp_path / "x", tmp_path / "y"])


def test_window_settings():
    assert window_settings(None, None, None, 10.0) == ("clip", 10.0, 10.0)
    assert window_settings(None, 1.0, 4.0, 10.0) == ("clip", 4.0, 1.0)
    assert window_settings(2.0, None, None, 10.0) == ("window", 2.0, 1.0)
    with pytest.raises(UsageError, match="give one"):
        window_settings(2.0, None, 3.0, 10.0)
    with pytest.raises(UsageError, match="--stride must be a positive"):
        window_settings(2.0, 0.0, None, 10.0)


def test_usage_errors_exit_2(archive, tmp_path):
    out = tmp_path / "feats"
    both = invoke("features", archive, "--out", out, *MODEL, "--window", "1", "--clip", "1")
    assert both.exit_code == 2 and "give one" in both.stderr and not out.exists()
    assert invoke("features", archive, "--out", out, *MODEL, "--pool", "max").exit_code == 2
    assert invoke("features", archive, "--out", out, *MODEL, "--clip", "1", "-q").exit_code == 0
    refused = invoke("features", archive, "--out", out, *MODEL, "--clip", "1")
    assert refused.exit_code == 2 and "--resume" in refused.stderr
    other = invoke("features", archive, "--out", out, *MODEL, "--clip", "2", "--resume")
    assert other.exit_code == 2 and "window_sec 1.0 (now 2.0)" in other.stderr
    again = invoke("features", archive, "--out", out, *MODEL, "--clip", "2", "--overwrite")
    assert again.exit_code == 0 and "4 extracted, 0 already done" in again.stderr
    assert {r["window_sec"] for r in _records(out).values()} == {2.0}
    file_out = tmp_path / "file.npy"
    file_out.touch()
    assert invoke("features", archive, "--out", file_out, *MODEL).exit_code == 2


def test_failures_are_recorded_and_retried(archive, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    os.symlink(archive / "a" / "left.mp4", inputs / "left.mp4")
    write_bytes(inputs / "broken.mp4", b"\x00not a video" * 50)
    out = tmp_path / "feats"
    result = invoke("features", inputs, "--out", out, *MODEL, "--clip", "1")
    assert result.exit_code == 3 and "broken.mp4" in result.stderr
    records = read_manifest(out)
    assert [(r["record"], Path(r["path"]).name) for r in records] == [("failure", "broken.mp4"), ("video", "left.mp4")]
    assert not (out / "broken.npy").exists()
    resumed = invoke("features", inputs, "--out", out, *MODEL, "--clip", "1", "--resume")
    assert resumed.exit_code == 3 and "0 extracted, 1 already done, 1 failed of 2" in resumed.stderr


def test_resume_cuts_a_torn_line_and_redoes_a_video_whose_array_is_missing(archive, tmp_path):
    out = tmp_path / "feats"
    assert invoke("features", archive, "--out", out, *MODEL, "--clip", "1", "-q").exit_code == 0
    manifest = out / MANIFEST_NAME
    lines = manifest.read_text().splitlines(keepends=True)
    first = {r["path"]: (out / r["features"]).stat().st_mtime_ns for r in read_manifest(out)}
    torn = json.loads(lines[-1])["path"]
    manifest.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a kill mid-line
    lost = read_manifest(out)[0]
    (out / lost["features"]).unlink()  # a manifest line whose array is gone is not complete
    time.sleep(0.01)
    resumed = invoke("features", archive, "--out", out, *MODEL, "--clip", "1", "--resume")
    assert resumed.exit_code == 0 and "2 extracted, 2 already done" in resumed.stderr
    records = read_manifest(out)
    assert manifest.read_text().endswith("\n") and len(records) == 5  # the lost video's line comes again
    latest = {r["path"]: r for r in records}
    assert sorted(latest) == sorted(first)
    for path, r in latest.items():
        kept = (out / r["features"]).stat().st_mtime_ns == first[path]
        assert kept == (path not in (torn, lost["path"]))


def _uvtag() -> str:
    exe = Path(sys.executable).with_name("uvtag")
    assert exe.exists(), f"the uvtag console script is not installed next to {sys.executable}"
    return str(exe)


def test_killed_run_resumes_without_redoing_finished_videos(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(10):
        write_video(inputs / f"v{i:02d}.mp4", num_frames=60, fps=20, size=(48, 64))
    out = tmp_path / "feats"
    cmd = [_uvtag(), "features", str(inputs), "--out", str(out), *MODEL, "--window", "0.5", "--stride", "0.05",
           "--batch-size", "1", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest = out / MANIFEST_NAME
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait for the first finished video
        if manifest.exists() and manifest.read_text().count("\n") >= 1:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its decoder processes
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = {r["path"]: (out / r["features"]).stat() for r in read_manifest(out)}
    assert 1 <= len(before) < 10
    resumed = subprocess.run(cmd[:-1] + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{10 - len(before)} extracted, {len(before)} already done, 0 failed of 10" in resumed.stderr
    records = read_manifest(out)
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in inputs.glob("*.mp4"))  # each once
    for path, st in before.items():  # finished videos were not written again
        again = (out / Path(path).relative_to(inputs)).with_suffix(".npy").stat()
        assert (again.st_ino, again.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    for r in records:
        assert np.load(out / r["features"]).shape == (r["num_rows"], 96)
    assert not list(out.rglob("*.tmp")) and not (out / (MANIFEST_NAME + ".lock")).exists()


def test_worker_processes_give_the_same_features(archive, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert invoke("features", archive, "--out", one, *MODEL, "--clip", "0.5", "-q").exit_code == 0
    result = invoke("features", archive, "--out", two, *MODEL, "--clip", "0.5", "--workers", "2", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "4 extracted" in result.stderr and "videos on cpu, cpu" in result.stderr
    single, parallel = _records(one), _records(two)
    assert sorted(single) == sorted(parallel)
    for path, r in parallel.items():
        assert r["start_sec"] == single[path]["start_sec"] and r["features"] == single[path]["features"]
        np.testing.assert_allclose(np.load(two / r["features"]), np.load(one / r["features"]), rtol=1e-5, atol=1e-5)


def test_shards_write_into_one_folder_at_once_and_resume_completes_a_missing_one(archive, tmp_path):
    from uvtag.batch.shard import select_shard
    from uvtag.features import manifest_name, manifests
    from uvtag.video.files import find_videos

    whole = tmp_path / "whole"
    assert invoke("features", archive, "--out", whole, *MODEL, "--clip", "1", "-q").exit_code == 0
    out = tmp_path / "feats"
    out.mkdir()
    cmd = [_uvtag(), "features", str(archive), "--out", str(out), *MODEL, "--clip", "1", "-q", "--no-isolate"]
    runs = [subprocess.Popen(cmd + ["--shard", f"{i}/3"], stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in runs:  # all three at once, into one folder
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert manifests(out) == [out / manifest_name((i, 3)) for i in range(3)]
    paths = [str(p) for p in find_videos([archive])]
    for i in range(3):  # each shard's manifest holds exactly its videos
        own = [r["path"] for r in map(json.loads, (out / manifest_name((i, 3))).read_text().splitlines())]
        assert sorted(own) == sorted(select_shard(paths, [archive], i, 3))
    got, want = _records(out), _records(whole)
    assert sorted(got) == sorted(want) == sorted(paths)
    for path, record in want.items():  # the same names and rows as one unsharded run
        assert got[path]["features"] == record["features"]
        np.testing.assert_array_equal(np.load(out / record["features"]), np.load(whole / record["features"]))
    refused = invoke("features", archive, "--out", out, *MODEL, "--clip", "1")
    assert refused.exit_code == 2 and "--resume" in refused.stderr  # the folder holds features
    lost = next(i for i in range(3) if select_shard(paths, [archive], i, 3))
    (out / manifest_name((lost, 3))).unlink()  # as if that shard's job never ran
    resumed = invoke("features", archive, "--out", out, *MODEL, "--clip", "1", "--resume")
    n = len(select_shard(paths, [archive], lost, 3))
    assert resumed.exit_code == 0 and f"{n} extracted, {len(paths) - n} already done" in resumed.stderr
    assert sorted(_records(out)) == sorted(paths) and (out / MANIFEST_NAME).is_file()
