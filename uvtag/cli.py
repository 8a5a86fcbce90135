"""The `uvtag` command: a thin shell over the library.

Output contract: machine formats (json, jsonl, csv, ...) go to --out FILE or, without --out, to
stdout; everything for people (tables, progress, warnings, errors) goes to stderr, so output can
be piped. Exit codes: 0 success, 1 error, 2 bad usage, 3 some videos failed, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from uvtag import __version__
from uvtag.errors import UsageError, UvtagError
from uvtag.results import Failure, VideoPrediction

EXIT_FAILED_VIDEOS = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="uvtag",
    help="Tag actions in videos with UniFormerV2 (official checkpoints, official test protocol).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False)

# ---------------------------------------------------------------------- shared options

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Zoo name (see `uvtag models`) or a checkpoint file.")]
ArchOpt = Annotated[Optional[str], typer.Option(help="Zoo name an official weights FILE belongs to (frames, views, labels).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[str, typer.Option(help="auto (fp32 on CPU, bf16/fp16 on CUDA), fp32, bf16 (CPU: only with native bf16, see `uvtag doctor`) or fp16.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Clips per forward pass (default: 2 on the CPU, 16 for small models, 8 on CUDA).")]
BackendOpt = Annotated[Optional[str], typer.Option(help="Force a video decoder: pyav, decord or opencv.")]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Where weights are downloaded (default $UVTAG_HOME or ~/.cache/uvtag).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never use the network (also UVTAG_OFFLINE=1).")]
TopOpt = Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels to report.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write results here; the format follows the extension.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No tables or progress on stderr.")]
RenderOpt = Annotated[Optional[Path], typer.Option("--render", help="Also write the video with its labels drawn on it (.mp4, H.264).")]
RenderHeightOpt = Annotated[int, typer.Option("--render-height", min=2, help="Cap the --render video's height in pixels (never upscaled).")]


def _fail(error: UvtagError) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)  # decoder logs hold [brackets]
    return typer.Exit(error.exit_code)


def _run(body: Callable[[], int | None]) -> None:
    """Run a command body; UvtagError -> one line + its exit code, Ctrl-C -> 130."""
    try:
        code = body() or 0
    except UvtagError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if code:
        raise typer.Exit(code)


def _load(model: str, arch, device, precision, batch_size, backend, cache_dir, offline, quiet, isolate=False):
    from uvtag.tagger import load

    started = time.perf_counter()
    tagger = load(model, arch=arch, device=device, precision=precision, batch_size=batch_size,
                  cache_dir=cache_dir, offline=offline or None, progress=not quiet, backend=backend,
                  isolate=isolate)
    if not quiet:
        dev = tagger.predictor.device
        err.print(f"[dim]model {tagger.name} on {dev} ({str(tagger.predictor.dtype).removeprefix('torch.')}), "
                  f"loaded in {time.perf_counter() - started:.1f} s[/dim]")
    return tagger


def _write_stdout(write: Callable[[TextIO], object]) -> None:
    """Write a machine format to stdout; a full or failing stdout is one OutputError line."""
    from uvtag.outputs.files import output_error

    try:
        write(sys.stdout)
        sys.stdout.flush()
    except OSError as e:  # ENOSPC (`> /dev/full`), EPIPE (a reader gone), EIO...
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush must not fail again
        raise output_error(Path("standard output"), e) from None


def _check_out(out: Path | None) -> None:
    if out is not None and not out.parent.exists():
        raise UsageError(f"{out}: the folder {out.parent} does not exist")


def _machine_format(out: Path | None, fmt: str | None, allowed, default: str | None) -> str | None:
    """The machine format to write, or None for the people's table only."""
    from uvtag.outputs.formats import format_from_path

    if out is not None:
        return format_from_path(out, fmt, allowed)
    if fmt is None or fmt == "table":
        return default
    return format_from_path("stdout", fmt, allowed)


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[note]}", style="dim"), console=err, disable=quiet, transient=False)


def _top_table(title: str, predictions: list[VideoPrediction]) -> Table:
    table = Table(title=title, title_justify="left")
    for col, kw in (("video", {}), ("rank", {"justify": "right"}), ("label", {}), ("score", {"justify": "right"})):
        table.add_column(col, **kw)
    for p in predictions:
        for rank, s in enumerate(p.top, 1):
            table.add_row(Path(p.path).name if rank == 1 else "", str(rank), s.label, f"{s.score:.3f}")
    return table


def _report_failures(failures: list[Failure]) -> None:
    for f in failures:
        err.print(f"[red]failed:[/red] {escape(f.error)}", soft_wrap=True)


# ---------------------------------------------------------------------- commands


