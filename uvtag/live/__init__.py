"""Watching live sources: sliding windows over a stream that has no end (`uvtag watch`).

source.py     open a live input with PyAV; timeouts, reconnection with back-off, one monotonic clock
watch.py      Watch: the bounded decode -> model queue, windows over the stream, skips when behind
segmenter.py  segments one window at a time, equal to `uvtag.infer.segments.to_segments`
events.py     the typed events a Watch yields
output.py     JSONL / SRT / VTT appenders that flush every event
view.py       the live terminal view
"""

from uvtag.live.events import Ended, Event, Gap, Lagged, SegmentClosed, Started, WindowScored
from uvtag.live.segmenter import Segmenter
from uvtag.live.source import SourceError, SourceLost, SourceOptions

__all__ = ["Ended", "Event", "Gap", "Lagged", "SegmentClosed", "Segmenter", "SourceError", "SourceLost",
           "SourceOptions", "Started", "WindowScored"]
