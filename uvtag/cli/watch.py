"""`uvtag watch`: tag a live stream while it plays."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from uvtag.cli.common import (
    EXIT_INTERRUPTED,
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
    TopOpt,
    check_out,
    err,
    load_tagger,
    machine_format,
    model_options,
    nothing,
    run,
)


def watch(
    source: Annotated[str, typer.Argument(help="A live source: rtsp://, rtmp://, http(s)://, udp:// ... URL, /dev/videoN, '-' for standard input, or a file (--follow while it grows).", show_default=False)],
    window: Annotated[float, typer.Option("--window", "-w", help="Window length in SECONDS.")] = 8.0,
    stride: Annotated[Optional[float], typer.Option("--stride", "-s", help="Step between windows in SECONDS (default: half the window).")] = None,
    threshold: Annotated[float, typer.Option(help="A label is active in a window when its score is at least this.")] = 0.3,
    smooth: Annotated[int, typer.Option(min=1, help="Moving average over this many windows (odd) before thresholding.")] = 1,
    min_duration: Annotated[float, typer.Option(help="Drop segments shorter than this many SECONDS.")] = 0.0,
    merge_gap: Annotated[float, typer.Option(help="Merge same-label segments separated by at most this many SECONDS.")] = 0.0,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="jsonl (every window and segment), srt or vtt (segments).")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    follow: Annotated[bool, typer.Option("--follow", help="SOURCE is a file still being written: keep reading as it grows.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="SECONDS to wait for the first frame, and for data before a source counts as dropped.")] = 10.0,
    reconnect_for: Annotated[float, typer.Option("--reconnect-for", min=0.0, help="SECONDS to keep reconnecting a dropped network source or camera (back-off up to 8 s).")] = 30.0,
    queue: Annotated[Optional[int], typer.Option("--queue", min=1, help="Windows that may wait for the model; beyond that the oldest is skipped (default: two batches, at least 4).")] = None,
    max_lag: Annotated[Optional[float], typer.Option("--max-lag", min=0.0, help="Skip a window that waited longer than this many SECONDS for the model (default: the window length).")] = None,
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
    """Tag a live stream while it plays: a line per window, segments as soon as they close.

    Windows, sampling and segment options are those of [bold]localize[/bold].
    Without --out, JSON lines go to stdout (a live view instead when stdout is a terminal and no --format is given).
    When the model falls behind, windows are skipped and reported as lag.
    A dropped network source is reconnected with back-off, and the gap is recorded.
    Ctrl-C closes open segments, flushes the output and exits 130; a source lost for good exits 1.

    [bold]Examples[/bold]

      uvtag watch rtsp://camera.local/stream --out camera.jsonl
      uvtag watch /dev/video0 -m motion-tiny -w 2 -s 0.25
      ffmpeg -i input.mp4 -f mpegts - | uvtag watch - --format srt > tags.srt
      uvtag watch recording.ts --follow --out tags.vtt
    """
    from rich.console import Console
    from rich.live import Live

    from uvtag.live.events import SegmentClosed
    from uvtag.live.output import WATCH_FORMATS, appender
    from uvtag.live.source import SourceLost, SourceOptions, describe_source
    from uvtag.live.view import LiveView
    from uvtag.outputs.files import ENCODING, check_output, output_error
    from uvtag.tagger import SegmentOptions

    def body() -> int:
        check_out(out)
        chosen = machine_format(out, fmt, WATCH_FORMATS, "jsonl")
        view_only = out is None and fmt is None and sys.stdout.isatty()
        if out is not None:
            check_output(out, overwrite)
        segments = SegmentOptions(threshold=threshold, smooth_windows=smooth, min_duration_sec=min_duration,
                                  merge_gap_sec=merge_gap)
        live = SourceOptions(first_frame_timeout_sec=timeout, read_timeout_sec=timeout,
                             reconnect_for_sec=reconnect_for, follow=follow)
        tagger = load_tagger(model_options(model, arch, device, precision, batch_size, backend, cache_dir, offline), quiet)
        watcher = tagger.watch(source, window_sec=window, stride_sec=stride, top=top_k, options=segments,
                               source_options=live, max_queue=queue, max_lag_sec=max_lag)
        target = out if out is not None else Path("standard output")
        try:
            file = open(out, "w", encoding=ENCODING[0], errors=ENCODING[1], newline="\n") if out is not None else sys.stdout
        except OSError as e:
            raise output_error(target, e) from None
        writer = None if view_only else appender(file, chosen)
        view = LiveView(describe_source(source)) if view_only or (not quiet and err.is_terminal) else None
        console = Console() if view_only else err

        def interrupt(*_args) -> None:
            watcher.stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

        previous = signal.signal(signal.SIGINT, interrupt)
        ended, num_segments = None, 0
        try:
            with Live(view, console=console, refresh_per_second=4, transient=False) if view else nothing():
                for event in watcher:
                    if writer is not None:
                        try:
                            writer.write(event)
                        except OSError as e:
                            raise output_error(target, e) from None
                    if view is not None:
                        view.update(event)
                    num_segments += isinstance(event, SegmentClosed)
                    ended = event
        finally:
            signal.signal(signal.SIGINT, previous)
            if out is not None:
                file.close()
        if not quiet:
            err.print(f"{ended.windows} windows, {ended.skipped} skipped, {ended.gaps} gaps, {num_segments} segments "
                      f"over {ended.duration_sec:.1f} s ({ended.reason}){' -> ' + str(out) if out else ''}", markup=False)
        if ended.reason == "lost":
            raise SourceLost(ended.error)
        if ended.reason == "interrupted":
            err.print("[yellow]interrupted[/yellow]")
            return EXIT_INTERRUPTED
        return 0

    run(body)
