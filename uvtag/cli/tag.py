"""`uvtag classify`, `uvtag batch`, `uvtag localize`: tag videos with a model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from uvtag.cli.common import (
    EXIT_FAILED_VIDEOS,
    ArchOpt,
    BackendOpt,
    BatchOpt,
    CacheOpt,
    DeviceOpt,
    ModelOpt,
    OfflineOpt,
    OutOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    RenderHeightOpt,
    RenderOpt,
    TopOpt,
    check_out,
    err,
    load_tagger,
    machine_format,
    model_options,
    nothing,
    progress_bar,
    report_failures,
    run,
    top_table,
    write_stdout,
)
from uvtag.errors import UsageError
from uvtag.results import Failure


def classify(
    videos: Annotated[list[Path], typer.Argument(help="Video files.", show_default=False)],
    model: ModelOpt = "k400_k710_uniformerv2_b16_8x224",
    arch: ArchOpt = None,
    top_k: TopOpt = 5,
    num_clips: Annotated[Optional[int], typer.Option(min=1, help="Temporal clips (default: the checkpoint's official protocol).")] = None,
    num_crops: Annotated[Optional[int], typer.Option(min=1, max=3, help="Spatial crops: 3 = left/centre/right, 1 = centre.")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="One view (1 clip x centre crop) instead of the official views.")] = False,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table, json, jsonl or csv.")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    render: RenderOpt = None,
    render_height: RenderHeightOpt = 720,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = None,
    backend: BackendOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Top-k actions of each video, under the checkpoint's official test views.

    [bold]Examples[/bold]

      uvtag classify video.mp4
      uvtag classify a.mp4 b.mkv --top-k 3 --format json > tags.json
      uvtag classify clip.mp4 -m sthv2_uniformerv2_b16_16x224 --fast
    """
    from uvtag.outputs.formats import CLASSIFY_FORMATS, write_result
    from uvtag.outputs.video import check_render_path, classification_captions, render_video

    def body() -> int:
        check_out(out)
        machine = machine_format(out, fmt, CLASSIFY_FORMATS, None)
        if render is not None:
            if len(videos) != 1:
                raise UsageError("--render takes exactly one video")
            check_render_path(render, overwrite)
        tagger = load_tagger(model_options(model, arch, device, precision, batch_size, backend, cache_dir, offline), quiet)
        clips, crops = (1, 1) if fast else (num_clips, num_crops)
        predictions, failures = [], []
        with progress_bar(quiet or len(videos) < 2) as bar:
            task = bar.add_task("classify", total=len(videos), note="")
            for result in tagger.classify_many(videos, top=top_k, num_clips=clips, num_crops=crops):
                (failures if isinstance(result, Failure) else predictions).append(result)
                bar.update(task, advance=1, note=Path(result.path).name)
        if not quiet and predictions:
            err.print(top_table(f"{tagger.name} ({predictions[0].num_views} views)", predictions))
        if machine and out is not None:
            write_result(predictions, out, machine, overwrite=overwrite)
        elif machine:
            write_stdout(lambda f: write_result(predictions, f, machine))
        if render is not None and predictions:
            render_video(videos[0], render, classification_captions(predictions[0]), max_height=render_height,
                         backend=backend, overwrite=overwrite)
        report_failures(failures)
        return EXIT_FAILED_VIDEOS if failures else 0

    run(body)


