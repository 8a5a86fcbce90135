"""What every command shares: the stderr console, option declarations, the one place errors
become a line and an exit code (`run`), model loading, output checks and the people's tables."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from uvtag.errors import UvtagError
from uvtag.results import Failure, VideoPrediction

if TYPE_CHECKING:  # the tagger pulls in torch: imported where a command runs, so --help stays fast
    from uvtag.tagger import ModelOptions

EXIT_FAILED_VIDEOS = 3
EXIT_INTERRUPTED = 130

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


def fail(error: UvtagError) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)  # decoder logs hold [brackets]
    return typer.Exit(error.exit_code)


def run(body: Callable[[], int | None]) -> None:
    """Run a command body; UvtagError -> one line + its exit code, Ctrl-C -> 130."""
    if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 goes out as its bytes, as in files
        sys.stdout.reconfigure(errors="surrogateescape")
    try:
        code = body() or 0
    except UvtagError as e:
        raise fail(e) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if code:
        raise typer.Exit(code)


def model_options(model: str, arch: str | None, device: str, precision: str, batch_size: int | None,
                  backend: str | None, cache_dir: Path | None, offline: bool, isolate: bool = False) -> ModelOptions:
    """The model options of a tagging command as one value (Typer declares them per command)."""
    from uvtag.tagger import ModelOptions

    return ModelOptions(model, arch=arch, device=device, precision=precision, batch_size=batch_size, backend=backend,
                        cache_dir=cache_dir, offline=offline or None, isolate=isolate)


def load_tagger(options: ModelOptions, quiet: bool):
    """Load the model (a download shows a bar unless `quiet`) and say on stderr where it runs."""
    started = time.perf_counter()
    tagger = options.load(progress=not quiet)
    if not quiet:
        dev = tagger.predictor.device
        err.print(f"[dim]model {tagger.name} on {dev} ({str(tagger.predictor.dtype).removeprefix('torch.')}), "
                  f"loaded in {time.perf_counter() - started:.1f} s[/dim]")
    return tagger


def write_stdout(write: Callable[[TextIO], object]) -> None:
    """Write a machine format to stdout; a full or failing stdout is one OutputError line."""
    from uvtag.outputs.files import output_error

    try:
        write(sys.stdout)
        sys.stdout.flush()
    except OSError as e:  # ENOSPC (`> /dev/full`), EPIPE (a reader gone), EIO...
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush must not fail again
        raise output_error(Path("standard output"), e) from None


def check_out(out: Path | None) -> None:
    """Before any work: an --out file's folder exists and it is not a directory (whether an
    existing file may be replaced is the writer's check, which knows about --resume)."""
    from uvtag.outputs.files import check_output

    if out is not None:
        check_output(out, overwrite=True)


def machine_format(out: Path | None, fmt: str | None, allowed, default: str | None) -> str | None:
    """The machine format to write, or None for the people's table only."""
    from uvtag.outputs.formats import format_from_path

    if out is not None:
        return format_from_path(out, fmt, allowed)
    if fmt is None or fmt == "table":
        return default
    return format_from_path("stdout", fmt, allowed)


def progress_bar(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[note]}", style="dim"), console=err, disable=quiet, transient=False)


def top_table(title: str, predictions: list[VideoPrediction]) -> Table:
    table = Table(title=title, title_justify="left")
    for col, kw in (("video", {}), ("rank", {"justify": "right"}), ("label", {}), ("score", {"justify": "right"})):
        table.add_column(col, **kw)
    for p in predictions:
        for rank, s in enumerate(p.top, 1):
            table.add_row(Path(p.path).name if rank == 1 else "", str(rank), s.label, f"{s.score:.3f}")
    return table


def report_failures(failures: list[Failure]) -> None:
    for f in failures:
        err.print(f"[red]failed:[/red] {escape(f.error)}", soft_wrap=True)


class nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

