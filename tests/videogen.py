"""Tiny generated test videos whose frames carry their own index.

Each frame is a 3 x 4 grid of cells (`make_frame`): the first 8 cells are black or white for the
bits of `index % 256` (most significant first, row-major), then one pure red, one pure green and
one pure blue cell (to catch BGR/RGB swaps) and one mid-grey cell. The cells are large and
saturated, so the index survives every lossy codec used here; `frame_index_of` reads it back.

All writers use PyAV only (no ffmpeg CLI): the `av` wheel bundles every encoder used here
(libx264, libx265, libvpx-vp9, libsvtav1, mpeg4, mjpeg, aac).
"""

from __future__ import annotations

import functools
import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np
import pytest

GRID_ROWS, GRID_COLS = 3, 4
NUM_BITS = 8
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def make_frame(index: int, width: int = 96, height: int = 72) -> np.ndarray:
    """Frame `index` as uint8 [height, width, 3] RGB (see module docstring for the layout)."""
    frame = np.zeros((height, width, 3), np.uint8)
    colours = [(255, 255, 255) if (index >> (NUM_BITS - 1 - b)) & 1 else (0, 0, 0) for b in range(NUM_BITS)]
    colours += [RED, GREEN, BLUE, (128, 128, 128)]
    for cell, colour in enumerate(colours):
        y0, y1, x0, x1 = _cell_box(cell, height, width)
        frame[y0:y1, x0:x1] = colour
    return frame


def _cell_box(cell: int, height: int, width: int) -> tuple[int, int, int, int]:
    row, col = divmod(cell, GRID_COLS)
    ch, cw = height // GRID_ROWS, width // GRID_COLS
    return row * ch, (row + 1) * ch, col * cw, (col + 1) * cw


def _cell_mean(frame: np.ndarray, cell: int) -> np.ndarray:
    """Mean RGB of the central half of a cell (edges blur under compression and scaling)."""
    y0, y1, x0, x1 = _cell_box(cell, frame.shape[0], frame.shape[1])
    dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
    return frame[y0 + dy : y1 - dy, x0 + dx : x1 - dx].reshape(-1, 3).mean(axis=0)


def frame_index_of(frame: np.ndarray) -> int:
    """Read back the index (mod 256) drawn by `make_frame` from a decoded RGB frame [H, W, 3]."""
    bits = [int(_cell_mean(frame, b).mean() > 127) for b in range(NUM_BITS)]
    return int("".join(map(str, bits)), 2)


def is_rgb_order(frame: np.ndarray) -> bool:
    """True if the colour cells decode as red, green, blue in that order (not BGR)."""
    means = [_cell_mean(frame, NUM_BITS + k) for k in range(3)]
    return all(int(np.argmax(m)) == k and m[k] > 150 for k, m in enumerate(means))


# codec name -> (container suffix, encoder options, pixel format)
CODECS: dict[str, tuple[str, dict[str, str], str]] = {
    "h264": (".mp4", {"preset": "ultrafast"}, "yuv420p"),
    "hevc": (".mp4", {"preset": "ultrafast", "x265-params": "log-level=error"}, "yuv420p"),
    "vp9": (".webm", {"deadline": "realtime", "cpu-used": "8"}, "yuv420p"),
    "av1": (".mp4", {"preset": "8", "crf": "10"}, "yuv420p"),  # preset 12 / crf 35 blurs the bit cells
    "mpeg4": (".avi", {"qscale": "2"}, "yuv420p"),
    "mjpeg": (".avi", {}, "yuvj420p"),
}
_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}


