"""Errors uvtag raises on purpose.

Every message is one readable line that names the thing at fault and, where there is one, the fix.
The CLI turns a `UvtagError` into that line on stderr and `exit_code`; nothing else catches them.
"""

from __future__ import annotations


class UvtagError(Exception):
    """Base class: a problem the user can act on (bad input, missing file, no network...)."""

    exit_code = 1


class UsageError(UvtagError):
    """Arguments that cannot work together (e.g. a window longer than the video)."""

    exit_code = 2


class UnknownModelError(UvtagError):
    """A model name that is not in the zoo."""

    exit_code = 2


class CheckpointError(UvtagError):
    """A checkpoint file that cannot be loaded: wrong architecture, corrupt, or unsafe."""


class DownloadError(UvtagError):
    """A download that failed on every known location."""


class ChecksumError(DownloadError):
    """A downloaded or cached file whose sha256 is not the expected one."""


class OfflineError(DownloadError):
    """A model is needed that is not on disk, and downloading is impossible or disabled."""


class VideoError(UvtagError):
    """A video that cannot be opened or decoded (the message names the file and the reason)."""


class DeviceError(UvtagError):
    """A requested device that is not available (e.g. --device cuda without CUDA)."""

    exit_code = 2


class OutputError(UvtagError):
    """An output file that cannot be written: a full disk, a read-only or failing filesystem, or
    another uvtag run writing the same file (the message names the file and the reason)."""


def one_line(text: object, limit: int | None = None) -> str:
    """`text` with every run of whitespace (newlines too) made one space, at most `limit` characters."""
    return " ".join(str(text).split())[:limit]


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's message as one line: an OSError's strerror, else the first non-empty line of
    its text, else its type name; whitespace collapsed, at most `limit` characters."""
    text = getattr(exc, "strerror", None) or next((line for line in str(exc).splitlines() if line.strip()), "")
    return one_line(text, limit) or type(exc).__name__


def describe(exc: BaseException, limit: int = 300) -> str:
    """An exception as "Type: message" on one line, e.g. "IndexError: list index out of range".

    Exceptions from outside the standard library carry their package: "av.PermissionError: ...".
    """
    package = type(exc).__module__.partition(".")[0]
    name = type(exc).__name__ if package == "builtins" else f"{package}.{type(exc).__name__}"
    text = one_line(exc, limit)
    return f"{name}: {text}" if text else name
