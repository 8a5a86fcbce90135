"""The training loop: AdamW, warm-up + cosine, label smoothing, accumulation, AMP on CUDA,
a checkpoint every epoch, exact resume after a kill, validation every epoch.

Files in the output folder:
- `last.pt`: training state after the last finished epoch (model, optimizer, step, epoch, torch
  RNG, AMP scaler, settings, history), written atomically; `--resume` continues from it.
- `model.pt`: the model of the last finished epoch in uvtag's checkpoint format (config, labels,
  protocol, training metadata), usable as `uvtag classify --model out/model.pt`.

Resume is exact: every sample is a function of (seed, epoch, index), the batch order of
(seed, epoch), and the torch RNG (dropout, drop-path) is restored, so a run killed and resumed
ends with the same weights as one that never stopped (same machine and thread count).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from uvtag.errors import CheckpointError, UsageError
from uvtag.model.uniformerv2 import ModelConfig, UniFormerV2
from uvtag.model.weights import save_checkpoint
from uvtag.train.augment import JITTERS, labels_allow_flip
from uvtag.train.data import (SYNTHETIC_MOTION, ClipDataset, Preprocess, SyntheticMotion, VideoSource,
                              read_csv, read_folder, split_items)
from uvtag.train.init import file_config, init_model, is_checkpoint_path, model_config, zoo_config
from uvtag.train.schedule import lr_at

__all__ = ["EpochStats", "TrainSettings", "parse_class_weights", "train"]

STATE_FILE, MODEL_FILE = "last.pt", "model.pt"
STATE_FORMAT = "uvtag-train"


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run depends on (saved in the state; a resume must not change the data or model)."""

    data: str  # folder, CSV, or "synthetic:motion"
    out: str
    val: str | None = None  # separate validation folder/CSV; else val_split of data
    val_split: float = 0.1
    init: str = "random"  # "random", "clip" or a zoo name
    arch: str = "tiny"  # tiny, b16, l14 (ignored when init is a zoo name)
    frames: int = 8
    epochs: int = 10
    batch_size: int = 16
    accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.5
    drop_path: float = 0.1
    crop_scale: float = 0.4  # smallest random-resized-crop area (fraction of the centre square)
    flip: str = "auto"  # auto (off for direction-sensitive class names), on, off
    jpeg: float = 0.0  # chance of JPEG artefacts per training clip
    jitter: str = "segment"  # training sampler offsets: "segment" (official) or "shared"
    class_weights: str = ""  # "label=weight,label=weight": sampling weight per class (others 1)
    train_size: int = 2000  # synthetic clips per epoch
    val_size: int = 270  # synthetic validation clips
    untrimmed: float = 0.0  # synthetic: share of training clips cut from untrimmed videos
    workers: int = 1
    seed: int = 0
    device: str = "auto"
    num_clips: int = 1  # test protocol written into model.pt
    num_crops: int = 1

    def resume_key(self) -> dict:
        """Settings that must match between a run and its resume."""
        d = dataclasses.asdict(self)
        for k in ("out", "workers", "device", "epochs"):
            d.pop(k)
        return d


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss/accuracy, validation loss/accuracy, seconds."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    lr: float


# ---------------------------------------------------------------------- data


def _sources(s: TrainSettings, log: Callable[[str], None]):
    """(train source, val source or None, labels)."""
    if s.data == SYNTHETIC_MOTION:
        train = SyntheticMotion(s.train_size, "train", s.seed, untrimmed=s.untrimmed)
        return train, SyntheticMotion(s.val_size, "val", s.seed, training_ranges=False), train.labels
    items, labels = _list(s.data)
    if s.val:
        val_items, _ = _list(s.val, labels)
    else:
        items, val_items = split_items(items, s.val_split, s.seed)
    train, bad = _checked(VideoSource(items, labels), "training", log)
    val, bad_val = _checked(VideoSource(val_items, labels), "validation", log) if val_items else (None, [])
    present = {i.label for i in train.items}
    empty = [n for k, n in enumerate(labels) if k not in present]
    if empty:
        raise UsageError(f"{s.data}: class {empty[0]!r} has no readable training video")
    return train, val, labels


def _list(path: str, labels=None):
    p = Path(path)
    if p.is_dir():
        items, names = read_folder(p)
        if labels is not None and tuple(names) != tuple(labels):
            raise UsageError(f"{p}: its classes differ from the training classes")
        return items, names
    if p.suffix.lower() == ".csv" and p.is_file():
        return read_csv(p, labels)
    raise UsageError(f"{path}: not a folder of class sub-folders, a .csv file or {SYNTHETIC_MOTION}")


