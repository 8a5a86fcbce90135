"""Files that are never seen half written: atomic replace, whole writes, directory fsync.

Outputs are UTF-8; a path that is not valid UTF-8 on disk round-trips byte for byte
(surrogateescape), hence `ENCODING` for every encode/decode of an output file. An OSError while
writing one (a full disk, a read-only or failing filesystem) becomes an `OutputError` naming the
file and the reason (`output_error`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from uvtag.errors import OutputError, UsageError

__all__ = ["ENCODING", "atomic_write", "check_output", "displayable", "fsync_dir", "output_error", "write_all"]

ENCODING = ("utf-8", "surrogateescape")


def displayable(text: str) -> str:
    """`text` for a page or picture made for people (HTML, SVG, PNG): a file name's bytes that are
    not UTF-8 (surrogate escapes) become U+FFFD, as browsers and file managers show them."""
    return text.encode(*ENCODING).decode("utf-8", "replace")


def check_output(path: str | os.PathLike[str], overwrite: bool = False, *, suffixes: tuple[str, ...] = (),
                 wrong_suffix: str = "", hint: str = "use --overwrite to replace it") -> Path:
    """The one preflight for a file uvtag is about to write; returns it as a Path.

    Raises UsageError, before any work starts, when the name lacks one of `suffixes` (the message
    is `wrong_suffix`), its folder does not exist, it is a directory, or it exists and `overwrite`
    is False (`hint` says what to do instead).
    """
    out = Path(path)
    if suffixes and out.suffix.lower() not in suffixes:
        raise UsageError(f"{out.name}: {wrong_suffix}")
    if not out.parent.exists():
        raise UsageError(f"{out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise UsageError(f"{out}: is a directory; give a file name for the output")
    if out.exists() and not overwrite:
        raise UsageError(f"{out.name} exists; {hint}")
    return out


def output_error(path: Path, error: OSError, hint: str = "") -> OutputError:
    """The one-line OutputError for `error` raised while writing `path` (`hint` appended)."""
    reason = error.strerror or str(error) or type(error).__name__
    return OutputError(f"{path}: cannot write it ({reason}){hint}")


def atomic_write(path: Path, data: bytes, hint: str = "; it was left untouched") -> None:
    """Write `data` to a temp file next to `path`, fsync it, then rename it over `path`.

    Raises:
        OutputError: the write failed (e.g. no space left; `hint` is appended to the message);
            `path` is as it was before.
    """
    try:
        _replace(path, data)
    except OSError as e:
        raise output_error(path, e, hint) from None
    fsync_dir(path.parent)


def _replace(path: Path, data: bytes) -> None:
    """The temp file, fsync and rename of `atomic_write`; the temp file never outlives it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte of `data` is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles: the rename is still done
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
