"""`uvtag merge`: registered on the main app (imported at the end of `uvtag.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from uvtag.cli import EXIT_FAILED_VIDEOS, OverwriteOpt, QuietOpt, _check_out, _run, app, err

_SHOW_MISSING = 20  # missing videos listed by name; the rest are counted


@app.command()
def merge(
    files: Annotated[list[Path], typer.Argument(help="Batch outputs to combine (.csv, .jsonl or .json).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Merged file; the format follows the extension.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="csv, jsonl or json (default: from --out).")] = None,
    inputs: Annotated[Optional[list[Path]], typer.Option("--inputs", "-i", help="The video files and folders the shards were given (repeat the option): output in that order, missing videos reported.")] = None,
    ext: Annotated[Optional[str], typer.Option(help="Extensions picked up in --inputs folders, as for batch.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Combine the outputs of sharded, parallel or resumed batch runs into one file.

    Each video is kept once (a complete video beats a failure); with [bold]--inputs[/bold] the
    videos come in the order a single run writes them, and every video missing from all files is
    listed (exit code 3 if any is missing or failed).

    [bold]Examples[/bold]

      uvtag merge part-*.jsonl --out labels.jsonl --inputs ./videos
      uvtag merge a.csv b.csv --out all.csv
    """
    from uvtag.batch.merge import merge_outputs
    from uvtag.video.files import find_videos, parse_extensions

    def body() -> int:
        _check_out(out)
        expected = [str(p) for p in find_videos(inputs, parse_extensions(ext))] if inputs else None
        summary = merge_outputs(files, out, fmt, expected=expected, overwrite=overwrite)
        for name in summary.torn:
            err.print(f"[yellow]note:[/yellow] {name} ends in a half-written video (killed run); it was left out", soft_wrap=True)
        for path in summary.missing[:_SHOW_MISSING]:
            err.print(f"[red]missing:[/red] {path}", soft_wrap=True)
        if len(summary.missing) > _SHOW_MISSING:
            err.print(f"[red]missing:[/red] ... and {len(summary.missing) - _SHOW_MISSING} more")
        if not quiet:
            extra = f", {len(summary.unexpected)} not under --inputs" if inputs and summary.unexpected else ""
            err.print(f"{summary.videos} videos, {summary.failures} failed, {len(summary.missing)} missing, "
                      f"{summary.duplicates} duplicates dropped{extra} from {summary.files} files -> {out}", soft_wrap=True)
        return EXIT_FAILED_VIDEOS if summary.missing or summary.failures else 0

    _run(body)
