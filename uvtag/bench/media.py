"""Benchmark videos (generated once, cached) and decode rates next to the ffmpeg CLI's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from uvtag.bench.measure import median_seconds



def make_video(path: str | Path, seconds: float, *, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """Write a moving-texture H.264 file (x264 veryfast, keyframe every 250 frames) with PyAV."""
    import av

    path = Path(path)
    rng = np.random.default_rng(1)
    tile = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(tile, 8, axis=0), 8, axis=1)[:height, :width]
    tmp = path.with_name(path.name + ".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": "250"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(round(seconds * fps))):
            frame = np.roll(texture, (2 * i, 3 * i), axis=(0, 1))
            frame[: height // 4, : width // 6] = (5 * i) % 256  # a changing patch
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    tmp.replace(path)
    return path


def repeat_video(src: str | Path, dst: str | Path, times: int) -> Path:
    """Concatenate `times` copies of src by remuxing its packets (no re-encoding)."""
    import av

    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".part.mp4")
    with av.open(str(src)) as probe:
        span = int(probe.streams.video[0].duration)
    with av.open(str(tmp), "w") as out:
        target = None
        for k in range(times):
            with av.open(str(src)) as inp:
                stream = inp.streams.video[0]
                if target is None:
                    target = out.add_stream_from_template(stream)
                for packet in inp.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.pts += k * span
                    packet.dts += k * span
                    packet.stream = target
                    out.mux(packet)
    tmp.replace(dst)
    return dst


def bench_videos(folder: str | Path, long_sec: float, clip_sec: float, num_clips: int, height: int = 720) -> dict:
    """Generate (once; cached by name) a base clip, a long file and a folder of clips."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    width = (height * 16 // 9) // 2 * 2
    base = d / f"base_{height}p_{clip_sec:g}s.mp4"
    if not base.exists():
        make_video(base, clip_sec, width=width, height=height)
    repeats = max(1, int(round(long_sec / clip_sec)))
    long = d / f"long_{height}p_{repeats * clip_sec:g}s.mp4"
    if not long.exists():
        repeat_video(base, long, repeats)
    clips_dir = d / f"clips_{height}p_{clip_sec:g}s"
    clips_dir.mkdir(exist_ok=True)
    clips = []
    for i in range(num_clips):
        c = clips_dir / f"clip_{i:03d}.mp4"
        if not c.exists():
            shutil.copyfile(base, c)
        clips.append(c)
    return {"base": base, "long": long, "clips": clips}


# ---------------------------------------------------------------------- decode


def ffmpeg_decode_fps(path: str | Path, threads: int | None = None, runs: int = 2) -> float | None:
    """Frames/s of `ffmpeg -threads N -i path -f null -` (best of runs after one warm-up); None without ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    from uvtag.video.reader import open_video

    with open_video(path) as r:
        n = r.info.num_frames
    cmd = [exe, "-v", "error", "-nostdin", "-threads", str(threads or os.cpu_count() or 1), "-i", str(path), "-f", "null", "-"]
    subprocess.run(cmd, check=True, capture_output=True)
    best = min(median_seconds(lambda: subprocess.run(cmd, check=True, capture_output=True), 1, 0)[0] for _ in range(runs))
    return round(n / best, 1)


def window_frame_indices(num_frames: int, fps: float, window_sec: float, stride_sec: float, frames: int) -> list[int]:
    """Sorted union of the frames of all sliding windows (`frames` spread uniformly per window)."""
    win, stride = max(1, int(round(window_sec * fps))), max(1, int(round(stride_sec * fps)))
    needed: set[int] = set()
    for start in range(0, max(1, num_frames - win + 1), stride):
        needed.update(int(start + (k * win) // frames) for k in range(frames))
    return sorted(i for i in needed if i < num_frames)


def decode_rates(path: str | Path, *, short_side: int = 224, window_sec: float = 2.0, stride_sec: float = 1.0,
                 frames: int = 8, runs: int = 1) -> dict:
    """uvtag reader decode rates on one file next to the ffmpeg CLI's (source frames per second)."""
    from uvtag.video.reader import open_video
    from uvtag.video.transforms import resized_shape

    out: dict = {"file": Path(path).name, "ffmpeg_cli_fps": ffmpeg_decode_fps(path)}
    with open_video(path) as r:
        n, fps = r.info.num_frames, r.info.fps
        size = resized_shape(r.info.height, r.info.width, short_side)
        out.update(frames=n, width=r.info.width, height=r.info.height)
        t_full, _ = median_seconds(lambda: sum(1 for _ in r.iter_frames(range(n))), runs, 0)
        needed = window_frame_indices(n, fps, window_sec, stride_sec, frames)
        t_win, _ = median_seconds(lambda: sum(1 for _ in r.iter_frames(needed, size=size)), runs, 0)
    sparse = [int((k + 0.5) * n / frames) for k in range(frames)]

    def sparse_clip() -> None:
        with open_video(path) as r2:
            r2.get_frames(sparse, size=size)

    t_sparse, _ = median_seconds(sparse_clip, max(3, runs), 0)
    out.update(
        full_decode_fps=round(n / t_full, 1),
        sliding_window_fps=round(n / t_win, 1),  # source frames per second of wall time
        sliding_window_frames_converted=len(needed),
        sparse_clip_ms=round(t_sparse * 1000, 1),
        sparse_frames_per_s=round(frames / t_sparse, 1),
        pattern=f"{frames} frames per {window_sec:g} s window, stride {stride_sec:g} s, {size[0]}x{size[1]}",
    )
    return out
