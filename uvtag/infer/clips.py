"""Turning one ascending stream of decoded frames into many (possibly overlapping) clips.

Sliding windows overlap, so a frame is often needed by several clips. `assemble_clips` keeps each
frame exactly as long as some unfinished clip still needs it: memory is bounded by the frames of
the clips that overlap the current position, never by the length of the video.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def needed_frames(plans: Sequence[Sequence[int]]) -> list[int]:
    """Sorted distinct frame indices used by any clip plan."""
    return sorted({i for plan in plans for i in plan})


def assemble_clips(plans: Sequence[Sequence[int]], frames: Iterable[tuple[int, T]]) -> Iterator[tuple[int, list[T]]]:
    """Group a frame stream into clips.

    Args:
        plans: plans[c] is the frame indices of clip c (any order, repeats allowed).
        frames: (index, frame) pairs in strictly ascending index order, covering `needed_frames(plans)`.

    Yields:
        (c, [frame for each index of plans[c]]) as soon as the last frame clip c needs has arrived,
        in order of completion (ties in clip order).

    Raises:
        ValueError: if the stream ends (or skips) before every clip is complete; the message
        names the first missing frame.
    """
    uses = Counter(i for plan in plans for i in set(plan))
    finish_at: dict[int, list[int]] = {}
    for c, plan in enumerate(plans):
        if plan:
            finish_at.setdefault(max(plan), []).append(c)
    cache: dict[int, T] = {}
    pending = sorted(finish_at)
    p = 0
    for index, frame in frames:
        if index in uses:
            cache[index] = frame
        while p < len(pending) and pending[p] <= index:
            for c in finish_at[pending[p]]:
                try:
                    clip = [cache[i] for i in plans[c]]
                except KeyError as e:
                    raise ValueError(f"frame {e.args[0]} needed by clip {c} never arrived") from None
                yield c, clip
                for i in set(plans[c]):
                    uses[i] -= 1
                    if uses[i] == 0:
                        cache.pop(i, None)
            p += 1
    if p < len(pending):
        raise ValueError(f"the frame stream ended before frame {pending[p]} (needed by clip {finish_at[pending[p]][0]})")
    for c, plan in enumerate(plans):
        if not plan:
            yield c, []


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Run `items` in a background thread, `depth` items ahead (decoding overlaps inference).

    Exceptions raised by the producer are re-raised in the consumer at the point they occurred.
    Closing the returned generator early stops the producer at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, _DONE))
        except BaseException as e:  # handed to the consumer, never lost
            q.put((False, e))

    worker = threading.Thread(target=produce, daemon=True, name="uvtag-prefetch")
    worker.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
