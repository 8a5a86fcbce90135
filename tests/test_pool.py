"""uvtag.batch.pool: decoder processes feeding one model give run_batch's rows; a dead or hung decoder costs one video."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import uvtag
from tests.videogen import write_bytes, write_video
from uvtag.batch.output import BatchWriter
from uvtag.batch.pool import pool_size, run_pool
from uvtag.batch.run import run_batch


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("pool")
    paths = [write_video(d / f"v{i}.mp4", num_frames=30 + 8 * i, size=(72, 96 + 16 * i), gop=10) for i in range(3)]
    paths.insert(1, write_bytes(d / "bad.mp4", b"not a video\n" * 20))
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def tagger():
    return uvtag.load("motion-tiny", device="cpu", batch_size=1)


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return sorted(csv.reader(f))


def _run(fn, tagger, paths, out, **kw):
    with BatchWriter.open(out, "csv") as writer:
        summary = fn(tagger, paths, writer, clip_sec=0.5, top=3, **kw)
    return summary, _rows(out)


def test_pool_size_leaves_one_core_to_the_model():
    assert pool_size(16) == (15, 1)
    assert pool_size(2) == (1, 1) and pool_size(1) == (1, 1)


def test_rows_equal_one_process(tagger, folder, tmp_path):
    one, rows_one = _run(run_batch, tagger, folder, tmp_path / "one.csv")
    pooled, rows_pool = _run(run_pool, tagger, folder, tmp_path / "pool.csv", decoders=2)
    assert (pooled.done, len(pooled.failures)) == (one.done, len(one.failures)) == (3, 1)
    assert len(rows_pool) > 3 * 3 and rows_pool == rows_one  # bit-identical at batch size 1


def test_batches_across_videos_keep_labels_and_scores(folder, tmp_path):
    batched = uvtag.load("motion-tiny", device="cpu", batch_size=4)
    _, rows_one = _run(run_batch, batched, folder, tmp_path / "one.csv")
    _, rows_pool = _run(run_pool, batched, folder, tmp_path / "pool.csv", decoders=2)
    assert len(rows_pool) == len(rows_one)
    for a, b in zip(rows_one, rows_pool):
        assert a[:7] == b[:7] and a[8:] == b[8:]  # all but the score column
        if a[7] != "score" and a[7]:
            assert abs(float(a[7]) - float(b[7])) <= 1e-5


def test_a_crashing_decoder_costs_its_video_only(tagger, folder, tmp_path):
    summary, rows = _run(run_pool, tagger, folder, tmp_path / "out.csv", decoders=2, faults={folder[2]: "segv"})
    assert summary.done == 2 and len(summary.failures) == 2
    crashed = next(f for f in summary.failures if f.path == folder[2])
    assert "decoder process died (signal 11, SIGSEGV)" in crashed.error
    assert {r[1] for r in rows if r[0] == "video"} == {folder[0], folder[3]}


def test_a_hung_decoder_times_out(tagger, folder, tmp_path):
    summary, _ = _run(run_pool, tagger, folder[:2], tmp_path / "out.csv", decoders=1, decode_timeout_sec=2,
                      faults={folder[0]: "hang"})
    assert summary.done == 0 and len(summary.failures) == 2
    assert "decoder timed out after 2 s" in summary.failures[0].error


def test_resume_skips_finished_videos(tagger, folder, tmp_path):
    out = tmp_path / "out.csv"
    _run(run_pool, tagger, folder, out, decoders=1)
    with BatchWriter.open(out, "csv", resume=True) as writer:
        summary = run_pool(tagger, folder, writer, clip_sec=0.5, top=3, decoders=1)
    assert summary.done == 0 and summary.skipped == 3


def test_cli_batch_with_decoders(folder, tmp_path):
    from typer.testing import CliRunner

    from uvtag.cli import app

    out = tmp_path / "cli.csv"
    options = ["-m", "motion-tiny", "--device", "cpu", "--clip", "0.5", "--top-k", "3", "--batch-size", "1", "--quiet"]
    result = CliRunner().invoke(app, ["batch", *folder, "--out", str(out), *options, "--decoders", "2"])
    assert result.exit_code == 3, result.output  # bad.mp4 failed, the rest tagged
    _, rows_one = _run(run_batch, uvtag.load("motion-tiny", device="cpu", batch_size=1), folder, tmp_path / "one.csv")
    assert _rows(out) == rows_one
    refused = CliRunner().invoke(app, ["batch", *folder, "--out", str(tmp_path / "x.csv"), *options,
                                       "--decoders", "1", "--workers", "2"])
    assert refused.exit_code == 2 and "--decoders" in refused.output


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_rows_equal_one_process_on_cuda(folder, tmp_path):
    gpu = uvtag.load("motion-tiny", device="cuda", precision="fp32", batch_size=1)
    _, rows_one = _run(run_batch, gpu, folder, tmp_path / "one.csv")
    _, rows_pool = _run(run_pool, gpu, folder, tmp_path / "pool.csv", decoders=2)
    assert rows_pool == rows_one
