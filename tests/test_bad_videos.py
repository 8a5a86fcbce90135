"""Bad input gets a one-line VideoError naming the file and the reason; crashes and hangs cost one file."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from videogen import frame_index_of, videos, write_bytes, write_video  # noqa: F401  (videos is a fixture)

import uvtag.tagger
from uvtag.cli import app
from uvtag.errors import VideoError
from uvtag.video import backends
from uvtag.video.isolated import IsolatedReader, decode_isolated
from uvtag.video.reader import BACKENDS, open_video

runner = CliRunner()


def open_error(path, backend=None) -> str:
    with pytest.raises(VideoError) as info:
        open_video(path, backend)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("backend", [None, *BACKENDS])
def test_missing_directory_empty(tmp_path, videos, backend):
    assert open_error(tmp_path / "nope.mp4", backend).endswith(": no such file")
    assert open_error(tmp_path, backend).endswith(": is a directory")
    assert open_error(videos["empty"], backend).endswith(": file is empty")


@pytest.mark.parametrize("backend", [None, *BACKENDS])
def test_text_file_named_mp4(videos, backend):
    message = open_error(videos["text"], backend)
    assert any(word in message for word in ("not a video", "cannot open", "Error reading"))


def test_text_file_reason_in_auto_mode(videos):
    assert "not a video file" in open_error(videos["text"])


@pytest.mark.parametrize("backend", [None, "pyav"])
def test_audio_only(videos, backend):
    assert "not a video file (no video stream; audio only?)" in open_error(videos["audio_only"], backend)


def test_truncated_with_index_at_front_opens_with_decodable_count(videos):
    with open_video(videos["trunc_faststart"]) as r:
        n = r.info.num_frames
        assert 10 <= n < 60  # header says 60; only the frames really present are counted
        got = r.get_frames([0, n // 2, n - 1])
        assert [frame_index_of(f) for f in got] == [0, n // 2, n - 1]
        with pytest.raises(VideoError, match=rf"frame index 45 out of range .*truncated: only {n} frames decodable"):
            r.get_frames([45])


def test_truncated_opencv_reports_instead_of_stopping_silently(videos):
    with open_video(videos["trunc_faststart"], "opencv") as r:
        assert r.info.num_frames == 60  # OpenCV's header count: unverified
        with pytest.raises(VideoError, match=r"cannot decode frame 50: truncated: only \d+ frames decodable"):
            r.get_frames([50])


def test_truncated_without_index(videos):
    assert "truncated/corrupt container" in open_error(videos["trunc_moov_end"])


def test_corrupt_middle_is_an_error_or_skipped_never_a_crash(tmp_path):
    src = write_video(tmp_path / "good.mp4", num_frames=60, gop=10, container_options={"movflags": "faststart"})
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    for frac in (0.5, 0.7):
        at = int(len(data) * frac)
        data[at : at + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    bad = write_bytes(tmp_path / "corrupt.mp4", bytes(data))
    with open_video(bad, "pyav") as r:
        assert r.info.num_frames == 60
        errors = 0
        for i in range(60):
            try:
                r.get_frames([i])
            except VideoError as e:  # a damaged frame is named; the reader stays usable
                assert str(e) == f"{bad}: cannot decode frame {i}: its data is corrupt (the decoder skipped it)"
                errors += 1
        assert 0 < errors < 30
        # before the damage and after the next keyframe past it, frames are exact (bad packets skipped)
        assert [frame_index_of(f) for f in r.get_frames([3, 15, 59])] == [3, 15, 59]


def test_single_frame_video(videos):
    with open_video(videos["single"]) as r:
        assert r.info.num_frames == 1 and r.info.duration_sec == pytest.approx(1 / 30)
        frames = r.get_frames([0, 0, 0, 0])  # a clip made of the only frame
        assert frames.shape == (4, 72, 96, 3) and frame_index_of(frames[3]) == 0


def test_video_shorter_than_a_clip(videos):
    with open_video(videos["short"]) as r:
        assert r.info.num_frames == 5
        with pytest.raises(VideoError, match=r"short\.mp4: frame index 5 out of range \(video has 5 frames\)"):
            r.get_frames(list(range(8)))
        clamped = [min(i, 4) for i in range(8)]  # what a sampler does for a short video
        assert [frame_index_of(f) for f in r.get_frames(clamped)] == clamped
        with pytest.raises(VideoError, match="out of range"):
            r.get_frames([-1])


def test_unreadable_file(videos, monkeypatch):
    # tests run as root, so chmod 000 would not stop reads: simulate a failed access check
    target = str(videos["h264"])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == target else real_access(p, mode, **kw))
    assert open_error(videos["h264"]).endswith(": permission denied (file is not readable)")


def test_unreadable_file_open_fails(videos, monkeypatch):
    import builtins

    real_open = builtins.open

    def deny(path, *args, **kwargs):
        if os.fspath(path) == str(videos["h264"]):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    assert open_error(videos["h264"]).endswith(": cannot read (Permission denied)")


def test_unicode_and_spaces_in_name(videos, tmp_path):
    with open_video(videos["unicode"]) as r:
        assert r.info.path == str(videos["unicode"]) and r.info.num_frames == 12
        assert frame_index_of(r.get_frames([11])[0]) == 11
    bad = write_bytes(tmp_path / "ñoño 動画 file.mp4", b"\x00junk" * 100)
    assert "ñoño 動画 file.mp4: " in open_error(bad)


def test_invalid_size(videos):
    with open_video(videos["h264"]) as r, pytest.raises(VideoError, match="invalid frame size"):
        r.get_frames([0], size=(0, 10))


# ------------------------------------------------------------------------------ isolation
def read_batch(paths: list[Path], timeout_sec: float, faults: dict[Path, str]) -> dict[Path, object]:
    """What a batch loop does: one isolated reader per file, failures recorded, the loop goes on."""
    results: dict[Path, object] = {}
    for path in paths:
        try:
            with IsolatedReader(path, timeout_sec=timeout_sec, _fault=faults.get(path)) as r:
                results[path] = [frame_index_of(f) for f in r.get_frames([1, 6])]
        except VideoError as e:
            results[path] = str(e)
    return results


def test_crash_and_hang_cost_one_file_each(videos):
    crash, hang, good, bad = videos["h264"], videos["hevc"], videos["mpeg4"], videos["text"]
    results = read_batch([crash, hang, good, bad], timeout_sec=1.5, faults={crash: "segv", hang: "hang"})
    assert results[crash] == f"{crash}: decoder crashed (signal 11, SIGSEGV)"
    assert results[hang] == f"{hang}: decoder timed out after 1.5 s"
    assert results[good] == [1, 6]
    assert str(results[bad]).startswith(f"{bad}: cannot open")


def test_crash_while_opening(videos):
    with pytest.raises(VideoError, match="decoder crashed"):
        IsolatedReader(videos["h264"], _fault="segv", _fault_at="open")


def test_isolated_reader_has_the_reader_api(videos):
    info, frames = decode_isolated(videos["vfr"], [44, 2, 2], size=(36, 48))
    assert info.num_frames == 45 and frames.shape == (3, 36, 48, 3)
    assert [frame_index_of(f) for f in frames] == [44, 2, 2]
    with IsolatedReader(videos["rotated"]) as r:
        assert r.info.rotation == 90 and r.timestamps_sec().shape == (40,)
        assert [i for i, _ in r.iter_frames([0, 5, 5, 9])] == [0, 5, 5, 9]
        with pytest.raises(VideoError, match="out of range"):
            r.get_frames([99])
        assert r.get_frames([3]).shape == (1, 96, 72, 3)  # a request error does not end the worker


def test_worker_startup_is_not_cut_by_a_short_request_timeout(videos):
    """Starting the worker (a new interpreter + imports) takes far more than 50 ms; only requests use the short timeout."""
    from uvtag.video import isolated

    isolated.shutdown_workers()  # a fresh worker, then the same one reused for a file no decoder opens
    with IsolatedReader(videos["h264"], timeout_sec=0.05) as r:
        assert r.info.num_frames == 40
    with pytest.raises(VideoError, match="cannot open"):  # a reused worker: trying every decoder (first imports) may take long too
        IsolatedReader(videos["text"], timeout_sec=0.05)


def test_workers_are_reused_across_files_and_replaced_after_a_crash(videos, monkeypatch):
    from uvtag.video import isolated

    isolated.shutdown_workers()
    with IsolatedReader(videos["h264"]) as r:
        first = r.worker_pid
    with IsolatedReader(videos["mpeg4"]) as r:  # the same process serves the next file
        assert r.worker_pid == first and [frame_index_of(f) for f in r.get_frames([1, 6])] == [1, 6]
    with pytest.raises(VideoError, match="cannot open"):
        IsolatedReader(videos["text"])  # a file that does not open leaves the worker usable
    with pytest.raises(VideoError, match="decoder crashed"):
        with IsolatedReader(videos["hevc"], _fault="segv") as r:
            assert r.worker_pid == first
            r.get_frames([0])
    with IsolatedReader(videos["h264"]) as r:  # the crashed worker is replaced
        assert r.worker_pid != first and r.get_frames([2]).shape[0] == 1
        second = r.worker_pid
    monkeypatch.setattr(isolated, "MAX_FILES_PER_WORKER", 1)
    with IsolatedReader(videos["h264"]) as r:  # the worker has served its quota: retired after this file
        assert r.worker_pid == second
    with IsolatedReader(videos["h264"]) as r:
        assert r.worker_pid != second


def test_an_abandoned_iteration_never_leaks_frames_into_the_next_file(videos):
    from uvtag.video import isolated

    isolated.shutdown_workers()
    with IsolatedReader(videos["h264"]) as r:
        frames = r.iter_frames(range(40))
        assert next(frames)[0] == 0  # stop after one frame: the worker still has frames to send
        abandoned = r.worker_pid
    with IsolatedReader(videos["vfr"]) as r:
        assert r.worker_pid != abandoned  # that worker was not reused
        assert r.info.num_frames == 45 and [frame_index_of(f) for f in r.get_frames([44, 3])] == [44, 3]


def test_a_worker_started_from_a_short_lived_thread_outlives_it(videos):
    """Workers die with the process (PR_SET_PDEATHSIG), not with the thread that first needed one."""
    from uvtag.video import isolated

    isolated.shutdown_workers()
    pids = []

    def open_one() -> None:  # as a prefetch thread does
        with IsolatedReader(videos["h264"]) as r:
            pids.append(r.worker_pid)

    thread = threading.Thread(target=open_one)
    thread.start()
    thread.join()
    with IsolatedReader(videos["mpeg4"]) as r:  # the idle worker is still alive, so it is reused
        assert r.worker_pid == pids[0] and [frame_index_of(f) for f in r.get_frames([1, 6])] == [1, 6]


# ------------------------------------------------------------------------------ through the CLI
def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def uvtag_command() -> list[str]:
    exe = Path(sys.executable).with_name("uvtag")
    assert exe.exists(), f"the uvtag console script is not installed next to {sys.executable}"
    return [str(exe)]


def batch_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("three")
    return [write_video(d / f"{name}.mp4", num_frames=20, fps=10, size=(48, 64)) for name in ("a", "b", "c")]


@pytest.mark.parametrize("stage", ["open", "decode"])
def test_classify_keeps_the_good_videos_when_a_decoder_raises_anything(tiny_checkpoint, three, monkeypatch, stage):
    a, bad, c = three
    real_open, real_frames = backends.PyAVBackend.__init__, backends.PyAVBackend.iter_frames

    def broken_open(self, path):  # decoder bugs on one file, as a fuzzer finds them
        if stage == "open" and path == str(bad):
            raise IndexError("injected")
        real_open(self, path)

    def broken_frames(self, indices, size=None):
        frames = real_frames(self, indices, size)
        for k, item in enumerate(frames):
            if k == 2 and self.path == str(bad):
                raise IndexError("injected")  # while decoding the third frame asked for
            yield item

    monkeypatch.setattr(backends.PyAVBackend, "__init__", broken_open)
    monkeypatch.setattr(backends.PyAVBackend, "iter_frames", broken_frames)
    result = invoke("classify", a, bad, c, "-m", tiny_checkpoint, "--backend", "pyav", "-f", "jsonl", "-q")
    assert result.exit_code == 3, result.stderr
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(a), str(c)]
    (line,) = result.stderr.splitlines()
    what = "cannot open" if stage == "open" else r"cannot decode frame \d+"
    assert re.fullmatch(rf"failed: {re.escape(str(bad))}: {what} \(IndexError: injected\)", line), line


def test_batch_in_process_reports_a_decoder_bug_as_the_videos_failure(tiny_checkpoint, three, monkeypatch, tmp_path):
    a, bad, c = three
    real = backends.PyAVBackend.timestamps_sec

    def broken(self):
        if self.path == str(bad):
            raise AttributeError("'NoneType' object has no attribute 'time_base'")
        return real(self)

    monkeypatch.setattr(backends.PyAVBackend, "timestamps_sec", broken)
    out = tmp_path / "labels.csv"
    result = invoke("batch", a, bad, c, "--out", out, "-m", tiny_checkpoint, "--backend", "pyav", "--no-isolate",
                    "--clip", "1", "-q")
    assert result.exit_code == 3, result.stderr
    rows = batch_rows(out)
    assert {r["path"] for r in rows if r["row_type"] == "video"} == {str(a), str(c)}
    (failure,) = [r for r in rows if r["row_type"] == "failure"]
    assert failure["error"] == (f"VideoError: {bad}: cannot read the frame timestamps "
                                "(AttributeError: 'NoneType' object has no attribute 'time_base')")


@pytest.mark.parametrize("fault, cause", [
    ("raise", "cannot decode (IndexError: list index out of range (injected))"),
    ("oom", "decoder process failed (MemoryError: injected)"),
])
def test_batch_reports_the_decode_workers_own_exception(tiny_checkpoint, three, monkeypatch, tmp_path, capfd, fault, cause):
    a, bad, c = three
    real = uvtag.tagger.IsolatedReader

    def reader(path, backend=None, timeout_sec=60.0):  # the real isolated reader; its worker raises for one file
        return real(path, backend, timeout_sec, _fault=fault if str(path) == str(bad) else None)

    monkeypatch.setattr(uvtag.tagger, "IsolatedReader", reader)
    out = tmp_path / "labels.csv"
    result = invoke("batch", a, bad, c, "--out", out, "-m", tiny_checkpoint, "--clip", "1", "-q")
    worker_err = capfd.readouterr().err  # the worker writes to this process's fd 2
    assert result.exit_code == 3, result.stderr
    rows = batch_rows(out)
    assert {r["path"] for r in rows if r["row_type"] == "video"} == {str(a), str(c)}
    (failure,) = [r for r in rows if r["row_type"] == "failure"]
    assert failure["error"] == f"VideoError: {bad}: {cause}"  # the cause, not "decoder crashed (signal 9...)"
    assert "Traceback" not in worker_err


def test_error_lines_print_brackets_as_they_are(tiny_checkpoint, three, tmp_path):
    """Decoder messages and file names may hold [text] that Rich would take for markup."""
    (tmp_path / "clips [").mkdir()
    bad = write_bytes(tmp_path / "clips [" / "x] take [bold]2.mp4", b"not a video\n" * 20)  # ".../clips [/x] take [bold]2.mp4"
    result = invoke("classify", three[0], bad, "-m", tiny_checkpoint, "-q", "-f", "jsonl")
    assert result.exit_code == 3 and f"failed: {bad}: cannot open" in result.stderr
    result = invoke("localize", bad, "-m", tiny_checkpoint, "-q")
    assert result.exit_code == 1 and f"error: {bad}: cannot open" in result.stderr


def test_decord_log_lines_stay_off_stderr(tiny_checkpoint, videos, capfd):
    """decord writes "[hh:mm:ss] .../video_reader.cc:83: ERROR opening: ..." to fd 2 when it cannot open a file."""
    result = invoke("classify", videos["text"], "-m", tiny_checkpoint, "-q")
    stderr = capfd.readouterr().err + result.stderr
    assert result.exit_code == 3 and "(tried pyav, decord, opencv)" in result.stderr  # decord did try the file
    assert "video_reader.cc" not in stderr and "ERROR opening" not in stderr, stderr


# ------------------------------------------------------------------------------ files that are not files
def test_devices_and_sockets_are_refused_in_one_line(tmp_path):
    os.symlink("/dev/null", tmp_path / "null.mp4")
    assert open_error(tmp_path / "null.mp4").endswith(": a character device, not a video file (uvtag reads regular files only)")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(tmp_path / "sock.mp4"))
        assert ": a socket, not a video file" in open_error(tmp_path / "sock.mp4")
    finally:
        server.close()


FIFO_COMMANDS = {
    "classify": ["classify", "{fifo}", "{good}", "-f", "jsonl"],
    "localize": ["localize", "{fifo}", "--window", "1"],
    "batch": ["batch", "{good}", "{fifo}", "--out", "{out}", "--clip", "1"],
    "batch --no-isolate": ["batch", "{good}", "{fifo}", "--out", "{out}", "--clip", "1", "--no-isolate"],
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
@pytest.mark.parametrize("command", list(FIFO_COMMANDS))
def test_a_named_pipe_is_refused_by_every_command(tiny_checkpoint, three, tmp_path, command):
    fifo = tmp_path / "x.mp4"
    os.mkfifo(fifo)
    out = tmp_path / "labels.csv"
    args = [a.format(fifo=fifo, good=three[0], out=out) for a in FIFO_COMMANDS[command]]
    # opening a FIFO blocks until a writer comes: a regression hangs, and the timeout turns that into
    # a failure (below the isolated decoder's 60 s open timeout, so batch cannot pass by waiting it out)
    done = subprocess.run(uvtag_command() + args + ["-m", tiny_checkpoint, "-q"], capture_output=True, text=True,
                          timeout=55, stdin=subprocess.DEVNULL)
    refusal = f"{fifo}: a named pipe (FIFO), not a video file (uvtag reads regular files only)"
    assert "Traceback" not in done.stderr, done.stderr
    if command == "localize":
        assert done.returncode == 1 and done.stderr.strip() == f"error: {refusal}"
    elif command == "classify":
        assert done.returncode == 3, done.stderr
        assert [json.loads(line)["path"] for line in done.stdout.splitlines()] == [str(three[0])]
        assert f"failed: {refusal}" in done.stderr.splitlines()
    else:
        assert done.returncode == 3, done.stderr
        rows = batch_rows(out)
        assert {r["path"] for r in rows if r["row_type"] == "video"} == {str(three[0])}
        assert [r["error"] for r in rows if r["row_type"] == "failure"] == [f"VideoError: {refusal}"]


# ------------------------------------------------------------------------------ no orphaned decoders
HANGING_BATCH = """
import sys
from pathlib import Path

