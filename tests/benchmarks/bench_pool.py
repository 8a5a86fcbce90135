"""Benchmark decoder pool sizing: frames/s of N decoder processes x FFmpeg threads, and batch end to end.

Run: python tests/benchmarks/bench_pool.py [--seconds S] [--videos K] [--device cpu|cuda]
(prints numbers; not collected by pytest).

1. Raw decode: N processes (1, 2, 4, ... up to the core count) each decode the same generated
   720p H.264 file (moving noise texture, the hard case) at the resized size, as the pool's
   decoders do, with 1, 2 or FFmpeg's own thread count; aggregate frames/s, median of 3 runs.
   `uvtag.batch.pool.pool_size` is the best row of this grid.
2. End to end: `run_batch` (one process, decoding in a thread) against `run_pool` (the pool size
   of `pool_size`) over K copies of the file with motion-tiny, wall seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np


def _write(path: Path, seconds: float, size=(720, 1280), fps: int = 30) -> Path:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (size[0] + 64, size[1] + 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.height, stream.width, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            dy, dx = i % 64, (2 * i) % 64
            frame = np.ascontiguousarray(texture[dy : dy + size[0], dx : dx + size[1]])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def _decode(args) -> int:
    path, threads = args
    from uvtag.video.backends import set_decoder_threads
    from uvtag.video.reader import open_video
    from uvtag.video.transforms import resized_shape

    set_decoder_threads(threads)
    with open_video(path, "pyav") as reader:
        size = resized_shape(reader.info.height, reader.info.width, 224)
        return sum(1 for _ in reader.iter_frames(range(reader.info.num_frames), size=size))


def raw_decode(path: Path) -> None:
    cpus = os.cpu_count() or 1
    counts = sorted({1, 2, 4, 8, 16, cpus} & set(range(1, cpus + 1)))
    ctx = mp.get_context("spawn")
    print(f"raw decode, {cpus} cores, frames/s (median of 3):")
    for n in counts:
        with ctx.Pool(n) as pool:
            pool.map(_decode, [(str(path), 1)] * n)  # start-up and imports out of the timing
            row = []
            for threads in (1, 2, 0):
                rates = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    frames = sum(pool.map(_decode, [(str(path), threads)] * n))
                    rates.append(frames / (time.perf_counter() - t0))
                row.append(f"{'auto' if threads == 0 else threads} thr {statistics.median(rates):8.0f}")
        print(f"  {n:2d} processes: " + "   ".join(row))


def end_to_end(path: Path, videos: int, device: str) -> None:
    import uvtag
    from uvtag.batch.output import BatchWriter
    from uvtag.batch.pool import pool_size, run_pool
    from uvtag.batch.run import run_batch

    folder = Path(tempfile.mkdtemp())
    paths = [str(shutil.copy(path, folder / f"v{i}.mp4")) for i in range(videos)]
    tagger = uvtag.load("motion-tiny", device=device)
    decoders, threads = pool_size()
    for name, fn, kw in (("run_batch", run_batch, {}), (f"run_pool {decoders}x{threads}", run_pool, {})):
        out = folder / f"{name.split()[0]}.csv"
        t0 = time.perf_counter()
        with BatchWriter.open(out, "csv", overwrite=True) as writer:
            summary = fn(tagger, paths, writer, **kw)
        print(f"  {name}: {time.perf_counter() - t0:6.1f} s for {summary.done} videos on {device}")
    shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-e2e", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d) / "noise720.mp4", args.seconds)
        raw_decode(path)
        if not args.no_e2e:
            print(f"end to end, {args.videos} videos of {args.seconds:g} s, motion-tiny:")
            end_to_end(path, args.videos, args.device)


if __name__ == "__main__":
    main()