def batch(
    inputs: Annotated[list[Path], typer.Argument(help="Video files and folders (searched recursively).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv, .jsonl, .json, or .sqlite/.db (a tag index for `uvtag search`).")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="csv, jsonl, json or sqlite (default: from --out).")] = None,
    embed: Annotated[bool, typer.Option("--embed", help="Also store each video's embedding (the tag index only), for `uvtag similar`.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an existing output; skip videos already in it.")] = False,
    overwrite: OverwriteOpt = False,
    clip_sec: Annotated[Optional[float], typer.Option("--clip", help="Clip length in SECONDS (default 10; 4 for Something-Something).")] = None,
    stride_sec: Annotated[Optional[float], typer.Option("--stride", help="Step between clip starts in SECONDS (default: the clip length).")] = None,
    ext: Annotated[Optional[str], typer.Option(help="Extensions to pick up in folders, e.g. 'mp4,mkv' (default: common video types).")] = None,
    isolate: Annotated[bool, typer.Option("--isolate/--no-isolate", help="Decode in child processes (reused across videos), so a crashing or hanging decoder costs that video only.")] = True,
    report: Annotated[Optional[Path], typer.Option("--report", help="Also write an HTML report: per video a timeline of its clips' labels, top labels, timestamped thumbnails; run details, failures, filters (one self-contained file; its folder is created).")] = None,
    devices: Annotated[Optional[str], typer.Option("--devices", help="One worker process per device, e.g. cuda:0,cuda:1 (overrides --device).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes: N on --device (e.g. CPU), or N per --devices entry; with --ray, the most actors.")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Tag only shard i of n (0-based, e.g. 0/4): a stable split for array jobs; combine outputs with `uvtag merge`.")] = None,
    decoders: Annotated[Optional[int], typer.Option("--decoders", min=0, help="Decode in N processes feeding one model through shared memory, batches filled across videos (0: one per core but one).")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="Run on Ray: local (this machine), auto (the cluster this node joined) or ray://HOST:10001. Needs pip install 'uvtag\\[ray]'.")] = None,
    model: ModelOpt = "k400_k710_uniformerv2_b16_8x224",
    arch: ArchOpt = None,
    top_k: TopOpt = 5,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = None,
    backend: BackendOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Tag every video under folders: per-clip labels with times, plus a summary per video.

    Each finished video is on disk before the next starts; a killed run keeps every finished
    video, and [bold]--resume[/bold] completes it. Unreadable files are recorded as failure rows
    and the run goes on (exit code 3 at the end if any failed).

    [bold]Examples[/bold]

      uvtag batch ./videos --out labels.csv
      uvtag batch ./videos --out labels.csv --resume
      uvtag batch a.mp4 ./more --out labels.jsonl --clip 5 --top-k 3
      uvtag batch ./videos --out part-0.jsonl --shard 0/4 --devices cuda:0,cuda:1
      uvtag batch ./videos --out labels.jsonl --ray auto
    """
    from uvtag.batch.output import BATCH_FORMATS, BatchWriter
    from uvtag.batch.processes import plan_devices, run_parallel
    from uvtag.batch.run import run_batch
    from uvtag.batch.shard import parse_shard, select_shard
    from uvtag.outputs.formats import format_from_path
    from uvtag.outputs.report import check_report_path, write_report
    from uvtag.outputs.report_page import RunDetails
    from uvtag.video.files import find_videos, parse_extensions

    def body() -> int:
        check_out(out)
        chosen = format_from_path(out, fmt, BATCH_FORMATS)
        if embed and chosen != "sqlite":
            raise UsageError("--embed stores embeddings in a tag index: give --out NAME.sqlite")
        if report is not None:
            check_report_path(report, overwrite or resume)
        paths = find_videos(inputs, parse_extensions(ext), report_unreadable=True)
        if not paths:
            raise UsageError("no video files found in " + ", ".join(map(str, inputs)))
        paths = select_shard(paths, inputs, *parse_shard(shard)) if shard else paths
        plan = plan_devices(devices, None if ray else workers, device)
        if ray is not None and devices is not None:
            raise UsageError("--ray places actors on the cluster's devices itself; drop --devices")
        if decoders is not None and (ray is not None or plan is not None or embed):
            raise UsageError("--decoders feeds one model in this process: drop --ray, --devices, --workers and --embed")
        options = model_options(model, arch, device, precision, batch_size, backend, cache_dir, offline, isolate)
        with BatchWriter.open(out, chosen, resume=resume, overwrite=overwrite) as writer:
            if ray is None and plan is None:
                tagger = load_tagger(options, quiet)
            else:
                options.fetch(progress=not quiet)  # once, before the workers load it
                if not quiet:
                    err.print(f"[dim]{len(paths)} videos on {'Ray (' + ray + ')' if ray else ', '.join(plan)}[/dim]")
            started = time.perf_counter()
            with progress_bar(quiet) as bar:
                task = bar.add_task("batch", total=len(paths), note="")

                def on_video(path: str, result) -> None:
                    if isinstance(result, Failure):
                        err.print(f"[yellow]skipping[/yellow] {escape(result.error)}", soft_wrap=True)
                    bar.update(task, advance=1, note=Path(path).name)

                job = dict(clip_sec=clip_sec, stride_sec=stride_sec, top=top_k, embed=embed, on_video=on_video)
                if ray is not None:
                    from uvtag.batch.ray import run_ray

                    summary = run_ray(options, paths, writer, address=ray, device=device, max_actors=workers, **job)
                elif plan is not None:
                    summary = run_parallel(options, plan, paths, writer, **job)
                elif decoders is not None:
                    from uvtag.batch.pool import run_pool

                    del job["embed"]
                    summary = run_pool(tagger, paths, writer, decoders=decoders or None, **job)
                else:
                    summary = run_batch(tagger, paths, writer, **job)
        if not quiet:
            wall = time.perf_counter() - started
            speed = f", {summary.video_sec / wall:.2f}x realtime" if wall > 0 and summary.video_sec else ""
            err.print(f"{summary.done} tagged, {summary.skipped} already done, {len(summary.failures)} failed "
                      f"of {summary.total} -> {out} ({wall:.1f} s{speed})")
        if report is not None:
            details = RunDetails(model=model, clip_sec=clip_sec, stride_sec=stride_sec, top_k=top_k,
                                 wall_sec=time.perf_counter() - started, tagged=summary.done, skipped=summary.skipped,
                                 failed=len(summary.failures), total=summary.total)
            write_report(out, report, details=details, backend=backend, overwrite=True)
        return EXIT_FAILED_VIDEOS if summary.failures else 0

    run(body)


def localize(
    video: Annotated[Path, typer.Argument(help="An untrimmed video.", show_default=False)],
    window: Annotated[float, typer.Option("--window", "-w", help="Window length in SECONDS.")] = 8.0,
    stride: Annotated[Optional[float], typer.Option("--stride", "-s", help="Step between windows in SECONDS (default: half the window).")] = None,
    threshold: Annotated[float, typer.Option(help="A label is active in a window when its score is at least this.")] = 0.3,
    smooth: Annotated[int, typer.Option(min=1, help="Moving average over this many windows (odd) before thresholding.")] = 1,
    min_duration: Annotated[float, typer.Option(help="Drop segments shorter than this many SECONDS.")] = 0.0,
    merge_gap: Annotated[float, typer.Option(help="Merge same-label segments separated by at most this many SECONDS.")] = 0.0,
    nms_iou: Annotated[float, typer.Option(help="Per-label temporal NMS IoU threshold (1 disables).")] = 0.5,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table, json, csv, activitynet, srt or vtt.")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw a timeline of scores and segments (.png or .svg).")] = None,
    render: RenderOpt = None,
    render_height: RenderHeightOpt = 720,
    model: ModelOpt = "k400_k710_uniformerv2_b16_8x224",
    arch: ArchOpt = None,
    top_k: TopOpt = 5,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = None,
    backend: BackendOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Temporal segments (label, start, end, score) from sliding windows over a long video.

    The video is decoded once; memory is bounded by the window, not the video.

    [bold]Examples[/bold]

      uvtag localize long.mp4 --window 8
      uvtag localize long.mp4 --window 8 --stride 2 --out long.srt
      uvtag localize long.mp4 --out results.json --format activitynet
    """
    from uvtag.outputs.formats import LOCALIZE_FORMATS, write_result
    from uvtag.outputs.timeline import plot_format, save_timeline
    from uvtag.outputs.video import check_render_path, localization_captions, render_video
    from uvtag.tagger import SegmentOptions

    def body() -> int:
        check_out(out)
        machine = machine_format(out, fmt, LOCALIZE_FORMATS, None)
        if plot is not None:
            check_out(plot)
            plot_format(plot)
        if render is not None:
            check_render_path(render, overwrite)
        options = SegmentOptions(threshold=threshold, smooth_windows=smooth, min_duration_sec=min_duration,
                                 merge_gap_sec=merge_gap, nms_iou=None if nms_iou >= 1 else nms_iou)
        tagger = load_tagger(model_options(model, arch, device, precision, batch_size, backend, cache_dir, offline), quiet)
        with err.status("scanning windows", spinner="dots") if not quiet else nothing():
            result = tagger.localize(video, window_sec=window, stride_sec=stride, top=top_k, options=options)
        if not quiet:
            table = Table(title=f"{video.name}: {len(result.segments)} segments from {len(result.windows)} windows",
                          title_justify="left")
            for col in ("start_sec", "end_sec", "label", "score"):
                table.add_column(col, justify="left" if col == "label" else "right")
            for s in result.segments:
                table.add_row(f"{s.start_sec:.2f}", f"{s.end_sec:.2f}", s.label, f"{s.score:.3f}")
            err.print(table)
        if machine and out is not None:
            write_result(result, out, machine, overwrite=overwrite)
        elif machine:
            write_stdout(lambda f: write_result(result, f, machine))
        if plot is not None:
            save_timeline(result, plot, overwrite=overwrite)
        if render is not None:
            render_video(video, render, localization_captions(result), max_height=render_height,
                         backend=backend, overwrite=overwrite)
        return 0

    run(body)

