"""Batch CSV: a video's `video` rows in rank order 1..k, completeness (`CsvBlocks`) for that order
and for files written rank k..1, through resume, `uvtag merge` and `uvtag eval`'s reader."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uvtag.batch.merge import read_batch_file
from uvtag.batch.output import BATCH_CSV_HEADER, BatchWriter, CsvBlocks
from uvtag.cli import app
from uvtag.eval.readers import read_predictions
from uvtag.results import ClipPrediction, Failure, LabelScore, VideoInfo, VideoPrediction


def _top(*scores: float) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(f"label {i}", i, s) for i, s in enumerate(scores))


def _prediction(path: str, clips: int = 2) -> VideoPrediction:
    info = VideoInfo(path, 50, 25.0, 2.0, 64, 48)
    spans = tuple(ClipPrediction(float(i), i + 1.0, _top(0.5, 0.3, 0.2)) for i in range(clips))
    return VideoPrediction(path, "m", info, _top(0.6, 0.25, 0.15), 2, spans)


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _old_order(text: str) -> str:
    """The same file with each video's `video` rows from the last rank down to rank 1."""
    lines = text.splitlines(keepends=True)
    out, run = [], []
    for line in lines:
        if line.startswith("video,"):
            run.append(line)
            continue
        out += run[::-1] + [line]
        run = []
    return "".join(out + run[::-1])


def _write(path: Path) -> str:
    with BatchWriter.open(path, "csv") as writer:
        writer.write_video(_prediction("a.mp4"))
        writer.write_failure(Failure("bad.mp4", "no stream", "VideoError"))
        writer.write_video(_prediction("b, c.mp4", clips=3))
    return path.read_text(encoding="utf-8")


def test_video_rows_come_in_rank_order(tmp_path):
    rows = _rows(_write(tmp_path / "new.csv"))
    summary = [(r[1], r[4], r[5]) for r in rows if r[0] == "video"]
    assert summary == [("a.mp4", "1", "label 0"), ("a.mp4", "2", "label 1"), ("a.mp4", "3", "label 2"),
                       ("b, c.mp4", "1", "label 0"), ("b, c.mp4", "2", "label 1"), ("b, c.mp4", "3", "label 2")]


def test_csv_blocks_end_on_the_last_row_in_either_order():
    clips = [("clip", "a", r) for r in ("1", "2", "3")] * 2
    for summary in (["1", "2", "3"], ["3", "2", "1"]):
        ends = CsvBlocks()
        flags = [ends.add(*row) for row in clips + [("video", "a", r) for r in summary]]
        assert flags == [False] * 8 + [True]
    ends = CsvBlocks()  # no clip rows: rank 1 closes; an empty rank closes; a failure closes
    assert [ends.add("video", "x", "2"), ends.add("video", "x", "1")] == [False, True]
    assert ends.add("video", "y", "") and ends.add("failure", "z", "")
    ends = CsvBlocks()  # a block cut short, then another video: the new one starts afresh
    assert [ends.add("clip", "a", "1"), ends.add("clip", "a", "2"), ends.add("clip", "b", "1"),
            ends.add("video", "b", "1")] == [False, False, False, True]


@pytest.mark.parametrize("order", ["new", "old"])
def test_resume_after_a_kill_at_every_line_in_either_order(tmp_path, order):
    text = _write(tmp_path / "whole.csv")
    text = _old_order(text) if order == "old" else text
    out = tmp_path / "labels.csv"
    ends = [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    first_block_end = ends[2 * 3 + 3]  # header + 6 clip rows + 3 video rows of a.mp4
    failure_end = ends[2 * 3 + 3 + 1]
    for cut in ends:
        out.write_text(text[:cut], encoding="utf-8")
        with BatchWriter.open(out, "csv", resume=True) as writer:
            done = writer.completed()
        expected = {"a.mp4"} if cut >= first_block_end else set()
        if cut == len(text):
            expected.add("b, c.mp4")
        assert done == expected, (order, cut)
        kept = len(text) if cut == len(text) else failure_end if cut >= failure_end else (
            first_block_end if cut >= first_block_end else len(BATCH_CSV_HEADER))
        assert out.read_text(encoding="utf-8") == text[:kept], (order, cut)


def test_merge_and_eval_read_both_orders_alike(tmp_path):
    new = tmp_path / "new.csv"
    text = _write(new)
    old = tmp_path / "old.csv"
    old.write_text(_old_order(text), encoding="utf-8")
    assert old.read_text(encoding="utf-8") != text
    new_blocks, old_blocks = read_batch_file(new)[0], read_batch_file(old)[0]
    assert [(b.path, b.kind) for b in new_blocks] == [(b.path, b.kind) for b in old_blocks] == [
        ("a.mp4", "video"), ("bad.mp4", "failure"), ("b, c.mp4", "video")]
    assert read_predictions(new) == read_predictions(old)
    videos, failures = read_predictions(new)
    assert [v.top for v in videos] == [_top(0.6, 0.25, 0.15)] * 2 and [f.path for f in failures] == ["bad.mp4"]
    torn = tmp_path / "torn.csv"  # the last video cut after its rank-2 row: not read as complete
    torn.write_text(text[: text.rindex("video,")], encoding="utf-8")
    assert [v.path for v in read_predictions(torn)[0]] == ["a.mp4"]
    blocks, is_torn = read_batch_file(torn)
    assert is_torn and [b.path for b in blocks] == ["a.mp4", "bad.mp4"]
    merged = tmp_path / "merged.csv"
    result = CliRunner().invoke(app, ["merge", str(old), "-o", str(merged)])
    assert result.exit_code == 3, result.output  # the failure is kept: some videos failed
    assert merged.read_text(encoding="utf-8") == old.read_text(encoding="utf-8")  # blocks kept as written


def test_a_video_without_clips_is_written_rank_1_last(tmp_path):
    out = tmp_path / "labels.csv"
    bare = VideoPrediction("a.mp4", "m", VideoInfo("a.mp4", 50, 25.0, 2.0, 64, 48), _top(0.6, 0.4), 1, ())
    with BatchWriter.open(out, "csv") as writer:
        writer.write_video(bare)
    text = out.read_text(encoding="utf-8")
    assert [r[4] for r in _rows(text)[1:]] == ["2", "1"]
    out.write_text(text[: text.rindex("video,")], encoding="utf-8")  # rank 1 lost to a kill
    with BatchWriter.open(out, "csv", resume=True) as writer:
        assert writer.completed() == set()
