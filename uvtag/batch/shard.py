"""`--shard i/n`: a deterministic partition of the input list for array jobs on any scheduler.

Each video gets a stable name, its *shard key*: the path relative to the input folder it was
found under ('/'-separated), or the file name for a video given as a file. The shard is
`sha256(key) mod n`, so the split depends neither on the machine, the mount point, the order of
the inputs, Python's hash seed, nor the other files present: every video is in exactly one shard,
and adding a video never moves another one. Indices are 0-based (`0/4` ... `3/4`), as in
Kubernetes indexed jobs and most array schedulers (`--shard $SLURM_ARRAY_TASK_ID/4` with
`--array=0-3`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TypeVar

from uvtag.errors import UsageError

P = TypeVar("P", str, Path)


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): shard index (0-based) and shard count.

    Raises:
        UsageError: not `i/n` with integers 0 <= i < n.
    """
    head, sep, tail = text.strip().partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = -1
    if not sep or count < 1:
        raise UsageError(f"--shard {text!r}: expected i/n, e.g. 0/4 (shard index / number of shards)")
    if not 0 <= index < count:
        raise UsageError(f"--shard {text!r}: the index must be 0 to {count - 1} (shards count from 0)")
    return index, count


def shard_key(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]]) -> str:
    """The name a video is sharded by: its path relative to the innermost input folder holding it.

    A video that is not under any of `inputs` (a file given directly) is keyed by its file name.
    Pure: looks at the path strings only, never at the disk.
    """
    video = PurePath(path)
    roots = [PurePath(r) for r in inputs]
    holders = [r for r in roots if video != r and video.is_relative_to(r)]
    if not holders:
        return video.name
    return video.relative_to(max(holders, key=lambda r: len(r.parts))).as_posix()


def shard_of(key: str, count: int) -> int:
    """The shard (0 to count - 1) that owns `key`: the first 8 bytes of sha256(key) mod count."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(paths: Sequence[P], inputs: Sequence[str | os.PathLike[str]], index: int, count: int) -> list[P]:
    """The videos of shard `index` of `count`, in their original order.

    Args:
        paths: every video (e.g. from `find_videos(inputs)`).
        inputs: the files and folders `paths` were found from (see `shard_key`).
        index, count: as returned by `parse_shard`.
    """
    return [p for p in paths if shard_of(shard_key(p, inputs), count) == index]
