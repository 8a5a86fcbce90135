"""The output folder of `uvtag features`: one `.npy` per video and a JSON-lines manifest, kill-safe.

Layout of the folder (names: `uvtag.features.plan`):
    <name>.npy        float32 [T, C] per video, one row per window in time order
    <name>.mean.npy   float32 [C], the mean of the rows (`--pool mean`)
    manifest.jsonl    one JSON record per line: a finished video (`plan.feature_record`: its
                      files, the start/end second of every row, fps, feat_stride, num_frames,
                      model, C, window settings, uvtag version) or a failure (path, kind, error)
    manifest.shard-I-of-N.jsonl
                      the same, of a `--shard I/N` run: shards of an array job write into one
                      folder at once (each video is in one shard, so their arrays never meet),
                      each appending to its own manifest; `read_manifest` reads them all

Per video, the arrays are written atomically (temp file, fsync, rename) before its manifest line
is appended and fsynced, so the manifest lists only videos whose arrays are complete on disk. A
kill leaves at most arrays without a line (written again on resume) or a torn last line (cut off
on resume). A video is complete when its record is in the manifest and its files exist; resume
skips exactly those and retries failed videos, so a failure line may be followed by that video's
record from a later run: a path's last video record is the one that counts, and a path with
failure records only failed. A resumed run must
use the settings the manifest's records hold. On resume, a video complete in any manifest of the
folder is skipped (so an unsharded `--resume` completes what missing shards left), and the
settings of them all must agree.

One run per manifest at a time: the batch writers' lock, on `<manifest>.lock`.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from uvtag.batch.output import drop_lock, take_lock
from uvtag.errors import OutputError, UsageError
from uvtag.features.plan import FeatureSettings, feature_record
from uvtag.outputs.files import ENCODING, atomic_write, output_error, write_all
from uvtag.outputs.formats import failure_record, json_line
from uvtag.results import Failure, VideoFeatures, VideoPrediction

MANIFEST_NAME = "manifest.jsonl"
_SHARD_MANIFEST = re.compile(r"manifest\.shard-(\d+)-of-(\d+)\.jsonl")
_RESUME_HINT = "; every video written before is kept: fix that and continue with --resume"


def manifest_name(shard: tuple[int, int] | None = None) -> str:
    """The manifest a run writes: `manifest.jsonl`, or that of shard (index, count)."""
    return MANIFEST_NAME if shard is None else f"manifest.shard-{shard[0]}-of-{shard[1]}.jsonl"


def manifests(folder: str | os.PathLike[str]) -> list[Path]:
    """The manifests in `folder`: `manifest.jsonl` first, then the shards' by count and index."""
    out = Path(folder)
    try:
        names = os.listdir(out)
    except OSError:
        return []
    shards = sorted((int(m[2]), int(m[1]), name) for name in names if (m := _SHARD_MANIFEST.fullmatch(name)))
    return ([out / MANIFEST_NAME] if MANIFEST_NAME in names else []) + [out / name for _, _, name in shards]


def _scan(text: str, name: str) -> tuple[list[dict[str, Any]], int]:
    """(complete records, length in characters of the prefix that holds them) of a manifest's text."""
    records: list[dict[str, Any]] = []
    keep = 0
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline (torn or empty)
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{name}: line {number} is not JSON; cannot resume it") from None
        if not isinstance(record, dict) or record.get("record") not in ("video", "failure"):
            raise UsageError(f"{name}: line {number} is not a uvtag features record; cannot resume it")
        records.append(record)
        keep += len(line) + 1
    return records, keep


