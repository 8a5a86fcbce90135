"""Search latency on a large synthetic tag index: prints the median time of each kind of query.

    python tests/benchmarks/bench_search.py                      # 1,000,000 clips, 400 labels, top-5
    python tests/benchmarks/bench_search.py --labels 9 --db /tmp/motion.sqlite

The database is built once (a synthetic archive: videos of `--clips-per-video` clips, each video a
run of actions a few clips long; per clip the action's label at rank 1 and four other labels
below it) with the real schema, in one transaction with executemany, and reused when `--db`
exists. Each query kind runs over several labels, each `--repeats` times after one warm-up; the
time is that of `uvtag.index.query.search` on an open connection (the CLI adds its start-up).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from uvtag.index.query import search
from uvtag.index.schema import connect_reader, connect_writer

TOP = 5


def build(path: Path, num_clips: int, per_video: int, num_labels: int, seed: int = 0) -> float:
    """Write the synthetic index; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    num_videos = num_clips // per_video
    conn = connect_writer(path, durable=False)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO labels (class_index, label) VALUES (?, ?)", ((i, f"label {i:03d}") for i in range(num_labels)))
    conn.execute("INSERT INTO meta (key, value) VALUES ('model', 'synthetic')")
    conn.executemany(
        "INSERT INTO videos (id, path, status, model, duration_sec, fps, num_frames, width, height, num_views) "
        "VALUES (?, ?, 'ok', 'synthetic', ?, 30.0, ?, 640, 360, ?)",
        ((v + 1, f"archive/{v // 1000:03d}/video_{v:06d}.mp4", per_video * 10.0, per_video * 300, per_video)
         for v in range(num_videos)))
    clip = np.arange(num_clips)
    conn.executemany("INSERT INTO clips (id, video_id, start_sec, end_sec) VALUES (?, ?, ?, ?)",
                     zip((clip + 1).tolist(), (clip // per_video + 1).tolist(), ((clip % per_video) * 10.0).tolist(),
                         ((clip % per_video) * 10.0 + 10.0).tolist()))
    # the action of each clip: runs of 1-12 clips with one label each (a new run at random cuts)
    starts = rng.random(num_clips) < 1 / 6.5
    starts[::per_video] = True
    action = rng.integers(0, num_labels, starts.sum())[np.cumsum(starts) - 1]
    step = (num_labels - 1) // (TOP - 1)  # distinct offsets 1..num_labels-1: no label twice in a clip
    offsets = 1 + rng.integers(0, step, (num_clips, TOP - 1)) + step * np.arange(TOP - 1)
    others = (action[:, None] + offsets) % num_labels
    labels = np.concatenate([action[:, None], others], axis=1)
    first = rng.uniform(0.35, 0.99, num_clips)
    rest = np.sort(rng.uniform(0.0, 1.0, (num_clips, TOP - 1)), axis=1)[:, ::-1] * (1 - first)[:, None]
    scores = np.concatenate([first[:, None], rest], axis=1)
    names = [f"label {i:03d}" for i in range(num_labels)]
    conn.executemany("INSERT INTO clip_labels (clip_id, video_id, rank, label, class_index, score) VALUES (?, ?, ?, ?, ?, ?)",
                     ((c + 1, c // per_video + 1, r + 1, names[k], k, s)
                      for c, (row, srow) in enumerate(zip(labels.tolist(), scores.tolist()))
                      for r, (k, s) in enumerate(zip(row, srow))))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


def time_query(conn, labels: list[str], repeats: int, **kw) -> tuple[float, int, int]:
    """(median seconds, matched videos, ranges returned) of one query."""
    search(conn, labels, **kw)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = search(conn, labels, **kw)
        times.append(time.perf_counter() - t)
    return statistics.median(times), result.num_videos, sum(len(v.ranges) for v in result.videos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/uvtag-bench-search.sqlite"))
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--clips-per-video", type=int, default=100)
    parser.add_argument("--labels", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=7, help="labels per query kind")
    args = parser.parse_args()
    if not args.db.exists():
        took = build(args.db, args.clips, args.clips_per_video, args.labels)
        print(f"built {args.db} in {took:.1f} s ({args.db.stat().st_size / 2**20:.0f} MiB)")
    conn = connect_reader(args.db)
    clips, rows = (conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("clips", "clip_labels"))
    num_labels = conn.execute("SELECT count(*) FROM labels").fetchone()[0]
    print(f"{clips:,} clips, {rows:,} clip labels, {num_labels} labels")
    names = [f"label {i:03d}" for i in np.linspace(0, num_labels - 1, args.queries).astype(int)]
    kinds = {
        "1 label, --min-score 0.6": lambda n: ([n], dict(min_score=0.6)),
        "1 label, --min-score 0.3": lambda n: ([n], dict(min_score=0.3)),
        "1 label, --min-score 0 (every top-5 row)": lambda n: ([n], dict(min_score=0.0)),
        "3 labels --any, --min-score 0.3": lambda n: ([n, *names[:2]] if n not in names[:2] else names[:3], dict(min_score=0.3)),
        "2 labels --all, --min-score 0": lambda n: ([n, names[0]] if n != names[0] else names[:2], dict(min_score=0.0, mode="all")),
    }
    print(f"{'query':44s} {'median ms':>10s} {'max ms':>8s} {'videos':>8s}")
    for kind, make in kinds.items():
        medians, matched = [], []
        for name in names:
            labels, kw = make(name)
            seconds, videos, _ = time_query(conn, labels, args.repeats, limit=20, **kw)
            medians.append(seconds)
            matched.append(videos)
        print(f"{kind:44s} {1000 * statistics.median(medians):10.1f} {1000 * max(medians):8.1f} {int(statistics.median(matched)):8d}")
    conn.close()


if __name__ == "__main__":
    main()