@app.command()
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
    from uvtag.outputs.video import check_render_path, classification_captions, render_video
    from uvtag.outputs.formats import CLASSIFY_FORMATS, CLASSIFY_WRITERS, write_classification

    def body() -> int:
        _check_out(out)
        machine = _machine_format(out, fmt, CLASSIFY_FORMATS, None)
        if render is not None:
            if len(videos) != 1:
                raise UsageError("--render takes exactly one video")
            check_render_path(render, overwrite)
        tagger = _load(model, arch, device, precision, batch_size, backend, cache_dir, offline, quiet)
        clips, crops = (1, 1) if fast else (num_clips, num_crops)
        predictions, failures = [], []
        with _progress(quiet or len(videos) < 2) as bar:
            task = bar.add_task("classify", total=len(videos), note="")
            for result in tagger.classify_many(videos, top=top_k, num_clips=clips, num_crops=crops):
                (failures if isinstance(result, Failure) else predictions).append(result)
                bar.update(task, advance=1, note=Path(result.path).name)
        if not quiet and predictions:
            err.print(_top_table(f"{tagger.name} ({predictions[0].num_views} views)", predictions))
        if machine and out is not None:
            write_classification(predictions, out, machine, overwrite=overwrite)
        elif machine:
            _write_stdout(lambda f: CLASSIFY_WRITERS[machine]().write(predictions, f))
        if render is not None and predictions:
            render_video(videos[0], render, classification_captions(predictions[0]), max_height=render_height,
                         backend=backend, overwrite=overwrite)
        _report_failures(failures)
        return EXIT_FAILED_VIDEOS if failures else 0

    _run(body)


