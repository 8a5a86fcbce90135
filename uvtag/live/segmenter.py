"""Incremental segments: `uvtag.infer.segments.to_segments`, one window at a time.

`Segmenter.add(span, scores)` takes the windows in time order and returns the segments that have
become final; `close()` ends the sequence and returns the rest. Over any sequence of windows, the
segments returned by all calls together are those `to_segments` returns for the whole sequence
(same labels, same start and end times bit for bit; scores equal up to float summation order),
and in its order (start, then descending score, then class index).

What "final" waits for, window by window:
- smoothing over `smooth_windows` (odd, 2h + 1) needs the h windows after a window before that
  window's smoothed score is known, so everything runs h windows behind the input;
- a run of active windows ends at the first inactive window (the boundary between them, see
  `window_boundaries`); it then waits as long as a later run of the same label could still merge
  with it (`merge_gap_sec`), and is dropped if shorter than `min_duration_sec`;
- segments are released in start order: one waits while a run that started earlier (or at the
  same time) is still open, so a short segment inside a longer one of another label comes out
  after the longer one closes.

Per-label NMS never removes anything here (the runs of one label are disjoint), so it is not
applied; class-agnostic NMS needs every segment at once and is not offered. Memory is bounded by
the smoothing kernel and the open runs, never by the length of the stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from uvtag.errors import UsageError
from uvtag.results import Segment

_EPS_SEC = 1e-9  # the tolerance `to_segments` compares times with

Span = tuple[float, float]


class Segmenter:
    """The state machine; arguments as `uvtag.infer.segments.to_segments` (without NMS)."""

    def __init__(self, labels: Sequence[str], *, threshold: float = 0.3, smooth_windows: int = 1,
                 min_duration_sec: float = 0.0, merge_gap_sec: float = 0.0, top_k_per_window: int | None = None) -> None:
        if not isinstance(smooth_windows, (int, np.integer)) or smooth_windows < 1 or smooth_windows % 2 == 0:
            raise UsageError(f"smoothing kernel must be an odd number of windows >= 1, got {smooth_windows!r}")
        if top_k_per_window is not None and top_k_per_window < 1:
            raise UsageError(f"top_k_per_window must be >= 1, got {top_k_per_window}")
        self.labels = tuple(labels)
        self.threshold = threshold
        self.half = int(smooth_windows) // 2
        self.min_duration_sec = min_duration_sec
        self.merge_gap_sec = merge_gap_sec
        self.top_k = top_k_per_window
        num_classes = len(self.labels)
        self._count = 0  # windows added
        self._done = 0  # windows whose smoothed scores were processed
        self._raw: deque[np.ndarray] = deque()  # scores of windows added but not yet processed (kernel 1)
        self._csum: deque[np.ndarray] = deque([np.zeros(num_classes)])  # csum[i] for the last 2h + 2 i
        self._csum_first = 0  # index of self._csum[0]
        self._centres: deque[float] = deque()  # centres of the windows from `_done - 1` on
        self._first_start: float | None = None
        self._last_start: float | None = None
        self._last_end = 0.0
        self._open: dict[int, list[float]] = {}  # class -> [start_sec, score_sum, num_windows]
        self._pending: dict[int, list[float]] = {}  # class -> [start_sec, end_sec, score_sum, num_windows]
        self._final: list[Segment] = []  # final segments not yet released (waiting for start order)

    # ------------------------------------------------------------------ public

    def add(self, span: Span, scores: np.ndarray) -> list[Segment]:
        """Window `span` = (start_sec, end_sec), after every window added before, with its
        class scores `[num_classes]`; returns the segments now final, in start order."""
        start, end = float(span[0]), float(span[1])
        row = np.asarray(scores, dtype=np.float64).reshape(-1)
        if row.shape[0] != len(self.labels):
            raise ValueError(f"{row.shape[0]} scores for {len(self.labels)} labels")
        if end <= start or (self._last_start is not None and start <= self._last_start):
            raise ValueError("window spans must have end > start and strictly increasing starts")
        if self._first_start is None:
            self._first_start = start
        self._last_start, self._last_end = start, end
        self._centres.append((start + end) / 2)
        self._count += 1
        if self.half == 0:
            self._raw.append(row)
        else:
            self._csum.append(self._csum[-1] + row)  # the sequential sums np.cumsum makes
        out: list[Segment] = []
        while self._done < self._count - self.half:
            out += self._process(self._smoothed(self._done))
        return out

    def close(self) -> list[Segment]:
        """End of the windows: the last smoothed scores, every open run and pending merge closed."""
        out: list[Segment] = []
        while self._done < self._count:
            out += self._process(self._smoothed(self._done))
        end = self._last_end
        for k in sorted(self._open):
            self._end_run(k, end)
        for k in sorted(self._pending):
            self._finish(k)
        self._final.sort(key=_order)
        out += self._final
        self._final = []
        return out

    # ------------------------------------------------------------------ steps

    def _smoothed(self, j: int) -> np.ndarray:
        """Smoothed scores of window j: the mean over [j - h, j + h] cut to the windows known so
        far (all of them once the sequence is closed), from the cumulative sums as `smooth` does."""
        if self.half == 0:
            return self._raw.popleft()
        lo, hi = max(j - self.half, 0), min(j + self.half + 1, self._count)
        value = (self._csum[hi - self._csum_first] - self._csum[lo - self._csum_first]) / (hi - lo)
        while self._csum_first < j + 1 - self.half:  # csum[lo] of the next windows starts at j + 1 - h
            self._csum.popleft()
            self._csum_first += 1
        return value

    def _active(self, smoothed: np.ndarray) -> np.ndarray:
        mask = smoothed >= self.threshold
        if self.top_k is not None and self.top_k < smoothed.shape[0]:
            best = np.zeros(smoothed.shape, dtype=bool)
            best[np.argsort(-smoothed, kind="stable")[: self.top_k]] = True
            mask &= best
        return mask

    def _process(self, smoothed: np.ndarray) -> list[Segment]:
        """Window `_done` with its smoothed scores: runs opened, extended, ended; merges settled."""
        j = self._done
        if j == 0:
            bound = self._first_start
        else:
            bound = (self._centres[0] + self._centres[1]) / 2  # window_boundaries' b_j
            self._centres.popleft()
        self._done += 1
        active = self._active(smoothed)
        for k in [k for k in self._open if not active[k]]:
            self._end_run(k, bound)
        for k in np.flatnonzero(active).tolist():
            run = self._open.get(k)
            if run is None:
                self._open[k] = [bound, float(smoothed[k]), 1]
            else:
                run[1] += float(smoothed[k])
                run[2] += 1
        for k in [k for k, p in self._pending.items() if k not in self._open and bound - p[1] > self.merge_gap_sec + _EPS_SEC]:
            self._finish(k)
        return self._release(bound)

    def _end_run(self, k: int, end: float) -> None:
        start, total, count = self._open.pop(k)
        pending = self._pending.get(k)
        if pending is not None and start - pending[1] <= self.merge_gap_sec + _EPS_SEC:
            pending[1] = end
            pending[2] += total
            pending[3] += count
            return
        if pending is not None:
            self._finish(k)
        self._pending[k] = [start, end, total, count]

    def _finish(self, k: int) -> None:
        start, end, total, count = self._pending.pop(k)
        if end - start >= self.min_duration_sec - _EPS_SEC:
            self._final.append(Segment(self.labels[k], k, start, end, total / count))

    def _release(self, bound: float) -> list[Segment]:
        """Final segments that no later segment can precede: those starting before every open or
        pending run, and no later than `bound` (any run still to open starts after it)."""
        if not self._final:
            return []
        horizon = min([bound + _EPS_SEC] + [r[0] for r in self._open.values()] + [p[0] for p in self._pending.values()])
        ready = sorted((s for s in self._final if s.start_sec < horizon), key=_order)
        if ready:
            self._final = [s for s in self._final if s.start_sec >= horizon]
        return ready


def _order(segment: Segment) -> tuple[float, float, int]:
    return segment.start_sec, -segment.score, segment.index
