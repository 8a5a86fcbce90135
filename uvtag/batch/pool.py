"""Many decoder processes feeding one model: clips cross in shared memory, batches span videos.

`run_pool` tags a folder like `uvtag.batch.run.run_batch`, with the decoding moved out of the
model's process. N decoder processes (`spawn`) each take the next video from the parent, decode
the frames its clips need at the resized size, cut the crop and write each clip as uint8
[T, c, c, 3] into a slot of a shared-memory ring (one per decoder, `SLOTS_PER_DECODER` deep; a
semaphore per decoder counts its free slots). The parent copies each clip out as it arrives,
frees the slot, normalises the clip on the model's device (`uvtag.infer.device_prep`, uint8
across: 4x fewer bytes than float32) and fills the model's batches across videos. A video is
written through the caller's kill-safe `BatchWriter` once its last clip is scored, so resume and
"every finished video is on disk" hold as in `run_batch`; videos are written in the order they
finish.

Rows equal `run_batch`'s: the same frames, crops and float32 normalisation (bit-identical with
`--batch-size 1`; other batch sizes change float32 sums by about 1e-6, as batching always does).

Crash isolation: a decoder that dies (segfault, killed) or sends nothing for
`decode_timeout_sec` costs its video only (a failure row naming the signal or the timeout), and a
fresh decoder takes its place. Decoders die with the parent (`uvtag.video.isolated`'s guard).

Sizing (`pool_size`): one decoder per core but one (the model's process feeds the device), one
FFmpeg thread each. Measured with plain PyAV decoding on a 16-core H200 machine: 16 processes x 1
thread 3,732 frames/s, 16 x auto 3,172, 8 x 2 threads 2,673, 8 x auto 2,494, 4 x auto 1,805;
`python tests/benchmarks/bench_pool.py` measures the grid on the machine at hand.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
import torch

from uvtag.batch.output import BatchWriter
from uvtag.batch.processes import exit_reason
from uvtag.batch.run import BatchSummary, _failure, skip_completed
from uvtag.infer.device_prep import ClipPrep, prepare_clip
from uvtag.infer.views import top_k
from uvtag.results import ClipPrediction, Failure, VideoInfo, VideoPrediction

SLOTS_PER_DECODER = 4  # clips a decoder may have written ahead of the parent
DEFAULT_DECODE_TIMEOUT_SEC = 60.0
_POLL_SEC = 0.5


def pool_size(cpu_count: int | None = None) -> tuple[int, int]:
    """(decoder processes, FFmpeg threads each) for a machine with `cpu_count` cores (default: this one).

    One decoder per core, one core left to the model's process, one thread each: the best of the
    measured grid (module docstring).
    """
    cpus = cpu_count or os.cpu_count() or 1
    return max(1, cpus - 1), 1


@dataclasses.dataclass(frozen=True)
class DecodePlan:
    """What a decoder process needs to turn a video into clips (picklable)."""

    num_frames: int
    input_size: int
    sampler: str
    spatial_index: int
    clip_sec: float
    stride_sec: float | None
    backend: str | None = None
    ffmpeg_threads: int = 1
    faults: tuple[tuple[str, str], ...] = ()  # tests only: (path, fault of uvtag.video.isolated._inject)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return self.num_frames, self.input_size, self.input_size, 3


def _video_clips(path: str, plan: DecodePlan):
    """("start", info, spans), then ("clip", index, [T frames uint8 [c, c, 3]]) per span, as span_clips cuts them."""
    from uvtag.infer.clips import assemble_clips, needed_frames
    from uvtag.infer.windows import clip_spans
    from uvtag.video.reader import open_video
    from uvtag.video.sampling import sample_span_indices, timestamps_to_frame_range
    from uvtag.video.transforms import crop_offsets, resized_shape

    with open_video(path, plan.backend) as reader:
        info = reader.info
        spans = clip_spans(info.duration_sec, plan.clip_sec, plan.stride_sec)
        yield "start", info, spans
        times = reader.timestamps_sec()
        plans = [sample_span_indices(*timestamps_to_frame_range(s, e, times), plan.num_frames, 0, 1, plan.sampler)
                 for s, e in spans]
        size = resized_shape(info.height, info.width, plan.input_size)
        c = plan.input_size
        y0, x0 = crop_offsets(size[0], size[1], c, plan.spatial_index)
        frames = ((i, f[y0 : y0 + c, x0 : x0 + c]) for i, f in reader.iter_frames(needed_frames(plans), size=size))
        for index, parts in assemble_clips(plans, frames):
            yield "clip", index, parts


def _decode_videos(conn, ring: torch.Tensor, free, plan: DecodePlan) -> None:
    """Decoder loop: a path in, ("start" | "clip" | "end" | "fail", path, ...) messages out, until None."""
    from uvtag.video.backends import set_decoder_threads
    from uvtag.video.isolated import _inject

    set_decoder_threads(plan.ffmpeg_threads)
    slots = ring.numpy()  # [SLOTS, T, c, c, 3], shared with the parent
    faults = dict(plan.faults)
    slot = 0
    while (path := conn.recv()) is not None:
        try:
            _inject(faults.get(path))
            for event in _video_clips(path, plan):
                if event[0] == "start":
                    conn.send(("start", path, event[1], event[2]))
                    continue
                free.acquire()  # the parent frees slots in the order they were sent
                np.stack(event[2], out=slots[slot])
                conn.send(("clip", path, event[1], slot))
                slot = (slot + 1) % len(slots)
            conn.send(("end", path))
        except Exception as e:  # one bad file must never end the decoder
            conn.send(("fail", path, _failure(path, e)))


def _serve(conn, ring: torch.Tensor, free, plan: DecodePlan, parent_pid: int) -> None:
    from uvtag.video.isolated import _die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent(parent_pid)
    torch.set_num_threads(1)
    try:
        _decode_videos(conn, ring, free, plan)
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent is gone
        pass


class _Decoder:
    """One decoder process, its pipe, its slot ring and the video it is on."""

    def __init__(self, ctx, plan: DecodePlan) -> None:
        self.ring = torch.empty((SLOTS_PER_DECODER, *plan.clip_shape), dtype=torch.uint8).share_memory_()
        self.free = ctx.Semaphore(SLOTS_PER_DECODER)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, self.ring, self.free, plan, os.getpid()),
                                   name="uvtag-decoder", daemon=True)
        self.process.start()
        child.close()
        self.path: str | None = None
        self.since = time.monotonic()

    def ask_to_stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass

    def give(self, path: str | None) -> None:
        self.path, self.since = path, time.monotonic()
        if path is not None:
            self.conn.send(path)

    def stop(self) -> None:
        self.ask_to_stop()
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


@dataclasses.dataclass
class _Video:
    info: VideoInfo
    spans: list[tuple[float, float]]
    scores: np.ndarray
    remaining: int
    ended: bool = False


def run_pool(tagger, paths: Sequence[str | Path], writer: BatchWriter, *, clip_sec: float | None = None,
             stride_sec: float | None = None, top: int = 5, decoders: int | None = None,
             ffmpeg_threads: int | None = None, decode_timeout_sec: float = DEFAULT_DECODE_TIMEOUT_SEC,
             on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None,
             faults: dict[str, str] | None = None) -> BatchSummary:
    """Tag every video in `paths` into `writer` with `decoders` decoder processes and `tagger`'s model.

    Args:
        tagger: the loaded model (a `uvtag.tagger.Tagger`), run in this process.
        paths, writer, clip_sec, stride_sec, top, on_video: as `run_batch`.
        decoders, ffmpeg_threads: pool size; None = `pool_size()`.
        decode_timeout_sec: a decoder silent this long on one video is killed, the video a failure.
        faults: tests only: path -> a fault for `uvtag.video.isolated._inject` in its decoder.
    """
    summary, todo = skip_completed(paths, writer, on_video)
    if not todo:
        return summary
    auto_decoders, auto_threads = pool_size()
    count = max(1, min(decoders or auto_decoders, len(todo)))
    ck = tagger.checkpoint
    prep = ClipPrep.for_checkpoint(ck)
    plan = DecodePlan(ck.num_frames, ck.input_size, ck.sampler, prep.spatial_index,
                      clip_sec or tagger.default_clip_sec(), stride_sec, tagger.backend,
                      auto_threads if ffmpeg_threads is None else ffmpeg_threads, tuple((faults or {}).items()))
    run = _PoolRun(tagger, writer, summary, top, prep, on_video)
    ctx = mp.get_context("spawn")
    queue = deque(todo)
    pool = [_Decoder(ctx, plan) for _ in range(count)]
    try:
        for d in pool:
            d.give(queue.popleft() if queue else None)
        while busy := [d for d in pool if d.path is not None]:
            ready = set(wait([x for d in busy for x in (d.conn, d.process.sentinel)], timeout=_POLL_SEC))
            for i, d in enumerate(pool):
                if d.path is not None and not _pump(run, d, ready, decode_timeout_sec):
                    d.stop()
                    pool[i] = d = _Decoder(ctx, plan)
                if d.path is None and queue:
                    d.give(queue.popleft())
        run.run_pending()
    finally:
        for d in pool:  # all at once, then wait: they exit in parallel
            d.ask_to_stop()
        for d in pool:
            d.stop()
    return summary


def _pump(run: "_PoolRun", d: _Decoder, ready: set, timeout_sec: float) -> bool:
    """Handle everything decoder `d` has sent; False when it died or timed out (its video then fails)."""
    try:
        while d.path is not None and d.conn.poll():
            d.since = time.monotonic()
            if run.handle(d.conn.recv(), d):
                d.path = None
    except (EOFError, OSError):  # the pipe broke: the process is gone
        pass
    else:
        if d.path is None or (d.process.sentinel not in ready and d.process.is_alive()):
            if d.path is None or time.monotonic() - d.since <= timeout_sec:
                return True
            d.process.kill()
            run.fail(d.path, f"{d.path}: decoder timed out after {timeout_sec:g} s")
            d.path = None
            return False
    run.fail(d.path, f"{d.path}: decoder process died ({exit_reason(d.process)})")
    d.path = None
    return False


class _PoolRun:
    """The parent's side: clips into batches across videos, finished videos into the writer."""

    def __init__(self, tagger, writer: BatchWriter, summary: BatchSummary, top: int, prep: ClipPrep,
                 on_video) -> None:
        self.tagger, self.writer, self.summary, self.top, self.prep, self.on_video = tagger, writer, summary, top, prep, on_video
        self.videos: dict[str, _Video] = {}
        self.pending: list[tuple[str, int, torch.Tensor]] = []

    def handle(self, message: tuple, d: _Decoder) -> bool:
        """Apply one decoder message; True when the decoder is done with its video."""
        kind, path = message[0], message[1]
        if kind == "start":
            info, spans = message[2], message[3]
            shape = (len(spans), len(self.tagger.labels))
            self.videos[path] = _Video(info, spans, np.zeros(shape, np.float32), len(spans))
        elif kind == "clip":
            clip = d.ring[message[3]].clone()  # [T, c, c, 3] uint8, out of the slot
            d.free.release()
            self.pending.append((path, message[2], prepare_clip(clip, self.prep, self.tagger.predictor.device)))
            if len(self.pending) >= self.tagger.predictor.batch_size:
                self.run_pending()
        elif kind == "end":
            self.videos[path].ended = True
            self._flush_ready()
            return True
        else:
            self._drop(path)
            self.summary.record(self.writer, path, message[2], self.on_video)
            return True
        return False

    def fail(self, path: str, message: str) -> None:
        self._drop(path)
        self.summary.record(self.writer, path, Failure(path, message, "VideoError"), self.on_video)

    def _drop(self, path: str) -> None:
        self.videos.pop(path, None)
        self.pending[:] = [item for item in self.pending if item[0] != path]

    def run_pending(self) -> None:
        if not self.pending:
            return
        logits = self.tagger.predictor.logits(torch.stack([clip for _, _, clip in self.pending]))
        probs = torch.softmax(logits, dim=-1).numpy()
        for (path, c, _), p in zip(self.pending, probs):
            v = self.videos.get(path)
            if v is not None:
                v.scores[c] = p
                v.remaining -= 1
        self.pending.clear()
        self._flush_ready()

    def _flush_ready(self) -> None:
        labels, top = self.tagger.labels, self.top
        for path in [p for p, v in self.videos.items() if v.ended and v.remaining == 0]:
            v = self.videos.pop(path)
            clips = tuple(ClipPrediction(float(s), float(e), top_k(torch.from_numpy(p), labels, top))
                          for (s, e), p in zip(v.spans, v.scores))
            summary_top = top_k(torch.from_numpy(v.scores.mean(axis=0)), labels, top)
            result = VideoPrediction(path, self.tagger.name, v.info, summary_top, len(v.spans), clips)
            self.summary.record(self.writer, path, result, self.on_video)
