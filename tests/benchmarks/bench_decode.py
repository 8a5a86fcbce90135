"""Decode throughput of uvtag's reader next to the ffmpeg CLI ceiling (a script, not a test).

    python tests/benchmarks/bench_decode.py [--dir /tmp/uvtag_bench] [--long-min 30] [--backends pyav,decord]

Generates (once, cached in --dir; `uvtag.bench` helpers) a 60 s 720p H.264 file (x264 veryfast, keyint 250)
and a long file made by remuxing it --long-min times (no re-encode), then prints
frames/s for: the ffmpeg CLI (`ffmpeg -threads 2 -i f -f null -`), full decode, sparse 8-frame clip
sampling, and the sliding-window pattern (8 frames per 2 s window, stride 1 s, converted at 224 short
side). Finally it streams the long file with the sliding-window pattern in a fresh process and reports
that process's peak RSS (VmHWM; resource.getrusage's ru_maxrss survives exec on Linux).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing
from uvtag.bench import ffmpeg_decode_fps, make_video, peak_rss_mib, repeat_video, window_frame_indices  # noqa: E402
from uvtag.video.reader import open_video  # noqa: E402

WINDOW_SEC, STRIDE_SEC, FRAMES_PER_WINDOW = 2.0, 1.0, 8
SIZE_224 = (224, 398)  # 720p scaled to 224 short side, aspect kept


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_file(path: Path, backend: str) -> None:
    with open_video(path, backend) as r:
        n, fps = r.info.num_frames, r.info.fps
        t_full, _ = timed(lambda: sum(1 for _ in r.iter_frames(range(n))))
        t_full224, _ = timed(lambda: sum(1 for _ in r.iter_frames(range(n), size=SIZE_224)))
        needed = window_frame_indices(n, fps, WINDOW_SEC, STRIDE_SEC, FRAMES_PER_WINDOW)
        t_win, _ = timed(lambda: sum(1 for _ in r.iter_frames(needed, size=SIZE_224)))
    clip_ms = []
    for k in range(3):  # TSN-like 8-frame clips at segment centres, including the open
        idx = [int((i + 0.5) * n / 8) for i in range(8)]
        t, _ = timed(lambda: open_video(path, backend).get_frames(idx, size=SIZE_224))
        clip_ms.append(t * 1000)
    print(f"  [{backend}] full decode (RGB full size)      : {n / t_full:7.0f} frames/s")
    print(f"  [{backend}] full decode (RGB at 224)         : {n / t_full224:7.0f} frames/s")
    print(
        f"  [{backend}] sliding window 8/2s stride 1s @224: {n / t_win:7.0f} source frames/s "
        f"({len(needed) / t_win:.0f} output frames/s, {len(needed)} of {n} frames converted)"
    )
    print(f"  [{backend}] sparse 8-frame clip (open + seek) : {min(clip_ms):7.0f} ms/clip = {8000 / min(clip_ms):.0f} frames/s")


def stream_long(path: str) -> None:
    """Child-process stage: stream the long file with the window pattern, report time and peak RSS."""
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    with open_video(path) as r:
        t_open = time.perf_counter() - t0
        needed = window_frame_indices(r.info.num_frames, r.info.fps, WINDOW_SEC, STRIDE_SEC, FRAMES_PER_WINDOW)
        count = sum(1 for _ in r.iter_frames(needed, size=SIZE_224))
        n = r.info.num_frames
    elapsed = time.perf_counter() - t0
    rss = peak_rss_mib()
    print(f"  long file: {n} frames ({n / r.info.fps / 60:.1f} min), open (demux index) {t_open:.2f} s")
    print(f"  long file: sliding window {n / elapsed:.0f} source frames/s, {count} frames yielded, {elapsed:.1f} s")
    print(f"  long file: peak RSS {rss:.0f} MiB (after imports {rss0:.0f} MiB, growth {rss - rss0:.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/uvtag_bench")
    ap.add_argument("--long-min", type=int, default=30)
    ap.add_argument("--backends", default="pyav,decord")
    ap.add_argument("--stream-long", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stream_long:
        return stream_long(args.stream_long)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    short, long = d / "h264_720p_60s.mp4", d / f"h264_720p_{args.long_min}min.mp4"
    if not short.exists():
        t, _ = timed(lambda: make_video(short, 60))
        print(f"generated {short} in {t:.1f} s")
    if not long.exists():
        t, _ = timed(lambda: repeat_video(short, long, args.long_min))
        print(f"generated {long} ({long.stat().st_size >> 20} MiB) in {t:.1f} s")
    with open_video(short) as r:
        n = r.info.num_frames
    print(f"{short.name}: {n} frames, 1280x720, 2 cores")
    ceiling = ffmpeg_decode_fps(short, threads=2)
    print(f"  ffmpeg CLI -threads 2 -f null (ceiling) : {ceiling:7.0f} frames/s" if ceiling else "  ffmpeg CLI: not installed")
    for backend in args.backends.split(","):
        bench_file(short, backend)
    subprocess.run([sys.executable, __file__, "--stream-long", str(long)], check=True)


if __name__ == "__main__":
    main()
