"""`uvtag train` and `uvtag demo`: registered on the main Typer app (see the last line of cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from uvtag.cli import QuietOpt, _run, app, err


@app.command()
def train(
    data: Annotated[str, typer.Argument(help="Folder with one sub-folder of videos per class, a CSV "
                                             "(path,label[,start_sec,end_sec]) or synthetic:motion.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: last.pt (training state) and model.pt (the model).")],
    val: Annotated[Optional[str], typer.Option(help="Separate validation folder or CSV (default: --val-split of DATA).")] = None,
    val_split: Annotated[float, typer.Option(min=0.0, max=0.9, help="Fraction of each class held out for validation.")] = 0.1,
    init: Annotated[str, typer.Option(help="random, clip (CLIP image weights via timm), a zoo name, or a uvtag checkpoint "
                                           "file (the head is kept when the classes are the same, else new).")] = "random",
    arch: Annotated[str, typer.Option(help="tiny, b16 or l14 (full design; ignored for a zoo --init).")] = "tiny",
    frames: Annotated[int, typer.Option(min=2, help="Frames per clip (even).")] = 8,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per batch.")] = 16,
    accum: Annotated[int, typer.Option(min=1, help="Batches per optimizer step (gradient accumulation).")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option()] = 0.05,
    warmup_epochs: Annotated[float, typer.Option(help="Linear warm-up, then cosine decay.")] = 1.0,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.1,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Head and global-block MLP dropout.")] = 0.5,
    drop_path: Annotated[float, typer.Option(min=0.0, max=0.9, help="Stochastic depth (largest rate).")] = 0.1,
    crop_scale: Annotated[float, typer.Option(min=0.05, max=1.0, help="Smallest random-resized-crop area.")] = 0.4,
    flip: Annotated[str, typer.Option(help="Horizontal flips: auto (off when class names have a direction), on, off.")] = "auto",
    jpeg: Annotated[float, typer.Option(min=0.0, max=1.0, help="Chance of JPEG artefacts per training clip.")] = 0.0,
    jitter: Annotated[str, typer.Option(help="Training frame sampler: segment (a random frame per segment, the official "
                                             "recipe) or shared (one offset: evenly spaced frames, as at test time).")] = "segment",
    class_weight: Annotated[Optional[list[str]], typer.Option("--class-weight", help="LABEL=WEIGHT: draw that class's "
                                                             "clips WEIGHT times as often (repeatable; others 1).")] = None,
    train_size: Annotated[int, typer.Option(min=1, help="synthetic:motion clips per epoch.")] = 2000,
    val_size: Annotated[int, typer.Option(min=1, help="synthetic:motion validation clips.")] = 270,
    untrimmed: Annotated[float, typer.Option(min=0.0, max=1.0, help="synthetic:motion: share of training clips cut "
                                                                    "from untrimmed videos (windows as localize sees them).")] = 0.0,
    workers: Annotated[int, typer.Option(min=0, help="Data loading processes.")] = 1,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (mixed precision on CUDA).")] = "auto",
    num_clips: Annotated[int, typer.Option(min=1, help="Test views written into model.pt: temporal clips.")] = 1,
    num_crops: Annotated[int, typer.Option(min=1, max=3, help="Test views written into model.pt: spatial crops.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last finished epoch.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune or train UniFormerV2 on your classes; writes a uvtag checkpoint every epoch.

    [bold]Examples[/bold]

      uvtag train ./clips --out runs/mine --init clip --arch b16 --epochs 20
      uvtag train labels.csv --out runs/mine --init k400_k710_uniformerv2_b16_8x224
      uvtag train synthetic:motion --out runs/motion --epochs 12
      uvtag train ./clips --out runs/mine2 --init runs/mine/model.pt --epochs 5
      uvtag train ./clips --out runs/mine --resume
    """
    from uvtag.train import TrainSettings, train as run_training

    settings = TrainSettings(
        data=data, out=str(out), val=val, val_split=val_split, init=init, arch=arch, frames=frames, epochs=epochs,
        batch_size=batch_size, accum=accum, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing, dropout=dropout, drop_path=drop_path, crop_scale=crop_scale, flip=flip,
        jpeg=jpeg, jitter=jitter, class_weights=",".join(class_weight or []), train_size=train_size,
        val_size=val_size, untrimmed=untrimmed, workers=workers, seed=seed, device=device, num_clips=num_clips, num_crops=num_crops,
    )

    def body() -> int:
        history = run_training(settings, resume=resume, progress=not quiet,
                               log=(lambda m: None) if quiet else (lambda m: err.print(m, soft_wrap=True, markup=False)))
        if history and not quiet:
            last = history[-1]
            err.print(f"done: {out / 'model.pt'} (val acc {last.val_acc:.4f} after epoch {last.epoch})", markup=False)
        return 0

    _run(body)


