"""End to end through the real CLI: Typer's runner in-process, and the installed `uvtag` command.

Models are tiny random-weight checkpoints in uvtag's format (an official-layout state_dict plus
config, labels and protocol); videos are generated with PyAV and carry their frame index.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import uvtag
from conftest import TINY_LABELS
from test_writers import check_activitynet, parse_subtitles
from uvtag.cli import app
from uvtag.batch.output import BATCH_CSV_COLUMNS
from videogen import write_audio_only, write_bytes, write_truncated, write_video

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    good = d / "good"
    (good / "nested").mkdir(parents=True)
    v = {
        "a": write_video(good / "a.mp4", num_frames=60, fps=20),
        "b": write_video(good / "nested" / "b é.mkv", num_frames=45, fps=15, codec="h264"),
        "long": write_video(d / "long.mp4", num_frames=200, fps=20),
        "short": write_video(d / "short.mp4", num_frames=3, fps=10),
    }
    mixed = d / "mixed"
    shutil.copytree(good, mixed)
    v["text"] = write_bytes(mixed / "notes.mp4", b"not a video\n" * 20)
    v["empty"] = write_bytes(mixed / "empty.mp4", b"")
    v["audio"] = shutil.copy(write_audio_only(d / "sound.m4a"), mixed / "sound.mp4")  # audio-only, video name
    v["trunc"] = write_truncated(v["long"], mixed / "cut.mp4", 0.3)
    (mixed / "readme.txt").write_text("ignored: not a video extension")
    os.symlink(mixed, mixed / "nested" / "loop")  # a symlink loop must not hang the walk
    v["good_dir"], v["mixed_dir"] = good, mixed
    return v


# ---------------------------------------------------------------- classify


def test_classify_json_to_stdout_and_table_to_stderr(tiny_checkpoint, media):
    result = invoke("classify", media["a"], "-m", tiny_checkpoint, "-f", "json", "-k", "3")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    assert doc["schema_version"] == 1
    (video,) = doc["videos"]
    assert video["num_views"] == 6  # the checkpoint's protocol: 2 clips x 3 crops
    assert [t["rank"] for t in video["top"]] == [1, 2, 3]
    assert all(t["label"] in TINY_LABELS for t in video["top"])
    scores = [t["score"] for t in video["top"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert video["video"]["num_frames"] == 60 and video["video"]["duration_sec"] == pytest.approx(3.0)
    assert "rank" in result.stderr and video["top"][0]["label"] in result.stderr  # the people's table


def test_classify_matches_the_python_api(tiny_checkpoint, media):
    result = invoke("classify", media["a"], "-m", tiny_checkpoint, "-f", "json", "-q")
    cli_top = json.loads(result.stdout)["videos"][0]["top"]
    api = uvtag.load(tiny_checkpoint).classify(media["a"])
    assert [t["label"] for t in cli_top] == [s.label for s in api.top]
    assert [t["score"] for t in cli_top] == pytest.approx([s.score for s in api.top], abs=1e-7)


def test_classify_fast_uses_one_view_and_csv_out(tiny_checkpoint, media, tmp_path):
    out = tmp_path / "tags.csv"
    result = invoke("classify", media["a"], media["short"], "-m", tiny_checkpoint, "--fast", "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert {r["path"] for r in rows} == {str(media["a"]), str(media["short"])}
    assert {r["num_views"] for r in rows} == {"1"}
    again = invoke("classify", media["a"], "-m", tiny_checkpoint, "--out", out, "-q")
    assert again.exit_code == 2 and "exists; use --overwrite" in again.stderr
    assert invoke("classify", media["a"], "-m", tiny_checkpoint, "--out", out, "--overwrite", "-q").exit_code == 0


def test_classify_keeps_going_past_a_bad_file(tiny_checkpoint, media):
    result = invoke("classify", media["text"], media["a"], "-m", tiny_checkpoint, "-f", "jsonl", "-q")
    assert result.exit_code == 3
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["path"] for r in lines] == [str(media["a"])]
    assert f"{media['text']}: " in result.stderr and "not a video" in result.stderr.lower().replace("\n", " ") \
        or "invalid data" in result.stderr.lower()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["-m", "k400_uniformerv2_b16_8x22"], 2, "closest known names: k400_uniformerv2_b16_8x224"),
        (["-m", "no/such/file.pyth"], 1, "no such"),
        (["--device", "tpu"], 2, "unknown device"),
        (["--out", "/no/such/folder/x.json"], 2, "does not exist"),
        (["--out", "x.txt"], 2, "cannot tell the output format"),
        (["--precision", "fp16", "--device", "cpu"], 2, "70x slower"),
    ],
)
def test_bad_arguments_give_one_clear_line(tiny_checkpoint, media, args, code, message):
    base = ["classify", media["a"]] + ([] if "-m" in args else ["-m", tiny_checkpoint])
    result = invoke(*base, *args)
    assert result.exit_code == code
    assert message in result.stderr.lower()
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_cuda(tiny_checkpoint, media):
    result = invoke("classify", media["a"], "-m", tiny_checkpoint, "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr


def test_missing_video_is_reported(tiny_checkpoint, tmp_path):
    result = invoke("classify", tmp_path / "nope.mp4", "-m", tiny_checkpoint)
    assert result.exit_code == 3 and "nope.mp4: no such file" in result.stderr


def test_official_file_without_arch_is_explained(tmp_path, media):
    from uvtag.model import build_model

    from conftest import tiny_config

    bare = tmp_path / "my_weights.pyth"
    torch.save(build_model(tiny_config()).state_dict(), bare)
    result = invoke("classify", media["a"], "-m", bare)
    assert result.exit_code == 1 and "--arch" in result.stderr
    wrong = invoke("classify", media["a"], "-m", bare, "--arch", "k400_k710_uniformerv2_b16_8x224")
    assert wrong.exit_code == 1 and "B/16" in wrong.stderr and "Traceback" not in wrong.stderr


# ---------------------------------------------------------------- batch


def _batch_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == BATCH_CSV_COLUMNS
        return list(reader)


def test_batch_over_a_folder_with_good_and_bad_files(tiny_checkpoint, media, tmp_path):
    out = tmp_path / "labels.csv"
    result = invoke("batch", media["mixed_dir"], "--out", out, "-m", tiny_checkpoint, "--clip", "1", "-k", "2")
    assert result.exit_code == 3, result.stderr
    rows = _batch_rows(out)
    good = {str(media["mixed_dir"] / "a.mp4"), str(media["mixed_dir"] / "nested" / "b é.mkv")}
    videos = {r["path"] for r in rows if r["row_type"] == "video"}
    failed = {r["path"] for r in rows if r["row_type"] == "failure"}
    assert videos == good
    assert failed == {str(media["mixed_dir"] / n) for n in ("notes.mp4", "empty.mp4", "sound.mp4")} | (
        {str(media["mixed_dir"] / "cut.mp4")} & failed)  # a truncated file may decode partly (then it is tagged)
    assert all(r["error"] for r in rows if r["row_type"] == "failure")
    clips_a = [r for r in rows if r["row_type"] == "clip" and r["path"].endswith("a.mp4") and r["rank"] == "1"]
    assert [(float(r["start_sec"]), float(r["end_sec"])) for r in clips_a] == [(0, 1), (1, 2), (2, 3)]
    assert "readme.txt" not in out.read_text()
    assert "3 failed" in result.stderr or "failed" in result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_batch_json_formats(tiny_checkpoint, media, tmp_path, fmt):
    out = tmp_path / f"labels.{fmt}"
    result = invoke("batch", media["good_dir"], "--out", out, "-m", tiny_checkpoint, "--clip", "1.5", "-q")
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    records = [json.loads(x) for x in text.splitlines()] if fmt == "jsonl" else json.loads(text)["videos"]
    assert len(records) == 2
    assert all(r["schema_version"] == 1 for r in records) if fmt == "jsonl" else True
    assert all(len(r["clips"]) == 2 for r in records)  # 3 s / 1.5 s


def test_batch_refuses_to_overwrite_and_resume_skips_done(tiny_checkpoint, media, tmp_path):
    out = tmp_path / "labels.csv"
    assert invoke("batch", media["good_dir"], "--out", out, "-m", tiny_checkpoint, "-q").exit_code == 0
    before = out.read_bytes()
    refused = invoke("batch", media["good_dir"], "--out", out, "-m", tiny_checkpoint)
    assert refused.exit_code == 2 and "--resume" in refused.stderr
    resumed = invoke("batch", media["good_dir"], "--out", out, "-m", tiny_checkpoint, "--resume")
    assert resumed.exit_code == 0 and "2 already done" in resumed.stderr
    assert out.read_bytes() == before


def _uvtag_command() -> list[str]:
    exe = Path(sys.executable).with_name("uvtag")
    assert exe.exists(), f"the uvtag console script is not installed next to {sys.executable}"
    return [str(exe)]


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("many")
    for i in range(14):
        write_video(d / f"v{i:02d}.mp4", num_frames=80, fps=10, size=(48, 64))
    return d


def _completed(out: Path) -> list[str]:
    return [r["path"] for r in _batch_rows(out) if r["row_type"] == "video" and r["rank"] == "1"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_batch_killed_mid_run_resumes_without_duplicates(tiny_checkpoint, many_videos, tmp_path, sig):
    out = tmp_path / "labels.csv"
    cmd = _uvtag_command() + ["batch", str(many_videos), "--out", str(out), "-m", tiny_checkpoint,
                              "--clip", "0.25", "-q", "--batch-size", "1"]
    # A process started in the background by a non-interactive shell (`pytest ... &`) has SIGINT
    # ignored, and an ignored signal stays ignored in children: a handler here (reset to the
    # default by exec) gives the batch a Ctrl-C it can see, however pytest was started.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait for the first finished video
        if out.exists() and "\nvideo," in out.read_text():
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the batch finished before it could be killed; make it longer"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    partial = _completed(out)  # parses: the file is valid
    assert 1 <= len(partial) < 14
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    done = _completed(out)
    assert sorted(done) == sorted(str(p) for p in many_videos.glob("*.mp4"))  # every video exactly once
    assert len(done) == len(set(done))
    clip_keys = [(r["path"], r["start_sec"], r["rank"]) for r in _batch_rows(out) if r["row_type"] == "clip"]
    assert len(clip_keys) == len(set(clip_keys))


# ---------------------------------------------------------------- localize


@pytest.mark.parametrize("fmt", ["json", "csv", "activitynet", "srt", "vtt"])
def test_localize_writes_every_format_and_each_parses(tiny_checkpoint, media, tmp_path, fmt):
    suffix = {"activitynet": "json"}.get(fmt, fmt)
    out = tmp_path / f"segments.{suffix}"
    args = ["localize", media["long"], "-m", tiny_checkpoint, "--window", "2", "--stride", "1",
            "--threshold", "0", "--out", out, "-q"]
    result = invoke(*args, *(["--format", "activitynet"] if fmt == "activitynet" else []))
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    if fmt == "json":
        doc = json.loads(text)
        assert doc["schema_version"] == 1 and len(doc["windows"]) == 9  # 10 s, 2 s windows every 1 s
        assert doc["segments"] and all(s["end_sec"] > s["start_sec"] for s in doc["segments"])
        covered = sorted((s["start_sec"], s["end_sec"]) for s in doc["segments"])
        assert covered[0][0] == 0 and max(e for _, e in covered) == pytest.approx(10.0)
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and {r["label"] for r in rows} <= set(TINY_LABELS)
    elif fmt == "activitynet":
        doc = json.loads(text)
        check_activitynet(doc)
        assert list(doc["results"]) == ["long"]
    else:
        cues = parse_subtitles(text, vtt=fmt == "vtt")
        assert cues and all(label.split(" (")[0] in TINY_LABELS for *_t, labels in cues for label in labels)


def test_localize_window_longer_than_video(tiny_checkpoint, media):
    result = invoke("localize", media["a"], "-m", tiny_checkpoint, "--window", "8")
    assert result.exit_code == 2 and "longer than the video" in result.stderr


def test_localize_json_to_stdout_from_the_installed_command(tiny_checkpoint, media):
    cmd = _uvtag_command() + ["localize", str(media["long"]), "-m", tiny_checkpoint, "-w", "4", "-f", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["model"] == "tiny_k5" and len(doc["windows"]) == 4  # 0-4, 2-6, 4-8, 6-10


# ---------------------------------------------------------------- models, download, doctor


def test_models_lists_the_zoo():
    result = invoke("models")
    assert result.exit_code == 0
    for name in ("k400_k710_uniformerv2_b16_8x224", "sthv2_uniformerv2_l14_32x224", "frozen_k400_uniformerv2_l14_8x336"):
        assert name in result.stdout


def test_download_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("UVTAG_OFFLINE", "1")
    result = invoke("download", "mit_uniformerv2_b16_8x224", "--cache-dir", tmp_path)
    assert result.exit_code == 1
    assert str(tmp_path / "mit_uniformerv2_b16_8x224.pyth") in result.stderr.replace("\n", "")


def test_doctor_reports_torch_and_decoders(tmp_path):
    result = invoke("doctor", "--cache-dir", tmp_path)
    assert "torch" in result.stdout and "pyav" in result.stdout
    assert result.exit_code == 0, result.stdout


def test_classify_offline_without_the_model_says_where_to_put_it(media, tmp_path):
    result = invoke("classify", media["a"], "-m", "mit_uniformerv2_b16_8x224", "--offline", "--cache-dir", tmp_path)
    assert result.exit_code == 1
    message = result.stderr.replace("\n", "")
    assert "offline" in message and str(tmp_path / "mit_uniformerv2_b16_8x224.pyth") in message