def _checked(source: VideoSource, what: str, log):
    with tqdm(total=len(source), desc=f"checking {what} videos", file=sys.stderr, leave=False) as bar:
        good, bad = source.check(lambda n: bar.update(1))
    if bad:
        log(f"skipped {len(bad)} unreadable {what} videos of {len(source)} (first: {bad[0]})")
    if not good.items:
        raise UsageError(f"no readable {what} video ({len(bad)} unreadable)")
    return good, bad


# ---------------------------------------------------------------------- model and optimizer


def _config(s: TrainSettings, num_classes: int) -> ModelConfig:
    if s.init in ("random", "clip"):
        return model_config(s.arch, num_classes, s.frames, dropout=s.dropout, drop_path=s.drop_path)
    if is_checkpoint_path(s.init):
        return file_config(s.init, num_classes, s.frames)
    return zoo_config(s.init, num_classes, s.frames)


def _optimizer(model: torch.nn.Module, s: TrainSettings) -> torch.optim.AdamW:
    """AdamW; no weight decay on norms, biases, embeddings, the query token and `balance`."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        flat = p.ndim <= 1 or name.endswith(("positional_embedding", "class_embedding", "temporal_cls_token"))
        (no_decay if flat else decay).append(p)
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s.lr, betas=(0.9, 0.999))


def _protocol(s: TrainSettings, pre: Preprocess) -> dict:
    return {"num_clips": s.num_clips, "num_crops": s.num_crops, "sampler": "kinetics",
            "mean": list(pre.mean), "std": list(pre.std), "channel_order": "RGB"}


# ---------------------------------------------------------------------- state files


def _save_state(path: Path, **state) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": STATE_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def _load_state(path: Path, s: TrainSettings) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the training state ({type(e).__name__}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a uvtag training state")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
    want = s.resume_key()
    saved = {k: defaults.get(k) for k in want} | json.loads(state["settings"])  # states from before a setting existed
    if saved != want:
        diff = sorted(k for k in saved.keys() | want.keys() if saved.get(k) != want.get(k))
        raise UsageError(f"{path}: this run was started with other settings ({', '.join(diff)}); "
                         "use the same options, or another --out")
    return state


# ---------------------------------------------------------------------- epochs


def parse_class_weights(text: str, labels: Sequence[str]) -> np.ndarray:
    """Per-class sampling weights from "label=weight,label=weight" (unnamed classes weigh 1)."""
    weights = np.ones(len(labels))
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        name = name.strip()
        if not sep or name not in labels:
            raise UsageError(f"--class-weight {part!r}: give LABEL=WEIGHT with one of the classes ({', '.join(labels)})")
        try:
            weights[list(labels).index(name)] = float(value)
        except ValueError:
            raise UsageError(f"--class-weight {part!r}: the weight must be a number") from None
    if (weights < 0).any() or not weights.any() or not np.isfinite(weights).all():
        raise UsageError("--class-weight: weights must be finite, >= 0, and not all 0")
    return weights


def _train_order(dataset: ClipDataset, s: TrainSettings, epoch: int, class_weights: np.ndarray | None) -> list[int]:
    """The epoch's sample order: a permutation, or a weighted draw with replacement when classes are weighted."""
    rng = np.random.default_rng([s.seed, epoch, 1])
    if class_weights is None:
        return rng.permutation(len(dataset)).tolist()
    p = class_weights[[dataset.source.label(i) for i in range(len(dataset))]]
    return rng.choice(len(dataset), size=len(dataset), replace=True, p=p / p.sum()).tolist()


def _loader(dataset: ClipDataset, s: TrainSettings, epoch: int, train: bool,
            class_weights: np.ndarray | None = None) -> torch.utils.data.DataLoader:
    dataset.set_epoch(epoch)
    order = _train_order(dataset, s, epoch, class_weights) if train else None
    return torch.utils.data.DataLoader(dataset, batch_size=s.batch_size, sampler=order, drop_last=train and len(dataset) >= s.batch_size,
                                       num_workers=s.workers, worker_init_fn=_worker_init)


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _autocast(device: torch.device):
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _train_epoch(model, loader, opt, scaler, s: TrainSettings, device, epoch: int, step: int, total: int,
                 warmup: int, progress: bool) -> tuple[float, float, int]:
    model.train()
    loss_sum = correct = seen = 0.0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{s.epochs}", file=sys.stderr, disable=not progress, leave=False)
    opt.zero_grad(set_to_none=True)
    for b, (clips, labels) in enumerate(bar):
        clips, labels = clips.to(device, non_blocking=True), labels.to(device)
        with _autocast(device):
            logits = model(clips)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=s.label_smoothing)
        scaler.scale(loss / s.accum).backward()
        if (b + 1) % s.accum == 0 or b + 1 == len(loader):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, s.lr, s.min_lr)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            step += 1
        n = labels.shape[0]
        loss_sum += loss.item() * n
        correct += (logits.argmax(-1) == labels).sum().item()
        seen += n
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    bar.close()
    return loss_sum / max(seen, 1), correct / max(seen, 1), step


