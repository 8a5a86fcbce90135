"""Several devices (or CPU worker processes) on one machine, one shared queue, one writer.

One worker process per device (`spawn`, so no inherited CUDA context, threads or locks), each
loading its own copy of the model. The parent holds the queue of videos and hands the next one to
whichever worker asks (pull, so a slow video never holds the others back), receives each finished
`VideoPrediction` or `Failure`, and writes it through the caller's kill-safe `BatchWriter`:
resume and "every finished video is on disk" hold exactly as in `run_batch`. Videos are written in
the order they finish, not the input order (`uvtag merge --inputs` restores the input order).

A worker that dies (segfault, out of memory, killed) costs nothing but time: its video goes back
to the front of the queue once (`retries`), then is recorded as a failure, and a fresh worker
takes its place. A worker that cannot load the model stops the run with that worker's error.

Each video is tagged whole by one worker with `Tagger.tag_clips` (clips batched within the video),
so scores equal single-process ones up to float summation order; with `--batch-size 1` they are
bit-identical.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from uvtag.batch.output import BatchWriter
from uvtag.batch.run import BatchSummary, _failure, skip_completed
from uvtag.errors import UsageError, UvtagError
from uvtag.results import Failure, VideoPrediction

TaggerFactory = Callable[[str], Any]  # device -> Tagger; must pickle (module-level, or a dataclass)


def plan_devices(devices: str | None, workers: int | None, device: str = "auto") -> list[str] | None:
    """The device of each worker process, or None for the single-process path.

    Args:
        devices: `--devices`, e.g. "cuda:0,cuda:1" (one worker each; repeats allowed).
        workers: `--workers N`: N workers on each listed device, or on `device` without `--devices`.
        device: `--device`, used when `devices` is not given.

    Raises:
        UsageError: an empty device list or a worker count below 1.
    """
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: need at least 1")
    if devices is None:
        return None if workers in (None, 1) else [device] * workers
    names = [d.strip() for d in devices.split(",") if d.strip()]
    if not names:
        raise UsageError(f"--devices {devices!r} names no device; e.g. --devices cuda:0,cuda:1")
    return [d for d in names for _ in range(workers or 1)]


def _serve(factory: TaggerFactory, device: str, threads: int, conn: Connection, job: dict[str, Any]) -> None:
    """Worker process: load the model, then tag the path it is sent until it is sent None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        import torch

        torch.set_num_threads(threads)
        tagger = factory(device)
    except BaseException as e:  # noqa: BLE001  anything, reported as one line
        message = str(e) if isinstance(e, UvtagError) else f"{type(e).__name__}: {e}"
        conn.send(("error", f"worker on {device}: {message.splitlines()[0] if message else ''}"))
        return
    try:
        conn.send(("ready",))
        while (path := conn.recv()) is not None:
            try:
                result: VideoPrediction | Failure = tagger.tag_clips(path, **job)
            except Exception as e:  # one bad file must never end the worker
                result = _failure(path, e)
            conn.send(("done", path, result))
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent is gone
        return


@dataclasses.dataclass
class _Slot:
    device: str
    process: Any = None
    conn: Connection | None = None
    ready: bool = False
    job: tuple[str, int] | None = None  # (path, deaths so far) in flight
    stopped: bool = False