import uvtag.tagger
from uvtag.cli import app
from uvtag.video.isolated import IsolatedReader

marker = Path(sys.argv[1])


class HangingReader(IsolatedReader):
    \"\"\"The real isolated reader, whose worker hangs in its first decode request (a stuck decoder).\"\"\"

    def __init__(self, path, backend=None, timeout_sec=60.0):
        super().__init__(path, backend, 600.0, _fault="hang")

    def _send(self, message):
        super()._send(message)
        if message[0] != "open":  # the worker has the request: it is hanging now, or about to
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(str(self.worker_pid))
            tmp.replace(marker)


if __name__ == "__main__":  # decode workers (spawned) import this file too
    uvtag.tagger.IsolatedReader = HangingReader
    app(sys.argv[2:], prog_name="uvtag")
"""


def _parent_of(pid: int) -> int | None:
    """The parent pid of a live (non-zombie) process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return None if state in ("Z", "X") else int(ppid)


def _children_of(pid: int) -> set[int]:
    return {int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _parent_of(int(d.name)) == pid}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_batch_leaves_no_decoder_running(tiny_checkpoint, three, tmp_path):
    driver, marker, out = tmp_path / "hanging_batch.py", tmp_path / "worker.pid", tmp_path / "labels.csv"
    driver.write_text(HANGING_BATCH)
    cmd = [sys.executable, str(driver), str(marker), "batch", str(three[0]), "--out", str(out),
           "-m", tiny_checkpoint, "--clip", "1", "-q"]
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
            time.sleep(0.05)
        assert marker.exists(), (tmp_path / "stderr.txt").read_text()
        worker = int(marker.read_text())
        assert worker in _children_of(proc.pid)  # a decode worker of this batch, busy with a request
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _parent_of(worker) is not None:
            time.sleep(0.05)
        assert _parent_of(worker) is None, "the decode worker outlived its killed batch"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if worker is not None and _parent_of(worker) is not None:
            os.kill(worker, signal.SIGKILL)  # an orphan from a regression: do not leave it behind
