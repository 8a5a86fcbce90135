"""The live terminal view of `uvtag watch`: the latest window's labels and scores, the segments
just closed, and the counts (windows, skipped, gaps, latency). A Rich renderable fed with events."""

from __future__ import annotations

import collections

from rich.console import Group
from rich.table import Table
from rich.text import Text

from uvtag.live.events import Ended, Event, Gap, Lagged, SegmentClosed, Started, WindowScored

BAR_WIDTH = 30  # characters of a score bar at score 1


class LiveView:
    """Keeps what the view shows; `update(event)` with every event, render with `__rich__`."""

    def __init__(self, source: str, recent: int = 5) -> None:
        self.source = source
        self.window: WindowScored | None = None
        self.segments: collections.deque[SegmentClosed] = collections.deque(maxlen=recent)
        self.windows = self.skipped = self.gaps = 0
        self.status = "connecting"

    def update(self, event: Event) -> None:
        if isinstance(event, Started):
            self.status = f"{event.width}x{event.height}, {event.fps:g} fps, model {event.model}"
        elif isinstance(event, WindowScored):
            self.window = event
            self.windows += 1
        elif isinstance(event, SegmentClosed):
            self.segments.append(event)
        elif isinstance(event, Lagged):
            self.skipped = event.total_skipped
        elif isinstance(event, Gap):
            self.gaps += 1
        elif isinstance(event, Ended):
            self.status = f"ended: {event.reason}"

    def __rich__(self) -> Group:
        head = Text(f"{self.source}  ({self.status})", style="bold")
        parts: list = [head]
        if self.window is not None:
            w = self.window
            table = Table(title=f"window {w.start_sec:.2f}-{w.end_sec:.2f} s  latency {w.latency_sec:.2f} s",
                          title_justify="left", show_header=False, box=None)
            for ls in w.top:
                table.add_row(ls.label, f"{ls.score:.3f}", "█" * max(0, round(ls.score * BAR_WIDTH)))
            parts.append(table)
        if self.segments:
            segs = Table(title="segments", title_justify="left", box=None)
            for col in ("start_sec", "end_sec", "label", "score"):
                segs.add_column(col)
            for e in self.segments:
                s = e.segment
                segs.add_row(f"{s.start_sec:.2f}", f"{s.end_sec:.2f}", s.label, f"{s.score:.3f}")
            parts.append(segs)
        parts.append(Text(f"{self.windows} windows, {self.skipped} skipped (lag), {self.gaps} gaps", style="dim"))
        return Group(*parts)
