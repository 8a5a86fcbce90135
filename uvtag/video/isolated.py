"""Decode in a child process so that a decoder segfault or hang costs one file, not the batch.

`IsolatedReader` has the VideoReader API (info, get_frames, iter_frames, timestamps_sec, close) but
runs `open_video` in a worker process (spawn start method: no inherited torch threads or locks). Every
request waits at most `timeout_sec` for its answer; a worker that dies or does not answer is killed and
the call raises `VideoError("<path>: decoder crashed (signal 11, SIGSEGV)")` or
`VideoError("<path>: decoder timed out after 30 s")`. An exception inside the worker is sent back as
the file's error with its type and message ("<path>: cannot decode frame 12 (IndexError: ...)"); one
that leaves the worker unusable (its own MemoryError) is sent back too, and the worker exits.

Workers die with the process that started them: on Linux the kernel kills them when it exits
(PR_SET_PDEATHSIG, armed from one long-lived thread, since the signal follows the starting thread),
and everywhere a worker exits when its pipe closes or its parent process changes. A killed batch
leaves no decoder running.

Workers are reused: closing a reader hands its worker back to a small idle pool, and the next reader
borrows it, so a batch pays the process start (about 0.3 s: Python + numpy + av imports) once, not
once per file. A worker that crashed, timed out or was left in the middle of a request is never
reused; each worker retires after `MAX_FILES_PER_WORKER` files (bounds decoder memory leaks). Frames
still cross a pipe as a pickle copy; use a plain reader for a single known-good file.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from typing import Iterable, Iterator, Sequence

import numpy as np

from uvtag.errors import VideoError, describe
from uvtag.results import VideoInfo

DEFAULT_TIMEOUT_SEC = 60.0  # per request (open, one get_frames call, or one streamed frame)
STARTUP_TIMEOUT_SEC = 30.0  # opening a file: may wait for a new interpreter or a decoder's first import (slow on a loaded machine)
EXIT_GRACE_SEC = 2.0  # a worker whose pipe closed has this long to exit by itself before it is killed
MAX_FILES_PER_WORKER = 200
MAX_IDLE_WORKERS = 4
PARENT_POLL_SEC = 1.0  # how often a worker checks that the process that started it still exists
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _inject(fault: str | None) -> None:
    """Test-only fault injection inside the worker: "segv" crashes it, "hang" never answers,
    "raise" raises an IndexError (a decoder bug), "oom" raises the worker's own MemoryError."""
    if fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        while True:
            time.sleep(3600)
    elif fault == "raise":
        raise IndexError("list index out of range (injected)")
    elif fault == "oom":
        raise MemoryError("injected")


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker end when the process that started it ends, even in the middle of a decode.

    Linux: the kernel sends SIGKILL when the starting thread exits (prctl PR_SET_PDEATHSIG). Every
    platform: a daemon thread exits the process once the parent pid changes (the worker was
    re-parented); it needs the GIL, which decoders release while they work.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SEC)
        os._exit(0)

    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(0)
    threading.Thread(target=watch, daemon=True, name="uvtag-parent-watch").start()


