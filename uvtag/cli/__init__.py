"""The `uvtag` command: a thin shell over the library. This module makes the Typer app and
registers every command on it; the command modules import only `uvtag.cli.common`, never this one.

Output contract: machine formats (json, jsonl, csv, ...) go to --out FILE or, without --out, to
stdout; everything for people (tables, progress, warnings, errors) goes to stderr, so output can
be piped. Exit codes: 0 success, 1 error, 2 bad usage, 3 some videos failed, 130 interrupted.
"""

from __future__ import annotations

from typing import Annotated

import typer

from uvtag import __version__
from uvtag.cli import bench, demo, index, models, results, tag, train
from uvtag.cli import watch as watch_cli
from uvtag.cli import features as features_cli

app = typer.Typer(
    name="uvtag",
    help="Tag actions in videos with UniFormerV2 (official checkpoints, official test protocol).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_callback(value: bool) -> None:
    if value:
        print(f"uvtag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Tag actions in videos with UniFormerV2."""


for _command in (tag.classify, tag.batch, tag.localize, models.models, models.download, models.doctor, results.plot):
    app.command()(_command)
app.command(name="eval")(results.eval_command)
for _command in (train.train, demo.demo, results.merge, bench.bench):
    app.command()(_command)
for _command in (index.search, index.similar):
    app.command()(_command)
app.command()(features_cli.features)
app.command()(watch_cli.watch)
