"""The batch runner: isolation from crashing decoders, batching across videos, failures recorded."""

from __future__ import annotations

import csv

import pytest

import uvtag
from uvtag.batch.run import run_batch
from uvtag.video.isolated import IsolatedReader
from uvtag.batch.output import BatchWriter
from videogen import write_video


@pytest.fixture(scope="module")
def three_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    return [write_video(d / f"v{i}.mp4", num_frames=30 + 10 * i, fps=10) for i in range(3)]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("fault", ["segv", "hang"])
def test_a_crashing_or_hanging_decoder_costs_one_video(tiny_checkpoint, three_videos, tmp_path, monkeypatch, fault):
    tagger = uvtag.load(tiny_checkpoint, isolate=True)
    tagger.decode_timeout_sec = 5.0
    poisoned = str(three_videos[1])

    def open_with_fault(path):  # the real isolated reader, with a fault injected for one file
        bad = str(path) == poisoned
        return IsolatedReader(path, None, tagger.decode_timeout_sec, _fault=fault if bad else None)

    monkeypatch.setattr(tagger, "open", open_with_fault)
    out = tmp_path / "labels.csv"
    with BatchWriter.open(out, "csv") as writer:
        summary = run_batch(tagger, three_videos, writer, clip_sec=1.0)
    assert summary.done == 2 and len(summary.failures) == 1
    reason = "decoder crashed (signal 11, SIGSEGV)" if fault == "segv" else "decoder timed out after 5 s"
    assert summary.failures[0].error == f"{poisoned}: {reason}"
    rows = _rows(out)
    assert {r["path"] for r in rows if r["row_type"] == "video"} == {str(three_videos[0]), str(three_videos[2])}
    assert [r["path"] for r in rows if r["row_type"] == "failure"] == [poisoned]


def test_batch_scores_equal_single_video_scores(tiny_checkpoint, three_videos, tmp_path):
    """Clips batched across video boundaries get the same scores as tagging each video alone."""
    tagger = uvtag.load(tiny_checkpoint, batch_size=3)
    out = tmp_path / "labels.jsonl"
    with BatchWriter.open(out, "jsonl") as writer:
        results = []
        run_batch(tagger, three_videos, writer, clip_sec=1.0, on_video=lambda p, r: results.append(r))
    for video, result in zip(three_videos, results):
        alone = tagger.tag_clips(video, clip_sec=1.0)
        assert [c.start_sec for c in result.clips] == [c.start_sec for c in alone.clips]
        for a, b in zip(result.clips, alone.clips):
            assert [s.label for s in a.top] == [s.label for s in b.top]
            assert [s.score for s in a.top] == pytest.approx([s.score for s in b.top], abs=1e-6)


def test_isolated_and_in_process_decoding_agree(tiny_checkpoint, three_videos):
    plain = uvtag.load(tiny_checkpoint).classify(three_videos[0])
    isolated = uvtag.load(tiny_checkpoint, isolate=True).classify(three_videos[0])
    assert [s.score for s in isolated.top] == [s.score for s in plain.top]
