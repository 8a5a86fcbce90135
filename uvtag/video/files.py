"""Finding the videos under folders (for `uvtag batch`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class UnreadableFolder(os.PathLike):
    """A folder that could not be listed (e.g. permission denied), standing where its videos would.

    `path` is the folder as reached by the walk, `reason` the OS's words, `kind` the exception
    class name (e.g. PermissionError). It is path-like (`os.fspath`, `str` give `path`).
    """

    path: str
    reason: str
    kind: str

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def message(self) -> str:
        """One line for the user: the folder, the reason, what it cost."""
        return f"{self.path}: cannot list this folder ({self.reason}); the videos in it were not tagged"


def folders_above(path: str) -> list[str]:
    """Every folder above `path`, nearest first, as the path string spells it
    ("a/b/c.mp4" -> ["a/b", "a"]; "/x/y.mp4" -> ["/x", "/"]). Pure: never looks at the disk."""
    out: list[str] = []
    parent = os.path.dirname(path)
    while parent and parent not in out:
        out.append(parent)
        parent = os.path.dirname(parent)
    return out


def _unreadable(error: OSError, fallback: str) -> UnreadableFolder:
    return UnreadableFolder(str(error.filename or fallback), error.strerror or str(error),
                            type(error).__name__)


def _walk(folder: Path, exts: Sequence[str]) -> Iterable[Path | UnreadableFolder]:
    """Video files under `folder`, following symlinked folders but never the same folder twice,
    and an `UnreadableFolder` where a folder could not be listed (in walk order)."""
    seen: set[tuple[int, int]] = set()
    errors: list[OSError] = []
    for root, dirs, files in os.walk(folder, onerror=errors.append, followlinks=True):
        yield from (_unreadable(e, root) for e in errors)
        errors.clear()
        try:
            st = os.stat(root)
        except OSError as e:  # gone or barred since the walk listed it
            dirs[:] = []
            yield _unreadable(e, root)
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second link to a folder already walked
            dirs[:] = []
            continue
        seen.add(key)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                yield Path(root) / name
    yield from (_unreadable(e, str(folder)) for e in errors)


def find_videos(inputs: Sequence[str | Path], extensions: Sequence[str] = VIDEO_EXTENSIONS, *,
                report_unreadable: bool = False) -> list[Path | UnreadableFolder]:
    """Every video named by `inputs`: files as given (any extension), folders searched recursively.

    Hidden files and folders are skipped; symlink loops are walked once; a file reached twice
    (e.g. by a link) is listed once. Order: inputs in the order given, each folder sorted.
    A folder that cannot be listed is left out, or, with `report_unreadable`, listed as an
    `UnreadableFolder` where its videos would be (for the caller to report as a failure).

    Raises:
        UsageError: an input does not exist.
    """
    out: list[Path | UnreadableFolder] = []
    seen: set[str] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found: Iterable[Path | UnreadableFolder] = _walk(path, extensions)
        elif path.exists():
            found = [path]
        else:
            raise UsageError(f"{path}: no such file or folder")
        for video in found:
            if isinstance(video, UnreadableFolder) and not report_unreadable:
                continue
            key = os.path.realpath(video)
            if key not in seen:
                seen.add(key)
                out.append(video)
    return out
