"""Checkpoint files: read them safely, load them strictly (finding/downloading: `uvtag.model.download`).

Reading: only `torch.load(..., weights_only=True)`, so a file that would need to run code while
unpickling is refused, never executed. Accepted containers: a bare official state dict
(`backbone.*` keys), `{"model_state": ...}` (SlowFast training format), `{"state_dict" | "model" |
"module": ...}`, `module.` key prefixes, MMAction2's layout (`backbone.transformer.norm.*`,
`cls_head.fc_cls.*`) and uvtag's own format (state dict + config + labels + meta).

`load_model` resolves the file through `uvtag.model.download.resolve` (cache, weights/, download).

Before anything is inflated, a zip checkpoint's central directory is read: entries that would
inflate to more than `MAX_INFLATE_RATIO` times the file size (and more than `INFLATE_FREE_BYTES`)
are refused. A uvtag file is validated field by field on read (config, labels, meta.protocol:
types and ranges), so every bad value is one CheckpointError line naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from uvtag.errors import CheckpointError, first_line
from uvtag.infer import views as views_module
from uvtag.model.download import resolve
from uvtag.model.labels import available_label_lists, labels_for, read_labels
from uvtag.model.shapes import Architecture, config_architecture, state_dict_architecture
from uvtag.model.uniformerv2 import ModelConfig, UniFormerV2, build_model
from uvtag.model.zoo import Checkpoint

__all__ = [
    "LoadedWeights",
    "convert_mmaction2",
    "load_into",
    "load_model",
    "load_state_dict_file",
    "read_checkpoint",
    "reorder_classes",
    "save_checkpoint",
]

UVTAG_FORMAT = "uvtag"
UVTAG_FORMAT_VERSION = 1
_WRAPPERS = ("model_state", "state_dict", "model", "module")  # SlowFast, MMAction2, generic
# torch.save stores its zip entries uncompressed (inflated size = file size), and float weights
# barely deflate, so entries declaring more than 64x the file size are a zip bomb or damage; below
# 1 GiB in total they are accepted whatever the ratio (no harm in inflating that much).
MAX_INFLATE_RATIO = 64
INFLATE_FREE_BYTES = 1 << 30


# --------------------------------------------------------------------------------------------
# Reading files


@dataclass(frozen=True)
class LoadedWeights:
    """A checkpoint file's content in the official key layout."""

    state_dict: dict[str, Tensor]
    layout: str  # layout of the file: "official", "mmaction2" or "uvtag"
    config: ModelConfig | None = None  # uvtag files only
    labels: tuple[str, ...] | None = None  # uvtag files only
    meta: dict = field(default_factory=dict)


def _declared_inflated_bytes(path: Path) -> int | None:
    """Sum of the uncompressed sizes a zip's central directory declares; None if it is no readable zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # torch.load reports the damage in its own words


def _check_inflated_size(path: Path) -> None:
    """Refuse a zip whose entries declare far more bytes than the file holds (before inflating).

    torch's zip reader allocates each entry at its declared size, so the declared sizes bound
    what loading can take.
    """
    declared = _declared_inflated_bytes(path)
    size = path.stat().st_size
    if declared is None or declared <= INFLATE_FREE_BYTES or declared <= MAX_INFLATE_RATIO * size:
        return
    raise CheckpointError(
        f"{path}: its zip entries would inflate to {declared / 2**20:,.0f} MiB from a {size / 2**20:,.1f} MiB file "
        f"({declared / max(size, 1):,.0f}x, at most {MAX_INFLATE_RATIO}x above {INFLATE_FREE_BYTES / 2**30:g} GiB); "
        "refused before inflating (a zip bomb or a damaged file)"
    )


def _torch_load(path: Path) -> object:
    """torch.load with weights_only=True; every failure becomes one CheckpointError line."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        _check_inflated_size(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # legacy raw pickles
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise CheckpointError(
                f"{path}: not a plain weights file: loading it would run code ({found.group(1)}); "
                "refused, nothing was executed (re-save just the state_dict from a trusted copy)"
            ) from None
        raise CheckpointError(f"{path}: corrupt or not a PyTorch checkpoint (unreadable pickle data)") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError... for damaged files
        if head == b"PK\x03\x04":
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first_line(e)})") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file ({type(e).__name__})") from None



