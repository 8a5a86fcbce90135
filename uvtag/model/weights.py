"""Checkpoint files: find or download them, read them safely, load them strictly.

Reading: only `torch.load(..., weights_only=True)`, so a file that would need to run code while
unpickling is refused, never executed. Accepted containers: a bare official state dict
(`backbone.*` keys), `{"model_state": ...}` (SlowFast training format), `{"state_dict" | "model" |
"module": ...}`, `module.` key prefixes, MMAction2's layout (`backbone.transformer.norm.*`,
`cls_head.fc_cls.*`) and uvtag's own format (state dict + config + labels + meta).

Finding: `resolve` sends every name or path through one place: an existing path is used as is;
a zoo name is looked up in the cache dir, then in `weights/` folders, else downloaded into
`<cache>/<file>.part` (resumed with an HTTP Range request), hashed in chunks, and renamed into
place only after verification, so an interrupted download never looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import pickle
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import torch
from torch import Tensor

from tqdm import tqdm

from uvtag import __version__
from uvtag.errors import CheckpointError, ChecksumError, DownloadError, OfflineError, UnknownModelError
from uvtag.model.uniformerv2 import ModelConfig, UniFormerV2, build_model
from uvtag.labels import available_label_lists, labels_for, read_labels
from uvtag.model.zoo import (
    Architecture,
    Checkpoint,
    config_architecture,
    get_checkpoint,
    state_dict_architecture,
)

__all__ = [
    "LoadedWeights",
    "cache_dir",
    "convert_mmaction2",
    "load_into",
    "load_model",
    "load_state_dict_file",
    "local_file",
    "read_checkpoint",
    "reorder_classes",
    "resolve",
    "save_checkpoint",
    "sha256_file",
    "weights_dirs",
]

UVTAG_FORMAT = "uvtag"
UVTAG_FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20  # 1 MiB per read, for hashing and downloading
DEFAULT_TIMEOUT_SEC = 10.0  # per connect / read; a dead network fails fast
_WRAPPERS = ("model_state", "state_dict", "model", "module")  # SlowFast, MMAction2, generic
_CHECKPOINT_SUFFIXES = (".pyth", ".pth", ".pt", ".ckpt", ".bin")


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


def _torch_load(path: Path) -> object:
    """torch.load with weights_only=True; every failure becomes one CheckpointError line."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    with open(path, "rb") as f:
        head = f.read(4)
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
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_first_line(e)})") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file ({type(e).__name__})") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


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


