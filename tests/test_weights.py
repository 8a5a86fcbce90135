"""Finding and downloading checkpoint files, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from uvtag.errors import CheckpointError, ChecksumError, DownloadError, OfflineError, UnknownModelError
from uvtag.model import download
from uvtag.model.download import cache_dir, local_file, resolve, sha256_file
from uvtag.model.zoo import get_checkpoint

PAYLOAD = os.urandom(300_000) + b"end"  # stands in for a .pyth file
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves `files` (path -> bytes) with Range support; records requests; can misbehave."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}  # path -> bytes to send before closing, per request
        self.drops_left: dict[str, int] = {}  # path -> how many requests still get dropped
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                chunk = body[start:]
                if server.drops_left.get(self.path, 0) > 0:
                    server.drops_left[self.path] -= 1
                    self.wfile.write(chunk[: server.drop_after[self.path]])
                    self.wfile.flush()
                    self.close_connection = True  # the client sees the stream end early
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, no real weights/ folder, online unless a test says otherwise."""
    monkeypatch.setenv("UVTAG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UVTAG_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(download, "weights_dirs", lambda: [tmp_path / "weights"])


def _closed_port_url(path: str = "/x.pyth") -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    return f"http://127.0.0.1:{port}{path}"


def _entry(*urls: str, sha256: str | None = PAYLOAD_SHA, **kw):
    """A zoo entry whose file lives on the test server."""
    base = get_checkpoint("k400_k710_uniformerv2_b16_8x224")
    fields = dict(name="test_model", filename="test_model.pyth", urls=tuple(urls), sha256=sha256)
    return dataclasses.replace(base, **{**fields, **kw})


def test_cache_dir_precedence(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "home"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("UVTAG_HOME")
    assert cache_dir() == Path.home() / ".cache" / "uvtag"


def test_fresh_download_lands_in_uvtag_home(server, tmp_path):
    server.files["/a/test_model.pyth"] = PAYLOAD
    path = resolve(_entry(server.url("/a/test_model.pyth")), progress=False)
    assert path == tmp_path / "home" / "test_model.pyth"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["test_model.pyth"]  # no .part left
    # second call: served from the cache, no request
    n = len(server.requests)
    assert resolve(_entry(server.url("/a/test_model.pyth")), progress=False) == path
    assert len(server.requests) == n


def test_explicit_cache_dir_and_progress_bar(server, tmp_path, capsys):
    server.files["/f.pyth"] = PAYLOAD
    path = resolve(_entry(server.url("/f.pyth")), cache_dir=tmp_path / "elsewhere", progress=True)
    assert path == tmp_path / "elsewhere" / "test_model.pyth"
    assert sha256_file(path) == PAYLOAD_SHA
    assert "test_model.pyth" in capsys.readouterr().err  # tqdm on stderr


def test_dropped_connection_is_resumed_with_range(server):
    server.files["/f.pyth"] = PAYLOAD
    server.drop_after["/f.pyth"], server.drops_left["/f.pyth"] = 100_000, 1
    path = resolve(_entry(server.url("/f.pyth")), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/f.pyth", None), ("/f.pyth", "bytes=100000-")]


def test_interrupted_download_leaves_only_a_part_file_then_resumes(server, tmp_path):
    server.files["/f.pyth"] = PAYLOAD
    server.drop_after["/f.pyth"], server.drops_left["/f.pyth"] = 50_000, 100  # every request dies
    with pytest.raises(DownloadError) as info:
        resolve(_entry(server.url("/f.pyth")), progress=False)
    assert "connection closed after 150000 of 300003 bytes" in str(info.value)
    assert "test_model.pyth.part resumes next time" in str(info.value)
    home = tmp_path / "home"
    assert not (home / "test_model.pyth").exists()
    part = home / "test_model.pyth.part"
    assert part.stat().st_size == 150_000  # first request + two resumes, 50 kB each
    assert part.read_bytes() == PAYLOAD[:150_000]

    server.drops_left["/f.pyth"] = 0  # network is back
    server.requests.clear()
    path = resolve(_entry(server.url("/f.pyth")), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/f.pyth", "bytes=150000-")]
    assert not part.exists()


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    server.files["/f.pyth"] = PAYLOAD
    server.ignore_range = True
    server.drop_after["/f.pyth"], server.drops_left["/f.pyth"] = 70_000, 1
    path = resolve(_entry(server.url("/f.pyth")), progress=False)
    assert path.read_bytes() == PAYLOAD


def test_part_file_from_another_url_is_not_continued(server, tmp_path):
    server.files["/f.pyth"] = PAYLOAD
    home = tmp_path / "home"
    home.mkdir()
    (home / "test_model.pyth.part").write_bytes(b"x" * 1000)  # origin unknown
    path = resolve(_entry(server.url("/f.pyth")), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/f.pyth", None)]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.files["/f.pyth"] = PAYLOAD[:-1] + b"X"
    with pytest.raises(ChecksumError) as info:
        resolve(_entry(server.url("/f.pyth")), progress=False)
    message = str(info.value)
    assert "sha256" in message and server.url("/f.pyth") in message
    assert str(tmp_path / "home" / "test_model.pyth") in message
    assert list((tmp_path / "home").iterdir()) == []  # neither the file nor a .part


def test_failed_download_leaves_no_clutter(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        resolve(_entry(server.url("/missing.pyth")), progress=False)
    assert list((tmp_path / "home").iterdir()) == []


def test_sha256_prefix_is_checked_for_mmaction2_style_entries(server):
    server.files["/f.pth"] = PAYLOAD
    good = _entry(server.url("/f.pth"), sha256=None, sha256_prefix=PAYLOAD_SHA[:8])
    assert resolve(good, progress=False).read_bytes() == PAYLOAD
    bad = _entry(server.url("/f.pth"), sha256=None, sha256_prefix="00000000", filename="other.pth")
    with pytest.raises(ChecksumError):
        resolve(bad, progress=False)


def test_mirror_fallback_after_404(server):
    server.files["/mirror/f.pyth"] = PAYLOAD
    entry = _entry(server.url("/gone/f.pyth"), server.url("/mirror/f.pyth"))
    assert resolve(entry, progress=False).read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/gone/f.pyth", "/mirror/f.pyth"]


def test_mirror_fallback_after_bad_checksum(server):
    server.files["/bad/f.pyth"] = b"not the file"
    server.files["/good/f.pyth"] = PAYLOAD
    entry = _entry(server.url("/bad/f.pyth"), server.url("/good/f.pyth"))
    assert resolve(entry, progress=False).read_bytes() == PAYLOAD


def test_no_network_fails_with_urls_and_target_path(tmp_path):
    urls = (_closed_port_url("/one.pyth"), _closed_port_url("/two.pyth"))
    with pytest.raises(DownloadError) as info:
        resolve(_entry(*urls), progress=False, timeout=2)
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert urls[0] in message and urls[1] in message
    assert f"save it as {tmp_path / 'home' / 'test_model.pyth'}" in message
    assert "\n" not in message
    assert not (tmp_path / "home" / "test_model.pyth").exists()


def test_offline_without_cache_never_connects(server, tmp_path, monkeypatch):
    server.files["/f.pyth"] = PAYLOAD
    monkeypatch.setenv("UVTAG_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        resolve(_entry(server.url("/f.pyth")), progress=False)
    assert str(tmp_path / "home" / "test_model.pyth") in str(info.value)
    assert server.requests == []
    with pytest.raises(OfflineError):
        resolve(_entry(server.url("/f.pyth")), offline=True, progress=False)
    monkeypatch.setenv("UVTAG_OFFLINE", "0")
    assert resolve(_entry(server.url("/f.pyth")), progress=False).read_bytes() == PAYLOAD


def test_offline_with_cache(server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "test_model.pyth").write_bytes(PAYLOAD)
    assert resolve(_entry(server.url("/f.pyth")), offline=True) == home / "test_model.pyth"
    assert server.requests == []


def test_damaged_cache_file_is_downloaded_again(server, tmp_path):
    server.files["/f.pyth"] = PAYLOAD
    home = tmp_path / "home"
    home.mkdir()
    (home / "test_model.pyth").write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="sha256 mismatch"):
        path = resolve(_entry(server.url("/f.pyth")), progress=False)
    assert path.read_bytes() == PAYLOAD


def test_damaged_cache_file_offline_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "test_model.pyth").write_bytes(b"half a file")
    with pytest.raises(ChecksumError, match=r"test_model\.pyth: sha256 .* delete it"):
        resolve(_entry(_closed_port_url()), offline=True)


def test_weights_folder_lookup_by_official_and_mirror_names(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    entry = _entry(_closed_port_url("/k400%2Bk710_test.pyth"))
    (folder / "k400+k710_test.pyth").write_bytes(PAYLOAD)  # the HF spelling of the name
    assert resolve(entry, offline=True) == folder / "k400+k710_test.pyth"
    (folder / "test_model.pyth").write_bytes(PAYLOAD)  # the official name wins
    assert resolve(entry, offline=True) == folder / "test_model.pyth"
    (folder / "test_model.pyth").write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="replace or remove"):
        resolve(entry, offline=True)


def test_default_weights_dirs_include_repo_and_cwd(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real weights_dirs
    monkeypatch.chdir(tmp_path)
    dirs = download.weights_dirs()
    assert dirs[0] == Path(download.__file__).resolve().parents[2] / "weights"
    assert dirs[-1] == tmp_path / "weights"


def test_paths_and_names(tmp_path):
    f = tmp_path / "mine.pth"
    f.write_bytes(b"anything")
    assert resolve(f) == f
    assert resolve(str(f)) == f
    with pytest.raises(CheckpointError, match="no such file"):
        resolve(tmp_path / "absent.pyth")
    with pytest.raises(CheckpointError, match="no such file"):
        resolve("absent.pyth")
    with pytest.raises(CheckpointError, match="not a regular file"):
        resolve(tmp_path)
    with pytest.raises(UnknownModelError, match="k400_uniformerv2_b16_8x224"):
        resolve("k400_uniformerv2_b16_8x22")


def test_zoo_name_resolves_offline_from_weights_folder(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "k400_uniformerv2_b16_8x224.pyth").write_bytes(b"no checksum is published for this file")
    assert resolve("k400_uniformerv2_b16_8x224", offline=True) == folder / "k400_uniformerv2_b16_8x224.pyth"
    assert resolve("k400_uniformerv2_b16_8x224.pyth", offline=True) == folder / "k400_uniformerv2_b16_8x224.pyth"


def test_local_file_finds_without_downloading(tmp_path):
    entry = _entry(_closed_port_url("/k400%2Bk710_test.pyth"))
    assert local_file(entry) is None
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "k400+k710_test.pyth").write_bytes(b"x")
    assert local_file(entry) == tmp_path / "weights" / "k400+k710_test.pyth"
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "test_model.pyth").write_bytes(b"x")
    assert local_file(entry) == tmp_path / "home" / "test_model.pyth"  # the cache comes first
    assert local_file(entry, tmp_path / "other") == tmp_path / "weights" / "k400+k710_test.pyth"


def test_a_file_without_download_location_says_where_it_belongs(tmp_path, monkeypatch):
    import dataclasses

    from uvtag.errors import OfflineError
    from uvtag.model import download
    from uvtag.model.zoo import get_checkpoint

    monkeypatch.setattr(download, "weights_dirs", lambda: [tmp_path / "weights"])
    local_only = dataclasses.replace(get_checkpoint("mit_uniformerv2_b16_8x224"), urls=(), filename="bundled.pt")
    with pytest.raises(OfflineError, match=f"put bundled.pt at {tmp_path / 'weights' / 'bundled.pt'}"):
        resolve(local_only, tmp_path / "cache", offline=False)
