"""`uvtag models`, `uvtag download`, `uvtag doctor`: the zoo, its cache and the installation."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from uvtag import __version__
from uvtag.cli.common import CacheOpt, run


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

    run(body)


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