# localize settings for the bundled motion-tiny model (actions of a few seconds; see MOTION_TINY.md)
MOTION_WINDOW_SEC, MOTION_STRIDE_SEC = 2.0, 0.25
MOTION_SEGMENTS = dict(threshold=0.3, smooth_windows=3, min_duration_sec=0.75, merge_gap_sec=0.5, nms_iou=0.5)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the generated videos and results.")] = Path("uvtag-demo"),
    seed: Annotated[int, typer.Option(help="Which demo videos to draw.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Offline demo: draw motion clips and an untrimmed video, classify and localize them with motion-tiny.

    Nothing is downloaded: the videos are generated here and the model ships in weights/.
    Results are written to OUT (classify.json, localize.json, truth.csv) and shown as tables.
    """
    from rich.table import Table

    from uvtag import synth
    from uvtag.tagger import SegmentOptions, load
    from uvtag.outputs.formats import write_classification, write_localization

    def body() -> int:
        with err.status("drawing and encoding demo videos", spinner="dots"):
            clips, long_path, truth = synth.write_examples(out, "demo", seed)
        tagger = load("motion-tiny", device=device, offline=True, progress=False)
        predictions = [tagger.classify(path, top=1) for path, _ in clips]
        table = Table(title=f"motion-tiny on {len(clips)} generated clips ({out})", title_justify="left")
        for col in ("video", "size", "fps", "truth", "predicted", "score", ""):
            table.add_column(col)
        for (path, label), p in zip(clips, predictions):
            guess = p.top[0]
            table.add_row(path.name, f"{p.info.width}x{p.info.height}", f"{p.info.fps:g}", label, guess.label,
                          f"{guess.score:.2f}", "ok" if guess.label == label else "WRONG")
        err.print(table)
        result = tagger.localize(long_path, window_sec=MOTION_WINDOW_SEC, stride_sec=MOTION_STRIDE_SEC, top=1,
                                 options=SegmentOptions(**MOTION_SEGMENTS))
        err.print(_segments_table(long_path.name, truth, result.segments))
        write_classification(predictions, out / "classify.json", "json", overwrite=True)
        write_localization(result, out / "localize.json", "json", overwrite=True)
        (out / "truth.csv").write_text("video,start_sec,end_sec,label\n" + "".join(
            [f"{p.name},,,{label}\n" for p, label in clips] + [f"{long_path.name},{s:.3f},{e:.3f},{label}\n" for s, e, label in truth]))
        correct = sum(p.top[0].label == label for (_, label), p in zip(clips, predictions))
        err.print(f"{correct}/{len(clips)} clips right; {len(result.segments)} segments found for {len(truth)} actions; "
                  f"results in {out}/ (classify.json, localize.json, truth.csv)", markup=False)
        return 0

    _run(body)


def _segments_table(name: str, truth, segments):
    from rich.table import Table

    from uvtag.infer.segments import temporal_iou

    table = Table(title=f"localize {name} (window {MOTION_WINDOW_SEC} s, stride {MOTION_STRIDE_SEC} s)", title_justify="left")
    for col in ("true start", "true end", "truth", "found start", "found end", "found", "tIoU"):
        table.add_column(col)
    for start, end, label in truth:
        same = [s for s in segments if s.label == label]
        best = max(same, key=lambda s: temporal_iou((start, end), (s.start_sec, s.end_sec)), default=None)
        if best is None:
            table.add_row(f"{start:.2f}", f"{end:.2f}", label, "", "", "(missed)", "0.00")
        else:
            iou = temporal_iou((start, end), (best.start_sec, best.end_sec))
            table.add_row(f"{start:.2f}", f"{end:.2f}", label, f"{best.start_sec:.2f}", f"{best.end_sec:.2f}",
                          best.label, f"{iou:.2f}")
    return table
