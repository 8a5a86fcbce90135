"""`uvtag plot`, `uvtag eval`, `uvtag merge`: look at saved results, score them against ground
truth, combine batch outputs.

Same output contract as every command: the document goes to --out or (with --format json)
stdout; tables for people go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from uvtag.cli.common import EXIT_FAILED_VIDEOS, OverwriteOpt, QuietOpt, check_out, err, run, write_stdout
from uvtag.errors import UsageError

_SHOW_MISSING = 20  # missing videos listed by name; the rest are counted

WidthOpt = Annotated[int, typer.Option("--width", min=300, help="Timeline width in pixels.")]
TopClassesOpt = Annotated[int, typer.Option("--top-classes", min=1, help="Classes drawn as score curves.")]


def plot(
    results: Annotated[Path, typer.Argument(help="A localize result saved as JSON (uvtag localize --out x.json).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file: .png or .svg.")],
    width: WidthOpt = 1200,
    top_classes: TopClassesOpt = 5,
    overwrite: OverwriteOpt = False,
) -> None:
    """Timeline of saved localize results: window scores as curves, segments as coloured bars.

    [bold]Examples[/bold]

      uvtag localize long.mp4 --out long.json && uvtag plot long.json --out long.png
      uvtag plot long.json --out long.svg --top-classes 3
    """
    from uvtag.outputs.timeline import load_localization, plot_format, save_timeline

    def body() -> int:
        check_out(out)
        plot_format(out)
        result = load_localization(results)
        save_timeline(result, out, width=width, top_classes=top_classes, overwrite=overwrite)
        err.print(f"timeline of {len(result.segments)} segments, {len(result.windows)} windows -> {out}")
        return 0

    run(body)


def eval_command(
    predictions: Annotated[list[Path], typer.Argument(help="uvtag outputs: classify/batch (json, jsonl, csv) or localize/ActivityNet JSON.", show_default=False)],
    gt: Annotated[Path, typer.Option("--gt", help="Ground truth: CSV 'path,label', a folder per class, or ActivityNet-style JSON.")],
    tiou: Annotated[str, typer.Option("--tiou", help="Localization thresholds: activitynet (0.50:0.05:0.95), thumos (0.3:0.1:0.7) or e.g. 0.3,0.5.")] = "activitynet",
    subset: Annotated[Optional[str], typer.Option(help="ActivityNet ground truth: score this subset only (e.g. validation).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table or json.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the metrics as JSON here.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score predictions: top-1/top-5 and per-class confusion, or localization mAP at tIoU thresholds.

    The task follows the ground truth: a CSV or a folder per class means classification, a JSON
    with a 'database' means localization.

    [bold]Examples[/bold]

      uvtag batch ./val --out val.csv && uvtag eval val.csv --gt ./val
      uvtag eval a.json b.json --gt activity_net.v1-3.json --subset validation --tiou activitynet
      uvtag eval results.json --gt thumos_gt.json --tiou thumos --out metrics.json
    """
    from uvtag.eval import metrics as ev
    from uvtag.eval import readers as rd
    from uvtag.outputs.files import check_output

    def body() -> int:
        check_out(out)
        if fmt not in (None, "table", "json"):
            raise UsageError(f"--format {fmt!r}: use table or json")
        if out is not None:
            check_output(out, overwrite)
        if not gt.exists():
            raise UsageError(f"{gt}: no such ground truth file or folder")
        if gt.is_file() and gt.suffix.lower() == ".json":
            videos, truth = rd.read_activitynet_gt(gt, subset)
            detections = [d for p in predictions for d in rd.read_detections(p)]
            report = ev.detection_report(truth, detections, ev.parse_tious(tiou), videos)
            if not quiet:
                err.print(_detection_table(report))
        else:
            truth_labels = rd.read_class_gt(gt)
            preds = [v for p in predictions for v in rd.read_predictions(p)[0]]
            report = ev.classification_report(truth_labels, preds)
            if not quiet:
                err.print(_classification_table(report))
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if out is not None:
            out.write_text(text, encoding="utf-8")
        elif fmt == "json":
            write_stdout(lambda f: f.write(text))
        return 0

    run(body)


def _classification_table(report) -> Table:
    table = Table(title=f"{report.num_videos} videos ({report.num_matched} with predictions): "
                        f"top-1 {100 * report.top1:.1f}%, top-{report.k_available} {100 * report.top5:.1f}%, "
                        f"mean class accuracy {100 * report.mean_class_accuracy:.1f}%", title_justify="left")
    for col in ("class", "videos", "top-1 correct", "accuracy", "mistaken for"):
        table.add_column(col, justify="left" if col in ("class", "mistaken for") else "right")
    for c in report.per_class:
        confused = ", ".join(f"{label} ({n})" for label, n in c.confused_with[:3])
        table.add_row(c.label, str(c.count), str(c.top1_correct), f"{100 * c.accuracy:.1f}%", confused)
    return table


def _detection_table(report) -> Table:
    table = Table(title=f"{report.num_videos} videos, {report.num_gt_segments} ground-truth segments, "
                        f"{report.num_detections} detections: average mAP {100 * report.average_mAP:.2f}%",
                  title_justify="left")
    table.add_column("class")
    for t in report.tious:
        table.add_column(f"AP@{t:g}", justify="right")
    for cls, aps in report.ap.items():
        table.add_row(cls, *(f"{100 * a:.1f}" for a in aps))
    table.add_row("[bold]mAP[/bold]", *(f"[bold]{100 * m:.2f}[/bold]" for m in report.mAP))
    return table


def merge(
    files: Annotated[list[Path], typer.Argument(help="Batch outputs to combine (.csv, .jsonl, .json or a .sqlite tag index).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Merged file; the format follows the extension.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="csv, jsonl, json or sqlite (default: from --out).")] = None,
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
      uvtag merge part-*.jsonl --out tags.sqlite
    """
    from uvtag.batch.merge import merge_outputs
    from uvtag.video.files import find_videos, parse_extensions

    def body() -> int:
        check_out(out)
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

    run(body)
