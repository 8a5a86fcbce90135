"""`uvtag search`, `uvtag similar`: questions to a tag index written by `uvtag batch --out x.sqlite`.

Same output contract as every command: json or csv goes to --out or (with --format) stdout; the
table for people goes to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from uvtag.cli.common import (
    DeviceOpt,
    OverwriteOpt,
    QuietOpt,
    check_out,
    err,
    load_tagger,
    machine_format,
    model_options,
    run,
    write_stdout,
)
from uvtag.errors import UsageError

DbOpt = Annotated[Path, typer.Option("--db", help="Tag index: a database written by `uvtag batch DIR --out tags.sqlite`.")]
IndexFormatOpt = Annotated[Optional[str], typer.Option("--format", "-f", help="table, json or csv.")]
IndexOutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the answer here (.json or .csv).")]


def search(
    labels: Annotated[list[str], typer.Argument(help="Labels as the model names them; quote a name with spaces.", show_default=False)],
    db: DbOpt,
    min_score: Annotated[float, typer.Option("--min-score", min=0.0, max=1.0, help="The least score a label needs in a clip.")] = 0.3,
    every: Annotated[bool, typer.Option("--all/--any", help="Ranges where every label holds, or any of them.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="The most videos to list.")] = 20,
    fmt: IndexFormatOpt = None,
    out: IndexOutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Videos and time ranges where labels hold, best first.

    A clip holds a label when it is among the clip's top-k with at least --min-score; touching or
    overlapping clips that hold merge into one range. Videos are ranked by their best clip's
    score (with [bold]--all[/bold]: a clip's weakest label), each listed with its ranges.

    [bold]Examples[/bold]

      uvtag search "playing guitar" --db tags.sqlite --min-score 0.6
      uvtag search "moving left" "growing" --db tags.sqlite --all --format json > hits.json
    """
    from uvtag.index.formats import INDEX_FORMATS
    from uvtag.index.query import search as search_index
    from uvtag.index.schema import connect_reader

    def body() -> int:
        check_out(out)
        machine = machine_format(out, fmt, INDEX_FORMATS, None)
        conn = connect_reader(db)
        try:
            result = search_index(conn, labels, min_score=min_score, mode="all" if every else "any", limit=limit,
                                  where=str(db))
        finally:
            conn.close()
        if not quiet:
            err.print(_search_title(result), soft_wrap=True)
            if result.videos:
                err.print(_search_table(result))
        _emit(result, machine, out, overwrite)
        return 0

    run(body)


def similar(
    video: Annotated[str, typer.Argument(help="A video of the index (its path as stored, or the same file), or any video file.", show_default=False)],
    db: DbOpt,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="The most videos to list.")] = 10,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="For a video outside the index: the model to embed it with (default: the index's).")] = None,
    device: DeviceOpt = "auto",
    fmt: IndexFormatOpt = None,
    out: IndexOutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The videos that look most like VIDEO: cosine similarity of the stored embeddings.

    The index needs embeddings: write it with [bold]uvtag batch DIR --out tags.sqlite --embed[/bold].
    A video that is not in the index is embedded first, with the index's model and clip length.

    [bold]Examples[/bold]

      uvtag similar videos/cat.mp4 --db tags.sqlite
      uvtag similar videos/cat.mp4 --db tags.sqlite --limit 50 --format csv > like_cat.csv
    """
    from uvtag.index.formats import INDEX_FORMATS
    from uvtag.index.query import clip_settings, lookup_video, meta_model, similar_to
    from uvtag.index.query import similar as similar_in_index
    from uvtag.index.schema import connect_reader
    from uvtag.index.writer import embed_file

    def body() -> int:
        check_out(out)
        machine = machine_format(out, fmt, INDEX_FORMATS, None)
        conn = connect_reader(db)
        try:
            if lookup_video(conn, video) is None and Path(video).is_file():
                name = model or meta_model(conn)
                if name is None:
                    raise UsageError(f"{db} does not name its model; give the one it was written with: --model NAME")
                tagger = load_tagger(model_options(name, None, device, "auto", None, None, None, False), quiet)
                vector = embed_file(tagger, video, *clip_settings(conn))
                result = similar_to(conn, video, vector, limit=limit, where=str(db))
            else:
                result = similar_in_index(conn, video, limit=limit, where=str(db))
        finally:
            conn.close()
        if not quiet:
            err.print(f"{escape(result.model or 'unknown model')}: nearest to {escape(result.path)}", soft_wrap=True)
            table = Table()
            for col, justify in (("rank", "right"), ("video", "left"), ("cosine", "right")):
                table.add_column(col, justify=justify, overflow="fold")
            for n, x in enumerate(result.neighbours, start=1):
                table.add_row(str(n), escape(x.path), f"{x.similarity:.3f}")
            err.print(table)
        _emit(result, machine, out, overwrite)
        return 0

    run(body)


def _emit(result, machine: str | None, out: Path | None, overwrite: bool) -> None:
    """Write the machine format to --out (atomically) or stdout."""
    from uvtag.index.formats import render
    from uvtag.outputs.files import ENCODING, atomic_write, check_output

    if machine is None:
        return
    text = render(result, machine)
    if out is not None:
        atomic_write(check_output(out, overwrite), text.encode(*ENCODING))
    else:
        write_stdout(lambda f: f.write(text))


def _search_title(result) -> str:
    how = f"{' and '.join(result.labels) if result.mode == 'all' else ' or '.join(result.labels)}, score >= {result.min_score:g}"
    shown = f" (best {len(result.videos)})" if len(result.videos) < result.num_videos else ""
    return f"{result.num_videos} video{'' if result.num_videos == 1 else 's'} match {escape(how)}{shown}"


def _search_table(result) -> Table:
    table = Table()
    for col in ("video", "start_sec", "end_sec", "score", "mean", "clips") + (("labels",) if len(result.labels) > 1 else ()):
        table.add_column(col, justify="left" if col in ("video", "labels") else "right", overflow="fold")
    for v in result.videos:
        for n, r in enumerate(v.ranges):
            row = [escape(v.path) if n == 0 else "", f"{r.start_sec:.2f}", f"{r.end_sec:.2f}", f"{r.score:.3f}",
                   f"{r.mean_score:.3f}", str(r.num_clips)]
            table.add_row(*row, *((escape(", ".join(r.labels)),) if len(result.labels) > 1 else ()))
    return table
