"""Model architectures for training and their initialisation: random, a zoo checkpoint, CLIP.

- random: `build_model` (the official initialisation: local MHRA and global blocks start as
  no-ops, so the network starts as an image ViT).
- a zoo checkpoint: every tensor kept except the classifier (`proj.2`), which gets fresh rows
  for the new classes.
- CLIP: image weights from timm's pretrained registry (e.g. `vit_base_patch16_clip_224.openai`),
  mapped onto our backbone keys by `clip_state_from_timm`. timm is imported here only, lazily.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from uvtag.errors import UsageError
from uvtag.model.uniformerv2 import ModelConfig, UniFormerV2, build_model

__all__ = ["ARCHS", "TIMM_CLIP", "clip_state_from_timm", "file_config", "inflate_patch_kernel", "init_model", "is_checkpoint_path",
           "model_config", "zoo_config"]

# full design (local MHRA + temporal downsampling + global blocks), by size
ARCHS: dict[str, dict] = {
    "tiny": dict(input_resolution=64, patch_size=8, width=96, layers=5, heads=4, n_layers=3),
    "b16": dict(input_resolution=224, patch_size=16, width=768, layers=12, heads=12, n_layers=8),
    "l14": dict(input_resolution=224, patch_size=14, width=1024, layers=24, heads=16, n_layers=16),
}
TIMM_CLIP = {"b16": "vit_base_patch16_clip_224.openai", "l14": "vit_large_patch14_clip_224.openai"}
HEAD_PREFIX = "backbone.transformer.proj.2."  # the classifier: new classes get a fresh one


def model_config(arch: str, num_classes: int, frames: int = 8, *, dropout: float = 0.5, drop_path: float = 0.1) -> ModelConfig:
    """The full-design ModelConfig of `arch` ("tiny", "b16", "l14") for `num_classes` classes."""
    if arch not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    a = ARCHS[arch]
    n, layers = a["n_layers"], a["layers"]
    return ModelConfig(
        input_resolution=a["input_resolution"], patch_size=a["patch_size"], width=a["width"], layers=layers,
        heads=a["heads"], t_size=frames, temporal_downsample=True, no_lmhra=False, double_lmhra=True,
        dw_reduction=1.5, return_list=tuple(range(layers - n, layers)), n_layers=n, n_dim=a["width"],
        n_head=a["heads"], num_classes=num_classes, mlp_dropout=(dropout,) * n, cls_dropout=dropout,
        backbone_drop_path_rate=drop_path, drop_path_rate=drop_path,
    )


def inflate_patch_kernel(weight: Tensor, kernel_t: int) -> Tensor:
    """2-D patch kernel [C, 3, p, p] -> 3-D [C, 3, kt, p, p], all weight at the centre time index.

    kt = 1 is a plain unsqueeze; kt = 3 gives [0, W, 0] (UniFormerV2's inflation), so a static
    clip gives the image model's features.
    """
    out = weight.new_zeros(weight.shape[0], weight.shape[1], kernel_t, *weight.shape[2:])
    out[:, :, kernel_t // 2] = weight
    return out


def clip_state_from_timm(timm_state: dict[str, Tensor], kernel_t: int) -> dict[str, Tensor]:
    """timm CLIP ViT state dict -> our backbone keys (`backbone.conv1.weight`, ...), image part only.

    timm names: patch_embed.proj.weight, cls_token [1,1,C], pos_embed [1,L,C], norm_pre,
    blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}; `norm` and `head` are
    dropped (CLIP's ln_post/proj are not part of UniFormerV2).
    """
    out: dict[str, Tensor] = {
        "backbone.conv1.weight": inflate_patch_kernel(timm_state["patch_embed.proj.weight"], kernel_t),
        "backbone.class_embedding": timm_state["cls_token"].reshape(-1),
        "backbone.positional_embedding": timm_state["pos_embed"].reshape(-1, timm_state["pos_embed"].shape[-1]),
        "backbone.ln_pre.weight": timm_state["norm_pre.weight"],
        "backbone.ln_pre.bias": timm_state["norm_pre.bias"],
    }
    names = {"norm1": "ln_1", "attn.qkv.weight": "attn.in_proj_weight", "attn.qkv.bias": "attn.in_proj_bias",
             "attn.proj": "attn.out_proj", "norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for key, value in timm_state.items():
        if not key.startswith("blocks."):
            continue
        _, i, rest = key.split(".", 2)
        for theirs, ours in names.items():
            if rest.startswith(theirs):
                out[f"backbone.transformer.resblocks.{i}.{ours}{rest[len(theirs):]}"] = value
                break
    return out


def _load_clip(model: UniFormerV2, arch: str) -> None:
    try:
        import timm
    except ImportError as e:
        raise UsageError(f"--init clip needs timm (pip install 'uvtag[train]'): {e}") from None
    if arch not in TIMM_CLIP:
        raise UsageError(f"no CLIP weights for architecture {arch!r}; CLIP exists for {', '.join(TIMM_CLIP)}")
    try:
        vit = timm.create_model(TIMM_CLIP[arch], pretrained=True, num_classes=0)
    except Exception as e:  # network, hub cache, ...
        raise UsageError(f"cannot get CLIP weights {TIMM_CLIP[arch]} through timm: {e}") from None
    mapped = clip_state_from_timm(vit.state_dict(), model.backbone.conv1.weight.shape[2])
    own = model.state_dict()
    bad = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise UsageError(f"CLIP weights do not fit the model ({len(bad)} tensors, e.g. {bad[0]})")
    model.load_state_dict(mapped, strict=False)


def _load_zoo(model: UniFormerV2, name: str, offline: bool | None, labels: Sequence[str] | None) -> None:
    """Load zoo weights `name`; its classifier too when its classes are `labels` (same order)."""
    from uvtag.model.weights import load_model
    from uvtag.model.zoo import get_checkpoint

    source, source_labels = load_model(get_checkpoint(name), offline=offline)
    _load_weights(model, source.state_dict(), source_labels, labels)


def is_checkpoint_path(init: str) -> bool:
    """Whether an `--init` value names a file (rather than random, clip or a zoo name)."""
    return init not in ("random", "clip") and Path(init).expanduser().is_file()


def _read_uvtag_file(path: str):
    from uvtag.model.weights import read_checkpoint

    loaded = read_checkpoint(Path(path).expanduser())
    if loaded.layout != "uvtag":
        raise UsageError(f"--init {path}: a file to start from must be a uvtag checkpoint (`uvtag train` output); "
                         "for official weights use their zoo name")
    return loaded


def file_config(path: str, num_classes: int, frames: int | None = None) -> ModelConfig:
    """The architecture of a uvtag checkpoint file with a head for `num_classes`."""
    config = _read_uvtag_file(path).config
    return dataclasses.replace(config, num_classes=num_classes, t_size=frames or config.t_size)


def _load_weights(model: UniFormerV2, state: dict, source_labels: Sequence[str], labels: Sequence[str] | None) -> None:
    keep_head = labels is not None and tuple(source_labels) == tuple(labels)
    model.load_state_dict({k: v for k, v in state.items() if keep_head or not k.startswith(HEAD_PREFIX)}, strict=False)


def init_model(config: ModelConfig, init: str, arch: str, *, offline: bool | None = None,
               labels: Sequence[str] | None = None) -> UniFormerV2:
    """A model for training: `init` is "random", "clip", a zoo name or a uvtag checkpoint file.

    A zoo model or file keeps its classifier when it was trained on exactly `labels` (continued
    training); otherwise the head starts fresh.
    """
    model = build_model(config)
    if init == "clip":
        _load_clip(model, arch)
    elif is_checkpoint_path(init):
        loaded = _read_uvtag_file(init)
        _load_weights(model, loaded.state_dict, loaded.labels or (), labels)
    elif init != "random":
        _load_zoo(model, init, offline, labels)
    return model


def zoo_config(name: str, num_classes: int, frames: int | None = None) -> ModelConfig:
    """A zoo entry's architecture with a new head (and optionally another frame count)."""
    from uvtag.model.zoo import get_checkpoint

    config = get_checkpoint(name).config
    return dataclasses.replace(config, num_classes=num_classes, t_size=frames or config.t_size)
