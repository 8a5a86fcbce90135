"""Decode in a child process so that a decoder segfault or hang costs one file, not the batch.

`IsolatedReader` has the VideoReader API (info, get_frames, iter_frames, timestamps_sec, close) but
runs `open_video` in a worker process (spawn start method: no inherited torch threads or locks). Every
request waits at most `timeout_sec` for its answer; a worker that dies or does not answer is killed and
the call raises `VideoError("<path>: decoder crashed (signal 11, SIGSEGV)")` or
`VideoError("<path>: decoder timed out after 30 s")`. The next reader starts a fresh worker.

Cost: one process start per file (about 0.3 s: Python + numpy + av imports) and a pickle copy of each
frame through a pipe; use it for untrusted batches, not for a single known-good file.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from typing import Iterable, Iterator, Sequence

import numpy as np

from uvtag.errors import VideoError
from uvtag.results import VideoInfo

DEFAULT_TIMEOUT_SEC = 60.0  # per request (open, one get_frames call, or one streamed frame)
STARTUP_TIMEOUT_SEC = 30.0  # the first answer also waits for a new interpreter and its imports (slow on a loaded machine)


def _inject(fault: str | None) -> None:
    """Test-only fault injection inside the worker: "segv" crashes it, "hang" never answers."""
    if fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        while True:
            time.sleep(3600)


def _serve(conn, path: str, backend: str | None, fault: str | None, fault_at: str) -> None:
    """Worker loop: open the video, then answer requests until "close" or EOF."""
    from uvtag.video.reader import open_video

    try:
        if fault_at == "open":
            _inject(fault)
        reader = open_video(path, backend)
        conn.send(("ok", reader.info))
    except VideoError as e:
        conn.send(("err", str(e)))
        return
    with reader:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            op, args = request[0], request[1:]
            if op == "close":
                return
            if fault_at == "decode":
                _inject(fault)
            try:
                if op == "get":
                    conn.send(("ok", reader.get_frames(*args)))
                elif op == "ts":
                    conn.send(("ok", reader.timestamps_sec()))
                elif op == "iter":
                    for item in reader.iter_frames(*args):
                        conn.send(("item", item))
                    conn.send(("ok", None))
            except VideoError as e:
                conn.send(("err", str(e)))


class IsolatedReader:
    """A VideoReader whose decoder runs in a child process with a timeout on every request."""

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str | None = None,
        timeout_sec: float = DEFAULT_TIMEOUT_SEC,
        *,
        _fault: str | None = None,
        _fault_at: str = "decode",
    ) -> None:
        """Start the worker and open `path` in it (raises VideoError as open_video would).

        `_fault` / `_fault_at` are for tests only: make the worker crash ("segv") or hang ("hang") at
        "open" or at the first "decode" request.
        """
        self.path, self.timeout_sec = os.fspath(path), float(timeout_sec)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.path, backend, _fault, _fault_at), daemon=True)
        self._proc.start()
        child.close()
        try:
            self.info: VideoInfo = self._receive(max(self.timeout_sec, STARTUP_TIMEOUT_SEC))
        except VideoError:
            self.close()
            raise

    def _receive(self, timeout_sec: float | None = None):
        """Wait for one answer from the worker; turn death, silence and errors into VideoError."""
        if self._proc is None:
            raise VideoError(f"{self.path}: reader is closed")
        wait = self.timeout_sec if timeout_sec is None else timeout_sec
        try:
            ready = self._conn.poll(wait)
            answer = self._conn.recv() if ready else None
        except (EOFError, OSError):
            answer, ready = None, True
        if answer is None:
            reason = self._worker_failed(timed_out=not ready, waited_sec=wait)
            raise VideoError(f"{self.path}: {reason}")
        status, value = answer
        if status == "err":
            raise VideoError(value)
        return answer if status == "item" else value

    def _worker_failed(self, timed_out: bool, waited_sec: float | None = None) -> str:
        """Kill and reap the worker; describe what happened in a few words."""
        proc, self._proc = self._proc, None
        if timed_out:
            proc.kill()
        proc.join(5)
        self._conn.close()
        if timed_out:
            return f"decoder timed out after {waited_sec or self.timeout_sec:g} s"
        code = proc.exitcode
        if code is not None and code < 0:
            return f"decoder crashed (signal {-code}, {signal.Signals(-code).name})"
        return f"decoder process exited unexpectedly (exit code {code})"

    def _request(self, *message):
        if self._proc is None:
            raise VideoError(f"{self.path}: reader is closed")
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError):
            raise VideoError(f"{self.path}: {self._worker_failed(timed_out=False)}") from None
        return self._receive()

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """As VideoReader.get_frames: uint8 [len(indices), H, W, 3] RGB."""
        return self._request("get", list(indices), size)

    def iter_frames(self, indices: Iterable[int], size: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """As VideoReader.iter_frames; `indices` is materialized and sent to the worker in one message."""
        if self._proc is None:
            raise VideoError(f"{self.path}: reader is closed")
        self._conn.send(("iter", list(indices), size))
        while True:
            answer = self._receive()
            if answer is None:
                return
            yield answer[1]

    def timestamps_sec(self) -> np.ndarray:
        """As VideoReader.timestamps_sec: [num_frames] float64 seconds."""
        return self._request("ts")

    def close(self) -> None:
        """Stop the worker (politely, then by force)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            self._conn.send(("close",))
        except (BrokenPipeError, OSError):
            pass
        proc.join(2)
        if proc.is_alive():
            proc.kill()
            proc.join()
        self._conn.close()

    def __enter__(self) -> "IsolatedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_isolated(
    path: str | os.PathLike,
    indices: Sequence[int],
    size: tuple[int, int] | None = None,
    backend: str | None = None,
    timeout_sec: float = DEFAULT_TIMEOUT_SEC,
) -> tuple[VideoInfo, np.ndarray]:
    """Open `path` and decode `indices` in a child process; returns (info, uint8 [N, H, W, 3] RGB)."""
    with IsolatedReader(path, backend, timeout_sec) as reader:
        return reader.info, reader.get_frames(indices, size)
