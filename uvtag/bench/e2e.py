"""End-to-end rows: classify, batch and localize through the real Tagger, each vs model-only."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from uvtag.bench.measure import Log, median_seconds, peak_rss_mib, reset_peak_rss
from uvtag.bench.models import BenchModel
from uvtag.errors import UvtagError
from uvtag.infer.predict import Predictor
from uvtag.model.zoo import Checkpoint
from uvtag.results import Failure


def _model_only(predictor: Predictor, checkpoint: Checkpoint, num_clips: int, runs: int = 1) -> float:
    """Median seconds the predictor needs for `num_clips` random clips of the checkpoint's input shape."""
    s = checkpoint.input_size
    clips = torch.randn(num_clips, 3, checkpoint.num_frames, s, s)
    predictor.logits(clips[: min(num_clips, predictor.batch_size)])  # warm
    return median_seconds(lambda: predictor.logits(clips), runs, 0)[0]


def _e2e_row(task: str, tagger, video_sec: float, frames: int, clips: int, wall: float, model_s: float,
             ffmpeg_fps: float | None = None) -> dict:
    row = {
        "task": task, "arch": tagger.name, "precision": {torch.float32: "fp32", torch.bfloat16: "bf16",
                                                         torch.float16: "fp16"}[tagger.predictor.dtype],
        "batch": tagger.predictor.batch_size, "video_sec": round(video_sec, 2), "wall_s": round(wall, 3),
        "x_realtime": round(video_sec / wall, 2), "clips": clips, "clips_per_s": round(clips / wall, 3),
        "model_only_clips_per_s": round(clips / model_s, 3), "fraction_of_model_only": round(model_s / wall, 3),
        "source_frames_per_s": round(frames / wall, 1), "peak_rss_mib": round(peak_rss_mib()),
    }
    if ffmpeg_fps:
        row["ffmpeg_cli_fps"] = ffmpeg_fps
        row["fraction_of_ffmpeg"] = round(frames / wall / ffmpeg_fps, 3)
    if tagger.predictor.device.type == "cuda":
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(tagger.predictor.device) / 2**20)
    return row


def _reset_peaks(device: torch.device) -> None:
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_end_to_end(bm: BenchModel, videos: dict, *, device: torch.device, precision: str, batch: int | None,
                     window_sec: float, stride_sec: float, tasks: Sequence[str] = ("classify", "batch", "localize"),
                     ffmpeg_fps: float | None = None, model_runs: int = 1, log: Log = lambda s: None) -> list[dict]:
    """classify / batch / localize through the real `Tagger` and batch runner, each vs model-only
    (the same number of clips through the same predictor, median of `model_runs`)."""
    from uvtag.batch.run import run_batch
    from uvtag.tagger import Tagger
    from uvtag.video.reader import open_video
    from uvtag.infer.windows import clip_spans, window_spans
    from uvtag.batch.output import BatchWriter

    tagger = Tagger(bm.fresh_model(), bm.checkpoint, bm.labels, device=str(device), precision=precision,
                    batch_size=batch)
    rows = []
    with open_video(videos["base"]) as r:
        base_info = r.info
    with open_video(videos["long"]) as r:
        long_info = r.info
    if "classify" in tasks:  # as `uvtag classify` over several files: the next video decodes while this one runs
        paths = [str(p) for p in videos["clips"]]
        views = bm.checkpoint.num_clips * bm.checkpoint.num_crops * len(paths)
        model_s = _model_only(tagger.predictor, bm.checkpoint, views, model_runs)
        tagger.classify(videos["base"])  # warm the decoder and allocator once
        _reset_peaks(device)
        t0 = time.perf_counter()
        results = list(tagger.classify_many(paths))
        wall = time.perf_counter() - t0
        failed = [r for r in results if isinstance(r, Failure)]
        if failed:
            raise UvtagError(f"bench classify: {failed[0].error}")
        rows.append(_e2e_row("classify", tagger, base_info.duration_sec * len(paths), base_info.num_frames * len(paths),
                             views, wall, model_s))
        log(f"  e2e classify {bm.name}: {rows[-1]['x_realtime']}x realtime")
    if "batch" in tasks:
        spans_per = len(clip_spans(base_info.duration_sec, tagger.default_clip_sec()))
        n_clips = spans_per * len(videos["clips"])
        model_s = _model_only(tagger.predictor, bm.checkpoint, n_clips, model_runs)
        for isolate in (True, False):  # the CLI decodes in (reused) child processes by default
            tagger.isolate = isolate
            with tempfile.TemporaryDirectory() as tmp:
                _reset_peaks(device)
                t0 = time.perf_counter()
                with BatchWriter.open(Path(tmp) / "out.jsonl", "jsonl") as writer:
                    summary = run_batch(tagger, [str(p) for p in videos["clips"]], writer)
                wall = time.perf_counter() - t0
            if summary.failures:
                raise UvtagError(f"bench batch: {summary.failures[0].error}")
            rows.append(_e2e_row("batch" if isolate else "batch --no-isolate", tagger,
                                 base_info.duration_sec * len(videos["clips"]),
                                 base_info.num_frames * len(videos["clips"]), n_clips, wall, model_s))
            log(f"  e2e {rows[-1]['task']} {bm.name}: {rows[-1]['x_realtime']}x realtime")
        tagger.isolate = False
    if "localize" in tasks:
        n_clips = len(window_spans(long_info.duration_sec, window_sec, stride_sec))
        model_s = _model_only(tagger.predictor, bm.checkpoint, n_clips, model_runs)
        _reset_peaks(device)
        t0 = time.perf_counter()
        tagger.localize(videos["long"], window_sec=window_sec, stride_sec=stride_sec)
        wall = time.perf_counter() - t0
        rows.append(_e2e_row("localize", tagger, long_info.duration_sec, long_info.num_frames, n_clips, wall, model_s,
                             ffmpeg_fps))
        rows[-1]["window"] = f"{window_sec:g}s/{stride_sec:g}s"
        log(f"  e2e localize {bm.name}: {rows[-1]['x_realtime']}x realtime")
    return rows
