"""What a UniFormerV2's tensor shapes say about its architecture, for readable mismatch messages.

`config_architecture` and `state_dict_architecture` reduce a `ModelConfig` or a state dict to the
same `Architecture` record, so a loader can say "the file is L/14 at 336 px, the model is B/16 at
224 px" instead of listing mismatched keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor

from uvtag.model.uniformerv2 import ModelConfig

__all__ = ["Architecture", "config_architecture", "describe_config", "infer_architecture", "state_dict_architecture"]


@dataclass(frozen=True)
class Architecture:
    """What tensor shapes reveal about a UniFormerV2 (heads, t_size, return_list are invisible)."""

    width: int
    blocks: int
    patch_size: int
    resolution: int
    temporal_kernel: int  # 1, or 3 with temporal downsampling
    lmhra: int  # 0, 1 (lmhra1) or 2 (double)
    global_blocks: int
    frozen: bool
    num_classes: int

    def describe(self) -> str:
        """E.g. "L/14 (width 1024, 24 blocks, 224 px) with 174 classes, local MHRA, 16 global blocks"."""
        vit = {(16, 768, 12): "B/16", (14, 1024, 24): "L/14"}.get(
            (self.patch_size, self.width, self.blocks), f"ViT p{self.patch_size}"
        )
        if vit == "L/14" and self.resolution == 336:
            vit = "L/14@336"
        parts = [
            f"{'frozen ' if self.frozen else ''}{vit} (width {self.width}, {self.blocks} blocks, "
            f"{self.resolution} px) with {self.num_classes} classes",
            {0: "no local MHRA", 1: "single local MHRA", 2: "local MHRA"}[self.lmhra],
        ]
        if self.temporal_kernel != 1:
            parts.append("temporal downsampling")
        parts.append(f"{self.global_blocks} global blocks")
        return ", ".join(parts)


def config_architecture(config: ModelConfig) -> Architecture:
    """The shape-visible architecture of a config."""
    return Architecture(
        width=config.width,
        blocks=config.layers,
        patch_size=config.patch_size,
        resolution=config.input_resolution,
        temporal_kernel=3 if config.temporal_downsample else 1,
        lmhra=0 if config.no_lmhra else (2 if config.double_lmhra else 1),
        global_blocks=config.n_layers,
        frozen=config.frozen,
        num_classes=config.num_classes,
    )


def _count(keys: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def state_dict_architecture(state_dict: dict[str, Tensor]) -> Architecture:
    """The architecture implied by an official-layout state dict (`backbone.*` keys).

    Raises KeyError naming a key when a tensor every UniFormerV2 has is missing.
    """
    keys = list(state_dict)
    pre = "backbone."
    conv = state_dict[pre + "conv1.weight"]  # [C, 3, kt, p, p]
    tokens = state_dict[pre + "positional_embedding"].shape[0]  # 1 + g*g
    grid = round((tokens - 1) ** 0.5)
    lm1 = any(".lmhra1." in k for k in keys)
    lm2 = any(".lmhra2." in k for k in keys)
    return Architecture(
        width=int(conv.shape[0]),
        blocks=_count(keys, r"backbone\.transformer\.resblocks\.(\d+)\."),
        patch_size=int(conv.shape[-1]),
        resolution=grid * int(conv.shape[-1]),
        temporal_kernel=int(conv.shape[2]) if conv.ndim == 5 else 1,
        lmhra=2 if lm2 else int(lm1),
        global_blocks=_count(keys, r"backbone\.transformer\.dec\.(\d+)\."),
        frozen=pre + "transformer.balance" not in state_dict,
        num_classes=int(state_dict[pre + "transformer.proj.2.weight"].shape[0]),
    )


def infer_architecture(state_dict: dict[str, Tensor]) -> str:
    """One-line description of the network a state dict belongs to, from tensor shapes only."""
    try:
        return state_dict_architecture(state_dict).describe()
    except (KeyError, IndexError, AttributeError) as e:
        return f"not a UniFormerV2 state dict (no {e})"


def describe_config(config: ModelConfig) -> str:
    """The same one-line description for a ModelConfig."""
    return config_architecture(config).describe()
