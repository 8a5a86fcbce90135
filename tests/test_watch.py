"""`uvtag watch`: live sources fed in real time (a pipe, a local HTTP broadcast, a local RTSP
camera, a growing file).

The paced tests send generated untrimmed motion videos (MPEG-TS, H.264) frame by frame at their
presentation times and run the real `uvtag watch` command on them with the bundled motion-tiny
model and the demo's localize settings. They check that the segments equal
`uvtag localize` on the same file within one stride, every window's line appears within
LATENCY_SEC of the window's end, a dropped HTTP or RTSP connection is reconnected and the run goes on,
SIGINT leaves complete JSONL/SRT/VTT files, and a source that never yields a frame fails in one
line. The pure parts (segmenter, window planner, stream clock, appenders) are checked alone.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

import livefeed  # noqa: E402
import rtspfeed  # noqa: E402

from uvtag.cli.demo import MOTION_SEGMENTS, MOTION_STRIDE_SEC, MOTION_WINDOW_SEC  # noqa: E402
from uvtag.infer.segments import to_segments  # noqa: E402
from uvtag.infer.windows import window_spans  # noqa: E402
from uvtag.live.events import Ended, SegmentClosed, Started, WindowScored  # noqa: E402
from uvtag.live.output import appender  # noqa: E402
from uvtag.live.segmenter import Segmenter  # noqa: E402
from uvtag.live.source import StreamClock  # noqa: E402
from uvtag.live.watch import WindowPlanner  # noqa: E402
from uvtag.results import LabelScore, Segment  # noqa: E402

UVTAG = str(Path(sys.executable).with_name("uvtag"))
# A window's line appears within this many seconds of the window's end (stream time, as the
# feeder sent it). Measured on the 2-core machine: median 0.2 s, worst 0.3 s (one frame of demuxer
# delay, the forward, the pipe); the bound leaves room for a loaded CI machine.
LATENCY_SEC = 2.0
MOTION_ARGS = ["-m", "motion-tiny", "-w", str(MOTION_WINDOW_SEC), "-s", str(MOTION_STRIDE_SEC), "-k", "1",
               "--threshold", str(MOTION_SEGMENTS["threshold"]), "--smooth", str(MOTION_SEGMENTS["smooth_windows"]),
               "--min-duration", str(MOTION_SEGMENTS["min_duration_sec"]),
               "--merge-gap", str(MOTION_SEGMENTS["merge_gap_sec"])]
LABELS = [("moving left", "growing", "still", "rotating clockwise"), ("moving up", "shrinking", "moving right")]


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("watch")
    long = livefeed.motion_scene(0, labels=LABELS[0])  # about 12 s
    short = livefeed.motion_scene(1, labels=LABELS[1])  # about 9 s
    return {"long": livefeed.write_ts(long, folder / "long.ts"), "short": livefeed.write_ts(short, folder / "short.ts"),
            "looped": livefeed.write_ts(short, folder / "looped.ts", repeat=4)}  # a broadcast that outlasts a slow start


def _flat(spans) -> list[float]:
    return [t for span in spans for t in span]


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@functools.lru_cache(maxsize=None)
def _localize(path: Path) -> list[dict]:
    """`uvtag localize` on the file, with the same settings: its segments (once per file)."""
    out = path.with_suffix(".localize.json")
    args = [UVTAG, "localize", str(path), *MOTION_ARGS, "--nms-iou", str(MOTION_SEGMENTS["nms_iou"]), "--out", str(out),
            "--overwrite", "--quiet"]
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())["segments"]


def _assert_same_segments(live: list[dict], reference: list[dict], tolerance_sec: float) -> None:
    assert reference, "the reference file has segments"
    assert [s["label"] for s in live] == [s["label"] for s in reference]
    for a, b in zip(live, reference):
        assert abs(a["start_sec"] - b["start_sec"]) <= tolerance_sec + 1e-6, (a, b)
        assert abs(a["end_sec"] - b["end_sec"]) <= tolerance_sec + 1e-6, (a, b)


class _Reader:
    """Reads a process's stdout lines in a thread, stamping each with time.monotonic()."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, dict]] = []
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), json.loads(line)))

    def of(self, kind: str) -> list[tuple[float, dict]]:
        return [(t, r) for t, r in self.lines if r["type"] == kind]


