"""`uvtag features`: video embeddings per window, one .npy per video, for downstream models."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from uvtag.cli.common import (
    EXIT_FAILED_VIDEOS,
    ArchOpt,
    BackendOpt,
    BatchOpt,
    CacheOpt,
    DeviceOpt,
    ModelOpt,
    OfflineOpt,
    PrecisionOpt,
    QuietOpt,
    err,
    load_tagger,
    model_options,
    progress_bar,
    run,
)
from uvtag.errors import UsageError
from uvtag.results import Failure


def features(
    inputs: Annotated[list[Path], typer.Argument(help="Video files and folders (searched recursively).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: one .npy per video and manifest.jsonl.")],
    window: Annotated[Optional[float], typer.Option("--window", "-w", help="Sliding windows of this many SECONDS (stride default: half the window).")] = None,
    stride: Annotated[Optional[float], typer.Option("--stride", "-s", help="Step between window starts in SECONDS.")] = None,
    clip: Annotated[Optional[float], typer.Option("--clip", help="Consecutive clips of this many SECONDS, as batch (the default: 10; 4 for Something-Something).")] = None,
    pool: Annotated[str, typer.Option("--pool", help="none, or mean: also <name>.mean.npy, the mean of the rows.")] = "none",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an output folder; skip videos already in its manifest.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start a new manifest in an output folder that has one.")] = False,
    ext: Annotated[Optional[str], typer.Option(help="Extensions to pick up in folders, e.g. 'mp4,mkv' (default: common video types).")] = None,
    isolate: Annotated[bool, typer.Option("--isolate/--no-isolate", help="Decode in child processes (reused across videos), so a crashing or hanging decoder costs that video only.")] = True,
    devices: Annotated[Optional[str], typer.Option("--devices", help="One worker process per device, e.g. cuda:0,cuda:1 (overrides --device).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes: N on --device (e.g. CPU), or N per --devices entry.")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="Run on Ray: local (this machine), auto (the cluster this node joined) or ray://HOST:10001; --workers caps the actors. Needs pip install 'uvtag\\[ray]'.")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Extract only shard i of n (0-based, e.g. 0/4), as batch does: shards may write into one --out folder at once, each with its own manifest.")] = None,
    model: ModelOpt = "k400_k710_uniformerv2_b16_8x224",
    arch: ArchOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = None,
    backend: BackendOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Video features for downstream models: the embedding the classifier reads, per window.

    One float32 [T, C] .npy per video (a row per window, in time order), named by the video's path
    under its input folder, and manifest.jsonl: per video, every row's start/end second, fps,
    feat_stride and num_frames in frames, model, C and settings. Kill-safe like batch:
    [bold]--resume[/bold] completes a killed run; unreadable files are failure lines (exit code 3).

    [bold]Examples[/bold]

      uvtag features ./videos --out feats/                      # 10 s clips, back to back
      uvtag features ./videos --out feats/ --window 2 --stride 0.5
      uvtag features ./videos --out feats/ --resume --pool mean
      uvtag features ./videos --out feats/ --shard $SLURM_ARRAY_TASK_ID/8
    """
    from uvtag.batch.processes import plan_devices
    from uvtag.batch.shard import parse_shard, select_shard
    from uvtag.features import (FeatureStore, feature_names, run_features, run_features_parallel, run_features_ray,
                                window_settings)
    from uvtag.features.plan import check_pool
    from uvtag.video.files import find_videos, parse_extensions

    def body() -> int:
        check_pool(pool)
        window_settings(window, stride, clip, 1.0)  # bad numbers fail before the model loads
        paths = find_videos(inputs, parse_extensions(ext), report_unreadable=True)
        if not paths:
            raise UsageError("no video files found in " + ", ".join(map(str, inputs)))
        names = feature_names(paths, inputs, pool == "mean")  # of every video: the same in each shard
        part = parse_shard(shard) if shard else None
        paths = select_shard(paths, inputs, *part) if part else paths
        if ray is not None and devices is not None:
            raise UsageError("--ray places actors on the cluster's devices itself; drop --devices")
        plan = plan_devices(devices, None if ray else workers, device)
        options = model_options(model, arch, device, precision, batch_size, backend, cache_dir, offline, isolate)
        tagger, settings = _load(options, plan is not None or ray is not None, window, stride, clip, pool, quiet)
        with FeatureStore.open(out, names, settings, resume=resume, overwrite=overwrite, shard=part) as store:
            started = time.perf_counter()
            with progress_bar(quiet) as bar:
                task = bar.add_task("features", total=len(paths), note="")

                def on_video(path: str, result) -> None:
                    if isinstance(result, Failure):
                        err.print(f"[yellow]skipping[/yellow] {escape(result.error)}", soft_wrap=True)
                    bar.update(task, advance=1, note=Path(path).name)

                if ray is not None:
                    if not quiet:
                        err.print(f"[dim]{len(paths)} videos on Ray ({ray})[/dim]")
                    summary = run_features_ray(options, paths, store, address=ray, device=device, max_actors=workers,
                                               on_video=on_video)
                elif plan is None:
                    summary = run_features(tagger, paths, store, on_video=on_video)
                else:
                    if not quiet:
                        err.print(f"[dim]{len(paths)} videos on {', '.join(plan)}[/dim]")
                    summary = run_features_parallel(options, plan, paths, store, on_video=on_video)
        if not quiet:
            wall = time.perf_counter() - started
            speed = f", {summary.video_sec / wall:.2f}x realtime" if wall > 0 and summary.video_sec else ""
            err.print(f"{summary.done} extracted, {summary.skipped} already done, {len(summary.failures)} failed "
                      f"of {summary.total} -> {out} ({settings.mode} {settings.window_sec:g} s, stride "
                      f"{settings.stride_sec:g} s, C={settings.embed_dim}; {wall:.1f} s{speed})")
        return EXIT_FAILED_VIDEOS if summary.failures else 0

    run(body)


def _load(options, workers: bool, window: float | None, stride: float | None, clip: float | None, pool: str,
          quiet: bool):
    """(the tagger, or None when workers load their own; the run's FeatureSettings)."""
    from uvtag.features import FeatureSettings, window_settings

    # with workers, a CPU copy gives the settings (name, C, frames, default clip) and is dropped
    tagger = load_tagger(dataclasses.replace(options, device="cpu", precision="auto") if workers else options, quiet)
    mode, window_sec, stride_sec = window_settings(window, stride, clip, tagger.default_clip_sec())
    settings = FeatureSettings(tagger.name, tagger.embed_dim, tagger.checkpoint.num_frames, mode, window_sec,
                               stride_sec, pool)
    return (None if workers else tagger), settings
