"""Bad input gets a one-line VideoError naming the file and the reason; crashes and hangs cost one file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from videogen import frame_index_of, videos, write_bytes, write_video  # noqa: F401  (videos is a fixture)

from uvtag.errors import VideoError
from uvtag.video.isolated import IsolatedReader, decode_isolated
from uvtag.video.reader import BACKENDS, open_video


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
