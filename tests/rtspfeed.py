"""An RTSP camera for the watch tests: a video file's H.264 pictures served at
rtsp://127.0.0.1:PORT/live over RTP, paced in real time, like an IP camera.

The server speaks enough RTSP (RFC 2326) for FFmpeg's client: OPTIONS, DESCRIBE (an SDP with the
stream's SPS/PPS), SETUP, PLAY, GET_PARAMETER (keep-alive) and TEARDOWN. RTP (RFC 3550) travels
interleaved on the RTSP connection (RTP/AVP/TCP); a SETUP that asks for UDP is answered 461, on
which FFmpeg asks again for TCP, as it does with cameras behind NAT. H.264 is packed as RFC 6184
says: one NAL unit a packet, or FU-A fragments for larger ones, the marker bit on the last packet
of each picture, 90 kHz timestamps. The pictures are the file's own packets, so what a client
decodes is what `uvtag localize` decodes from the file; each keyframe carries its SPS and PPS,
and a client that joins late starts at the latest keyframe.

Like `livefeed.LiveServer`: the broadcast clock starts with the first PLAY; `drop_at_sec` cuts the
first connection after that much broadcast time; once the broadcast is over, DESCRIBE gets 404.
With `credentials` (user, password) every request but OPTIONS needs them (HTTP Basic), as a
camera asks: 401 with a `WWW-Authenticate` challenge otherwise.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import re
import socket
import struct
import threading
import time
from pathlib import Path

import av

MTU_PAYLOAD = 1400  # RTP payload bytes at most per packet
CLOCK = 90_000  # the RTP clock of video


@dataclasses.dataclass(frozen=True)
class Picture:
    time_sec: float
    nals: tuple[bytes, ...]
    keyframe: bool


def _nal_units(annex_b: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes removed)."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", annex_b)]
    units = []
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(annex_b)
        units.append(annex_b[start:end].rstrip(b"\x00") if n + 1 < len(starts) else annex_b[start:end])
    return [u for u in units if u]


def pictures_of(path: str | Path) -> list[Picture]:
    """The H.264 pictures of a file (e.g. `livefeed.write_ts`'s MPEG-TS: libx264 repeats its SPS
    and PPS before every keyframe), in presentation order, times from the first."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264", stream.codec_context.name
        rows = [(float(p.pts * p.time_base), bytes(p), p.is_keyframe) for p in container.demux(stream) if p.size]
    rows.sort(key=lambda r: r[0])
    first = rows[0][0]
    return [Picture(t - first, tuple(_nal_units(data)), key) for t, data, key in rows]


def rtp_packets(picture: Picture, seq: int, ssrc: int = 0x75767467, base: int = 0x2B3C4D5E) -> tuple[list[bytes], int]:
    """RTP packets (payload type 96) of one picture, from sequence number `seq`; (packets, next seq).

    Timestamps start at `base`, as a camera's start at a random value (FFmpeg takes a first
    timestamp of 0 for none)."""
    stamp = (base + round(picture.time_sec * CLOCK)) & 0xFFFFFFFF
    payloads: list[bytes] = []
    for nal in picture.nals:
        if len(nal) <= MTU_PAYLOAD:
            payloads.append(nal)
            continue
        indicator, kind = (nal[0] & 0xE0) | 28, nal[0] & 0x1F  # FU-A
        body = nal[1:]
        for start in range(0, len(body), MTU_PAYLOAD - 2):
            first, last = start == 0, start + MTU_PAYLOAD - 2 >= len(body)
            payloads.append(bytes([indicator, (first << 7) | (last << 6) | kind]) + body[start : start + MTU_PAYLOAD - 2])
    out = []
    for n, payload in enumerate(payloads):
        marker = 0x80 if n == len(payloads) - 1 else 0
        out.append(struct.pack("!BBHII", 0x80, marker | 96, seq & 0xFFFF, stamp, ssrc) + payload)
        seq += 1
    return out, seq


def sdp(pictures: list[Picture]) -> str:
    """The session description: one H.264 video track, its SPS and PPS in sprop-parameter-sets."""
    sps = next(n for p in pictures for n in p.nals if n[0] & 0x1F == 7)
    pps = next(n for p in pictures for n in p.nals if n[0] & 0x1F == 8)
    sets = ",".join(base64.b64encode(x).decode("ascii") for x in (sps, pps))
    return ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=uvtag test camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "a=control:*\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            f"a=fmtp:96 packetization-mode=1;profile-level-id={sps[1:4].hex()};sprop-parameter-sets={sets}\r\n"
            "a=control:trackID=0\r\n")


