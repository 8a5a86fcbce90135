"""`features` next to `batch` for the same windows: clips/s, interleaved in one process (a script, not a test).

    python tests/benchmarks/bench_features.py [--model motion-tiny] [--videos 6] [--window 1 --stride 0.5]
        [--runs 5] [--no-isolate] [--dir /tmp/uvtag_bench_features]

Generates (once, cached in --dir) untrimmed synthetic motion videos (`uvtag.synth`), loads the
model once, then runs, alternately and in alternating order, the batch runner into a CSV file
(`BatchWriter`, as `uvtag batch --clip WINDOW --stride STRIDE`) and the features runner into a
folder (`FeatureStore`, as `uvtag features --window WINDOW --stride STRIDE`) over the same videos
and windows, and prints each run's clips/s and the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing
import torch  # noqa: E402

import uvtag  # noqa: E402
from uvtag.batch.output import BatchWriter  # noqa: E402
from uvtag.batch.run import run_batch  # noqa: E402
from uvtag.features import FeatureSettings, FeatureStore, feature_names, run_features  # noqa: E402
from uvtag.infer.windows import clip_spans  # noqa: E402
from uvtag.model.kernels import cpu_info  # noqa: E402
from uvtag.synth import clip_rng, random_untrimmed, write_video  # noqa: E402
from uvtag.video.reader import open_video  # noqa: E402


def make_videos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"untrimmed_{i:02d}.mp4"
        if not path.exists():
            write_video(random_untrimmed(clip_rng("test", 900, i), 3), path, "h264")
        paths.append(path)
    return paths


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="motion-tiny")
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--stride", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "uvtag_bench_features"))
    args = ap.parse_args()
    videos = make_videos(Path(args.dir), args.videos)
    clips = 0
    for v in videos:
        with open_video(v) as r:
            clips += len(clip_spans(r.info.duration_sec, args.window, args.stride))
    tagger = uvtag.load(args.model, device=args.device, isolate=args.isolate)
    print(f"{args.model} on {tagger.predictor.device}, batch {tagger.predictor.batch_size}, "
          f"isolate={args.isolate}; {cpu_info().summary()}, {torch.get_num_threads()} torch threads")
    print(f"{len(videos)} videos, {clips} windows of {args.window:g} s every {args.stride:g} s")
    settings = FeatureSettings(tagger.name, tagger.embed_dim, tagger.checkpoint.num_frames, "window",
                               args.window, args.stride)
    names = feature_names(videos, [args.dir])
    work = Path(tempfile.mkdtemp(prefix="bench_features_"))

    def batch() -> None:
        with BatchWriter.open(work / "labels.csv", "csv", overwrite=True) as writer:
            run_batch(tagger, videos, writer, clip_sec=args.window, stride_sec=args.stride)

    def features() -> None:
        with FeatureStore.open(work / "feats", names, settings, overwrite=True) as store:
            run_features(tagger, videos, store)

    batch(), features()  # warm: decoder workers, kernels, page cache
    rates: dict[str, list[float]] = {"batch": [], "features": []}
    for run in range(args.runs):
        order = [("batch", batch), ("features", features)]
        for name, fn in order if run % 2 == 0 else order[::-1]:
            rates[name].append(clips / timed(fn))
        print(f"  run {run + 1}: batch {rates['batch'][-1]:7.1f} clips/s   features {rates['features'][-1]:7.1f} clips/s")
    b, f = statistics.median(rates["batch"]), statistics.median(rates["features"])
    print(f"median of {args.runs}: batch {b:.1f} clips/s, features {f:.1f} clips/s (features / batch = {f / b:.3f}); "
          f"range batch {min(rates['batch']):.1f}-{max(rates['batch']):.1f}, "
          f"features {min(rates['features']):.1f}-{max(rates['features']):.1f}")


if __name__ == "__main__":
    main()