def _read_uvtag(obj: dict, path: Path) -> LoadedWeights:
    version = obj.get("version")
    if version != UVTAG_FORMAT_VERSION:
        raise CheckpointError(f"{path}: uvtag checkpoint version {version!r}; this uvtag reads version 1")
    try:
        config = ModelConfig(**obj["config"])
        labels = tuple(obj["labels"])
        state_dict = obj["state_dict"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged uvtag checkpoint ({_first_line(e)})") from None
    if len(labels) != config.num_classes:
        raise CheckpointError(f"{path}: {len(labels)} labels for {config.num_classes} classes")
    return LoadedWeights(_check_tensors(state_dict, path), "uvtag", config, labels, dict(obj.get("meta") or {}))


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


# --------------------------------------------------------------------------------------------
# Finding files: cache, weights/ folders, download


def cache_dir(path: str | Path | None = None) -> Path:
    """Where downloads go: `path` if given, else $UVTAG_HOME, else ~/.cache/uvtag."""
    return _cache_root(path)


def _cache_root(path: str | Path | None) -> Path:
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("UVTAG_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "uvtag"


def weights_dirs() -> list[Path]:
    """Folders searched for hand-placed files: the repository's weights/, then ./weights."""
    repo = Path(__file__).resolve().parents[2] / "weights"
    here = Path.cwd() / "weights"
    return [repo] if repo.resolve() == here.resolve() else [repo, here]


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("UVTAG_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _bad_digest(path: Path, checkpoint: Checkpoint) -> str | None:
    """None if the file matches the known sha256 (or prefix, or nothing is known), else its digest."""
    expected = checkpoint.expected_digest
    if not expected:
        return None
    got = sha256_file(path)
    return None if got.startswith(expected.lower()) else got


def resolve(
    checkpoint_or_path: Checkpoint | str | Path,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SEC,
) -> Path:
    """A verified local file for a zoo entry, a zoo name, or a path.

    Args:
        checkpoint_or_path: an existing file is returned as is; a `Checkpoint` or zoo name is
            looked up in the cache, then in weights/ folders, then downloaded.
        cache_dir: overrides $UVTAG_HOME and ~/.cache/uvtag.
        offline: never touch the network (None: $UVTAG_OFFLINE=1).
        progress: progress bar on stderr while downloading.
        timeout: seconds per connection attempt / read.
    Raises CheckpointError (missing path), UnknownModelError, OfflineError, ChecksumError, DownloadError.
    """
    if isinstance(checkpoint_or_path, Checkpoint):
        checkpoint = checkpoint_or_path
    else:
        candidate = Path(checkpoint_or_path).expanduser()
        if candidate.exists():
            if not candidate.is_file():
                raise CheckpointError(f"{candidate}: not a regular file")
            return candidate
        text = str(checkpoint_or_path)
        if isinstance(checkpoint_or_path, Path) or os.sep in text:
            raise CheckpointError(f"{candidate}: no such file")
        try:
            checkpoint = get_checkpoint(text)
        except UnknownModelError:
            if text.endswith(_CHECKPOINT_SUFFIXES):
                raise CheckpointError(f"{candidate}: no such file (and not a zoo model name)") from None
            raise
    return _resolve_checkpoint(checkpoint, _cache_root(cache_dir), _offline(offline), progress, timeout)


def local_file(checkpoint: Checkpoint, cache_dir: str | Path | None = None) -> Path | None:
    """Where `checkpoint` already is on disk (cache, then weights/ folders), without hashing; None if nowhere.

    A quick look for listings; `resolve` is what verifies the checksum before use.
    """
    root = _cache_root(cache_dir)
    candidates = [root / checkpoint.filename] + [d / n for d in weights_dirs() for n in checkpoint.filenames]
    return next((p for p in candidates if p.is_file()), None)


def _resolve_checkpoint(checkpoint: Checkpoint, root: Path, offline: bool, progress: bool, timeout: float) -> Path:
    target = root / checkpoint.filename
    if target.is_file():
        got = _bad_digest(target, checkpoint)
        if got is None:
            return target
        if offline:
            raise ChecksumError(
                f"{target}: sha256 {got} is not the expected {checkpoint.expected_digest}; "
                "delete it, or go online to download it again"
            )
        warnings.warn(f"{target}: sha256 mismatch (damaged cache file); downloading it again", stacklevel=3)
        target.unlink()
    for folder in weights_dirs():
        for name in checkpoint.filenames:
            hand = folder / name
            if hand.is_file():
                got = _bad_digest(hand, checkpoint)
                if got is not None:
                    raise ChecksumError(
                        f"{hand}: sha256 {got} is not the expected {checkpoint.expected_digest} of "
                        f"{checkpoint.name}; replace or remove that file"
                    )
                return hand
    if not checkpoint.urls:
        where = " or ".join(str(d / checkpoint.filename) for d in weights_dirs())
        raise OfflineError(f"{checkpoint.name} has no download location and is not on disk; put {checkpoint.filename} at {where}")
    if offline:
        raise OfflineError(
            f"{checkpoint.name} is not on disk and downloads are off (offline); download "
            f"{checkpoint.urls[0]} by hand and save it as {target}"
        )
    return _download_any(checkpoint, target, progress, timeout)


class _FetchFailed(Exception):
    """One URL failed; the message is the reason."""


def _download_any(checkpoint: Checkpoint, target: Path, progress: bool, timeout: float) -> Path:
    """Try every URL in order; verify; atomically move into place."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache folder {target.parent} ({e.strerror}); set UVTAG_HOME") from None
    part = target.with_name(target.name + ".part")
    failures: list[str] = []
    checksum_failures = 0
    for url in checkpoint.urls:
        try:
            _fetch(url, part, progress, timeout)
        except _FetchFailed as e:
            failures.append(f"{url} ({e})")
            continue
        got = _bad_digest(part, checkpoint)
        if got is not None:
            failures.append(f"{url} (sha256 {got[:16]}... is not the expected {checkpoint.expected_digest[:16]}...)")
            checksum_failures += 1
            _remove(part)
            _remove(_url_note(part))
            continue
        os.replace(part, target)
        _remove(_url_note(part))
        return target
    kept = f" (the partial download {part.name} resumes next time)" if part.exists() else ""
    if not part.exists():
        _remove(_url_note(part))
    error = ChecksumError if checksum_failures == len(failures) else DownloadError
    raise error(
        f"could not download {checkpoint.name}; tried {'; '.join(failures)}{kept}. "
        f"Download it by hand and save it as {target}"
    )


def _url_note(part: Path) -> Path:
    return part.with_name(part.name + ".url")  # which URL the .part bytes came from


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fetch(url: str, part: Path, progress: bool, timeout: float, max_resumes: int = 2) -> None:
    """Stream `url` into `part`, resuming from its current size; retry a dropped stream."""
    note = _url_note(part)
    if part.exists() and (not note.exists() or note.read_text().strip() != url):
        _remove(part)  # bytes from another mirror (or unknown) must not be continued
    note.write_text(url)
    resumes = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, offset, progress, timeout)
            return
        except HTTPError as e:
            if e.code == 416 and offset:  # range not satisfiable: start over once
                _remove(part)
                if resumes < max_resumes:
                    resumes += 1
                    continue
            raise _FetchFailed(f"HTTP {e.code} {e.reason}") from None
        except (URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or _first_line(e) or type(e).__name__
            grew = part.exists() and part.stat().st_size > offset
            if grew and resumes < max_resumes:
                resumes += 1
                continue
            raise _FetchFailed(str(reason)) from None


def _fetch_once(url: str, part: Path, offset: int, progress: bool, timeout: float) -> None:
    headers = {"User-Agent": f"uvtag/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urlopen(Request(url, headers=headers), timeout=timeout) as response:
        resumed = offset > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise OSError(f"server answered the range request with {response.headers.get('Content-Range')!r}")
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as out, _progress_bar(part, total, start, progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"connection closed after {size} of {total} bytes")


def _progress_bar(part: Path, total: int | None, start: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
        desc=part.name.removesuffix(".part"), disable=not enabled, leave=False,
    )
