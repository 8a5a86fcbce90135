"""Finding the videos under folders (for `uvtag batch`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from uvtag.errors import UsageError

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".ogv",
)


def parse_extensions(text: str | None) -> tuple[str, ...]:
    """'mp4,.MKV' -> ('.mp4', '.mkv'); None or '' -> VIDEO_EXTENSIONS."""
    if not text:
        return VIDEO_EXTENSIONS
    exts = tuple(dict.fromkeys("." + e.strip().lower().lstrip(".") for e in text.split(",") if e.strip()))
    if not exts:
        raise UsageError(f"--ext {text!r} names no extension")
    return exts


def _walk(folder: Path, exts: Sequence[str]) -> Iterable[Path]:
    """Video files under `folder`, following symlinked folders but never the same folder twice."""
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second link to a folder already walked
            dirs[:] = []
            continue
        seen.add(key)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                yield Path(root) / name


def find_videos(inputs: Sequence[str | Path], extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Every video named by `inputs`: files as given (any extension), folders searched recursively.

    Hidden files and folders are skipped; symlink loops are walked once; a file reached twice
    (e.g. by a link) is listed once. Order: inputs in the order given, each folder sorted.

    Raises:
        UsageError: an input does not exist.
    """
    out: list[Path] = []
    seen: set[str] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found: Iterable[Path] = _walk(path, extensions)
        elif path.exists():
            found = [path]
        else:
            raise UsageError(f"{path}: no such file or folder")
        for video in found:
            key = os.path.realpath(video)
            if key not in seen:
                seen.add(key)
                out.append(video)
    return out