class RtspServer:
    """Serves pictures at `url` (rtsp://127.0.0.1:PORT/live) as a live camera; see the module docstring."""

    def __init__(self, pictures: list[Picture], drop_at_sec: float | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.pictures, self.drop_at_sec = pictures, drop_at_sec
        self.authorization = None if credentials is None else \
            "Basic " + base64.b64encode(":".join(credentials).encode("utf-8")).decode("ascii")
        self.refused = 0  # requests answered 401
        self.times = [p.time_sec for p in pictures]
        self.keyframes = [i for i, p in enumerate(pictures) if p.keyframe]
        step = self.times[-1] - self.times[-2] if len(self.times) > 1 else 0.0
        self.duration_sec = self.times[-1] + step
        self.t0: float | None = None
        self.connections = 0  # sessions that started playing
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"rtsp://127.0.0.1:{self.sock.getsockname()[1]}/live"
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RtspServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        lock = threading.Lock()  # replies and RTP share the socket
        playing = threading.Event()
        try:
            with conn:
                reader = conn.makefile("rb")
                while not self.stop.is_set():
                    request = _read_request(reader)
                    if request is None:
                        return
                    method, headers = request
                    reply, start = self._answer(method, headers)
                    with lock:
                        conn.sendall(reply)
                    if start and not playing.is_set():
                        playing.set()
                        threading.Thread(target=self._play, args=(conn, lock), daemon=True).start()
                    if method == "TEARDOWN":
                        return
        except OSError:
            return

    def _answer(self, method: str, headers: dict[str, str]) -> tuple[bytes, bool]:
        cseq = headers.get("cseq", "0")
        extra, body, status, start = {}, b"", "200 OK", False
        if self.authorization is not None and method != "OPTIONS" and headers.get("authorization") != self.authorization:
            self.refused += 1
            status = "401 Unauthorized"
            extra["WWW-Authenticate"] = 'Basic realm="uvtag test camera"'
        elif method == "OPTIONS":
            extra["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"
        elif method == "DESCRIBE":
            if self.t0 is not None and time.monotonic() - self.t0 >= self.duration_sec:
                status = "404 Not Found"  # the broadcast is over
            else:
                body = sdp(self.pictures).encode("ascii")
                extra.update({"Content-Type": "application/sdp", "Content-Base": self.url + "/"})
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "RTP/AVP/TCP" not in transport:
                status = "461 Unsupported Transport"
            else:
                extra.update({"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1", "Session": "75767467;timeout=60"})
        elif method == "PLAY":
            extra.update({"Session": "75767467", "Range": "npt=0.000-"})
            start = True
        elif method in ("GET_PARAMETER", "TEARDOWN"):
            extra["Session"] = "75767467"
        else:
            status = "405 Method Not Allowed"
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", *(f"{k}: {v}" for k, v in extra.items()),
                 f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode("ascii") + body, start

    def _play(self, conn: socket.socket, lock: threading.Lock) -> None:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        self.connections += 1
        position = now - self.t0
        current = bisect.bisect_right(self.times, position) - 1
        first = self.keyframes[bisect.bisect_right(self.keyframes, max(current, 0)) - 1]
        last = len(self.pictures)
        if self.connections == 1 and self.drop_at_sec is not None:
            last = bisect.bisect_left(self.times, self.drop_at_sec)
        seq = 0
        try:
            for i in range(first, last):
                delay = self.t0 + self.times[i] - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if self.stop.is_set():
                    return
                packets, seq = rtp_packets(self.pictures[i], seq)
                data = b"".join(b"$\x00" + struct.pack("!H", len(p)) + p for p in packets)
                with lock:
                    conn.sendall(data)
            conn.shutdown(socket.SHUT_RDWR)  # the end of the broadcast, or a dropped network
        except OSError:
            return


def _read_request(reader) -> tuple[str, dict[str, str]] | None:
    """The next RTSP request on the connection (interleaved RTCP from the client is skipped)."""
    while True:
        first = reader.read(1)
        if not first:
            return None
        if first == b"$":  # an interleaved frame: channel, length, data
            head = reader.read(3)
            if len(head) < 3:
                return None
            reader.read(struct.unpack("!H", head[1:])[0])
            continue
        line = first + reader.readline()
        if not line.strip():
            continue
        method = line.split(b" ", 1)[0].decode("ascii", "replace")
        headers: dict[str, str] = {}
        while True:
            header = reader.readline()
            if not header or not header.strip():
                break
            key, _, value = header.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length:
            reader.read(length)
        return method, headers
