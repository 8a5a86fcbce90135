"""Live sources for the watch tests and benchmark: generated motion video as MPEG-TS, sent in
real time (each frame's bytes at its presentation time) to a pipe or from an HTTP server on
127.0.0.1 that plays it like a broadcast (a client joining late starts at the latest keyframe).
"""

from __future__ import annotations

import bisect
import dataclasses
import http.server
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from uvtag import synth


def motion_scene(seed: int, num_actions: int = 4, fps: int = 15, short_side: int = 160,
                 labels: tuple[str, ...] | None = None) -> synth.Scene:
    """An untrimmed motion video (motion-tiny's classes) of `num_actions` actions (or `labels`),
    small and cheap to decode."""
    ranges = dataclasses.replace(synth.STRICT, fps=(fps, fps), short_side=(short_side, short_side))
    num_actions = len(labels) if labels is not None else num_actions
    return synth.random_untrimmed(synth.clip_rng("test", 7000 + seed), num_actions, ranges=ranges, labels=labels)


def write_ts(scene: synth.Scene, path: str | Path, gop_sec: float = 1.0, repeat: int = 1) -> Path:
    """H.264 in MPEG-TS, a keyframe every `gop_sec` (where a late or returning client starts);
    `repeat` plays the scene that many times back to back (long benchmark streams)."""
    path = Path(path)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=Fraction(scene.fps).limit_denominator(1001),
                                options={"preset": "ultrafast", "g": str(max(1, round(gop_sec * scene.fps))),
                                         "bf": "0"})
        stream.height, stream.width = scene.height, scene.width
        stream.pix_fmt = "yuv420p"
        frames = [scene.frame(i) for i in range(scene.num_frames)] if repeat > 1 else None
        for r in range(repeat):
            for i in range(scene.num_frames):
                rgb = frames[i] if frames is not None else scene.frame(i)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = r * scene.num_frames + i
                frame.time_base = Fraction(1, 1) / Fraction(scene.fps).limit_denominator(1001)
                out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@dataclasses.dataclass(frozen=True)
class TsIndex:
    """Where each video packet of a TS file starts: times (s from the first) and byte offsets."""

    data: bytes
    times: tuple[float, ...]
    offsets: tuple[int, ...]
    keyframes: tuple[int, ...]  # packet numbers of keyframes

    @property
    def duration_sec(self) -> float:
        return self.times[-1] + (self.times[-1] - self.times[-2] if len(self.times) > 1 else 0.0)

    def chunk(self, i: int) -> bytes:
        """The bytes from packet i's start to packet i + 1's (the last: to the end)."""
        end = self.offsets[i + 1] if i + 1 < len(self.offsets) else len(self.data)
        return self.data[self.offsets[i] : end]


def index_ts(path: str | Path) -> TsIndex:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rows = [(float(p.pts * p.time_base), p.pos, p.is_keyframe) for p in container.demux(stream) if p.size]
    rows.sort()
    first = rows[0][0]
    data = Path(path).read_bytes()
    return TsIndex(data, tuple(t - first for t, _, _ in rows), tuple(pos for _, pos, _ in rows),
                   tuple(i for i, (_, _, key) in enumerate(rows) if key))


def send_paced(write, index: TsIndex, t0: float, first: int = 0, last: int | None = None,
               stop: threading.Event | None = None) -> int:
    """Write packets first..last-1 each at wall time t0 + its time (t0: time.monotonic() of
    packet 0); returns the packet number it stopped before."""
    last = len(index.times) if last is None else last
    for i in range(first, last):
        delay = t0 + index.times[i] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if stop is not None and stop.is_set():
            return i
        write(index.chunk(i))
    return last


class LiveServer:
    """Serves one TS file at http://127.0.0.1:PORT/live.ts as a live broadcast.

    The broadcast clock starts with the first request. Each request gets the stream from the
    latest keyframe at the current broadcast time, paced in real time. `drop_at_sec` closes the
    first connection after that much broadcast time (a dropped network source); after the end of
    the broadcast, requests get 404. `silent=True` accepts connections and never sends a byte.
    """

    def __init__(self, index: TsIndex, drop_at_sec: float | None = None, silent: bool = False) -> None:
        self.index, self.drop_at_sec, self.silent = index, drop_at_sec, silent
        self.t0: float | None = None
        self.connections = 0
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.serve(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/live.ts"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        if self.silent:
            self.stop.wait(60)
            return
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        position = now - self.t0
        if position >= self.index.duration_sec:
            handler.send_error(404, "the broadcast is over")
            return
        self.connections += 1
        first_connection = self.connections == 1
        packet = bisect.bisect_right(self.index.times, position) - 1
        key = self.index.keyframes[bisect.bisect_right(self.index.keyframes, max(packet, 0)) - 1]
        last = None
        if first_connection and self.drop_at_sec is not None:
            last = bisect.bisect_left(self.index.times, self.drop_at_sec)
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp2t")
        handler.end_headers()
        try:
            send_paced(handler.wfile.write, self.index, self.t0, key, last, self.stop)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if last is not None:  # drop it hard, as a failing network does
            handler.connection.shutdown(socket.SHUT_RDWR)


def main() -> None:
    """`python tests/livefeed.py [--seed N] [--http | --rtsp]`: a generated motion video as a live
    stream, MPEG-TS in real time to stdout (pipe it into `uvtag watch -`), from a local HTTP server,
    or from a local RTSP camera (`rtspfeed`)."""
    import argparse
    import sys
    import tempfile

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--actions", type=int, default=4)
    ap.add_argument("--http", action="store_true", help="serve it at http://127.0.0.1:PORT/live.ts (printed)")
    ap.add_argument("--rtsp", action="store_true", help="serve it at rtsp://127.0.0.1:PORT/live (printed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = motion_scene(args.seed, args.actions)
        index = index_ts(write_ts(scene, Path(tmp) / "live.ts"))
        truth = ", ".join(f"{label} {t0:.2f}-{t1:.2f}" for t0, t1, label in scene.segments())
        print(f"{index.duration_sec:.1f} s, {scene.width}x{scene.height}, {scene.fps} fps: {truth}", file=sys.stderr)
        if args.http or args.rtsp:
            if args.rtsp:
                import rtspfeed

                server = rtspfeed.RtspServer(rtspfeed.pictures_of(Path(tmp) / "live.ts"))
            else:
                server = LiveServer(index)
            with server:
                print(server.url, flush=True)
                while server.t0 is None or time.monotonic() - server.t0 < index.duration_sec + 60:
                    time.sleep(0.5)  # serve the broadcast, then a minute of "it is over"
            return
        try:
            send_paced(lambda data: (sys.stdout.buffer.write(data), sys.stdout.buffer.flush()), index, time.monotonic())
        except BrokenPipeError:
            pass


if __name__ == "__main__":
    main()
