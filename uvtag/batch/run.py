"""Tagging many videos: one model, decoding overlapped with inference, nothing lost.

A background thread decodes videos one after another and emits their clips; the main thread
batches clips through the model across video boundaries. A video is written (and flushed to
disk by the writer) as soon as its last clip is scored; a video that fails becomes a `Failure`
and the run goes on. A folder that could not be listed (an `UnreadableFolder` among the paths,
see `uvtag.video.files.find_videos`) is recorded as a `Failure` too, before any video is tagged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from uvtag.batch.output import BatchWriter
from uvtag.errors import UvtagError, describe, first_line
from uvtag.infer.clips import prefetch
from uvtag.infer.views import top_k
from uvtag.infer.windows import clip_spans
from uvtag.results import ClipPrediction, Failure, VideoInfo, VideoPrediction
from uvtag.tagger import Tagger
from uvtag.video.files import UnreadableFolder


@dataclass
class BatchSummary:
    """What a batch run did."""

    total: int = 0
    done: int = 0
    skipped: int = 0  # already complete in the output (resume)
    failures: list[Failure] = field(default_factory=list)
    video_sec: float = 0.0  # seconds of video tagged

    def record(self, writer: BatchWriter, path: str, result: VideoPrediction | Failure,
               on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None) -> None:
        """Write one finished video (or its failure) to disk, count it, and report it."""
        if isinstance(result, Failure):
            writer.write_failure(result)
            self.failures.append(result)
        else:
            writer.write_video(result)
            self.done += 1
            self.video_sec += result.info.duration_sec
        if on_video:
            on_video(path, result)


@dataclass
class _Video:
    path: str
    info: VideoInfo
    spans: list[tuple[float, float]]
    scores: np.ndarray
    remaining: int
    ended: bool = False
    embeddings: np.ndarray | None = None  # [num_clips, C] when the run embeds


def skip_completed(paths: Sequence[str | Path | UnreadableFolder], writer: BatchWriter,
                   on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None
                   ) -> tuple[BatchSummary, list[str]]:
    """A fresh summary counting the videos `writer` already holds (reported with None), and the rest in order, once each.

    Each `UnreadableFolder` in `paths` is written to `writer` as a failure and counted as one.
    """
    done_before = writer.completed()
    summary = BatchSummary(total=len(paths))
    todo: dict[str, None] = {}
    for item in paths:
        p = str(item)
        if isinstance(item, UnreadableFolder):
            summary.record(writer, p, Failure(p, item.message(), item.kind), on_video)
        elif p in done_before:
            summary.skipped += 1
            if on_video:
                on_video(p, None)
        else:
            todo[p] = None
    return summary, list(todo)


def _failure(path: str, error: BaseException) -> Failure:
    message = first_line(error, 10_000) if isinstance(error, UvtagError) else f"{path}: {describe(error)}"
    return Failure(path, message, type(error).__name__)


@dataclass(frozen=True)
class _Started:
    path: str
    info: VideoInfo
    spans: list[tuple[float, float]]


@dataclass(frozen=True)
class _Clip:
    path: str
    index: int  # into the video's spans
    clip: torch.Tensor  # [3, T, H, W]


@dataclass(frozen=True)
class _Ended:
    path: str


@dataclass(frozen=True)
class _Failed:
    path: str
    error: BaseException


def _produce(tagger: Tagger, paths: Sequence[str], clip_sec: float | None, stride_sec: float | None
             ) -> Iterator[_Started | _Clip | _Ended | _Failed]:
    """Per video: _Started, a _Clip per span, then _Ended, or _Failed at the first error."""
    for path in paths:
        try:
            with tagger.open(path) as reader:
                info = reader.info
                spans = clip_spans(info.duration_sec, clip_sec or tagger.default_clip_sec(), stride_sec)
                yield _Started(path, info, spans)
                for c, clip in tagger.span_clips(reader, spans):
                    yield _Clip(path, c, clip)
            yield _Ended(path)
        except Exception as e:  # one bad file must never end the batch
            yield _Failed(path, e)


def run_batch(tagger: Tagger, paths: Sequence[str | Path], writer: BatchWriter, *, clip_sec: float | None = None,
              stride_sec: float | None = None, top: int = 5, embed: bool = False,
              on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None) -> BatchSummary:
    """Tag every video in `paths` into `writer`, skipping videos the writer already holds.

    Args:
        tagger: the loaded model.
        paths: videos, in output order.
        writer: an open BatchWriter (its `completed()` set is skipped).
        clip_sec, stride_sec: consecutive clip length/step in seconds (default: the tagger's).
        top: labels per clip and per video.
        embed: also keep each clip's video embedding (`VideoPrediction.embeddings`, float32
            [num_clips, C]); scores are then the head applied to those embeddings.
        on_video: called after each video with its result (None when skipped), e.g. for progress.
    """
    summary, todo = skip_completed(paths, writer, on_video)
    videos: dict[str, _Video] = {}
    pending: list[tuple[str, int, torch.Tensor]] = []

    def finish(path: str, result: VideoPrediction | Failure) -> None:
        summary.record(writer, path, result, on_video)

    def flush_ready() -> None:
        for path in [p for p, v in videos.items() if v.ended and v.remaining == 0]:
            v = videos.pop(path)
            clips = tuple(
                ClipPrediction(float(s), float(e), top_k(torch.from_numpy(p), tagger.labels, top))
                for (s, e), p in zip(v.spans, v.scores)
            )
            summary_top = top_k(torch.from_numpy(v.scores.mean(axis=0)), tagger.labels, top)
            finish(path, VideoPrediction(path, tagger.name, v.info, summary_top, len(v.spans), clips,
                                         embeddings=v.embeddings))

    def run_pending() -> None:
        if not pending:
            return
        batch = torch.stack([clip for _, _, clip in pending])
        if embed:
            embeddings, logits = tagger.predictor.embed(batch)
        else:
            embeddings, logits = None, tagger.predictor.logits(batch)
        probs = torch.softmax(logits, dim=-1).numpy()
        for row, ((path, c, _), p) in enumerate(zip(pending, probs)):
            v = videos.get(path)
            if v is not None:  # None: the video failed after this clip was queued
                v.scores[c] = p
                if v.embeddings is not None:
                    v.embeddings[c] = embeddings[row].numpy()
                v.remaining -= 1
        pending.clear()
        flush_ready()

    depth = 2 * tagger.predictor.batch_size
    for event in prefetch(_produce(tagger, todo, clip_sec, stride_sec), depth=depth):
        if isinstance(event, _Started):
            shape = (len(event.spans), len(tagger.labels))
            vectors = np.zeros((len(event.spans), tagger.embed_dim), np.float32) if embed else None
            videos[event.path] = _Video(event.path, event.info, event.spans, np.zeros(shape, np.float32),
                                        len(event.spans), embeddings=vectors)
        elif isinstance(event, _Clip):
            pending.append((event.path, event.index, event.clip))
            if len(pending) >= tagger.predictor.batch_size:
                run_pending()
        elif isinstance(event, _Ended):
            videos[event.path].ended = True
            flush_ready()
        else:
            videos.pop(event.path, None)
            pending[:] = [item for item in pending if item[0] != event.path]
            finish(event.path, _failure(event.path, event.error))
    run_pending()
    return summary
