"""The tag index (`batch --out x.sqlite`, `search`, `similar`, `merge` into and out of a database).

Videos are generated motion videos tagged by the bundled motion-tiny model; the search semantics
(ranges, --any/--all, ranking, --limit) are also checked exactly on a database written from
hand-made predictions.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uvtag import synth
from uvtag.cli import app
from uvtag.index.writer import IndexWriter
from uvtag.results import ClipPrediction, Failure, LabelScore, VideoInfo, VideoPrediction

UVTAG = Path(sys.executable).with_name("uvtag")
SMALL = replace(synth.STRICT, short_side=(64, 96), duration_sec=(1.5, 2.5), fps=(10, 15))
UNTRIMMED = replace(synth.STRICT, short_side=(160, 170), fps=(10, 12))
# untrimmed videos with known actions (the model's reliable classes), tagged in 2 s clips every 1 s
SCRIPTS = [("moving left", "still", "growing"), ("still", "shrinking", "moving up"), ("growing", "moving right", "still")]
SEARCH_MIN = 0.5
# the model finds most, not all, actions of untrimmed videos (weights/MOTION_TINY.md): these three
# videos are ones where it finds each action, and nothing else, at SEARCH_MIN
UNTRIMMED_SEED = 3


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _db_rows(db: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # never creates the file
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _clip_folder(folder: Path, labels, key: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [synth.write_video(synth.random_clip(synth.clip_rng("test", key, k, j), label, SMALL),
                              folder / f"{label.replace(' ', '_')}_{j}", "h264")
            for k, label in enumerate(labels) for j in range(3)]


@pytest.fixture(scope="module")
def untrimmed(tmp_path_factory) -> dict:
    """Three untrimmed videos, their true segments, and their batch output as a db and as jsonl."""
    root = tmp_path_factory.mktemp("index")
    folder = root / "videos"
    folder.mkdir()
    truth = {}
    for k, labels in enumerate(SCRIPTS):
        scene = synth.random_untrimmed(synth.clip_rng("test", UNTRIMMED_SEED, k), len(labels), ranges=UNTRIMMED, labels=labels)
        truth[str(synth.write_video(scene, folder / f"u{k}", "h264"))] = scene.segments()
    args = ["batch", folder, "-m", "motion-tiny", "--clip", "2", "--stride", "1", "-k", "3", "-q", "--no-isolate"]
    db, jsonl = root / "tags.sqlite", root / "tags.jsonl"
    result = _invoke(*args, "--out", db)
    assert result.exit_code == 0, result.output
    assert _invoke(*args, "--out", jsonl).exit_code == 0
    records = {r["path"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    return {"db": db, "truth": truth, "records": records, "folder": folder}


def _expected_ranges(record: dict, label: str, min_score: float) -> list[tuple[float, float]]:
    """The ranges the clip rows of one video say: clips holding `label`, touching ones joined."""
    ranges: list[list[float]] = []
    for clip in record["clips"]:
        if any(t["label"] == label and t["score"] >= min_score for t in clip["top"]):
            if ranges and clip["start_sec"] <= ranges[-1][1] + 1e-6:
                ranges[-1][1] = max(ranges[-1][1], clip["end_sec"])
            else:
                ranges.append([clip["start_sec"], clip["end_sec"]])
    return [tuple(r) for r in ranges]


def _search(db: Path, *args: str) -> dict:
    result = _invoke("search", *args, "--db", db, "--format", "json", "-q")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout_bytes.decode("utf-8", "surrogateescape"))  # paths as their bytes


def _tiou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


# ---------------------------------------------------------------- search on tagged videos

@pytest.mark.parametrize("label", sorted({label for script in SCRIPTS for label in script}))
def test_search_gives_the_ranges_the_clip_rows_hold(untrimmed, label):
    answer = _search(untrimmed["db"], label, "--min-score", str(SEARCH_MIN))
    got = {v["path"]: [(r["start_sec"], r["end_sec"]) for r in v["ranges"]] for v in answer["videos"]}
    want = {p: _expected_ranges(r, label, SEARCH_MIN) for p, r in untrimmed["records"].items()}
    assert got == {p: ranges for p, ranges in want.items() if ranges}
    assert answer["num_videos"] == len(got)
    scores = [v["score"] for v in answer["videos"]]
    assert scores == sorted(scores, reverse=True)  # best first
    # against the generator's truth: exactly the videos doing it, one range each, in the right place
    doing = {p: [(s, e) for s, e, name in segments if name == label] for p, segments in untrimmed["truth"].items()}
    assert set(got) == {p for p, spans in doing.items() if spans}
    for path, ranges in got.items():
        assert len(ranges) == 1 and _tiou(ranges[0], doing[path][0]) >= 0.5, (path, ranges, doing[path])


def test_search_table_goes_to_stderr_and_csv_to_out(untrimmed, tmp_path):
    out = tmp_path / "hits.csv"
    result = _invoke("search", "still", "--db", untrimmed["db"], "--min-score", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "3 videos match still, score >= 0.5" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["path"] for r in rows] == [v["path"] for v in _search(untrimmed["db"], "still", "--min-score", "0.5")["videos"]]
    assert all(r["labels"] == "still" for r in rows)
    again = _invoke("search", "still", "--db", untrimmed["db"], "--out", out)
    assert again.exit_code == 2 and "exists" in again.stderr  # never replaced silently


def test_an_unknown_label_gets_did_you_mean(untrimmed):
    result = _invoke("search", "movng left", "--db", untrimmed["db"])
    assert result.exit_code == 2
    assert "no video in" in result.stderr and "did you mean 'moving left'" in result.stderr


def test_the_database_holds_what_the_file_writer_writes(untrimmed):
    db, records = untrimmed["db"], untrimmed["records"]
    assert _db_rows(db, "PRAGMA user_version") == [(1,)] and _db_rows(db, "PRAGMA journal_mode") == [("wal",)]
    meta = dict(_db_rows(db, "SELECT key, value FROM meta"))
    assert meta["model"] == "motion-tiny" and meta["schema_version"] == "1"
    for path, record in records.items():
        (video_id, duration, fps, size, status), = _db_rows(
            db, "SELECT id, duration_sec, fps, size_bytes, status FROM videos WHERE path = ?", (path,))
        assert (duration, fps, size, status) == (record["video"]["duration_sec"], record["video"]["fps"],
                                                 os.path.getsize(path), "ok")
        clips = _db_rows(db, "SELECT start_sec, end_sec FROM clips WHERE video_id = ? ORDER BY start_sec", (video_id,))
        assert clips == [(c["start_sec"], c["end_sec"]) for c in record["clips"]]
        top = _db_rows(db, "SELECT label, score FROM video_labels WHERE video_id = ? ORDER BY rank", (video_id,))
        assert top == [(t["label"], pytest.approx(t["score"], abs=1e-6)) for t in record["top"]]
    assert not Path(str(db) + ".lock").exists()  # SQLite's own lock serialises writers


# ---------------------------------------------------------------- search semantics, exactly

def _video(path: str, clips: list[tuple[float, float, dict[str, float]]], model: str = "hand") -> VideoPrediction:
    index = {"x": 0, "y": 1, "z": 2}

    def top(scores: dict[str, float]) -> tuple[LabelScore, ...]:
        return tuple(LabelScore(k, index[k], v) for k, v in sorted(scores.items(), key=lambda kv: -kv[1]))

    duration = max(e for _, e, _ in clips)
    return VideoPrediction(path, model, VideoInfo(path, 10, 10.0, duration, 8, 8), top({"x": 0.5}), len(clips),
                           tuple(ClipPrediction(s, e, top(scores)) for s, e, scores in clips))


@pytest.fixture
def hand_db(tmp_path) -> Path:
    db = tmp_path / "hand.sqlite"
    with IndexWriter.open(db) as writer:
        writer.write_video(_video("a.mp4", [(0, 1, {"x": 0.9, "y": 0.05}), (1, 2, {"x": 0.8, "y": 0.6}),
                                            (2, 3, {"y": 0.7, "x": 0.1}), (3, 4, {"x": 0.2}), (4, 5, {"x": 0.95})]))
        writer.write_video(_video("b.mp4", [(0, 2, {"x": 0.5}), (1, 3, {"x": 0.6}), (2, 4, {"x": 0.4})]))
        writer.write_video(_video("c.mp4", [(0, 1, {"y": 0.99}), (1, 2, {"z": 0.9})]))
        writer.write_failure(Failure("d.mp4", "d.mp4: cannot decode frame 3", "VideoError"))
    return db


def _ranges(answer: dict) -> list[tuple]:
    return [(v["path"], [(r["start_sec"], r["end_sec"], round(r["score"], 6), round(r["mean_score"], 6), r["num_clips"],
                          r["labels"]) for r in v["ranges"]]) for v in answer["videos"]]


def test_neighbouring_and_overlapping_clips_merge_into_ranges(hand_db):
    assert _ranges(_search(hand_db, "x", "--min-score", "0.3")) == [
        ("a.mp4", [(0, 2, 0.9, 0.85, 2, ["x"]), (4, 5, 0.95, 0.95, 1, ["x"])]),  # best clip 0.95
        ("b.mp4", [(0, 4, 0.6, 0.5, 3, ["x"])]),  # overlapping clips, one range
    ]
    assert _ranges(_search(hand_db, "x", "--min-score", "0.45")) == [
        ("a.mp4", [(0, 2, 0.9, 0.85, 2, ["x"]), (4, 5, 0.95, 0.95, 1, ["x"])]),
        ("b.mp4", [(0, 3, 0.6, 0.55, 2, ["x"])]),
    ]


def test_any_and_all(hand_db):
    assert _ranges(_search(hand_db, "x", "y", "--min-score", "0.5")) == [
        ("c.mp4", [(0, 1, 0.99, 0.99, 1, ["y"])]),
        ("a.mp4", [(0, 3, 0.9, 0.8, 3, ["x", "y"]), (4, 5, 0.95, 0.95, 1, ["x"])]),
        ("b.mp4", [(0, 3, 0.6, 0.55, 2, ["x"])]),
    ]
    # --all: clips holding both; a clip's score is its weaker label's
    assert _ranges(_search(hand_db, "x", "y", "--min-score", "0.5", "--all")) == [("a.mp4", [(1, 2, 0.6, 0.6, 1, ["x", "y"])])]
    assert _search(hand_db, "x", "z", "--all")["videos"] == []


def test_limit_keeps_the_best_videos_and_counts_all(hand_db):
    answer = _search(hand_db, "x", "y", "--min-score", "0.5", "--limit", "2")
    assert [v["path"] for v in answer["videos"]] == ["c.mp4", "a.mp4"] and answer["num_videos"] == 3
    result = _invoke("search", "x", "y", "--db", hand_db, "--min-score", "0.5", "--limit", "2", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["path"], r["start_sec"], r["end_sec"], r["labels"]) for r in rows] == [
        ("c.mp4", "0.000", "1.000", "y"), ("a.mp4", "0.000", "3.000", "x|y"), ("a.mp4", "4.000", "5.000", "x")]
    assert "3 videos match x or y, score >= 0.5 (best 2)" in result.stderr


def test_a_retried_failure_replaces_its_row_and_a_complete_video_is_kept(hand_db):
    with IndexWriter.open(hand_db, resume=True) as writer:
        assert writer.completed() == {"a.mp4", "b.mp4", "c.mp4"}  # d.mp4 failed: retried on resume
        writer.write_failure(Failure("d.mp4", "d.mp4: still broken", "VideoError"))
        writer.write_video(_video("d.mp4", [(0, 1, {"z": 0.7})]))
        writer.write_failure(Failure("d.mp4", "d.mp4: broken again", "VideoError"))  # the video stays
        writer.write_video(_video("a.mp4", [(0, 1, {"z": 0.7})]))  # another writer's copy: the first wins
        assert writer.duplicates == 2
    assert _db_rows(hand_db, "SELECT path, status, error FROM videos ORDER BY path") == [
        ("a.mp4", "ok", None), ("b.mp4", "ok", None), ("c.mp4", "ok", None), ("d.mp4", "ok", None)]
    assert _db_rows(hand_db, "SELECT count(*) FROM clips") == [(11,)]  # a's 5 + b's 3 + c's 2 + d's 1


def test_another_model_or_label_list_is_refused(hand_db):
    with IndexWriter.open(hand_db, resume=True) as writer:
        with pytest.raises(Exception, match="holds videos tagged by hand; e.mp4 was tagged by other"):
            writer.write_video(_video("e.mp4", [(0, 1, {"x": 0.7})], model="other"))
        odd = _video("f.mp4", [(0, 1, {"x": 0.7})])
        odd = replace(odd, clips=(ClipPrediction(0, 1, (LabelScore("w", 0, 0.7),)),))
        with pytest.raises(Exception, match="class 0 is 'x' in it but 'w'"):
            writer.write_video(odd)
        moved = replace(odd, clips=(ClipPrediction(0, 1, (LabelScore("x", 5, 0.7),)),))
        with pytest.raises(Exception, match="'x' is class 0 in it but class 5 for f.mp4"):
            writer.write_video(moved)
    assert [p for (p,) in _db_rows(hand_db, "SELECT path FROM videos")] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]


def test_a_run_with_another_model_stops_with_one_line(untrimmed, tiny_checkpoint, tmp_path):
    db = tmp_path / "tags.sqlite"
    db.write_bytes(untrimmed["db"].read_bytes())
    result = _invoke("batch", untrimmed["folder"], "--out", db, "--resume", "-m", "motion-tiny", "-q")
    assert result.exit_code == 0 and _db_rows(db, "SELECT count(*) FROM videos") == [(3,)]
    extra = tmp_path / "more"
    _clip_folder(extra, ["still"], 5)
    result = _invoke("batch", extra, "--out", db, "--resume", "-m", tiny_checkpoint, "-q", "--no-isolate")
    assert result.exit_code == 2
    assert "holds videos tagged by motion-tiny" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _db_rows(db, "SELECT count(*) FROM videos") == [(3,)]


def test_an_index_of_failures_only_says_so(tmp_path):
    db = tmp_path / "failed.sqlite"
    with IndexWriter.open(db) as writer:
        writer.write_failure(Failure("bad.mp4", "bad.mp4: not a video", "VideoError"))
    result = _invoke("search", "x", "--db", db)
    assert result.exit_code == 2 and "holds no tagged video yet" in result.stderr


def test_another_schema_version_or_program_is_refused(untrimmed, hand_db, tmp_path):
    conn = sqlite3.connect(hand_db)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    for args in (["search", "x", "--db", hand_db], ["batch", untrimmed["folder"], "--out", hand_db, "--resume"]):
        result = _invoke(*args)
        assert result.exit_code == 2 and "a tag index of schema version 7; this uvtag reads version 1" in result.stderr
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    result = _invoke("search", "x", "--db", other)
    assert result.exit_code == 2 and "not a uvtag tag index" in result.stderr
    (tmp_path / "text.sqlite").write_text("hello\n" * 100)
    result = _invoke("search", "x", "--db", tmp_path / "text.sqlite")
    assert result.exit_code == 2 and "not a SQLite database" in result.stderr
    result = _invoke("batch", tmp_path, "--out", tmp_path / "x.csv", "--embed")
    assert result.exit_code == 2 and "--embed stores embeddings in a tag index" in result.stderr


# ---------------------------------------------------------------- kills, resume, concurrent writers

def _committed(db: Path) -> int:
    try:
        return _db_rows(db, "SELECT count(*) FROM videos WHERE status = 'ok'")[0][0]
    except sqlite3.Error:  # not created yet, or its tables not yet
        return 0


def _check_complete(db: Path, k: int) -> dict[str, int]:
    """Every stored video is whole; returns path -> clips."""
    assert _db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    videos = _db_rows(db, "SELECT v.id, v.path, v.num_views, (SELECT count(*) FROM clips WHERE video_id = v.id), "
                          "(SELECT count(*) FROM clip_labels l JOIN clips c ON c.id = l.clip_id WHERE c.video_id = v.id), "
                          "(SELECT count(*) FROM video_labels WHERE video_id = v.id) FROM videos AS v WHERE status = 'ok'")
    for _, path, views, clips, labels, top in videos:
        assert clips == views > 0 and labels == k * clips and top == k, path
    return {path: clips for _, path, _, clips, _, _ in videos}


def test_sigkill_mid_batch_loses_only_the_video_in_flight_and_resume_completes(tmp_path):
    folder = tmp_path / "videos"
    paths = _clip_folder(folder, ["moving left", "still", "growing", "shrinking"], 11)
    db = tmp_path / "tags.sqlite"
    args = [UVTAG, "batch", folder, "--out", db, "-m", "motion-tiny", "--clip", "0.5", "--stride", "0.25",
            "-k", "3", "--batch-size", "1", "-q", "--no-isolate"]
    proc = subprocess.Popen([str(a) for a in args], start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        while _committed(db) < 2 and proc.poll() is None:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the batch ended before it could be killed"
    before = _check_complete(db, 3)
    assert 2 <= len(before) < len(paths)
    result = _invoke(*args[1:], "--resume")
    assert result.exit_code == 0, result.output
    after = _check_complete(db, 3)
    assert sorted(after) == sorted(map(str, paths))  # each once (path is UNIQUE) and all there
    assert {p: after[p] for p in before} == before
    assert _db_rows(db, "SELECT count(*) FROM videos") == [(len(paths),)]


def test_concurrent_shard_runs_write_each_video_once(tmp_path):
    folder = tmp_path / "videos"
    paths = _clip_folder(folder, ["moving up", "still"], 12)
    db = tmp_path / "tags.sqlite"
    base = [UVTAG, "batch", folder, "--out", db, "-m", "motion-tiny", "--clip", "1", "-k", "2", "-q", "--resume",
            "--no-isolate", "--embed"]
    runs = [subprocess.Popen([str(a) for a in base + extra], stderr=subprocess.PIPE, text=True)
            for extra in (["--shard", "0/2"], ["--shard", "1/2"], [])]  # the third overlaps both shards
    errors = [p.communicate()[1] for p in runs]
    assert [p.returncode for p in runs] == [0, 0, 0], errors
    assert sorted(_check_complete(db, 2)) == sorted(map(str, paths))
    assert _db_rows(db, "SELECT count(*), count(embedding) FROM videos") == [(len(paths), len(paths))]


def test_workers_write_into_one_database(tmp_path):
    folder = tmp_path / "videos"
    paths = _clip_folder(folder, ["growing"], 13)
    (folder / "bad.mp4").write_bytes(b"not a video\n" * 10)
    db = tmp_path / "tags.sqlite"
    result = _invoke("batch", folder, "--out", db, "-m", "motion-tiny", "--clip", "1", "-k", "2", "-q",
                     "--workers", "2", "--device", "cpu", "--embed")
    assert result.exit_code == 3, result.output  # bad.mp4 failed
    assert sorted(_check_complete(db, 2)) == sorted(map(str, paths))
    assert _db_rows(db, "SELECT path, status FROM videos WHERE status = 'failed'") == [(str(folder / "bad.mp4"), "failed")]
    result = _invoke("batch", folder, "--out", db, "-m", "motion-tiny", "--clip", "1", "-k", "2", "-q", "--resume", "--embed")
    assert result.exit_code == 3 and _db_rows(db, "SELECT count(*) FROM videos") == [(len(paths) + 1,)]


def test_a_ray_run_writes_into_a_database(tmp_path):
    pytest.importorskip("ray.data")
    folder = tmp_path / "videos"
    paths = _clip_folder(folder, ["moving down"], 14)
    db = tmp_path / "tags.sqlite"
    run = subprocess.run([str(a) for a in [UVTAG, "batch", folder, "--out", db, "-m", "motion-tiny", "--clip", "1",
                                           "-k", "2", "-q", "--ray", "local", "--workers", "1", "--embed"]],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(_check_complete(db, 2)) == sorted(map(str, paths))
    assert _db_rows(db, "SELECT count(*), count(embedding) FROM videos") == [(len(paths), len(paths))]


# ---------------------------------------------------------------- merge

def test_shard_outputs_merge_into_one_database_and_back(untrimmed, tmp_path):
    folder = untrimmed["folder"]
    args = ["batch", folder, "-m", "motion-tiny", "--clip", "2", "--stride", "1", "-k", "3", "-q", "--no-isolate"]
    parts = [tmp_path / "part0.jsonl", tmp_path / "part1.csv", tmp_path / "part2.jsonl"]  # shard 0 is empty
    for n, part in enumerate(parts):
        assert _invoke(*args, "--shard", f"{n}/3", "--out", part).exit_code == 0
    merged = tmp_path / "merged.sqlite"
    result = _invoke("merge", *parts, parts[2], "--out", merged)  # part2 twice: its videos once
    assert result.exit_code == 0, result.output
    assert _db_rows(merged, "SELECT count(*), count(DISTINCT path) FROM videos") == [(3, 3)]
    assert dict(_db_rows(merged, "SELECT key, value FROM meta"))["model"] == "motion-tiny"  # csv names no model
    for label in ("still", "growing"):  # the same answers (csv: times to the ms, scores to 6 decimals)
        got, want = (_search(db, label, "--min-score", "0.5")["videos"] for db in (merged, untrimmed["db"]))
        assert [(v["path"], len(v["ranges"])) for v in got] == [(v["path"], len(v["ranges"])) for v in want]
        numbers = [[v["score"]] + [r[k] for r in v["ranges"] for k in ("start_sec", "end_sec", "score")] for v in got]
        assert numbers == [pytest.approx([v["score"]] + [r[k] for r in v["ranges"] for k in ("start_sec", "end_sec", "score")],
                                         abs=6e-4) for v in want]
    # and out again: a database merges into jsonl like any batch file
    back = tmp_path / "back.jsonl"
    assert _invoke("merge", untrimmed["db"], "--out", back).exit_code == 0
    assert {r["path"]: r for r in map(json.loads, back.read_text().splitlines())} == untrimmed["records"]
    assert _invoke("merge", untrimmed["db"], "--out", tmp_path / "x.csv").exit_code == 2  # csv lacks the metadata


# ---------------------------------------------------------------- similar

def test_similar_ranks_same_class_videos_first(tmp_path):
    folder = tmp_path / "videos"
    classes = ["moving left", "growing", "rotating clockwise", "still"]
    paths = _clip_folder(folder, classes, 77)
    db = tmp_path / "tags.sqlite"
    result = _invoke("batch", folder, "--out", db, "-m", "motion-tiny", "-k", "1", "-q", "--no-isolate", "--embed")
    assert result.exit_code == 0, result.output
    predicted = dict(_db_rows(db, "SELECT v.path, l.label FROM videos v JOIN video_labels l ON l.video_id = v.id"))
    assert all(predicted[str(p)] == p.stem.rsplit("_", 1)[0].replace("_", " ") for p in paths)  # the model is right here
    for path in paths:
        result = _invoke("similar", path, "--db", db, "--format", "json", "-q", "--limit", "100")
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        nearest = [Path(n["path"]).stem.rsplit("_", 1)[0] for n in answer["neighbours"]]
        assert nearest[:2] == [path.stem.rsplit("_", 1)[0]] * 2, (path.name, answer["neighbours"][:3])
        assert len(nearest) == len(paths) - 1 and answer["model"] == "motion-tiny"
        sims = [n["similarity"] for n in answer["neighbours"]]
        assert sims == sorted(sims, reverse=True) and -1.0001 <= sims[-1] and sims[0] <= 1.0001
    dim = int(dict(_db_rows(db, "SELECT key, value FROM meta"))["embedding_dim"])
    assert _db_rows(db, "SELECT DISTINCT dim, length(embedding) FROM videos") == [(dim, 4 * dim)]
    # a file outside the index is embedded with the index's model and clip length
    copy = tmp_path / "new.mp4"
    copy.write_bytes(paths[1].read_bytes())
    result = _invoke("similar", copy, "--db", db, "--format", "json", "-q")
    assert result.exit_code == 0, result.output
    neighbours = json.loads(result.stdout)["neighbours"]
    assert neighbours[0]["path"] == str(paths[1]) and neighbours[0]["similarity"] > 0.9999
    assert Path(neighbours[1]["path"]).stem.rsplit("_", 1)[0] == paths[1].stem.rsplit("_", 1)[0]


def test_similar_without_embeddings_or_video_is_one_line(untrimmed):
    result = _invoke("similar", next(iter(untrimmed["records"])), "--db", untrimmed["db"])
    assert result.exit_code == 2 and "holds no embeddings" in result.stderr and "--embed" in result.stderr
    result = _invoke("similar", "nowhere.mp4", "--db", untrimmed["db"])
    assert result.exit_code == 2 and "nowhere.mp4: not a video of" in result.stderr


# ---------------------------------------------------------------- names that are not UTF-8

def test_names_that_are_not_utf8_round_trip_through_the_index(tmp_path):
    """A Latin-1 file name (a surrogate-escaped str in Python) is stored, resumed, searched,
    found by `similar` and merged out byte for byte; a failure's path and error too."""
    folder = tmp_path / "videos"
    (made,) = _clip_folder(folder, ["growing"], 5)[:1]
    good = os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9.mp4"))
    os.rename(made, good)
    for extra in folder.iterdir():
        if str(extra) != good:
            extra.unlink()
    bad = os.fsdecode(os.path.join(os.fsencode(folder), b"broken\xff.mp4"))
    Path(bad).write_bytes(b"not a video\n" * 20)
    db = tmp_path / "tags.sqlite"
    args = ["batch", folder, "--out", db, "-m", "motion-tiny", "-k", "2", "-q", "--no-isolate", "--embed"]
    first = _invoke(*args)
    assert first.exit_code == 3, first.output  # some videos failed
    rows = dict(_db_rows(db, "SELECT path, status FROM videos"))
    assert rows == {os.fsencode(good): "ok", os.fsencode(bad): "failed"}  # stored as their bytes
    (error,) = _db_rows(db, "SELECT error FROM videos WHERE status = 'failed'")[0]
    assert b"broken\xff.mp4" in error
    with IndexWriter.open(db, resume=True) as writer:
        assert writer.completed() == {good}
    kept = _db_rows(db, "SELECT v.id, c.id FROM videos v JOIN clips c ON c.video_id = v.id WHERE v.status = 'ok'")
    again = _invoke(*args, "--resume")
    assert again.exit_code == 3, again.output  # the failure is retried, the video is not
    assert kept and _db_rows(db, "SELECT v.id, c.id FROM videos v JOIN clips c ON c.video_id = v.id "
                                 "WHERE v.status = 'ok'") == kept  # the same rows: not written again
    assert sorted(_db_rows(db, "SELECT path FROM videos")) == sorted([(os.fsencode(good),), (os.fsencode(bad),)])
    found = _search(db, "growing", "--min-score", "0")
    assert [v["path"] for v in found["videos"]] == [good]
    result = _invoke("similar", good, "--db", db, "--format", "json", "-q")
    assert result.exit_code == 0, result.output
    assert os.fsencode(good) in result.stdout_bytes  # stdout holds the name's own bytes
    assert json.loads(result.stdout_bytes.decode("utf-8", "surrogateescape"))["path"] == good
    back = tmp_path / "back.jsonl"
    assert _invoke("merge", db, "--out", back).exit_code == 3  # the merged results hold a failure
    raw = back.read_bytes()
    assert b"caf\xe9.mp4" in raw and b"broken\xff.mp4" in raw  # written back byte for byte, as batch writes it
