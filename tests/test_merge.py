"""`uvtag merge`: shard outputs back into the single-process output; duplicates, torn files, gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import uvtag
from uvtag.batch.run import run_batch
from uvtag.errors import UsageError
from uvtag.batch.merge import merge_outputs, read_batch_file
from uvtag.results import Failure
from uvtag.batch.shard import select_shard
from uvtag.video.files import find_videos
from uvtag.batch.output import BatchWriter
from videogen import write_video

FORMATS = ("csv", "jsonl", "json")
SHARDS = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint) -> dict:
    """A folder; its single-process output and its 3 shard outputs, in every format."""
    root = tmp_path_factory.mktemp("merge")
    folder = root / "videos"
    (folder / "deep").mkdir(parents=True)
    for i in range(6):
        write_video(folder / ("deep" if i % 2 else "") / f"m{i}.mp4", num_frames=12 + 4 * i, fps=8)
    (folder / "broken.mp4").write_bytes(b"\x00" * 64)
    paths = [str(p) for p in find_videos([folder])]
    results = {}  # tagged once; each shard run would write exactly these (batch size 1: bit-identical)
    with BatchWriter.open(root / "direct.csv", "csv") as writer:
        run_batch(uvtag.load(tiny_checkpoint, batch_size=1), paths, writer, clip_sec=1.0,
                  on_video=lambda path, result: results.setdefault(path, result))

    def write(out: Path, subset: list[str]) -> Path:
        with BatchWriter.open(out, out.suffix[1:], overwrite=True) as writer:
            for path in subset:
                result = results[path]
                (writer.write_failure if isinstance(result, Failure) else writer.write_video)(result)
        return out

    single = {fmt: write(root / f"single.{fmt}", paths) for fmt in FORMATS}
    assert single["csv"].read_bytes() == (root / "direct.csv").read_bytes()  # == what run_batch wrote
    shards = {fmt: [write(root / f"part{i}.{fmt}", select_shard(paths, [folder], i, SHARDS)) for i in range(SHARDS)]
              for fmt in FORMATS}
    assert all(read_batch_file(p)[0] for p in shards["csv"])  # every shard holds something
    return {"folder": folder, "paths": paths, "single": single, "shards": shards}


@pytest.mark.parametrize("fmt", FORMATS)
def test_shards_merge_into_the_single_process_output(runs, tmp_path, fmt):
    out = tmp_path / f"merged.{fmt}"
    summary = merge_outputs(runs["shards"][fmt][::-1], out, expected=runs["paths"])
    assert out.read_bytes() == runs["single"][fmt].read_bytes()
    assert (summary.videos, summary.failures, summary.duplicates, summary.missing) == (6, 1, 0, [])
    with BatchWriter.open(out, fmt, resume=True) as writer:  # a merged file resumes like any batch file
        assert writer.completed() == set(runs["paths"]) - {str(runs["folder"] / "broken.mp4")}


def test_json_and_jsonl_mix(runs, tmp_path):
    parts = runs["shards"]
    out = tmp_path / "merged.jsonl"
    merge_outputs([parts["json"][0], parts["jsonl"][1], parts["json"][2]], out, expected=runs["paths"])
    assert out.read_bytes() == runs["single"]["jsonl"].read_bytes()
    as_json = tmp_path / "merged.json"
    merge_outputs([out], as_json, expected=runs["paths"])
    assert as_json.read_bytes() == runs["single"]["json"].read_bytes()


def test_duplicates_are_dropped_and_a_video_beats_a_failure(runs, tmp_path):
    single = runs["single"]["jsonl"]
    broken = str(runs["folder"] / "broken.mp4")
    good = runs["paths"][2]
    failed_then_done = tmp_path / "retried.jsonl"  # a failure for `good`, as a crashed attempt leaves
    failed_then_done.write_text(json.dumps({"schema_version": 1, "record": "failure", "path": good,
                                            "kind": "VideoError", "error": f"{good}: flaky disk"}) + "\n")
    out = tmp_path / "out.jsonl"
    summary = merge_outputs([failed_then_done, single, single], out, expected=runs["paths"])
    assert out.read_bytes() == single.read_bytes()
    assert summary.duplicates == 1 + 7 and summary.failures == 1  # the stale failure + a second copy of each
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["path"]: r["record"] for r in records}[good] == "video"
    assert {r["path"]: r["record"] for r in records}[broken] == "failure"


def test_a_torn_shard_and_a_lost_shard_are_reported(runs, tmp_path):
    parts = [Path(p) for p in runs["shards"]["csv"]]
    torn = tmp_path / "torn.csv"
    text = parts[0].read_text()
    torn.write_text(text[: len(text) - 30])  # killed inside the last video's block
    blocks, is_torn = read_batch_file(torn)
    assert is_torn and blocks == read_batch_file(parts[0])[0][:-1]
    lost = {b.path for b in read_batch_file(parts[1])[0]} | {read_batch_file(parts[0])[0][-1].path}
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(_app(), ["merge", str(torn), str(parts[2]), "-o", str(out), "-i", str(runs["folder"])])
    assert result.exit_code == 3
    assert "half-written video" in result.stderr
    missing = {line.removeprefix("missing: ") for line in result.stderr.splitlines() if line.startswith("missing: ")}
    assert missing == lost
    assert f"{len(lost)} missing" in result.stderr


def test_without_inputs_the_order_is_first_seen(runs, tmp_path):
    parts = runs["shards"]["jsonl"]
    out = tmp_path / "out.jsonl"
    summary = merge_outputs(parts, out)
    seen = [b.path for p in parts for b in read_batch_file(p)[0]]
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == seen
    assert summary.missing == [] and summary.videos + summary.failures == len(runs["paths"])


def test_refusals(runs, tmp_path):
    single = runs["single"]
    with pytest.raises(UsageError, match="csv batch files merge only into csv"):
        merge_outputs([single["csv"], single["jsonl"]], tmp_path / "x.jsonl")
    with pytest.raises(UsageError, match="is also an input"):
        merge_outputs([single["csv"]], single["csv"])
    with pytest.raises(UsageError, match="exists; use --overwrite"):
        merge_outputs([single["csv"]], _existing(tmp_path))
    other = tmp_path / "other.jsonl"
    other.write_text(single["jsonl"].read_text().replace('"model": "tiny_k5"', '"model": "k400_b16"'))
    with pytest.raises(UsageError, match="different models"):
        merge_outputs([single["jsonl"], other], tmp_path / "y.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"record": "video", "path": "a"}\nnot json\n')
    with pytest.raises(UsageError, match="bad.jsonl: line 2 is not JSON"):
        merge_outputs([bad], tmp_path / "z.jsonl")
    with pytest.raises(UsageError, match="not a uvtag batch CSV"):
        merge_outputs([_existing(tmp_path)], tmp_path / "w.csv")


def _existing(tmp_path: Path) -> Path:
    path = tmp_path / "existing.csv"
    path.write_text("something else\n")
    return path


def _app():
    from uvtag.cli import app

    return app


def test_cli_shard_runs_merge_into_the_single_run(runs, tiny_checkpoint, tmp_path):
    runner, app = CliRunner(), _app()
    base = ["batch", str(runs["folder"]), "-m", tiny_checkpoint, "--clip", "1", "--batch-size", "1", "--no-isolate", "-q"]
    parts = []
    for i in range(SHARDS):
        parts.append(tmp_path / f"shard{i}.csv")
        result = runner.invoke(app, base + ["--shard", f"{i}/{SHARDS}", "-o", str(parts[-1])])
        assert result.exit_code in (0, 3), result.stderr  # 3: the shard holding broken.mp4
    assert [p.read_bytes() for p in parts] == [p.read_bytes() for p in runs["shards"]["csv"]]
    out = tmp_path / "all.csv"
    result = runner.invoke(app, ["merge", *map(str, parts), "-o", str(out), "-i", str(runs["folder"])])
    assert result.exit_code == 3 and "6 videos, 1 failed, 0 missing" in result.stderr  # 3: broken.mp4
    assert out.read_bytes() == runs["single"]["csv"].read_bytes()


def test_merge_refuses_a_file_a_batch_run_is_writing(runs, tmp_path):
    from uvtag.errors import OutputError

    out = tmp_path / "labels.jsonl"
    with BatchWriter.open(out, "jsonl") as writer:  # as `uvtag batch --out labels.jsonl` holds it
        writer.write_failure(Failure("kept.mp4", "kept"))
        with pytest.raises(OutputError, match="another uvtag run .* is writing this file"):
            merge_outputs(runs["shards"]["jsonl"], out, overwrite=True)
        assert "kept.mp4" in out.read_text()
    merge_outputs(runs["shards"]["jsonl"], out, overwrite=True)  # once it is done
    assert not (tmp_path / "labels.jsonl.lock").exists()
    assert "kept.mp4" not in out.read_text() and len(read_batch_file(out)[0]) == len(runs["paths"])