@app.command()
def batch(
    inputs: Annotated[list[Path], typer.Argument(help="Video files and folders (searched recursively).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv, .jsonl or .json.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="csv, jsonl or json (default: from --out).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an existing output; skip videos already in it.")] = False,
    overwrite: OverwriteOpt = False,
    clip_sec: Annotated[Optional[float], typer.Option("--clip", help="Clip length in SECONDS (default 10; 4 for Something-Something).")] = None,
    stride_sec: Annotated[Optional[float], typer.Option("--stride", help="Step between clip starts in SECONDS (default: the clip length).")] = None,
    ext: Annotated[Optional[str], typer.Option(help="Extensions to pick up in folders, e.g. 'mp4,mkv' (default: common video types).")] = None,
    isolate: Annotated[bool, typer.Option("--isolate/--no-isolate", help="Decode in child processes (reused across videos), so a crashing or hanging decoder costs that video only.")] = True,
    report: Annotated[Optional[Path], typer.Option("--report", help="Also write an HTML report (one row per video, thumbnails, links).")] = None,
    devices: Annotated[Optional[str], typer.Option("--devices", help="One worker process per device, e.g. cuda:0,cuda:1 (overrides --device).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes: N on --device (e.g. CPU), or N per --devices entry; with --ray, the most actors.")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Tag only shard i of n (0-based, e.g. 0/4): a stable split for array jobs; combine outputs with `uvtag merge`.")] = None,
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
    from uvtag.batch.run import run_batch
    from uvtag.batch.processes import ModelSpec, plan_devices, run_parallel
    from uvtag.batch.shard import parse_shard, select_shard
    from uvtag.outputs.report import check_report_path, write_report
    from uvtag.video.files import find_videos, parse_extensions
    from uvtag.batch.output import BATCH_FORMATS, BatchWriter
    from uvtag.outputs.formats import format_from_path

    def body() -> int:
        _check_out(out)
        chosen = format_from_path(out, fmt, BATCH_FORMATS)
        if report is not None:
            check_report_path(report, overwrite or resume)
        paths = find_videos(inputs, parse_extensions(ext), report_unreadable=True)
        if not paths:
            raise UsageError("no video files found in " + ", ".join(map(str, inputs)))
        paths = select_shard(paths, inputs, *parse_shard(shard)) if shard else paths
        plan = plan_devices(devices, None if ray else workers, device)
        if ray is not None and devices is not None:
            raise UsageError("--ray places actors on the cluster's devices itself; drop --devices")
        spec = ModelSpec(model, arch, precision, batch_size, backend, str(cache_dir) if cache_dir else None,
                         offline or None, isolate)
        with BatchWriter.open(out, chosen, resume=resume, overwrite=overwrite) as writer:
            if ray is None and plan is None:
                tagger = _load(model, arch, device, precision, batch_size, backend, cache_dir, offline, quiet, isolate)
            else:
                spec.fetch(progress=not quiet)  # once, before the workers load it
                if not quiet:
                    err.print(f"[dim]{len(paths)} videos on {'Ray (' + ray + ')' if ray else ', '.join(plan)}[/dim]")
            started = time.perf_counter()
            with _progress(quiet) as bar:
                task = bar.add_task("batch", total=len(paths), note="")

                def on_video(path: str, result) -> None:
                    if isinstance(result, Failure):
                        err.print(f"[yellow]skipping[/yellow] {escape(result.error)}", soft_wrap=True)
                    bar.update(task, advance=1, note=Path(path).name)

                job = dict(clip_sec=clip_sec, stride_sec=stride_sec, top=top_k, on_video=on_video)
                if ray is not None:
                    from uvtag.batch.ray import run_ray

                    summary = run_ray(spec, paths, writer, address=ray, device=device, max_actors=workers, **job)
                elif plan is not None:
                    summary = run_parallel(spec, plan, paths, writer, **job)
                else:
                    summary = run_batch(tagger, paths, writer, **job)
        if not quiet:
            wall = time.perf_counter() - started
            speed = f", {summary.video_sec / wall:.2f}x realtime" if wall > 0 and summary.video_sec else ""
            err.print(f"{summary.done} tagged, {summary.skipped} already done, {len(summary.failures)} failed "
                      f"of {summary.total} -> {out} ({wall:.1f} s{speed})")
        if report is not None:
            write_report(out, report, backend=backend, overwrite=True)
        return EXIT_FAILED_VIDEOS if summary.failures else 0

    _run(body)


@app.command()
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
    from uvtag.outputs.timeline import plot_format, save_timeline
    from uvtag.outputs.video import check_render_path, localization_captions, render_video
    from uvtag.tagger import SegmentOptions
    from uvtag.outputs.formats import LOCALIZE_FORMATS, LOCALIZE_WRITERS, write_localization

    def body() -> int:
        _check_out(out)
        machine = _machine_format(out, fmt, LOCALIZE_FORMATS, None)
        if plot is not None:
            _check_out(plot)
            plot_format(plot)
        if render is not None:
            check_render_path(render, overwrite)
        options = SegmentOptions(threshold=threshold, smooth_windows=smooth, min_duration_sec=min_duration,
                                 merge_gap_sec=merge_gap, nms_iou=None if nms_iou >= 1 else nms_iou)
        tagger = _load(model, arch, device, precision, batch_size, backend, cache_dir, offline, quiet)
        with err.status("scanning windows", spinner="dots") if not quiet else _nothing():
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
            write_localization(result, out, machine, overwrite=overwrite)
        elif machine:
            _write_stdout(lambda f: LOCALIZE_WRITERS[machine]().write(result, f))
        if plot is not None:
            save_timeline(result, plot, overwrite=overwrite)
        if render is not None:
            render_video(video, render, localization_captions(result), max_height=render_height,
                         backend=backend, overwrite=overwrite)
        return 0

    _run(body)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@app.command()
def models(
    cache_dir: CacheOpt = None,
    all_layouts: Annotated[bool, typer.Option("--all", help="Also list MMAction2's re-hosted files.")] = False,
) -> None:
    """The model zoo: dataset, backbone, frames, views, top-1, compute, and whether it is on disk."""
    from uvtag.model.download import local_file
    from uvtag.model.zoo import available_models, get_checkpoint

    table = Table(title="UniFormerV2 checkpoints (official test protocol)", title_justify="left")
    for col in ("name", "dataset", "backbone", "frames", "views", "top-1", "GMAC/view", "on disk"):
        table.add_column(col, justify="right" if col in ("frames", "views", "top-1", "GMAC/view") else "left")
    shown = available_models() if all_layouts else available_models("official") + available_models("uvtag")
    for name in shown:
        c = get_checkpoint(name)
        top1 = f"{c.top1:.1f}" if c.top1 is not None else "-"
        on_disk = "yes" if local_file(c, cache_dir) else ""
        table.add_row(name, c.dataset, c.backbone, str(c.num_frames), f"{c.num_clips}x{c.num_crops}", top1,
                      f"{c.gmac_per_view:.0f}", on_disk)
    Console(highlight=False, width=200).print(table)


@app.command()
def download(
    names: Annotated[list[str], typer.Argument(help="Zoo names.", show_default=False)],
    cache_dir: CacheOpt = None,
) -> None:
    """Download checkpoints into the cache (resumable, checksum-verified)."""
    from uvtag.model.download import resolve
    from uvtag.model.zoo import get_checkpoint

    def body() -> int:
        for name in names:
            path = resolve(get_checkpoint(name), cache_dir, offline=False, progress=True)
            print(path)
        return 0

    _run(body)


@app.command()
def doctor(cache_dir: CacheOpt = None) -> None:
    """Check the installation: torch, the CPU and its kernels, CUDA, video decoders, cache folder."""
    from uvtag.doctor import run_checks

    rows = run_checks(cache_dir)
    table = Table(title=f"uvtag {__version__}", title_justify="left")
    for col in ("check", "status", "detail"):
        table.add_column(col)
    for name, ok, detail in rows:
        table.add_row(name, "[green]ok[/green]" if ok else "[red]missing[/red]", detail)
    Console(highlight=False, width=160).print(table)
    if not all(ok for name, ok, _ in rows if not name.startswith("optional")):
        raise typer.Exit(1)


def version_callback(value: bool) -> None:
    if value:
        print(f"uvtag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Tag actions in videos with UniFormerV2."""
from uvtag import cli_eval as _cli_eval  # noqa: E402,F401  (registers plot, eval)
from uvtag import cli_train as _cli_train  # noqa: E402,F401  (registers train, demo)
from uvtag import cli_scale as _cli_scale  # noqa: E402,F401  (registers merge)
from uvtag import cli_bench as _cli_bench  # noqa: E402,F401  (registers bench)