def write_video(
    path: str | Path,
    num_frames: int = 40,
    codec: str = "h264",
    fps: int = 30,
    size: tuple[int, int] = (72, 96),
    pts_ms: Sequence[int] | None = None,
    with_audio: bool = False,
    gop: int | None = None,
    container_options: dict[str, str] | None = None,
    encoder_options: dict[str, str] | None = None,
) -> Path:
    """Write `num_frames` indexed frames; `pts_ms` gives explicit presentation times (VFR).

    Args:
        size: (height, width) of the stored frames.
        gop: keyframe interval in frames (small values make seeking paths run in tiny files).
        encoder_options: added to (or replacing) the codec's default encoder options.
    """
    path = Path(path)
    _suffix, options, pix_fmt = CODECS[codec]
    options = {**options, **(encoder_options or {})}
    if gop is not None:
        options["g"] = str(gop)
        if codec == "hevc":
            options["x265-params"] += f":keyint={gop}:min-keyint={gop}"
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(_ENCODERS.get(codec, codec), rate=fps, options=options)
        stream.height, stream.width = size
        stream.pix_fmt = pix_fmt
        if pts_ms is not None:  # VFR needs the codec time base too (without it the encoder fails to open)
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=16000) if with_audio else None
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(make_frame(i, size[1], size[0]), format="rgb24")
            if pts_ms is not None:
                frame.pts = int(pts_ms[i])
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if audio is not None:
            _write_tone(out, audio, seconds=num_frames / fps)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    for start in range(0, samples.size, 1024):
        chunk = samples[start : start + 1024][None, :]
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def write_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An AAC-only file (.m4a): a container that opens but has no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        _write_tone(out, out.add_stream("aac", rate=16000), seconds)
    return path


def write_rotated(src: str | Path, dst: str | Path, degrees: int = 90) -> Path:
    """Remux `src` into `dst` with a display-matrix rotation (phone video), no re-encode."""
    dst = Path(dst)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        out_stream.set_display_rotation(degrees)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    return dst


def write_truncated(src: str | Path, dst: str | Path, keep: float = 0.5) -> Path:
    """Copy the first `keep` fraction of the bytes of `src` (an interrupted download)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """A file with arbitrary content (zero bytes, text named .mp4, ...)."""
    Path(path).write_bytes(data)
    return Path(path)


def vfr_pts_ms(num_frames: int) -> list[int]:
    """Irregular presentation times in ms: a 30 fps run, a 10 fps run, a 60 fps run, repeated."""
    steps = [33, 33, 33, 100, 100, 17, 17, 17, 17]
    pts, t = [], 0
    for i in range(num_frames):
        pts.append(t)
        t += steps[i % len(steps)]
    return pts


def make_video_set(folder: str | Path) -> dict[str, Path]:
    """Write every test video used by the reader tests into `folder`; returns name -> path."""
    d = Path(folder)
    os.makedirs(d, exist_ok=True)
    v: dict[str, Path] = {}
    for codec, (suffix, _o, _p) in CODECS.items():
        v[codec] = write_video(d / f"{codec}{suffix}", num_frames=40, codec=codec, gop=12)
    v["h264_audio"] = write_video(d / "h264_audio.mp4", num_frames=30, with_audio=True, gop=10)
    v["vfr"] = write_video(d / "vfr.mp4", num_frames=45, pts_ms=vfr_pts_ms(45), gop=10)
    v["rotated"] = write_rotated(v["h264"], d / "rotated90.mp4", 90)
    v["single"] = write_video(d / "single.mp4", num_frames=1)
    v["short"] = write_video(d / "short.mp4", num_frames=5)
    faststart = write_video(d / "faststart.mp4", num_frames=60, gop=10, container_options={"movflags": "faststart"})
    v["trunc_faststart"] = write_truncated(faststart, d / "trunc_faststart.mp4", 0.5)
    v["trunc_moov_end"] = write_truncated(v["h264"], d / "trunc_moov_end.mp4", 0.5)
    v["audio_only"] = write_audio_only(d / "audio_only.m4a")
    v["empty"] = write_bytes(d / "empty.mp4", b"")
    v["text"] = write_bytes(d / "text.mp4", b"this is not a video\n" * 50)
    v["unicode"] = write_video(d / "vidéo 日本 with spaces.mp4", num_frames=12)
    return v


@functools.lru_cache(maxsize=None)
def cached_video_set(folder: str) -> dict[str, Path]:
    """`make_video_set` once per process and folder (test modules share one set)."""
    return make_video_set(folder)


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Session fixture: name -> path of every generated test video (import it into a test module)."""
    return cached_video_set(str(tmp_path_factory.getbasetemp() / "uvtag_videos"))
