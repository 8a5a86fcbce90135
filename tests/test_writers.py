"""Writers: round trips, stable columns, awkward paths, per-video flush, resume after a kill."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest

from uvtag.batch.output import BATCH_CSV_COLUMNS, BATCH_FORMATS, BatchWriter
from uvtag.errors import UsageError
from uvtag.outputs.formats import (
    CLASSIFY_CSV_COLUMNS,
    CLASSIFY_WRITERS,
    LOCALIZE_CSV_COLUMNS,
    LOCALIZE_WRITERS,
    format_from_path,
    subtitle_cues,
    write_result,
)
from uvtag.results import (
    SCHEMA_VERSION,
    ClipPrediction,
    Failure,
    LabelScore,
    LocalizationResult,
    Segment,
    VideoInfo,
    VideoPrediction,
)

AWKWARD = 'dir/naïve, "quoted"\nname 🎬.mp4'


def info(path: str, duration: float = 20.0) -> VideoInfo:
    return VideoInfo(path=path, num_frames=int(duration * 25), fps=25.0, duration_sec=duration,
                     width=320, height=240, codec="h264", backend="pyav")


def top(*pairs: tuple[str, float]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(label, index, score) for index, (label, score) in enumerate(pairs))


def prediction(path: str, duration: float = 20.0) -> VideoPrediction:
    clips = (
        ClipPrediction(0.0, 10.0, top(("run", 0.7), ("jump", 0.2), ("swim", 0.1))),
        ClipPrediction(10.0, 20.0, top(("run", 0.5), ("jump", 0.3), ("swim", 0.2))),
    )
    return VideoPrediction(path=path, model="k400_b16", info=info(path, duration),
                           top=top(("run", 0.6), ("jump", 0.25), ("swim", 0.15)), num_views=4,
                           clips=clips)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# ------------------------------------------------------------------ format choice

@pytest.mark.parametrize(("name", "fmt"), [("a.csv", "csv"), ("a.JSON", "json"), ("a.jsonl", "jsonl"),
                                           ("a.srt", "srt"), ("a.vtt", "vtt")])
def test_format_from_extension(name: str, fmt: str) -> None:
    assert format_from_path(name) == fmt


def test_explicit_format_wins_and_activitynet_needs_it() -> None:
    assert format_from_path("out.json", "activitynet") == "activitynet"
    assert format_from_path("out.txt", "CSV") == "csv"


def test_format_errors_are_clear() -> None:
    with pytest.raises(UsageError, match=r"out\.txt: cannot tell the output format.*--format"):
        format_from_path("out.txt")
    with pytest.raises(UsageError, match="use one of csv, jsonl, json"):
        format_from_path("out.srt", "srt", allowed=BATCH_FORMATS)
    with pytest.raises(UsageError, match=r"out\.srt: srt output is not available here; use one of csv"):
        format_from_path("out.srt", allowed=BATCH_FORMATS)


# ------------------------------------------------------------------ classify

def test_classify_csv_round_trip_with_stable_columns(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_result([prediction("a.mp4"), prediction(AWKWARD, 7.5)], out, "csv")
    rows = read_csv(out)
    assert tuple(rows[0]) == CLASSIFY_CSV_COLUMNS == (
        "path", "rank", "label", "class_index", "score", "duration_sec", "num_views")
    assert rows[1] == ["a.mp4", "1", "run", "0", "0.600000", "20.000", "4"]
    assert [r[0] for r in rows[1:]] == ["a.mp4"] * 3 + [AWKWARD] * 3
    assert rows[6] == [AWKWARD, "3", "swim", "2", "0.150000", "7.500", "4"]


def test_classify_json_and_jsonl_round_trip(tmp_path: Path) -> None:
    preds = [prediction("a.mp4"), prediction(AWKWARD)]
    write_result(preds, tmp_path / "r.json", "json")
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert doc["schema_version"] == SCHEMA_VERSION and doc["model"] == "k400_b16"
    assert [v["path"] for v in doc["videos"]] == ["a.mp4", AWKWARD]
    video = doc["videos"][0]
    assert video["top"][1] == {"rank": 2, "label": "jump", "class_index": 1, "score": 0.25}
    assert video["video"]["duration_sec"] == 20.0 and video["num_views"] == 4
    assert video["clips"][1]["start_sec"] == 10.0 and video["clips"][1]["top"][0]["score"] == 0.5

    write_result(preds, tmp_path / "r.jsonl", "jsonl")
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["schema_version"] for r in records] == [SCHEMA_VERSION] * 2
    assert records[1]["path"] == AWKWARD
    assert {k: v for k, v in records[0].items() if k != "schema_version"} == video


def test_whole_file_outputs_refuse_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("keep me")
    with pytest.raises(UsageError, match=r"r\.json exists; use --overwrite"):
        write_result([prediction("a.mp4")], out, "json")
    assert out.read_text() == "keep me"
    write_result([prediction("a.mp4")], out, "json", overwrite=True)
    assert json.loads(out.read_text())["videos"][0]["path"] == "a.mp4"
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind


def test_writers_write_to_any_text_file() -> None:
    buffer = io.StringIO()
    CLASSIFY_WRITERS["jsonl"]().write([prediction("a.mp4")], buffer)
    assert json.loads(buffer.getvalue())["path"] == "a.mp4"


# ------------------------------------------------------------------ batch

def test_batch_csv_layout_and_flush_per_video(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    with BatchWriter.open(out, "csv") as writer:
        writer.write_video(prediction(AWKWARD))
        rows = read_csv(out)  # another handle, before close
        assert tuple(rows[0]) == BATCH_CSV_COLUMNS == (
            "row_type", "path", "start_sec", "end_sec", "rank", "label", "class_index", "score",
            "error")
        assert [r[0] for r in rows[1:]] == ["clip"] * 6 + ["video"] * 3
        assert rows[1] == ["clip", AWKWARD, "0.000", "10.000", "1", "run", "0", "0.700000", ""]
        assert rows[-3] == ["video", AWKWARD, "0.000", "20.000", "1", "run", "0", "0.600000", ""]
        assert [r[4] for r in rows[-3:]] == ["1", "2", "3"]  # the clips' highest rank closes the block
        writer.write_failure(Failure("bad.mp4", "cannot decode\nframe 3", "VideoError"))
        assert read_csv(out)[-1] == ["failure", "bad.mp4", "", "", "", "", "", "",
                                     "VideoError: cannot decode frame 3"]
        assert writer.completed() == {AWKWARD}


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_batch_json_formats_flush_per_video(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"labels.{fmt}"
    with BatchWriter.open(out, fmt) as writer:
        for number, path in enumerate(["a.mp4", AWKWARD], start=1):
            writer.write_video(prediction(path))
            text = out.read_text(encoding="utf-8")
            if fmt == "jsonl":
                records = [json.loads(line) for line in text.splitlines()]
            else:
                doc = json.loads(text)  # valid after every video
                assert doc["schema_version"] == SCHEMA_VERSION and doc["model"] == "k400_b16"
                records = doc["videos"]
            assert len(records) == number and records[-1]["path"] == path
            assert records[-1]["top"][0]["label"] == "run"
        writer.write_failure(Failure("bad.mp4", "no video stream", "VideoError"))
    text = out.read_text(encoding="utf-8")
    failures = ([json.loads(t) for t in text.splitlines()][-1:] if fmt == "jsonl"
                else json.loads(text)["failures"])
    assert failures[0]["path"] == "bad.mp4" and failures[0]["kind"] == "VideoError"
    assert failures[0]["record"] == "failure"


FILE_FORMATS = tuple(f for f in BATCH_FORMATS if f != "sqlite")  # text files; the tag index has tests/test_index.py


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_batch_refuses_existing_file(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"labels.{fmt}"
    out.write_text("precious")
    with pytest.raises(UsageError, match=rf"labels\.{fmt} exists; use --resume to continue it "
                                         "or --overwrite to replace it"):
        BatchWriter.open(out, fmt)
    assert out.read_text() == "precious"
    with pytest.raises(UsageError, match="together"):
        BatchWriter.open(out, fmt, resume=True, overwrite=True)
    with BatchWriter.open(out, fmt, overwrite=True) as writer:
        assert writer.completed() == set()
    assert "precious" not in out.read_text()


@pytest.mark.parametrize("fmt", BATCH_FORMATS)
def test_resume_keeps_complete_videos_and_retries_failures(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"labels.{fmt}"
    with BatchWriter.open(out, fmt) as writer:
        writer.write_video(prediction("a.mp4"))
        writer.write_failure(Failure("b.mp4", "boom"))
        writer.write_video(prediction(AWKWARD))
    with BatchWriter.open(out, fmt, resume=True) as writer:
        assert writer.completed() == {"a.mp4", AWKWARD}
        writer.write_video(prediction("b.mp4"))
    with BatchWriter.open(out, fmt, resume=True) as writer:
        assert writer.completed() == {"a.mp4", AWKWARD, "b.mp4"}


def test_resume_of_missing_file_starts_fresh(tmp_path: Path) -> None:
    with BatchWriter.open(tmp_path / "new.csv", "csv", resume=True) as writer:
        assert writer.completed() == set()
    assert read_csv(tmp_path / "new.csv") == [list(BATCH_CSV_COLUMNS)]


def _block_bytes(tmp_path: Path, fmt: str, pred: VideoPrediction) -> bytes:
    """The bytes one video adds to a fresh file (what a kill can cut short)."""
    scratch = tmp_path / f"scratch.{fmt}"
    with BatchWriter.open(scratch, fmt) as writer:
        header = scratch.read_bytes()
        writer.write_video(pred)
    block = scratch.read_bytes()[len(header):]
    scratch.unlink()
    return block


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_kill_at_any_point(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"labels.{fmt}"
    with BatchWriter.open(out, fmt) as writer:
        writer.write_video(prediction("a.mp4"))
        writer.write_video(prediction(AWKWARD))
    intact = out.read_bytes()
    block = _block_bytes(tmp_path, fmt, prediction("c, 'x'.mp4"))
    # where a kill could leave the third video: around every line end, and every 5th byte
    near_newline = {i + d for i, b in enumerate(block) if b == ord("\n") for d in (-1, 0, 1, 2)}
    cuts = sorted((near_newline | set(range(0, len(block), 5))) & set(range(len(block))))
    assert len(cuts) > 50
    for cut in cuts:
        out.write_bytes(intact + block[:cut])
        with BatchWriter.open(out, fmt, resume=True) as writer:
            assert writer.completed() == {"a.mp4", AWKWARD}, cut
        assert out.read_bytes() == intact, cut  # the torn tail is cut off, nothing else
    out.write_bytes(intact + block)
    with BatchWriter.open(out, fmt, resume=True) as writer:
        assert writer.completed() == {"a.mp4", AWKWARD, "c, 'x'.mp4"}


def test_csv_resume_after_kill_inside_header(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    out.write_text("row_type,pa")
    with BatchWriter.open(out, "csv", resume=True) as writer:
        writer.write_video(prediction("a.mp4"))
    rows = read_csv(out)
    assert tuple(rows[0]) == BATCH_CSV_COLUMNS and rows[-1][:2] == ["video", "a.mp4"]


@pytest.mark.parametrize(("fmt", "content", "reason"), [
    ("csv", "name,score\nx,1\n", "header differs"),
    ("jsonl", '{"a": 1}\n', "not a uvtag batch record"),
    ("jsonl", 'garbage\n{"record": "video", "path": "a"}\n', "line 1 is not JSON"),
    ("json", '{"videos": [', "not valid JSON"),
    ("json", '[1, 2]', "not a uvtag batch JSON"),
])
def test_resume_refuses_foreign_files(tmp_path: Path, fmt: str, content: str, reason: str) -> None:
    out = tmp_path / f"labels.{fmt}"
    out.write_text(content)
    with pytest.raises(UsageError, match=reason):
        BatchWriter.open(out, fmt, resume=True)
    assert out.read_text() == content


# ------------------------------------------------------------------ localize

SEGMENTS = (
    Segment("run", 0, 1.0, 6.0, 0.8),
    Segment("jump & <hop>", 1, 4.0, 9.5, 0.6),
    Segment("run", 0, 3700.25, 3710.0, 0.7),
)


def localization(path: str = "/videos/v_abc123.mp4") -> LocalizationResult:
    windows = tuple(ClipPrediction(float(s), float(s) + 4.0, top(("run", 0.8), ("jump & <hop>", 0.1)))
                    for s in range(0, 8, 2))
    return LocalizationResult(path=path, model="k400_b16", info=info(path, 3710.0), window_sec=4.0,
                              stride_sec=2.0, windows=windows, segments=SEGMENTS,
                              params={"threshold": 0.3, "smooth_windows": 3})


def test_localize_json(tmp_path: Path) -> None:
    write_result(localization(), tmp_path / "l.json", "json")
    doc = json.loads((tmp_path / "l.json").read_text(encoding="utf-8"))
    assert doc["schema_version"] == SCHEMA_VERSION and doc["model"] == "k400_b16"
    assert doc["params"] == {"window_sec": 4.0, "stride_sec": 2.0, "threshold": 0.3,
                             "smooth_windows": 3}
    assert doc["segments"][1] == {"label": "jump & <hop>", "class_index": 1, "start_sec": 4.0,
                                  "end_sec": 9.5, "score": 0.6}
    assert len(doc["windows"]) == 4 and doc["windows"][1]["start_sec"] == 2.0
    assert doc["windows"][0]["top"][0] == {"rank": 1, "label": "run", "class_index": 0, "score": 0.8}
    assert doc["video"]["duration_sec"] == 3710.0


def test_localize_csv(tmp_path: Path) -> None:
    write_result(localization(AWKWARD), tmp_path / "l.csv", "csv")
    rows = read_csv(tmp_path / "l.csv")
    assert tuple(rows[0]) == LOCALIZE_CSV_COLUMNS == (
        "path", "label", "class_index", "start_sec", "end_sec", "score")
    assert rows[1:] == [
        [AWKWARD, "run", "0", "1.000", "6.000", "0.800000"],
        [AWKWARD, "jump & <hop>", "1", "4.000", "9.500", "0.600000"],
        [AWKWARD, "run", "0", "3700.250", "3710.000", "0.700000"],
    ]


def check_activitynet(doc: object) -> None:
    """The ActivityNet v1.3 detection result schema, as documented by the challenge."""
    assert isinstance(doc, dict) and set(doc) == {"version", "results", "external_data"}
    assert doc["version"] == "VERSION 1.3"
    ext = doc["external_data"]
    assert isinstance(ext, dict) and isinstance(ext["used"], bool) and isinstance(ext["details"], str)
    assert isinstance(doc["results"], dict)
    for video_id, detections in doc["results"].items():
        assert isinstance(video_id, str) and video_id and isinstance(detections, list)
        for det in detections:
            assert set(det) == {"label", "score", "segment"}
            assert isinstance(det["label"], str) and isinstance(det["score"], (int, float))
            start, end = det["segment"]
            assert all(isinstance(t, (int, float)) for t in (start, end)) and 0 <= start < end


def test_activitynet_json_matches_schema(tmp_path: Path) -> None:
    write_result(localization(), tmp_path / "l.json", "activitynet")
    doc = json.loads((tmp_path / "l.json").read_text(encoding="utf-8"))
    check_activitynet(doc)
    assert list(doc["results"]) == ["v_abc123"]
    assert doc["results"]["v_abc123"][0] == {"label": "run", "score": 0.8, "segment": [1.0, 6.0]}
    with pytest.raises(AssertionError):  # the checker does reject a wrong document
        check_activitynet({**doc, "version": "1.3"})


_TIME = r"(\d{2,}):(\d{2}):(\d{2})%s(\d{3})"


def parse_subtitles(text: str, vtt: bool) -> list[tuple[int, int, list[str]]]:
    """A strict SRT / WebVTT parser: (start_ms, end_ms, text lines) per cue."""
    sep = r"\." if vtt else ","
    cue_time = re.compile(rf"^{_TIME % sep} --> {_TIME % sep}$")
    if vtt:
        assert text.startswith("WEBVTT\n\n")
        text = text[len("WEBVTT\n\n"):]
    assert text.endswith("\n\n") or text == ""
    cues = []
    for number, block in enumerate(text[:-2].split("\n\n") if text else [], start=1):
        lines = block.split("\n")
        if not vtt:
            assert lines.pop(0) == str(number)
        match = cue_time.match(lines[0])
        assert match, lines[0]
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        assert m1 < 60 and s1 < 60 and m2 < 60 and s2 < 60
        start = ((h1 * 60 + m1) * 60 + s1) * 1000 + ms1
        end = ((h2 * 60 + m2) * 60 + s2) * 1000 + ms2
        assert start < end and (not cues or cues[-1][1] <= start)  # monotonic, no overlap
        assert lines[1:] and all(line.strip() for line in lines[1:])
        assert not any("-->" in line for line in lines[1:])
        cues.append((start, end, lines[1:]))
    return cues


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_parse_and_show_every_active_label(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"l.{fmt}"
    write_result(localization(), out, fmt)
    cues = parse_subtitles(out.read_text(encoding="utf-8"), vtt=fmt == "vtt")
    hop = "jump &amp; &lt;hop>" if fmt == "vtt" else "jump & <hop>"
    assert cues == [
        (1000, 4000, ["run (0.80)"]),
        (4000, 6000, ["run (0.80)", f"{hop} (0.60)"]),
        (6000, 9500, [f"{hop} (0.60)"]),
        (3700250, 3710000, ["run (0.70)"]),
    ]
    if fmt == "srt":
        assert "01:01:40,250 --> 01:01:50,000" in out.read_text(encoding="utf-8")


def test_subtitles_with_no_segments_are_still_valid() -> None:
    empty = LocalizationResult(path="a.mp4", model="m", info=info("a.mp4"), window_sec=4.0,
                               stride_sec=2.0, windows=(), segments=())
    for fmt in ("srt", "vtt"):
        buffer = io.StringIO()
        LOCALIZE_WRITERS[fmt]().write(empty, buffer)
        assert parse_subtitles(buffer.getvalue(), vtt=fmt == "vtt") == []


def test_subtitle_cues_skip_gaps() -> None:
    cues = subtitle_cues([Segment("a", 0, 0.0, 1.0, 0.9), Segment("b", 1, 2.0, 3.0, 0.5)])
    assert [(s, e, [x.label for x in active]) for s, e, active in cues] == [
        (0.0, 1.0, ["a"]), (2.0, 3.0, ["b"])]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_non_utf8_path_survives_resume(tmp_path: Path, fmt: str) -> None:
    raw_name = b"caf\xe9.mp4".decode("utf-8", "surrogateescape")  # a Latin-1 name on disk
    out = tmp_path / f"labels.{fmt}"
    with BatchWriter.open(out, fmt) as writer:
        writer.write_video(prediction(raw_name))
    assert b"caf\xe9.mp4" in out.read_bytes()
    with BatchWriter.open(out, fmt, resume=True) as writer:
        assert writer.completed() == {raw_name}


_CHILD = """
import sys
from tests.test_writers import prediction
from uvtag.batch.output import BatchWriter
with BatchWriter.open(sys.argv[1], sys.argv[2]) as writer:
    for i in range(100000):
        writer.write_video(prediction(f"v{i}.mp4"))
        print(i, flush=True)