def read_manifest(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The complete records of a features folder's manifests (`manifests`), each in order (a line
    torn by a kill is left out). A path's last video record counts; one with only failures failed.

    Raises:
        OutputError: there is no manifest, or one cannot be read. UsageError: one is not a uvtag
            features manifest.
    """
    found = manifests(folder) or [Path(folder) / MANIFEST_NAME]  # none: the error names manifest.jsonl
    return [record for path in found for record in _scan(_read(path), str(path))[0]]


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(*ENCODING)
    except OSError as e:
        raise OutputError(f"{path}: cannot read it ({e.strerror or e})") from None


def _record_files(record: Mapping[str, Any]) -> list[str]:
    return [f for f in (record.get("features"), record.get("mean")) if f]


def _check_settings(records: list[dict[str, Any]], settings: FeatureSettings, manifest: Path) -> None:
    want = settings.shared()
    for record in records:
        if record["record"] != "video":
            continue
        had = {k: record.get(k) for k in want}
        if had != want:
            diff = ", ".join(f"{k} {had[k]!r} (now {want[k]!r})" for k in want if had[k] != want[k])
            raise UsageError(f"{manifest}: its videos were extracted with {diff}; resume with the same "
                             "options, or give another --out, or --overwrite")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


class FeatureStore:
    """Writes a features run into one folder; has `BatchWriter`'s interface, so `run_batch` drives it.

    Use `FeatureStore.open(...)`, then `completed()`, `write_video(...)` (a VideoPrediction made
    with embeddings), `write_failure(...)` and `close()` (or a `with` block).
    """

    def __init__(self, folder: Path, manifest: Path, names: Mapping[str, str], settings: FeatureSettings,
                 completed: set[str], fd: int, lock: int) -> None:
        self.folder = folder
        self.manifest = manifest
        self.names = dict(names)
        self.settings = settings
        self._completed = completed
        self._fd = fd
        self._lock = lock

    @classmethod
    def open(cls, folder: str | os.PathLike[str], names: Mapping[str, str], settings: FeatureSettings, *,
             resume: bool = False, overwrite: bool = False, shard: tuple[int, int] | None = None) -> FeatureStore:
        """Open (creating it if needed) the output folder of a features run.

        Args:
            folder: the output folder; its parent must exist.
            names: video path -> output name (`uvtag.features.plan.feature_names`).
            settings: the run's settings (compared with the manifest's records on resume).
            resume: keep the manifest's complete videos (see `completed`) and append to it.
            overwrite: start a new manifest (arrays are replaced as videos are written again).
            shard: (index, count) of a `--shard` run: it writes `manifest_name(shard)`.

        Raises:
            UsageError: the folder holds a manifest and neither flag is set, both are set, the
                folder cannot be one, or the manifest to resume is not uvtag's or has other settings.
            OutputError: another run holds the folder, or it cannot be read or written.
        """
        out = Path(folder)
        if resume and overwrite:
            raise UsageError("--resume and --overwrite cannot be used together")
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: is not a folder; --out names the folder the features go to")
        if not out.exists():
            if not out.parent.is_dir():
                raise UsageError(f"{out}: the folder {out.parent} does not exist")
            try:
                out.mkdir()
            except OSError as e:
                raise output_error(out, e) from None
        manifest = out / manifest_name(shard)
        lock = take_lock(manifest)
        try:
            return cls._start(out, manifest, names, settings, resume, overwrite, lock)
        except BaseException:
            drop_lock(manifest, lock)
            raise

    @classmethod
    def _start(cls, out: Path, manifest: Path, names: Mapping[str, str], settings: FeatureSettings, resume: bool,
               overwrite: bool, lock: int) -> FeatureStore:
        records: list[dict[str, Any]] = []
        keep = 0
        existing = manifest.exists()
        if existing:
            held = [manifest]
        elif manifest.name == MANIFEST_NAME:  # an unsharded run: the shards' manifests count too
            held = manifests(out)
        else:  # a shard may join a folder the other shards write
            held = []
        if held and not (resume or overwrite):
            raise UsageError(f"{out} holds features ({held[0].name}); use --resume to continue it or "
                             "--overwrite to start again")
        if resume:
            for path in manifests(out):  # the others' complete lines; a torn last line is theirs to cut
                text = _read(path)
                found, cut = _scan(text, str(path))
                _check_settings(found, settings, path)
                records += found
                if path == manifest:
                    own, keep = text, cut
        done = {r["path"] for r in records
                if r["record"] == "video" and all((out / f).is_file() for f in _record_files(r))}
        try:
            if existing and resume:
                os.truncate(manifest, len(own[:keep].encode(*ENCODING)))
                fd = os.open(manifest, os.O_WRONLY | os.O_APPEND)
            else:
                fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            os.fsync(fd)
        except OSError as e:
            raise output_error(manifest, e, _RESUME_HINT if keep else "") from None
        return cls(out, manifest, names, settings, done, fd, lock)

    def completed(self) -> set[str]:
        """Paths (exactly as given) of the videos already complete in the folder."""
        return set(self._completed)

    def write_video(self, prediction: VideoPrediction) -> None:
        """Write one video's arrays, then its manifest line, each forced to disk."""
        features = VideoFeatures.from_prediction(prediction, self.settings.window_sec, self.settings.stride_sec,
                                                 self.settings.sampled_frames)
        name = self.names.get(prediction.path)
        if name is None:
            raise ValueError(f"{prediction.path}: no output name was planned for this video")
        assert features.embed_dim == self.settings.embed_dim, (features.embed_dim, self.settings.embed_dim)
        record = feature_record(features, self.settings, name)
        self._save(record["features"], features.features)
        if record["mean"]:
            self._save(record["mean"], features.pooled())
        self._append(json_line(record))
        self._completed.add(prediction.path)

    def write_failure(self, failure: Failure) -> None:
        """Record a video that could not be processed, and force it to disk."""
        self._append(json_line(failure_record(failure)))

    def _save(self, relative: str, array: np.ndarray) -> None:
        target = self.folder / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(target.parent, e, _RESUME_HINT) from None
        atomic_write(target, _npy_bytes(array), _RESUME_HINT)

    def _append(self, text: str) -> None:
        if self._fd < 0:
            raise ValueError(f"{self.manifest}: the features store is closed")
        try:
            write_all(self._fd, text.encode(*ENCODING))
            os.fsync(self._fd)
        except OSError as e:
            raise output_error(self.manifest, e, _RESUME_HINT) from None

    def close(self) -> None:
        """Release the manifest and the folder's lock (everything written is already on disk)."""
        fd, self._fd = self._fd, -1
        try:
            if fd >= 0:
                os.close(fd)
        except OSError as e:
            raise output_error(self.manifest, e, _RESUME_HINT) from None
        finally:
            drop_lock(self.manifest, self._lock)
            self._lock = -1

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