@torch.inference_mode()
def validate(model: UniFormerV2, loader, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) over a loader of (clips, labels)."""
    model.eval()
    loss_sum = correct = seen = 0.0
    for clips, labels in loader:
        clips, labels = clips.to(device), labels.to(device)
        with _autocast(device):
            logits = model(clips).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        seen += labels.shape[0]
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _steps_per_epoch(num_batches: int, accum: int) -> int:
    return math.ceil(num_batches / accum)


def train(settings: TrainSettings, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[EpochStats]:
    """Train (or resume) a run; returns every epoch's stats. Writes last.pt and model.pt in `out`."""
    from uvtag.infer.predict import pick_device

    s = settings
    if s.epochs < 1 or s.batch_size < 1 or s.accum < 1:
        raise UsageError("epochs, batch size and accumulation steps must be >= 1")
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    if state_path.exists() and not resume:
        raise UsageError(f"{state_path} exists: pass --resume to continue that run, or choose another --out")
    if resume and not state_path.exists():
        log(f"no {state_path} yet: starting from scratch")
    device = pick_device(s.device)
    train_src, val_src, labels = _sources(s, log)
    flip = {"on": True, "off": False, "auto": labels_allow_flip(labels)}.get(s.flip)
    if flip is None:
        raise UsageError(f"--flip must be auto, on or off, got {s.flip!r}")
    if s.jitter not in JITTERS:
        raise UsageError(f"--jitter must be one of {', '.join(JITTERS)}, got {s.jitter!r}")
    torch.manual_seed(s.seed)
    config = _config(s, len(labels))
    model = init_model(config, s.init, s.arch, labels=labels).to(device)
    pre = Preprocess(frames=config.t_size, size=config.input_resolution, crop_scale=(s.crop_scale, 1.0), flip=flip, jpeg_prob=s.jpeg,
                     jitter=s.jitter)
    train_ds = ClipDataset(train_src, pre, True, s.seed)
    val_ds = ClipDataset(val_src, pre, False, s.seed) if val_src is not None else None
    opt = _optimizer(model, s)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    weights = parse_class_weights(s.class_weights, labels) if s.class_weights else None
    per_epoch = _steps_per_epoch(len(_loader(train_ds, s, 0, True, weights)), s.accum)
    total, warmup = per_epoch * s.epochs, int(round(per_epoch * s.warmup_epochs))
    start, step, history = 0, 0, []
    if resume and state_path.exists():
        state = _load_state(state_path, s)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start, step = int(state["epoch"]), int(state["step"])
        history = [EpochStats(**h) for h in json.loads(state["history"])]
        log(f"resuming {out} after epoch {start} of {s.epochs}")
    log(f"training {describe(config)} on {len(train_src)} clips x {s.epochs - start} epochs, "
        f"{len(labels)} classes, flip {'on' if flip else 'off'}, device {device}")
    for epoch in range(start, s.epochs):
        started = time.perf_counter()
        tr_loss, tr_acc, step = _train_epoch(model, _loader(train_ds, s, epoch, True, weights), opt, scaler, s, device,
                                             epoch, step, total, warmup, progress)
        va_loss, va_acc = validate(model, _loader(val_ds, s, epoch, False), device) if val_ds else (float("nan"),) * 2
        stats = EpochStats(epoch + 1, tr_loss, tr_acc, va_loss, va_acc, time.perf_counter() - started,
                           lr_at(max(step - 1, 0), total, warmup, s.lr, s.min_lr))
        history.append(stats)
        meta = {"dataset": s.data, "pretrain": s.init, "protocol": _protocol(s, pre),
                "training": {"settings": dataclasses.asdict(s), "history": [dataclasses.asdict(h) for h in history]}}
        model.cpu()
        save_checkpoint(out / MODEL_FILE, model, labels, json.loads(json.dumps(meta)))
        _save_state(state_path, model=model.state_dict(), optimizer=opt.state_dict(), scaler=scaler.state_dict(),
                    torch_rng=torch.get_rng_state(), epoch=epoch + 1, step=step,
                    settings=json.dumps(s.resume_key()), history=json.dumps([dataclasses.asdict(h) for h in history]))
        model.to(device)
        log(f"epoch {epoch + 1}/{s.epochs}: train loss {tr_loss:.4f} acc {tr_acc:.4f} | "
            f"val loss {va_loss:.4f} acc {va_acc:.4f} | {stats.seconds:.0f} s")
    return history


def describe(config: ModelConfig) -> str:
    """Short architecture line for logs."""
    return (f"UniFormerV2 width {config.width}, {config.layers} blocks, {config.n_layers} global, "
            f"{config.input_resolution} px / patch {config.patch_size}, {config.t_size} frames")
