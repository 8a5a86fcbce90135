"""VideoReader on generated videos: right frames for every backend and codec, VFR, rotation, fall-back."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from videogen import frame_index_of, is_rgb_order, videos, vfr_pts_ms, write_video  # noqa: F401  (videos is a fixture)

from uvtag.errors import VideoError
from uvtag.video import backends, reader
from uvtag.video.reader import BACKENDS, open_video

CODECS = ["h264", "hevc", "vp9", "av1", "mpeg4", "mjpeg", "vfr", "h264_audio"]


def cv2_decodes(path) -> bool:
    """Whether the installed OpenCV wheel's own FFmpeg decodes a frame of `path` (AV1: 5.0 no, 5.1 yes)."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        return bool(cap.read()[0])
    finally:
        cap.release()


def unsupported(videos, backend: str, codec: str) -> bool:
    if codec != "av1":
        return False
    if backend == "decord":
        return True  # decord 0.6.0 has no AV1 decoder (and is unmaintained: no later release)
    return backend == "opencv" and not cv2_decodes(videos["av1"])


def unrotated_indices(frames: np.ndarray, rotation: int) -> list[int]:
    return [frame_index_of(np.rot90(f, -(rotation // 90))) for f in frames]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", CODECS)
def test_frames_at_indices_match_content(videos, backend, codec):
    if unsupported(videos, backend, codec):
        with pytest.raises(VideoError, match="AV1|first frame"):
            open_video(videos[codec], backend)
        return
    with open_video(videos[codec], backend) as r:
        n = r.info.num_frames
        indices = [n - 1, 0, 17, 3, 17, 1, n // 2]  # any order, with a duplicate
        frames = r.get_frames(indices)
        assert frames.dtype == np.uint8 and frames.shape == (len(indices), 72, 96, 3)
        assert unrotated_indices(frames, 0) == indices
        assert all(is_rgb_order(f) for f in frames)
        small = r.get_frames(indices, size=(36, 48))  # 48 px wide triggers decord's row-padding workaround
        assert small.shape == (len(indices), 36, 48, 3)
        assert unrotated_indices(small, 0) == indices
        assert r.info.backend == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_info_of_h264(videos, backend):
    with open_video(videos["h264"], backend) as r:
        info = r.info
    assert (info.num_frames, info.width, info.height, info.rotation) == (40, 96, 72, 0)
    assert info.fps == pytest.approx(30.0, rel=1e-6)
    assert info.duration_sec == pytest.approx(40 / 30, abs=1e-3)
    assert info.path == str(videos["h264"])


def test_pyav_reports_codec_and_webm_frame_count(videos):
    # stream.frames is 0 in WebM: the count comes from demuxed packets
    with open_video(videos["vp9"], "pyav") as r:
        assert (r.info.codec, r.info.num_frames) == ("vp9", 40)
        assert r.info.fps == pytest.approx(30.0, rel=1e-6)
    with open_video(videos["av1"]) as r:
        assert (r.info.codec, r.info.backend) == ("av1", "pyav")


@pytest.mark.parametrize("backend", BACKENDS)
def test_vfr_timestamps_are_presentation_times(videos, backend):
    expected = np.asarray(vfr_pts_ms(45)) / 1000.0
    with open_video(videos["vfr"], backend) as r:
        ts = r.timestamps_sec()
        assert ts.shape == (45,)
        np.testing.assert_allclose(ts, expected, atol=1.5e-3)
        # frames where the rate changes are the ones index->time via fps would get wrong
        indices = [4, 5, 6, 30, 44]
        assert unrotated_indices(r.get_frames(indices), 0) == indices
        if backend == "pyav":
            assert r.info.duration_sec == pytest.approx(expected[-1] + 0.033, abs=2e-3)
            assert r.info.fps == pytest.approx(45 / r.info.duration_sec)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_rotation_is_applied(videos, backend):
    with open_video(videos["rotated"], backend) as r:
        assert (r.info.width, r.info.height, r.info.rotation) == (72, 96, 90)
        frames = r.get_frames([5, 30])
        assert frames.shape == (2, 96, 72, 3)
        assert unrotated_indices(frames, 90) == [5, 30]
        small = r.get_frames([7], size=(48, 36))
        assert small.shape == (1, 48, 36, 3) and unrotated_indices(small, 90) == [7]


def test_rotation_direction_matches_between_backends(videos):
    # OpenCV rotates itself (like ffmpeg autorotate); PyAV frames are rotated by us: must be identical
    with open_video(videos["rotated"], "pyav") as a, open_video(videos["rotated"], "opencv") as b:
        fa, fb = a.get_frames([5, 30]), b.get_frames([5, 30])
    assert np.abs(fa.astype(int) - fb.astype(int)).mean() < 2.0
    with open_video(videos["h264"], "pyav") as plain:
        upright = plain.get_frames([5])[0]
    assert np.abs(np.rot90(fa[0], -1).astype(int) - upright.astype(int)).mean() < 2.0


def test_decord_refuses_rotated_video_and_auto_falls_back(videos, monkeypatch):
    # decord 0.6.0 returns row-padded garbage for rotated video: refuse it, so auto mode moves on
    with pytest.raises(VideoError, match="rotated"):
        open_video(videos["rotated"], "decord")
    monkeypatch.setattr(reader, "is_installed", lambda module: module != "av")
    with open_video(videos["rotated"]) as r:
        assert r.info.backend == "opencv" and r.info.rotation == 90


def test_sparse_seeks_equal_sequential_decode(videos):
    # gop=12: the targets below force seeks and forward decoding; frames must be bit-identical
    with open_video(videos["h264"], "pyav") as r:
        seq = {i: f for i, f in r.iter_frames(range(40))}
        for order in ([39, 13, 25, 0], [12, 11, 24, 36, 35]):
            got = r.get_frames(order)
            for i, f in zip(order, got):
                np.testing.assert_array_equal(f, seq[i])


def test_unwanted_non_reference_frames_are_skipped_bit_exactly(tmp_path):
    # x264 "medium" with B-frames and no B-pyramid: every B-frame is a non-reference frame
    path = write_video(tmp_path / "bframes.mp4", num_frames=60, gop=30,
                       encoder_options={"preset": "medium", "x264-params": "bframes=3:b-pyramid=none:b-adapt=0"})
    with open_video(path, "pyav") as r:
        full = dict(r.iter_frames(range(60)))
        everything = r._impl.decoded
        targets = [3, 10, 11, 25, 40, 58]
        sparse = list(r.iter_frames(targets, size=None))
        skipping = r._impl.decoded - everything
        again = r.get_frames([58, 3])  # a fresh pass, seeking back: the decoder decodes everything it needs again
    assert everything >= 60
    assert [i for i, _ in sparse] == targets
    for i, frame in sparse:
        np.testing.assert_array_equal(frame, full[i])  # same pixels as a full decode
        assert frame_index_of(frame) == i
    assert [frame_index_of(f) for f in again] == [58, 3]
    assert skipping < 45, skipping  # B-frames between the targets were not decoded (a full pass decodes 60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_iter_frames_sliding_windows(videos, backend):
    windows = [range(s, s + 8) for s in range(0, 33, 4)]  # overlapping windows, stride 4
    needed = sorted({i for w in windows for i in w})
    with open_video(videos["hevc"], backend) as r:
        got = [(i, frame_index_of(f)) for i, f in r.iter_frames(needed, size=(36, 64))]
    assert [i for i, _ in got] == needed  # each needed frame exactly once, ascending
    assert all(i == j for i, j in got)


def test_iter_frames_is_lazy_and_repeats_duplicates(videos):
    with open_video(videos["h264"]) as r:
        stream = r.iter_frames(itertools.count(0, 3))  # endless: only works if consumed lazily
        first = [next(stream)[0] for _ in range(3)]
        stream.close()
        assert first == [0, 3, 6]
        dup = [(i, frame_index_of(f)) for i, f in r.iter_frames([2, 2, 5])]
        assert dup == [(2, 2), (2, 2), (5, 5)]
        with pytest.raises(VideoError, match="ascending"):
            list(r.iter_frames([5, 2]))


def test_fallback_when_backend_fails_mid_file(videos, monkeypatch):
    original = backends.PyAVBackend.iter_frames

    def failing(self, indices, size=None):
        for k, item in enumerate(original(self, indices, size)):
            if k == 2:
                raise backends.DecodeFailure("injected failure")
            yield item

    monkeypatch.setattr(backends.PyAVBackend, "iter_frames", failing)
    with open_video(videos["h264"]) as r:
        indices = [1, 4, 9, 20, 33]
        assert unrotated_indices(r.get_frames(indices), 0) == indices
        assert r.info.backend == "decord"
    with pytest.raises(VideoError, match="injected failure"):  # forced backend: no fall-back
        open_video(videos["h264"], "pyav").get_frames([1, 4, 9])


def test_missing_backends_are_skipped(videos, monkeypatch):
    monkeypatch.setattr(reader, "is_installed", lambda module: module == "cv2")
    with open_video(videos["h264"]) as r:
        assert r.info.backend == "opencv"
        assert unrotated_indices(r.get_frames([3, 8]), 0) == [3, 8]
    with pytest.raises(VideoError, match="not installed"):
        open_video(videos["h264"], "pyav")
    monkeypatch.setattr(reader, "is_installed", lambda module: module in ("decord", "cv2"))
    with pytest.raises(VideoError, match=r"text.mp4: .*\(tried decord, opencv\)$"):  # neither reads text
        open_video(videos["text"])
    if cv2_decodes(videos["av1"]):  # decord lacks AV1: automatic mode falls back to OpenCV
        with open_video(videos["av1"]) as r:
            assert r.info.backend == "opencv"
            assert unrotated_indices(r.get_frames([2, 7]), 0) == [2, 7]
    else:
        with pytest.raises(VideoError, match=r"AV1.*\(tried decord, opencv\)"):
            open_video(videos["av1"])


def test_unknown_backend_name(videos):
    with pytest.raises(VideoError, match="unknown video backend 'ffmpeg'"):
        open_video(videos["h264"], "ffmpeg")


def test_decord_is_imported_after_torch():
    code = (
        "import sys; from uvtag.video.backends import import_decord; d = import_decord();"
        "m = list(sys.modules); print(m.index('torch') < m.index('decord'));"
        "import torch; print(d.VideoReader is not None and torch.ones(2).sum().item())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "2.0"]


def _fail_at_third_frame(monkeypatch, exc: BaseException) -> None:
    original = backends.PyAVBackend.iter_frames

    def failing(self, indices, size=None):
        for k, item in enumerate(original(self, indices, size)):
            if k == 2:
                raise exc
            yield item

    monkeypatch.setattr(backends.PyAVBackend, "iter_frames", failing)


def test_any_decoder_exception_is_a_video_error_naming_the_frame_or_a_fall_back(videos, monkeypatch):
    _fail_at_third_frame(monkeypatch, IndexError("list index out of range"))
    with open_video(videos["h264"]) as r:  # automatic: the next backend takes over
        assert unrotated_indices(r.get_frames([1, 4, 9, 20]), 0) == [1, 4, 9, 20]
        assert r.info.backend == "decord"
    path = videos["h264"]
    with pytest.raises(VideoError) as info:
        open_video(path, "pyav").get_frames([1, 4, 9])
    assert str(info.value) == f"{path}: cannot decode frame 9 (IndexError: list index out of range)"


def test_a_decoders_memory_error_is_the_files_but_the_hosts_passes_through(videos, monkeypatch):
    import av

    _fail_at_third_frame(monkeypatch, av.error.MemoryError(12, "Cannot allocate memory"))
    with pytest.raises(VideoError, match=r"cannot decode frame 9 \(av\.MemoryError: \[Errno 12\] Cannot allocate memory"):
        open_video(videos["h264"], "pyav").get_frames([1, 4, 9])
    monkeypatch.undo()
    _fail_at_third_frame(monkeypatch, MemoryError())  # this process is out of memory: not the file's fault
    with pytest.raises(MemoryError) as info:
        open_video(videos["h264"], "pyav").get_frames([1, 4, 9])
    assert not isinstance(info.value, VideoError) and type(info.value) is MemoryError


def test_decord_log_lines_are_dropped_and_other_stderr_output_kept(capfd):
    with backends.decord_log_silenced():
        os.write(2, b"[04:11:21] /github/workspace/src/video/video_reader.cc:83: ERROR opening: x.mp4, Invalid data\n")
        os.write(2, b"another thread's line\n")
    assert capfd.readouterr().err == "another thread's line\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_name_that_is_not_utf8_opens_in_every_backend(videos, backend, tmp_path):
    # decord and OpenCV segfault when handed such a str; they are given /proc/self/fd/N instead
    name = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4"))
    with open(videos["h264"], "rb") as src, open(name, "wb") as dst:
        dst.write(src.read())
    before = sorted(os.listdir("/proc/self/fd"))
    with open_video(name, backend) as r:
        assert r.info.path == name and r.info.backend == backend
        assert unrotated_indices(r.get_frames([5, 1, 30]), 0) == [5, 1, 30]
    garbage = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"broken\xff.mp4"))
    with open(garbage, "wb") as f:
        f.write(b"this is not a video\n" * 50)
    with pytest.raises(VideoError) as caught:
        open_video(garbage, backend)
    assert "/proc/self" not in str(caught.value) and str(caught.value).startswith(garbage + ": ")
    assert sorted(os.listdir("/proc/self/fd")) == before  # no descriptor left open