def _wait_ready(process: subprocess.Popen) -> None:
    """Wait until the model is loaded (its line on stderr), so pacing starts with a ready watcher."""
    line = process.stderr.readline()
    assert "model motion-tiny" in line, line


# ---------------------------------------------------------------------- paced through a pipe and HTTP


def _server(transport: str, path: Path, **kw):
    """The live server of `transport` ("http", "rtsp"; "stdin": an HTTP one left unused) for the TS file `path`."""
    if transport == "rtsp":
        return rtspfeed.RtspServer(rtspfeed.pictures_of(path), **kw)
    return livefeed.LiveServer(livefeed.index_ts(path), **kw)


@pytest.mark.parametrize("transport", ["stdin", "http", "rtsp"])
def test_watch_paced_matches_localize_and_keeps_up(streams, transport):
    """Real time through a pipe, from an HTTP broadcast and from an RTSP camera: localize's
    windows and segments, every window line within LATENCY_SEC of the window's end."""
    path = streams["long"]
    index = livefeed.index_ts(path)
    with _server(transport, path) as server:
        source = "-" if transport == "stdin" else server.url
        process = subprocess.Popen([UVTAG, "watch", source, *MOTION_ARGS, "--queue", "64", "--max-lag", "30",
                                    "--reconnect-for", "0.5"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stderr = io.TextIOWrapper(process.stderr)
        _wait_ready(process)
        reader = _Reader(io.TextIOWrapper(process.stdout))
        if transport == "stdin":
            t0 = time.monotonic()

            def write(data: bytes) -> None:
                process.stdin.write(data)
                process.stdin.flush()

            livefeed.send_paced(write, index, t0)
            process.stdin.close()
        code = process.wait(timeout=120)
        t0 = t0 if transport == "stdin" else server.t0  # when the broadcast sent stream time 0
    reader.thread.join(timeout=10)
    end = reader.lines[-1][1]
    # a pipe ends with its data; a broadcast or camera that is over answers 404: the source is lost (exit 1)
    assert (code, end["reason"]) == ((0, "end of stream") if transport == "stdin" else (1, "lost")), process.stderr.read()

    windows = reader.of("window")
    spans = window_spans(index.duration_sec, MOTION_WINDOW_SEC, MOTION_STRIDE_SEC)
    assert _flat((r["start_sec"], r["end_sec"]) for _, r in windows) == pytest.approx(_flat(spans), abs=1e-6)
    late = [(r["end_sec"], round(t - (t0 + r["end_sec"]), 3)) for t, r in windows[:-1]  # the last closes at the end
            if t - (t0 + r["end_sec"]) > LATENCY_SEC]
    assert not late, f"window lines later than {LATENCY_SEC} s after the window's end: {late}"
    assert all(0 <= r["latency_sec"] < LATENCY_SEC for _, r in windows)
    segments = [r for _, r in reader.of("segment")]
    _assert_same_segments(segments, _localize(path), MOTION_STRIDE_SEC)
    kinds = [r["type"] for _, r in reader.lines]
    assert kinds[0] == "start" and kinds[-1] == "end" and "lag" not in kinds and "gap" not in kinds
    assert end["windows"] == len(spans) and end["skipped"] == 0


# ---------------------------------------------------------------------- through HTTP


@pytest.mark.parametrize("transport", ["http", "rtsp"])
def test_watch_reconnects_after_a_drop_and_continues(streams, transport):
    index = livefeed.index_ts(streams["long"])
    with _server(transport, streams["long"], drop_at_sec=5.0) as server:
        done = subprocess.run([UVTAG, "watch", server.url, *MOTION_ARGS, "--quiet", "--reconnect-for", "1",
                               "--timeout", "5"], capture_output=True, text=True, timeout=120)
    records = _records(done.stdout)
    kinds = [r["type"] for r in records]
    assert server.connections == 2  # dropped once, reconnected once; after the broadcast: 404
    gaps = [r for r in records if r["type"] == "gap"]
    assert len(gaps) == 1 and 4.5 <= gaps[0]["start_sec"] <= 5.5 and gaps[0]["end_sec"] > gaps[0]["start_sec"]
    windows = [r for r in records if r["type"] == "window"]
    ends = [w["end_sec"] for w in windows]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)
    after = [w for w in windows if w["start_sec"] >= gaps[0]["end_sec"]]
    assert after and after[-1]["end_sec"] >= index.duration_sec - 1.5  # the run went on to the broadcast's end
    assert [r for r in records if r["type"] == "segment" and r["start_sec"] >= gaps[0]["end_sec"]]
    assert kinds[-1] == "end" and records[-1]["reason"] == "lost" and records[-1]["gaps"] == 1
    # the broadcast is over (404): the run ends in one line naming the source, exit code 1
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {server.url}: lost")


def test_a_camera_password_is_sent_but_never_written(streams):
    """rtsp://user:password@camera: FFmpeg answers the camera's 401 with the credentials; the
    output lines and messages name the source without the password."""
    with rtspfeed.RtspServer(rtspfeed.pictures_of(streams["short"]), credentials=("bob", "s3cr3t")) as server:
        source = server.url.replace("rtsp://", "rtsp://bob:s3cr3t@")
        done = subprocess.run([UVTAG, "watch", source, *MOTION_ARGS, "--reconnect-for", "0.5"], capture_output=True,
                              text=True, timeout=120)
    records = _records(done.stdout)
    assert server.refused >= 1 and server.connections == 1  # challenged, then let in
    shown = server.url.replace("rtsp://", "rtsp://bob:***@")
    assert records[0]["type"] == "start" and records[0]["source"] == shown
    assert len([r for r in records if r["type"] == "window"]) > 20
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(f"error: {shown}: lost")
    assert "s3cr3t" not in done.stdout + done.stderr
    refused = subprocess.run([UVTAG, "watch", "rtsp://bob:s3cr3t@127.0.0.1:9/live", *MOTION_ARGS, "--timeout", "1"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "rtsp://bob:***@127.0.0.1:9/live" in refused.stderr
    assert "s3cr3t" not in refused.stdout + refused.stderr


def test_watch_sigint_leaves_complete_outputs(streams, tmp_path):
    index = livefeed.index_ts(streams["looped"])  # still on air when the slowest watcher has a segment
    outs = {fmt: tmp_path / f"tags.{fmt}" for fmt in ("jsonl", "srt", "vtt")}
    with livefeed.LiveServer(index) as server:
        processes = {fmt: subprocess.Popen([UVTAG, "watch", server.url, *MOTION_ARGS, "--out", str(out)],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for fmt, out in outs.items()}
        deadline = time.monotonic() + 120
        while not all(_segments_in(out) >= 1 for out in outs.values()):  # each has closed a segment
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes.values())
            time.sleep(0.2)
        time.sleep(1.0)  # mid-stream, with a segment open
        for p in processes.values():
            p.send_signal(signal.SIGINT)
        results = {fmt: (p.wait(timeout=60), p.stderr.read()) for fmt, p in processes.items()}
    for fmt, (code, stderr) in results.items():
        assert code == 130, (fmt, stderr)
        assert "interrupted" in stderr
        assert re.search(r"(\d+) segments over", stderr)
    records = _records(outs["jsonl"].read_text())
    assert records[-1]["type"] == "end" and records[-1]["reason"] == "interrupted"
    windows = [r for r in records if r["type"] == "window"]
    segments = [r for r in records if r["type"] == "segment"]
    assert records[-1]["windows"] == len(windows) and windows[-1]["end_sec"] < index.duration_sec
    if _settled([(w["top"][0]["label"], w["top"][0]["score"]) for w in windows]):
        assert segments[-1]["end_sec"] == windows[-1]["end_sec"]  # the open segment was closed at the last window
    count = int(re.search(r"(\d+) segments over", results["jsonl"][1]).group(1))
    assert count == len(segments)
    for fmt in ("srt", "vtt"):
        cues = _parse_cues(outs[fmt].read_text(), fmt)
        stated = int(re.search(r"(\d+) segments over", results[fmt][1]).group(1))
        assert len(cues) == stated >= 1
        starts = [c[0] for c in cues]
        assert starts == sorted(starts) and all(end > start for start, end, _ in cues)
        assert all(re.fullmatch(r"[a-z ]+ \(\d\.\d\d\)", text) for _, _, text in cues)


def _settled(tops: list[tuple[str, float]]) -> bool:
    """Whether a segment must be open after these windows (top-1 label, score): the last four
    share their top label at 0.5 or more, so with the demo settings (threshold 0.3, 3-window
    smoothing, top-1 per window) that label is active over more than the 0.75 s minimum."""
    last = tops[-4:]
    return len(last) == 4 and len({label for label, _ in last}) == 1 and min(score for _, score in last) >= 0.5


def _segments_in(path: Path) -> int:
    if not path.exists():
        return 0
    text = path.read_text()
    return text.count('"type": "segment"') if path.suffix == ".jsonl" else text.count(" --> ")


_CUE_TIME = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def _parse_cues(text: str, fmt: str) -> list[tuple[float, float, str]]:
    """Strict enough: the header, numbered (srt) cues, one timing line and one text line each."""
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
        text = text[len("WEBVTT\n\n"):]
    assert text == "" or text.endswith("\n\n")
    cues = []
    for number, block in enumerate([b for b in text.split("\n\n") if b], start=1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines[0] == str(number)
            lines = lines[1:]
        sep = "," if fmt == "srt" else r"\."
        m = re.fullmatch(_CUE_TIME.replace("[,.]", sep) + " --> " + _CUE_TIME.replace("[,.]", sep), lines[0])
        assert m, lines[0]
        v = [int(x) for x in m.groups()]
        cues.append((v[0] * 3600 + v[1] * 60 + v[2] + v[3] / 1000, v[4] * 3600 + v[5] * 60 + v[6] + v[7] / 1000,
                     lines[1]))
        assert len(lines) == 2
    return cues


# ---------------------------------------------------------------------- a growing file


def test_watch_follows_a_growing_file_and_matches_localize(streams, tmp_path):
    source = streams["short"]
    index = livefeed.index_ts(source)
    growing = tmp_path / "recording.ts"
    growing.write_bytes(b"")
    process = subprocess.Popen([UVTAG, "watch", str(growing), "--follow", "--timeout", "2", *MOTION_ARGS],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_ready(process)
    with open(growing, "ab") as f:
        def write(data: bytes) -> None:
            f.write(data)
            f.flush()

        livefeed.send_paced(write, index, time.monotonic())
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    records = _records(out)
    assert records[-1]["type"] == "end" and records[-1]["reason"] == "end of stream"
    _assert_same_segments([r for r in records if r["type"] == "segment"], _localize(source), MOTION_STRIDE_SEC)


# ---------------------------------------------------------------------- sources that fail


@pytest.mark.parametrize("kind", ["silent server", "refused", "empty pipe", "silent pipe", "unknown protocol"])
def test_a_source_without_frames_fails_in_one_line(kind, tmp_path):
    index = livefeed.index_ts(livefeed.write_ts(livefeed.motion_scene(2, num_actions=1), tmp_path / "x.ts"))
    args = [UVTAG, "watch", "-m", "motion-tiny", "--timeout", "1.5", "--quiet"]
    if kind == "empty pipe":  # not a video: ends at once
        done = subprocess.run(args + ["-"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        expected = "error: standard input: no video frame ("
    elif kind == "unknown protocol":  # no retry can help: at once, not after the timeout
        started = time.monotonic()
        done = subprocess.run(args + ["--timeout", "60", "srt://127.0.0.1:9"], capture_output=True, text=True, timeout=50)
        assert time.monotonic() - started < 50
        expected = "error: srt://127.0.0.1:9: Protocol not found"
    elif kind == "silent pipe":  # open, but nothing ever comes
        read_end, write_end = os.pipe()
        try:
            done = subprocess.run(args + ["-"], stdin=read_end, capture_output=True, text=True, timeout=60)
        finally:
            os.close(read_end)
            os.close(write_end)
        expected = "error: standard input: no video frame (no data for 1.5 s)"
    else:
        with livefeed.LiveServer(index, silent=kind == "silent server") as server:
            url = server.url
            if kind == "refused":
                server.httpd.server_close()
            done = subprocess.run(args + [url], capture_output=True, text=True, timeout=60)
        expected = f"error: {url}: no video frame within 1.5 s"
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr


def test_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    from uvtag.cli import app

    bad_format = runner.invoke(app, ["watch", "-", "--format", "csv", "-m", "motion-tiny"])
    assert bad_format.exit_code == 2 and "csv" in bad_format.output
    existing = tmp_path / "tags.jsonl"
    existing.write_text("keep me\n")
    refused = runner.invoke(app, ["watch", "-", "--out", str(existing), "-m", "motion-tiny"])
    assert refused.exit_code == 2 and "exists" in refused.output and existing.read_text() == "keep me\n"


# ---------------------------------------------------------------------- falling behind


@pytest.mark.parametrize("bound", ["queue", "max-lag"])
def test_a_slow_model_skips_windows_and_reports_lag(streams, tmp_path, monkeypatch, bound):
    """A model slower than the source: windows are dropped (counted); the queue never grows past
    --queue, and no window is scored after waiting longer than --max-lag."""
    from uvtag.infer.predict import Predictor

    real = Predictor.logits
    waiting: list[int] = []

    def slow(self, clips):
        time.sleep(0.05)
        return real(self, clips)

    monkeypatch.setattr(Predictor, "logits", slow)
    from uvtag.live import watch as watch_module

    take = watch_module._Queue.take

    def spy(self, max_windows, timeout):
        waiting.append(self._windows)
        return take(self, max_windows, timeout)

    monkeypatch.setattr(watch_module._Queue, "take", spy)
    from uvtag.cli import app

    out = tmp_path / "lag.jsonl"
    # a finished file followed: decoded far faster than real time, as a live source it drops windows
    limits = ["--queue", "2"] if bound == "queue" else ["--queue", "1000", "--max-lag", "0.2", "--batch-size", "1"]
    result = CliRunner().invoke(app, ["watch", str(streams["long"]), "--follow", "--timeout", "0.5", *MOTION_ARGS,
                                      *limits, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    records = _records(out.read_text())
    lags = [r for r in records if r["type"] == "lag"]
    end = records[-1]
    total = len(window_spans(livefeed.index_ts(streams["long"]).duration_sec, MOTION_WINDOW_SEC, MOTION_STRIDE_SEC))
    assert lags and end["skipped"] == lags[-1]["total_skipped"] == sum(r["skipped"] for r in lags) > 0
    assert end["windows"] + end["skipped"] == total
    if bound == "queue":
        assert max(waiting) <= 2
    else:  # waited at most 0.2 s, then one forward of 0.05 s and a bit: far below the stated bound
        assert max(r["latency_sec"] for r in records if r["type"] == "window") < LATENCY_SEC


# ---------------------------------------------------------------------- the terminal view


def test_a_terminal_gets_the_live_view_not_json(streams):
    primary, secondary = pty.openpty()
    process = subprocess.Popen([UVTAG, "watch", str(streams["short"]), *MOTION_ARGS], stdout=secondary,
                               stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "100"})
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "windows, 0 skipped (lag), 0 gaps" in screen and "latency" in screen
    assert "moving up" in screen or "shrinking" in screen or "moving right" in screen
    assert '"type"' not in screen


# ---------------------------------------------------------------------- the pure parts


def _spans(rng, num: int) -> list[tuple[float, float]]:
    stride = float(rng.choice([0.25, 0.5, 1.0]))
    window = stride * int(rng.integers(1, 5))
    spans = [(round(i * stride, 6), round(i * stride + window, 6)) for i in range(num)]
    if spans and rng.random() < 0.3:  # localize's last window, shifted to end at the end
        spans.append((spans[-1][0] + stride / 2, spans[-1][0] + stride / 2 + window))
    return spans


def test_segmenter_equals_to_segments_on_the_same_windows():
    rng = np.random.default_rng(0)
    for trial in range(300):
        spans = _spans(rng, int(rng.integers(0, 50)))
        num_classes = int(rng.integers(1, 6))
        scores = rng.random((len(spans), num_classes)).astype(np.float32)
        if rng.random() < 0.5:
            scores *= scores > 0.6  # long inactive stretches, so runs end and merges wait
        options = dict(threshold=float(rng.choice([0.2, 0.3, 0.5])), smooth_windows=int(rng.choice([1, 3, 5])),
                       min_duration_sec=float(rng.choice([0.0, 0.5, 1.0])),
                       merge_gap_sec=float(rng.choice([0.0, 0.25, 0.5, 1.0])),
                       top_k_per_window=[None, 1, 2][int(rng.integers(3))])
        labels = [f"class {k}" for k in range(num_classes)]
        expected = to_segments(spans, scores, labels, nms_iou=0.5, **options)
        segmenter = Segmenter(labels, **options)
        got = [s for span, row in zip(spans, scores) for s in segmenter.add(span, row)] + segmenter.close()
        assert [(s.label, s.start_sec, s.end_sec) for s in got] == [(s.label, s.start_sec, s.end_sec) for s in expected], trial
        assert [s.score for s in got] == pytest.approx([s.score for s in expected], rel=1e-12, abs=1e-12)


def test_segmenter_releases_a_segment_as_soon_as_it_is_final():
    segmenter = Segmenter(["a", "b"], threshold=0.5)
    spans = [(i * 1.0, i * 1.0 + 1.0) for i in range(6)]
    rows = [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]
    released = [segmenter.add(span, np.array(row)) for span, row in zip(spans, rows)]
    # "a" ends at the first "b" window; one window later no later "a" run can merge with it
    assert [[(s.label, s.start_sec, s.end_sec) for s in r] for r in released] == [[], [], [], [("a", 0.0, 2.0)], [], []]
    assert [(s.label, s.start_sec, s.end_sec) for s in segmenter.close()] == [("b", 2.0, 5.0), ("a", 5.0, 6.0)]


@pytest.mark.parametrize("duration", [2.0, 2.1, 5.0, 7.9333, 11.93333])
def test_window_planner_gives_localize_windows(duration):
    planner = WindowPlanner(MOTION_WINDOW_SEC, MOTION_STRIDE_SEC)
    times = np.arange(0, duration, 1 / 15)
    spans = [span for t in times for _, span in planner.closed_by(float(t))] + [s for _, s in planner.finish(duration)]
    assert _flat(spans) == pytest.approx(_flat(window_spans(duration, MOTION_WINDOW_SEC, MOTION_STRIDE_SEC)), abs=1e-6)


def test_stream_clock_stays_monotonic_across_resets_and_reconnections():
    clock = StreamClock()
    assert [clock.place(10.0 + i / 10, 100.0 + i / 10) for i in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    assert clock.place(0.0, 100.3) == pytest.approx(0.3)  # timestamps reset mid-connection: one step on
    assert clock.place(0.1, 100.4) == pytest.approx(0.4)
    clock.drop()
    assert clock.gap_start_sec == pytest.approx(0.5)
    resumed = clock.place(55.0, 102.4)  # back after 2 s of wall-clock time, new timestamps
    assert resumed == pytest.approx(2.4)
    assert clock.place(55.1, 102.5) == pytest.approx(2.5)


def test_appenders_write_whole_records_and_cues():
    segment = Segment("moving <left> & -->", 0, 1.0, 2.5, 0.8)
    events = [Started("-", "m", 64, 64, 15.0, 2.0, 1.0, 0.0),
              WindowScored(0, 0.0, 2.0, (LabelScore("still", 8, 0.9),), 1.0, 0.01),
              SegmentClosed(segment, 2.0), Ended("end of stream", 3.0, 1, 0, 0, 3.0)]
    texts = {}
    for fmt in ("jsonl", "srt", "vtt"):
        buffer = io.StringIO()
        writer = appender(buffer, fmt)
        for event in events:
            writer.write(event)
        texts[fmt] = buffer.getvalue()
    records = _records(texts["jsonl"])
    assert [r["type"] for r in records] == ["start", "window", "segment", "end"]
    assert records[2]["label"] == segment.label and records[2]["start_sec"] == 1.0 and records[2]["score"] == 0.8
    assert records[1]["top"] == [{"rank": 1, "label": "still", "class_index": 8, "score": 0.9}]
    assert texts["srt"] == "1\n00:00:01,000 --> 00:00:02,500\nmoving <left> & --> (0.80)\n\n"
    assert texts["vtt"] == "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nmoving &lt;left> &amp; --&gt; (0.80)\n\n"


# ---------------------------------------------------------------------- the Python API


def test_tagger_watch_yields_typed_events_equal_to_localize(streams):
    """On a file (decoded at full speed, nothing skipped) the windows and segments are localize's."""
    import uvtag
    from uvtag.tagger import SegmentOptions

    tagger = uvtag.load("motion-tiny", device="cpu", progress=False)
    options = SegmentOptions(**MOTION_SEGMENTS)
    path = str(streams["long"])
    reference = tagger.localize(path, window_sec=MOTION_WINDOW_SEC, stride_sec=MOTION_STRIDE_SEC, top=1, options=options)
    events = list(tagger.watch(path, window_sec=MOTION_WINDOW_SEC, stride_sec=MOTION_STRIDE_SEC, top=1, options=options))
    assert isinstance(events[0], Started) and isinstance(events[-1], Ended)
    assert events[-1].reason == "end of stream" and events[-1].skipped == 0
    windows = [e for e in events if isinstance(e, WindowScored)]
    assert [(w.start_sec, w.end_sec) for w in windows] == [(w.start_sec, w.end_sec) for w in reference.windows]
    assert [w.top[0].label for w in windows] == [w.top[0].label for w in reference.windows]
    assert max(abs(a.top[0].score - b.top[0].score) for a, b in zip(windows, reference.windows)) < 1e-4
    segments = [e.segment for e in events if isinstance(e, SegmentClosed)]
    assert [(s.label, s.start_sec, s.end_sec) for s in segments] == [(s.label, s.start_sec, s.end_sec) for s in reference.segments]


def test_tagger_watch_stop_closes_open_segments(streams):
    import uvtag
    from uvtag.tagger import SegmentOptions

    tagger = uvtag.load("motion-tiny", device="cpu", progress=False)
    watch = tagger.watch(str(streams["long"]), window_sec=MOTION_WINDOW_SEC, stride_sec=MOTION_STRIDE_SEC,
                         options=SegmentOptions(**MOTION_SEGMENTS))
    events = []
    for event in watch:
        events.append(event)
        if isinstance(event, WindowScored) and event.index == 12:
            watch.stop()
    end = events[-1]
    assert isinstance(end, Ended) and end.reason == "interrupted" and watch.interrupted
    windows = [e for e in events if isinstance(e, WindowScored)]
    assert windows[-1].index < 40 and end.windows == len(windows)
    segments = [e.segment for e in events if isinstance(e, SegmentClosed)]
    if _settled([(w.top[0].label, w.top[0].score) for w in windows]):
        assert segments[-1].end_sec == windows[-1].end_sec  # the open one, closed at the last window
