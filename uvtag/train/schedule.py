"""Pure learning-rate schedule: linear warm-up, then cosine decay (per optimizer step)."""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate for optimizer step `step` (0-based).

    Warm-up: base_lr * (step + 1) / warmup_steps for the first `warmup_steps` steps; then
    min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2, progress from 0 to 1 over the rest.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    rest = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / rest)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