def _serve(conn, parent_pid: int) -> None:
    """Worker entry point: serve files until told to stop; never let an exception end it silently.

    Ctrl-C is the parent's to handle (it stops its workers), so the worker ignores SIGINT. An
    exception that escapes the serving loop is sent as ("died", cause) before the worker exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    try:
        _serve_files(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone
    except BaseException as e:
        try:
            conn.send(("died", describe(e)))
        except (OSError, ValueError):
            pass


def _serve_files(conn) -> None:
    """Worker loop: ("open", path, backend, fault, fault_at) starts a file; ("close",) or EOF ends the worker."""
    from uvtag.video.reader import is_host_error, open_video

    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] == "release":  # the file failed to open: nothing to release
            continue
        if request[0] != "open":
            return
        _, path, backend, fault, fault_at = request
        try:
            if fault_at == "open":
                _inject(fault)
            reader = open_video(path, backend)
        except Exception as e:
            if is_host_error(e):  # the worker's own MemoryError: it cannot go on
                raise
            conn.send(("err", _error_text(path, "cannot open", e)))
            continue
        conn.send(("ok", reader.info))
        with reader:
            if not _serve_file(conn, reader, fault if fault_at == "decode" else None):
                return


def _error_text(path: str, what: str, exc: Exception) -> str:
    """The one-line error for `exc`: a VideoError's own text, else `what` and the exception's cause."""
    if isinstance(exc, VideoError):
        return str(exc)
    return f"{path}: {what} ({describe(exc)})"


def _serve_file(conn, reader, fault: str | None) -> bool:
    """Answer requests on one open file until ("release",) (True: serve another) or close/EOF (False)."""
    from uvtag.video.reader import is_host_error

    while True:
        try:
            request = conn.recv()
        except EOFError:
            return False
        op, args = request[0], request[1:]
        if op == "release":
            return True
        if op not in ("get", "ts", "iter"):
            return False
        try:
            _inject(fault)
            if op == "get":
                conn.send(("ok", reader.get_frames(*args)))
            elif op == "ts":
                conn.send(("ok", reader.timestamps_sec()))
            else:
                for item in reader.iter_frames(*args):
                    conn.send(("item", item))
                conn.send(("ok", None))
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:
            if is_host_error(e):
                raise
            conn.send(("err", _error_text(reader.path, "cannot decode", e)))


_starts: "queue.Queue[tuple[mp.process.BaseProcess, queue.Queue]]" = queue.Queue()
_starter: threading.Thread | None = None
_starter_lock = threading.Lock()


def _run_starts() -> None:
    while True:
        proc, answer = _starts.get()
        try:
            proc.start()
            answer.put(None)
        except BaseException as e:  # handed back to the caller
            answer.put(e)


def _start(proc: mp.process.BaseProcess) -> None:
    """Start `proc` from one long-lived daemon thread.

    The parent-death signal a worker arms fires when the thread that started it exits; a worker
    started from a short-lived thread (a prefetch thread) would be killed with that thread.
    """
    global _starter
    with _starter_lock:
        if _starter is None or not _starter.is_alive():
            _starter = threading.Thread(target=_run_starts, daemon=True, name="uvtag-decoder-starter")
            _starter.start()
    answer: queue.Queue = queue.Queue(maxsize=1)
    _starts.put((proc, answer))
    error = answer.get()
    if error is not None:
        raise error


class _Worker:
    """One decode process and its pipe."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, os.getpid()), daemon=True)
        _start(self.proc)
        child.close()
        self.files = 0  # files opened so far

    def kill(self) -> bool:
        """Stop it now (SIGKILL) and reap it; True if it was still running (so the kill ended it)."""
        alive = self.proc.is_alive()
        if alive:
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()
        return alive

    def end(self, grace_sec: float) -> bool:
        """Reap a worker that is exiting by itself, killing it after `grace_sec`; True if it had to be killed."""
        self.proc.join(grace_sec)
        return self.kill()

    def stop(self) -> None:
        """Ask it to exit, then make sure it did."""
        try:
            self.conn.send(("close",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(2)
        self.kill()


def _signal_name(number: int) -> str:
    """SIGSEGV for 11; a plain description for signals without a name (real-time signals)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unnamed signal"


_idle: list[_Worker] = []
_idle_lock = threading.Lock()


def _borrow() -> _Worker:
    """An idle live worker, else a new one."""
    with _idle_lock:
        while _idle:
            worker = _idle.pop()
            if worker.proc.is_alive():
                return worker
            worker.kill()
    return _Worker()


def _give_back(worker: _Worker) -> None:
    """Return a healthy worker (its file released) to the idle pool, or retire it."""
    if worker.files < MAX_FILES_PER_WORKER and worker.proc.is_alive():
        with _idle_lock:
            if len(_idle) < MAX_IDLE_WORKERS:
                _idle.append(worker)
                return
    worker.stop()


def shutdown_workers() -> None:
    """Stop every idle worker (also run at interpreter exit)."""
    with _idle_lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.stop()


atexit.register(shutdown_workers)


class IsolatedReader:
    """A VideoReader whose decoder runs in a (reused) child process with a timeout on every request."""

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str | None = None,
        timeout_sec: float = DEFAULT_TIMEOUT_SEC,
        *,
        _fault: str | None = None,
        _fault_at: str = "decode",
    ) -> None:
        """Borrow a worker and open `path` in it (raises VideoError as open_video would).

        `_fault` / `_fault_at` are for tests only: make the worker crash ("segv"), hang ("hang"), raise
        an IndexError ("raise") or its own MemoryError ("oom") at "open" or at each "decode" request.
        """
        from uvtag.video.reader import check_video_path

        self.path, self.timeout_sec = os.fspath(path), float(timeout_sec)
        self._worker: _Worker | None = None
        check_video_path(self.path)  # a missing file or a named pipe costs no worker (nor a timeout)
        self._worker = _borrow()
        self._pending = False  # a request whose answer has not been read completely
        self.worker_pid = self._worker.proc.pid
        self._worker.files += 1
        # opening waits longer: a new worker is still importing, and a reused one imports the
        # fall-back decoders (decord, OpenCV) the first time a file needs them
        try:
            self.info: VideoInfo = self._request(("open", self.path, backend, _fault, _fault_at),
                                                 max(self.timeout_sec, STARTUP_TIMEOUT_SEC))
        except VideoError:
            self._release()
            raise

    def _receive(self, timeout_sec: float | None = None):
        """Wait for one answer from the worker; turn death, silence and errors into VideoError."""
        worker = self._worker
        if worker is None:
            raise VideoError(f"{self.path}: reader is closed")
        wait = self.timeout_sec if timeout_sec is None else timeout_sec
        try:
            ready = worker.conn.poll(wait)
            answer = worker.conn.recv() if ready else None
        except (EOFError, OSError):
            answer, ready = None, True
        if answer is None:
            reason = self._worker_failed(timed_out=not ready, waited_sec=wait)
            raise VideoError(f"{self.path}: {reason}")
        status, value = answer
        if status != "item":
            self._pending = False
        if status == "err":
            raise VideoError(value)
        if status == "died":
            self._worker = None
            worker.end(EXIT_GRACE_SEC)
            raise VideoError(f"{self.path}: decoder process failed ({value})")
        return answer if status == "item" else value

    def _worker_failed(self, timed_out: bool, waited_sec: float | None = None) -> str:
        """Reap the worker (killing it if needed); describe what happened in a few words.

        A worker whose pipe closed is given EXIT_GRACE_SEC to finish exiting, so that its own exit
        status (a signal it died of, or an exit code) is reported rather than our SIGKILL.
        """
        worker, self._worker = self._worker, None
        if timed_out:
            worker.kill()
            return f"decoder timed out after {waited_sec or self.timeout_sec:g} s"
        if worker.end(EXIT_GRACE_SEC):
            return "decoder process closed its pipe and stopped answering (killed)"
        code = worker.proc.exitcode
        if code is not None and code < 0:
            return f"decoder crashed (signal {-code}, {_signal_name(-code)})"
        return f"decoder process exited unexpectedly (exit code {code})"

    def _send(self, message: tuple) -> None:
        """Send one request; its answer (or answers) are pending until read."""
        if self._worker is None:
            raise VideoError(f"{self.path}: reader is closed")
        try:
            self._worker.conn.send(message)
        except (BrokenPipeError, OSError):
            raise VideoError(f"{self.path}: {self._worker_failed(timed_out=False)}") from None
        self._pending = True

    def _request(self, message: tuple, timeout_sec: float | None = None):
        self._send(message)
        return self._receive(timeout_sec)

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """As VideoReader.get_frames: uint8 [len(indices), H, W, 3] RGB."""
        return self._request(("get", list(indices), size))

    def iter_frames(self, indices: Iterable[int], size: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """As VideoReader.iter_frames; `indices` is materialized and sent to the worker in one message."""
        self._send(("iter", list(indices), size))
        while True:
            answer = self._receive()
            if answer is None:
                return
            yield answer[1]

    def timestamps_sec(self) -> np.ndarray:
        """As VideoReader.timestamps_sec: [num_frames] float64 seconds."""
        return self._request(("ts",))

    def _release(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if self._pending:  # answers still in the pipe (an abandoned iteration): not reusable
            worker.kill()
            return
        try:
            worker.conn.send(("release",))
        except (BrokenPipeError, OSError):
            worker.kill()
            return
        _give_back(worker)

    def close(self) -> None:
        """Close the file; the worker goes back to the pool when it is healthy and idle."""
        self._release()

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