def exit_reason(process: Any) -> str:
    """How a process ended, for a message: "signal 9, SIGKILL" or "exit code 1" (waits up to 5 s)."""
    process.join(5)
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"signal {-code}, {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class _Pool:
    """The worker processes and the parent's side of their pipes."""

    def __init__(self, factory: TaggerFactory, devices: Sequence[str], job: dict[str, Any]) -> None:
        self._ctx = mp.get_context("spawn")
        self._factory, self._job = factory, job
        self._threads = max(1, (os.cpu_count() or 1) // len(devices))
        self.slots = [_Slot(d) for d in devices]

    def start(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe()
        slot.process = self._ctx.Process(target=_serve, args=(self._factory, slot.device, self._threads, child, self._job),
                                         name=f"uvtag-worker-{slot.device}")  # not daemonic: --isolate decodes in a child
        slot.process.start()
        child.close()
        slot.conn, slot.ready, slot.job, slot.stopped = parent, False, None, False

    def receive(self, slot: _Slot) -> tuple | None:
        """The slot's next message, or None if its process is gone."""
        try:
            return slot.conn.recv()
        except (EOFError, OSError):
            return None

    def stop_all(self) -> None:
        for slot in self.slots:
            if slot.process is None:
                continue
            if slot.process.is_alive() and not slot.stopped:
                try:
                    slot.conn.send(None)
                except OSError:
                    pass
        for slot in self.slots:
            if slot.process is None:
                continue
            slot.process.join(10 if slot.job is None else 0.1)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.conn.close()


def run_parallel(factory: TaggerFactory, devices: Sequence[str], paths: Sequence[str | Path], writer: BatchWriter, *,
                 clip_sec: float | None = None, stride_sec: float | None = None, top: int = 5, embed: bool = False,
                 retries: int = 1, on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None) -> BatchSummary:
    """Tag `paths` into `writer` with one worker process per entry of `devices`.

    Args:
        factory: device -> Tagger, called once in each worker (e.g. `uvtag.tagger.ModelOptions`); must pickle.
        devices: one entry per worker, e.g. ["cuda:0", "cuda:1"] or ["cpu"] * 4.
        paths, writer, clip_sec, stride_sec, top, embed, on_video: as for `uvtag.batch.run.run_batch`
            (embeddings travel back with each pickled result).
        retries: times a video goes back to the queue after its worker died while tagging it.

    Raises:
        UvtagError: a worker could not load the model (the first such error).
    """
    if not devices:
        raise UsageError("run_parallel needs at least one device")
    summary, todo = skip_completed(paths, writer, on_video)
    queue: deque[tuple[str, int]] = deque((p, 0) for p in todo)
    if not queue:
        return summary

    def finish(path: str, result: VideoPrediction | Failure) -> None:
        summary.record(writer, path, result, on_video)

    pool = _Pool(factory, devices[: len(queue)], dict(clip_sec=clip_sec, stride_sec=stride_sec, top=top, embed=embed))
    try:
        for slot in pool.slots:
            pool.start(slot)
        _drive(pool, queue, retries, finish)
    finally:
        pool.stop_all()
    return summary


def _drive(pool: _Pool, queue: deque[tuple[str, int]], retries: int,
           finish: Callable[[str, VideoPrediction | Failure], None]) -> None:
    """The parent's loop: hand out videos, collect results, replace dead workers."""

    def give(slot: _Slot) -> None:
        if queue:
            slot.job = queue.popleft()
            slot.conn.send(slot.job[0])
        else:
            slot.job, slot.stopped = None, True
            slot.conn.send(None)

    while any(not s.stopped for s in pool.slots):
        live = {s.conn: s for s in pool.slots if not s.stopped}
        for conn in wait(list(live)):
            slot = live[conn]
            message = pool.receive(slot)
            if message is None:
                _replace(pool, slot, queue, retries, finish)
            elif message[0] == "error":
                raise UvtagError(message[1])
            else:
                if message[0] == "done":
                    finish(message[1], message[2])
                slot.ready = True
                give(slot)


def _replace(pool: _Pool, slot: _Slot, queue: deque[tuple[str, int]], retries: int,
             finish: Callable[[str, VideoPrediction | Failure], None]) -> None:
    """A worker died: requeue or fail its video, and start a fresh worker if work remains."""
    why = exit_reason(slot.process)
    slot.conn.close()
    if not slot.ready:
        raise UvtagError(f"worker on {slot.device} died while loading the model ({why})")
    if slot.job is not None:
        path, deaths = slot.job
        if deaths < retries:
            queue.appendleft((path, deaths + 1))
        else:
            finish(path, Failure(path, f"{path}: worker process died while tagging it ({why}), "
                                       f"{deaths + 1} times", "WorkerCrash"))
    if queue:
        pool.start(slot)
    else:
        slot.process, slot.stopped, slot.job = None, True, None