def _unwrap(obj: object, path: Path) -> dict:
    """Peel `model_state` / `state_dict` / `model` / `module` wrappers (at most two levels)."""
    for _ in range(2):
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: not a model checkpoint (no state dict inside, found {type(obj).__name__})")
    return obj


def _strip_module(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove DataParallel/DDP `module.` prefixes."""
    while state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _is_mmaction2(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith(("cls_head.", "backbone.transformer.norm.")) for k in state_dict)


def convert_mmaction2(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """MMAction2 keys -> official keys (head rows keep MMAction2's class order).

    `backbone.transformer.norm.*` -> `backbone.transformer.proj.0.*`, `cls_head.fc_cls.*` ->
    `backbone.transformer.proj.2.*`, `data_preprocessor.*` dropped; all other keys are shared.
    """
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        if k.startswith("data_preprocessor."):
            continue
        if k.startswith("backbone.transformer.norm."):
            k = "backbone.transformer.proj.0." + k[len("backbone.transformer.norm."):]
        elif k.startswith("cls_head.fc_cls."):
            k = "backbone.transformer.proj.2." + k[len("cls_head.fc_cls."):]
        out[k] = v
    return out


def reorder_classes(
    state_dict: dict[str, Tensor], from_labels: Sequence[str], to_labels: Sequence[str]
) -> dict[str, Tensor]:
    """Permute the head rows so that row i is class `to_labels[i]`.

    Args:
        state_dict: official-layout state dict whose head rows are named by `from_labels`.
        from_labels / to_labels: the same class names in two orders.
    Returns a new dict (other tensors shared). Raises CheckpointError if the name sets differ.
    """
    if list(from_labels) == list(to_labels):
        return dict(state_dict)
    position = {name: i for i, name in enumerate(from_labels)}
    missing = [n for n in to_labels if n not in position]
    if missing or len(from_labels) != len(to_labels):
        raise CheckpointError(
            f"cannot map the head rows by class name: {len(missing)} of {len(to_labels)} names differ "
            f"(e.g. {missing[:3]}); use the matching label list instead"
        )
    index = torch.tensor([position[n] for n in to_labels])
    out = dict(state_dict)
    for suffix in ("weight", "bias"):
        key = f"backbone.transformer.proj.2.{suffix}"
        out[key] = state_dict[key].index_select(0, index)
    return out


def _check_tensors(state_dict: dict, path: Path) -> dict[str, Tensor]:
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict ({len(bad)} entries are not named tensors, e.g. {bad[0]!r})")
    if not any(k.startswith("backbone.") for k in state_dict):
        raise CheckpointError(
            f"{path}: not a UniFormerV2 checkpoint (no backbone.* keys; keys look like {', '.join(list(state_dict)[:3])})"
        )
    return state_dict


def read_checkpoint(path: str | Path) -> LoadedWeights:
    """Read any accepted checkpoint file into the official key layout.

    MMAction2 files keep MMAction2's head-row order (see `reorder_classes`). Raises
    CheckpointError (one line naming the file) for unsafe, corrupt or foreign files.
    """
    path = Path(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == UVTAG_FORMAT:
        return _read_uvtag(obj, path)
    state_dict = _check_tensors(_strip_module(_unwrap(obj, path)), path)
    if _is_mmaction2(state_dict):
        return LoadedWeights(convert_mmaction2(state_dict), "mmaction2")
    return LoadedWeights(state_dict, "official")


def load_state_dict_file(
    path: str | Path, *, mmaction2_labels: Sequence[str] | None = None, labels: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """The official-layout state dict of a checkpoint file.

    If the file is in MMAction2 layout and both label lists are given, the head rows are
    permuted from `mmaction2_labels` order to `labels` order (matched by class name).
    """
    loaded = read_checkpoint(path)
    if loaded.layout == "mmaction2" and mmaction2_labels is not None and labels is not None:
        return reorder_classes(loaded.state_dict, mmaction2_labels, labels)
    return loaded.state_dict


# --------------------------------------------------------------------------------------------
# uvtag's own format


def save_checkpoint(path: str | Path, model: UniFormerV2, labels: Sequence[str], meta: dict | None = None) -> Path:
    """Write `{"format": "uvtag", "version": 1, "state_dict", "config", "labels", "meta"}` atomically.

    `meta` must be plain JSON-like data (it is read back with weights_only=True).
    """
    path = Path(path)
    labels = [str(n) for n in labels]
    if len(labels) != model.config.num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {model.config.num_classes} classes")
    meta = dict(meta or {})
    json.dumps(meta)  # raises TypeError on anything that is not plain data
    payload = {
        "format": UVTAG_FORMAT,
        "version": UVTAG_FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": model.config.to_dict(),
        "labels": labels,
        "meta": meta,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


# Fields of a uvtag file, each with a test and what it must be (for the message). Sizes that tensor
# shapes show (width, blocks, resolution, ...) are compared with the tensors before any model is
# built; the invisible ones get ranges here. Ranges are generous: 4x the largest official value.
MAX_FRAMES = 256  # t_size: official checkpoints take at most 64 frames a clip
MAX_CROPS = 3


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(low: int, high: int | None = None) -> tuple[Callable[[Any], bool], str]:
    top = f" to {high}" if high is not None else " or more"
    return (lambda v: _is_int(v) and v >= low and (high is None or v <= high)), f"an int {low}{top}"


def _number_in(low: float, high: float, *, low_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    def ok(v: object) -> bool:
        return _is_number(v) and (v > low if low_open else v >= low) and v <= high
    return ok, f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"


_BOOL = (lambda v: isinstance(v, bool), "true or false")
_CONFIG_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "input_resolution": _int_in(1), "patch_size": _int_in(1), "width": _int_in(1), "layers": _int_in(1),
    "heads": _int_in(1), "t_size": _int_in(1, MAX_FRAMES), "temporal_downsample": _BOOL, "no_lmhra": _BOOL,
    "double_lmhra": _BOOL, "dw_reduction": _number_in(1.0, 64.0),
    "return_list": (lambda v: isinstance(v, (list, tuple)) and all(_is_int(i) and i >= 0 for i in v),
                    "a list of block indices (ints >= 0)"),
    "n_layers": _int_in(0), "n_dim": _int_in(1), "n_head": _int_in(1), "mlp_factor": _number_in(0.0, 16.0, low_open=True),
    "num_classes": _int_in(1), "frozen": _BOOL, "output_dim": _int_in(1),
    "backbone_drop_path_rate": _number_in(0.0, 1.0), "drop_path_rate": _number_in(0.0, 1.0),
    "mlp_dropout": (lambda v: isinstance(v, (list, tuple)) and all(_is_number(p) and 0 <= p <= 1 for p in v),
                    "a list of probabilities (numbers in [0, 1])"),
    "cls_dropout": _number_in(0.0, 1.0),
}
_PROTOCOL_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_clips": _int_in(1), "num_crops": _int_in(1, MAX_CROPS),
    "sampler": (lambda v: v in ("kinetics", "sth"), '"kinetics" or "sth"'),
    "channel_order": (lambda v: v in ("RGB", "BGR"), '"RGB" or "BGR"'),
    "mean": (lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(map(_is_number, v)),
             "3 finite numbers (per-channel means on the 0..1 scale)"),
    "std": (lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) and x > 0 for x in v),
            "3 finite numbers > 0 (per-channel standard deviations on the 0..1 scale)"),
}
_TEXT_META = ("dataset", "pretrain")  # meta fields read as text; the rest of meta is free-form


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(path: Path, where: str, want: str, got: object) -> CheckpointError:
    return CheckpointError(f"{path}: bad uvtag checkpoint: {where} must be {want}, got {_shown(got)}")


def _check_fields(table: dict, values: object, where: str, path: Path) -> dict:
    """`values` as a dict whose keys are all in `table` and whose values pass their test."""
    if not isinstance(values, dict):
        raise _bad(path, where, "a mapping", values)
    for key, value in values.items():
        if key not in table:
            known = ", ".join(table)
            raise CheckpointError(f"{path}: bad uvtag checkpoint: unknown {where} field {_shown(key)} (known: {known})")
        ok, want = table[key]
        if not ok(value):
            raise _bad(path, f"{where}.{key}", want, value)
    return values


def _is_label(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\n" not in value and "\r" not in value


def _check_labels(labels: object, num_classes: int, path: Path) -> tuple[str, ...]:
    if not isinstance(labels, (list, tuple)):
        raise _bad(path, "labels", f"a list of {num_classes} class names", labels)
    for i, label in enumerate(labels):
        if not _is_label(label):
            raise _bad(path, f"labels[{i}]", "a class name (non-empty one-line text)", label)
    if len(labels) != num_classes:
        raise CheckpointError(f"{path}: {len(labels)} labels for {num_classes} classes")
    return tuple(labels)


def _check_meta(meta: object, path: Path) -> dict:
    """`meta` as a dict with its protocol validated (mean/std as float tuples); None means {}."""
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise _bad(path, "meta", "a mapping with text keys", meta)
    for key in _TEXT_META:
        if key in meta and not isinstance(meta[key], str):
            raise _bad(path, f"meta.{key}", "text", meta[key])
    out = dict(meta)
    protocol = meta.get("protocol")
    if protocol is None:
        return out
    protocol = dict(_check_fields(_PROTOCOL_FIELDS, protocol, "meta.protocol", path))
    views = protocol.get("num_clips", 1) * protocol.get("num_crops", 1)
    if views > views_module.MAX_VIEWS:
        raise CheckpointError(
            f"{path}: bad uvtag checkpoint: meta.protocol asks for {views:,} views a video "
            f"(num_clips x num_crops), more than the {views_module.MAX_VIEWS:,} allowed"
        )
    for key in ("mean", "std"):
        if key in protocol:
            protocol[key] = tuple(float(x) for x in protocol[key])
    out["protocol"] = protocol
    return out


def _check_config(config: object, path: Path) -> ModelConfig:
    try:
        return ModelConfig(**_check_fields(_CONFIG_FIELDS, config, "config", path))
    except ValueError as e:  # the fields' own consistency rules (ModelConfig._problems)
        raise CheckpointError(f"{path}: bad uvtag checkpoint: {first_line(e)}") from None


def _check_own_tensors(config: ModelConfig, state_dict: dict[str, Tensor], path: Path) -> None:
    """The config must describe the file's own tensors (checked on shapes, before any model is built)."""
    try:
        have = state_dict_architecture(state_dict)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: not a UniFormerV2 checkpoint (no tensor {e})") from None
    want = config_architecture(config)
    if have != want:
        raise CheckpointError(
            f"{path}: bad uvtag checkpoint: its config describes {want.describe()} but its tensors are {have.describe()}"
        )


def _read_uvtag(obj: dict, path: Path) -> LoadedWeights:
    version = obj.get("version")
    if not _is_int(version) or version != UVTAG_FORMAT_VERSION:
        raise CheckpointError(f"{path}: uvtag checkpoint version {_shown(version)}; this uvtag reads version 1")
    missing = [k for k in ("config", "labels", "state_dict") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: damaged uvtag checkpoint (no {', '.join(missing)})")
    config = _check_config(obj["config"], path)
    labels = _check_labels(obj["labels"], config.num_classes, path)
    meta = _check_meta(obj.get("meta"), path)
    if not isinstance(obj["state_dict"], dict):
        raise _bad(path, "state_dict", "a mapping of tensor names to tensors", type(obj["state_dict"]).__name__)
    state_dict = _check_tensors(obj["state_dict"], path)
    _check_own_tensors(config, state_dict, path)
    return LoadedWeights(state_dict, "uvtag", config, labels, meta)


# --------------------------------------------------------------------------------------------
# Strict loading with readable messages


def _examples(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (" ..." if len(keys) > n else "")


def _check_architecture(have: Architecture, want: Architecture, source: str) -> None:
    """Raise a one-line CheckpointError comparing the two architectures if they differ."""
    if have == want:
        return
    if dataclasses.replace(have, num_classes=want.num_classes) == want:
        raise CheckpointError(
            f"{source}: the classifier has {have.num_classes} classes but the model you asked for has "
            f"{want.num_classes} (weights for another dataset?)"
        )
    raise CheckpointError(f"{source}: this file looks like {have.describe()}; the model you asked for is {want.describe()}")


def load_into(model: UniFormerV2, state_dict: dict[str, Tensor], *, source: str = "checkpoint") -> None:
    """Strictly load an official-layout state dict into `model`.

    A missing BatchNorm `num_batches_tracked` is filled with 0 (it does not affect inference).
    Raises CheckpointError that compares architectures (from tensor shapes) instead of listing keys.
    """
    want = config_architecture(model.config)
    try:
        have = state_dict_architecture(state_dict)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{source}: not a UniFormerV2 checkpoint (no tensor {e})") from None
    _check_architecture(have, want, source)
    expected = model.state_dict()
    sd = dict(state_dict)
    for k, v in expected.items():
        if k.endswith(".num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(v, device="cpu")
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    reshaped = [f"{k} {list(sd[k].shape)} vs {list(v.shape)}" for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or reshaped:
        raise CheckpointError(
            f"{source}: does not fit {have.describe()}: {len(missing)} missing ({_examples(missing)}), "
            f"{len(unexpected)} unexpected ({_examples(unexpected)}), {len(reshaped)} other shapes ({_examples(reshaped, 2)})"
        )
    model.load_state_dict(sd, strict=True)


def _file_label_order(checkpoint: Checkpoint, layout: str) -> str | None:
    """Label list naming the head rows of a `layout` file of the same weights as `checkpoint`."""
    if checkpoint.labels is None:
        return None
    base = checkpoint.labels.removesuffix("_mmaction2")
    mm = f"{base}_mmaction2"
    return mm if layout == "mmaction2" and mm in available_label_lists() else base


def load_model(
    checkpoint: Checkpoint | None,
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> tuple[UniFormerV2, tuple[str, ...]]:
    """Build and load a model: resolve the file, read it, match head rows to the label list.

    Args:
        checkpoint: zoo entry (architecture, labels); None only for uvtag-format files.
        path: explicit weights file; None resolves `checkpoint` (cache, weights/, download).
    Returns (model in eval mode on CPU, class names, one per logit).
    """
    if checkpoint is None and path is None:
        raise CheckpointError("no model given: pass a zoo name or a weights file")
    file = resolve(checkpoint if path is None else path, cache_dir, offline=offline, progress=progress)
    loaded = read_checkpoint(file)
    if loaded.layout == "uvtag":
        config, labels, state_dict = loaded.config, loaded.labels, loaded.state_dict
        if checkpoint is not None:  # the entry decides the frames fed; no weight shape depends on them
            _check_architecture(config_architecture(config), config_architecture(checkpoint.config), str(file))
            config = dataclasses.replace(config, t_size=checkpoint.config.t_size)
    elif checkpoint is None:
        raise CheckpointError(f"{file}: a plain state dict; name the zoo model it belongs to (frames, labels, views)")
    else:
        config = checkpoint.config
        labels = labels_for(checkpoint.labels, config.num_classes)
        state_dict = loaded.state_dict
        source_order = _file_label_order(checkpoint, loaded.layout)
        if source_order is not None and source_order != checkpoint.labels:
            try:
                state_dict = reorder_classes(state_dict, read_labels(source_order), labels)
            except CheckpointError as e:
                raise CheckpointError(
                    f"{file}: {loaded.layout} file whose rows ({source_order}) do not map onto {checkpoint.labels}: "
                    f"{e} (load it with a zoo entry of the file's own layout)"
                ) from None
    model = build_model(config)
    load_into(model, state_dict, source=str(file))
    return model, labels
