"""`uvtag train`: fine-tune or train UniFormerV2 on your own classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from uvtag.cli.common import QuietOpt, err, run


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
    from uvtag.train import TrainSettings
    from uvtag.train import train as run_training

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

    run(body)
