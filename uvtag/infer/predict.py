"""The only code that calls the model: device and precision choice, batched forward passes.

Clips go in as float32 [B, 3, T, H, W] (normalised, on the CPU); logits come back as float32
[B, num_classes] on the CPU, whatever the device and precision used inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext

import torch

from uvtag.errors import DeviceError, UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(requested: str | None = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda[:i]' without CUDA is a DeviceError."""
    name = (requested or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {requested} asked for CUDA, but torch sees no CUDA GPU here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise DeviceError(f"device {requested!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def pick_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """Compute dtype: fp32 on CPU by default (exact to the official numbers); bf16/fp16 autocast on CUDA."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("fp16 on the CPU is about 70x slower than fp32 here; use --precision fp32 or bf16")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Predictor:
    """Runs a model over batches of clips on one device, in one precision.

    Args:
        model: a UniFormerV2 in eval mode (moved to `device` here).
        device: where to run.
        dtype: float32 runs plainly; bfloat16/float16 run under autocast (weights stay fp32).
        batch_size: clips per forward pass; halved automatically on CUDA out-of-memory.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32,
                 batch_size: int = 4) -> None:
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        self.model = model.eval().to(device)
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _forward(self, clips: torch.Tensor) -> torch.Tensor:
        clips = clips.to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            return self.model(clips).float().cpu()

    def logits(self, clips: torch.Tensor) -> torch.Tensor:
        """clips float [B, 3, T, H, W] -> logits float32 [B, num_classes] on the CPU."""
        out = []
        start = 0
        while start < clips.shape[0]:
            chunk = clips[start : start + self.batch_size]
            try:
                out.append(self._forward(chunk))
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                self.batch_size = max(1, self.batch_size // 2)  # back off and retry this chunk
                continue
            start += chunk.shape[0]
        return torch.cat(out) if out else torch.empty(0)

    def stream(self, items: Iterable[tuple[object, torch.Tensor]]) -> Iterator[tuple[object, torch.Tensor]]:
        """Batch (key, clip [3, T, H, W]) pairs across calls; yields (key, logits [num_classes]) in order."""
        keys: list[object] = []
        clips: list[torch.Tensor] = []
        for key, clip in items:
            keys.append(key)
            clips.append(clip)
            if len(clips) >= self.batch_size:
                yield from zip(keys, self.logits(torch.stack(clips)))
                keys, clips = [], []
        if clips:
            yield from zip(keys, self.logits(torch.stack(clips)))