"""


@pytest.mark.parametrize("fmt", BATCH_FORMATS)
def test_sigkill_while_writing_keeps_every_finished_video(tmp_path: Path, fmt: str) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / f"labels.{fmt}"
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(out), fmt], cwd=root,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    finished = [int(child.stdout.readline()) for _ in range(20)]
    child.send_signal(signal.SIGKILL)
    child.wait()
    finished += [int(line) for line in child.stdout.read().split()]
    if fmt == "json":
        assert len(json.loads(out.read_text())["videos"]) >= len(finished)  # valid as it is
    with BatchWriter.open(out, fmt, resume=True) as writer:
        done = writer.completed()
    assert {f"v{i}.mp4" for i in finished} <= done
    assert done == {f"v{i}.mp4" for i in range(len(done))}


# ------------------------------------------------------------------ strings CSV must round-trip

CR_STRINGS = ["cr\rin", "lf\nin", "crlf\r\nin", "\r", " lead, trail ", '"quoted", "twice"', "naïve 🎬",
              "\r\n\r\n", "end\r"]


def hostile_prediction(path: str) -> VideoPrediction:
    """A video whose every label is one of `CR_STRINGS` (a library caller may pass any names)."""
    labels = top(*((name, 0.5 / (i + 1)) for i, name in enumerate(CR_STRINGS)))
    clip = ClipPrediction(0.0, 1.0, labels)
    return VideoPrediction(path=path, model="k400_b16", info=info(path, 1.0), top=labels, num_views=1,
                           clips=(clip,))


def test_classify_and_localize_csv_round_trip_cr_and_lf(tmp_path: Path) -> None:
    preds = [hostile_prediction(name) for name in CR_STRINGS]
    write_result(preds, tmp_path / "c.csv", "csv")
    rows = read_csv(tmp_path / "c.csv")
    assert [(r[0], r[2]) for r in rows[1:]] == [(p, label) for p in CR_STRINGS for label in CR_STRINGS]
    segments = tuple(Segment(name, i, 0.0, 1.0, 0.5) for i, name in enumerate(CR_STRINGS))
    result = dataclasses.replace(localization("v\r.mp4"), segments=segments)
    write_result(result, tmp_path / "l.csv", "csv")
    assert [(r[0], r[1]) for r in read_csv(tmp_path / "l.csv")[1:]] == [("v\r.mp4", n) for n in CR_STRINGS]


def test_batch_csv_with_cr_and_lf_resumes_and_merges(tmp_path: Path) -> None:
    from uvtag.batch.merge import read_batch_file

    out = tmp_path / "labels.csv"
    with BatchWriter.open(out, "csv") as writer:
        for name in CR_STRINGS:
            writer.write_video(hostile_prediction(name))
        writer.write_failure(Failure("bad\r.mp4", "cannot\rdecode", "VideoError"))
    rows = read_csv(out)
    assert all(len(r) == len(BATCH_CSV_COLUMNS) for r in rows)
    assert [r[1] for r in rows if r[0] == "video" and r[4] == "1"] == CR_STRINGS
    assert {r[5] for r in rows[1:] if r[0] != "failure"} == set(CR_STRINGS)
    assert rows[-1][:2] == ["failure", "bad\r.mp4"]
    intact = out.read_bytes()
    with BatchWriter.open(out, "csv", resume=True) as writer:
        assert writer.completed() == set(CR_STRINGS)
    assert out.read_bytes() == intact
    blocks, torn = read_batch_file(out)
    assert [b.path for b in blocks] == CR_STRINGS + ["bad\r.mp4"] and not torn


def test_csv_text_quotes_every_line_break() -> None:
    from uvtag.outputs.formats import csv_text

    assert csv_text([["a\rb", "c", 1]]) == '"a\rb",c,1\n'
    assert csv_text([["plain", " spaced ", ""]]) == "plain, spaced ,\n"  # unquoted, as before
    assert list(csv.reader(io.StringIO(csv_text([CR_STRINGS]), newline=""))) == [CR_STRINGS]


def test_one_dispatch_chooses_the_writer_by_result_and_format():
    """Writers carry their format and extension; get_writer picks by the kind of result."""
    from uvtag.outputs.formats import get_writer

    for writers in (CLASSIFY_WRITERS, LOCALIZE_WRITERS):
        for fmt, cls in writers.items():
            assert cls.format == fmt and cls.extension.startswith(".")
    assert format_from_path("x.json") == "json" and format_from_path("x.srt") == "srt"
    with pytest.raises(UsageError, match="not available"):
        get_writer([], "srt")  # subtitles are for a localize result
