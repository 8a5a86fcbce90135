"""Class-name lists: line i of a list is output index i of a checkpoint's head.

The lists ship as package data in `uvtag/assets/labels/<name>.txt`; their provenance and
confidence are in that folder's README. A checkpoint whose class names are not known (e.g.
Something-Something V1) gets placeholder names `class_0 ... class_{n-1}`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from uvtag.errors import UsageError

__all__ = ["available_label_lists", "labels_for", "placeholder_labels", "read_label_file", "read_labels"]


def _folder():
    return resources.files("uvtag") / "assets" / "labels"


def available_label_lists() -> list[str]:
    """Names of the bundled lists (file stems in `uvtag/assets/labels`), sorted."""
    return sorted(p.name[: -len(".txt")] for p in _folder().iterdir() if p.name.endswith(".txt"))


def _parse(text: str, source: str) -> tuple[str, ...]:
    names = tuple(line.strip() for line in text.splitlines())
    while names and not names[-1]:
        names = names[:-1]
    if not names:
        raise UsageError(f"{source}: the label list is empty")
    if any(not n for n in names):
        raise UsageError(f"{source}: line {names.index('') + 1} is empty (one class name per line)")
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise UsageError(f"{source}: class name {n!r} appears twice (again on line {i + 1})")
        seen.add(n)
    return names


@lru_cache(maxsize=None)
def read_labels(name: str) -> tuple[str, ...]:
    """The bundled class list `name` (e.g. "kinetics400"), one name per head row.

    Raises UsageError naming the available lists when `name` is not bundled.
    """
    resource = _folder() / f"{name}.txt"
    if "/" in name or "\\" in name or not resource.is_file():
        raise UsageError(f"unknown label list {name!r}; bundled lists: {', '.join(available_label_lists())}")
    return _parse(resource.read_text(encoding="utf-8"), f"label list {name!r}")


def read_label_file(path: str | Path) -> tuple[str, ...]:
    """Class names from a UTF-8 text file with one name per line (a user-supplied list)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the label file ({e})") from e
    return _parse(text, str(path))


def placeholder_labels(num_classes: int) -> tuple[str, ...]:
    """`class_0 ... class_{num_classes-1}`, for checkpoints whose class names are unknown."""
    return tuple(f"class_{i}" for i in range(num_classes))


def labels_for(name: str | None, num_classes: int) -> tuple[str, ...]:
    """The bundled list `name`, or placeholders when `name` is None; its length must be num_classes."""
    names = placeholder_labels(num_classes) if name is None else read_labels(name)
    if len(names) != num_classes:
        raise UsageError(f"label list {name!r} has {len(names)} names but the model has {num_classes} classes")
    return names
