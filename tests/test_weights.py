"""Finding and downloading checkpoint files, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
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
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self.hold_after: dict[str, int] = {}  # path -> bytes the first request gets before waiting for `release`
        self.holding = threading.Event()  # set once a held request waits
        self.release = threading.Event()
        self.drip: set[str] = set()  # paths sent one byte every 0.1 s
        self.silent: set[str] = set()  # paths whose body never comes
        self.closing = threading.Event()  # ends every wait when the test is over
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
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
                if self.path in server.silent:
                    server.closing.wait(120)
                    return
                if self.path in server.drip:
                    for i in range(len(chunk)):
                        if server.closing.wait(0.1):
                            return
                        self.wfile.write(chunk[i : i + 1])
                        self.wfile.flush()
                    return
                held = server.hold_after.pop(self.path, None)
                if held is not None:
                    self.wfile.write(chunk[:held])
                    self.wfile.flush()
                    server.holding.set()
                    server.release.wait(120)
                    chunk = chunk[held:]
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
    s.closing.set()
    s.release.set()
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
    assert sorted(p.name for p in path.parent.iterdir()) == ["test_model.pyth", "test_model.pyth.size"]  # no .part, no .lock
    assert (path.parent / "test_model.pyth.size").read_text().strip() == str(len(PAYLOAD))
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


# ---------------------------------------------------------------- through the CLI: `uvtag download`, `uvtag models`

_CLI_DOWNLOAD = """
import dataclasses, sys
from uvtag.cli import app
from uvtag.model.zoo import CHECKPOINTS, get_checkpoint
base = get_checkpoint("k400_k710_uniformerv2_b16_8x224")
CHECKPOINTS["test_model"] = dataclasses.replace(
    base, name="test_model", filename="test_model.pyth", urls=(sys.argv[1],), sha256=None)
app(["download", "test_model", "--cache-dir", sys.argv[2]])
"""


def _start_cli_download(url: str, cache: Path, log: Path, **env: str) -> subprocess.Popen:
    """`uvtag download` in its own process, for a zoo entry without checksum whose file is at `url`."""
    child_env = {k: v for k, v in os.environ.items() if k != "UVTAG_OFFLINE"} | env
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-c", _CLI_DOWNLOAD, url, str(cache)], stdout=subprocess.PIPE,
                                stderr=err, env=child_env)


def _error_line(log: Path) -> str:
    """The last line a child wrote on stderr (its error), tqdm's carriage-return frames dropped."""
    lines = [line.rsplit("\r", 1)[-1] for line in log.read_text().splitlines()]
    return [line for line in lines if line.strip()][-1]


@pytest.fixture
def zoo_entry(monkeypatch):
    """Put a zoo entry without checksum named test_model on the test server, for the in-process CLI."""
    from uvtag.model.zoo import CHECKPOINTS

    def put(url: str):
        entry = _entry(url, sha256=None)
        monkeypatch.setitem(CHECKPOINTS, "test_model", entry)
        return entry

    return put


def _models_row(result) -> str:
    return next(line for line in result.stdout.splitlines() if "test_model" in line)


def test_two_processes_downloading_one_file_share_one_download(server, tmp_path):
    server.files["/slow.pyth"] = PAYLOAD
    server.hold_after["/slow.pyth"] = 100_000  # the first download stops midway until released
    cache = tmp_path / "shared_cache"
    first = _start_cli_download(server.url("/slow.pyth"), cache, tmp_path / "first.err")
    second = None
    try:
        assert server.holding.wait(120), (tmp_path / "first.err").read_text()
        second = _start_cli_download(server.url("/slow.pyth"), cache, tmp_path / "second.err")
        deadline = time.monotonic() + 120  # until the second one waits for the first (or fetches on its own)
        while ("waiting for another uvtag process" not in (tmp_path / "second.err").read_text()
               and len(server.requests) < 2 and second.poll() is None and time.monotonic() < deadline):
            time.sleep(0.05)
        server.release.set()
        outs = [p.communicate(timeout=120)[0].decode().strip() for p in (first, second)]
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    errors = [(tmp_path / f"{n}.err").read_text() for n in ("first", "second")]
    assert (first.returncode, second.returncode) == (0, 0), errors
    assert outs == [str(cache / "test_model.pyth")] * 2
    assert (cache / "test_model.pyth").read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/slow.pyth"]  # one download, reused by the second process
    assert "waiting for another uvtag process downloading test_model.pyth" in errors[1]
    assert sorted(p.name for p in cache.iterdir()) == ["test_model.pyth", "test_model.pyth.size"]


def test_short_body_without_checksum_is_refused(server, tmp_path, zoo_entry):
    from typer.testing import CliRunner

    from uvtag.cli import app

    server.files["/f.pyth"] = PAYLOAD
    server.drop_after["/f.pyth"], server.drops_left["/f.pyth"] = 50_000, 100  # always fewer than Content-Length
    zoo_entry(server.url("/f.pyth"))
    result = CliRunner().invoke(app, ["download", "test_model"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "\n" not in message
    assert f"{server.url('/f.pyth')} (connection closed after 150000 of {len(PAYLOAD)} bytes)" in message
    assert not (tmp_path / "home" / "test_model.pyth").exists()
    assert not (tmp_path / "home" / "test_model.pyth.size").exists()
    assert "yes" not in _models_row(CliRunner().invoke(app, ["models"]))


def test_resumed_part_of_a_file_that_changed_on_the_server_starts_over(server, tmp_path):
    server.files["/f.pyth"] = PAYLOAD
    server.drop_after["/f.pyth"], server.drops_left["/f.pyth"] = 50_000, 3
    with pytest.raises(DownloadError, match="resumes next time"):
        resolve(_entry(server.url("/f.pyth"), sha256=None), progress=False)
    changed = os.urandom(200_000)  # a new upload under the same URL: its first bytes differ
    server.files["/f.pyth"] = changed
    path = resolve(_entry(server.url("/f.pyth"), sha256=None), progress=False)
    assert path.read_bytes() == changed
    assert server.requests[-2:] == [("/f.pyth", "bytes=150000-"), ("/f.pyth", None)]


@pytest.mark.parametrize("how", ["drip", "silent"])
def test_stalled_download_fails_after_the_stall_timeout(server, tmp_path, how):
    server.files["/f.pyth"] = PAYLOAD[:5000]
    getattr(server, how).add("/f.pyth")
    cache = tmp_path / "cache"
    log = tmp_path / "child.err"
    child = _start_cli_download(server.url("/f.pyth"), cache, log, UVTAG_DOWNLOAD_STALL_S="1")
    try:
        child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 1, log.read_text()
    message = _error_line(log)
    assert message.startswith("error: could not download test_model")
    assert f"{server.url('/f.pyth')} (stalled: " in message and " 1 s; UVTAG_DOWNLOAD_STALL_S sets the limit" in message
    assert not (cache / "test_model.pyth").exists()
    assert ("resumes next time" in message) == (how == "drip")  # a silent server left nothing to resume


def test_bad_stall_timeout_is_a_usage_error(tmp_path, monkeypatch, zoo_entry):
    from typer.testing import CliRunner

    from uvtag.cli import app

    zoo_entry(_closed_port_url())
    monkeypatch.setenv("UVTAG_DOWNLOAD_STALL_S", "soon")
    result = CliRunner().invoke(app, ["download", "test_model"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: UVTAG_DOWNLOAD_STALL_S='soon' is not a positive number of seconds"


def test_redirect_loop_is_one_line(server, zoo_entry):
    from typer.testing import CliRunner

    from uvtag.cli import app

    server.redirects["/loop.pyth"] = "/loop.pyth"
    zoo_entry(server.url("/loop.pyth"))
    result = CliRunner().invoke(app, ["download", "test_model"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "\n" not in message
    assert f"{server.url('/loop.pyth')} (HTTP 302: redirect loop or too many redirects)" in message


def test_empty_model_name_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from uvtag.cli import app
    from videogen import write_video

    video = write_video(tmp_path / "a.mp4", num_frames=16, fps=8)
    for command in (["classify", str(video), "-m", ""], ["localize", str(video), "-m", " "]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.stderr
        message = result.stderr.strip()
        assert "\n" not in message
        assert "model name is empty" in message and "uvtag models" in message


def test_damaged_cache_file_without_checksum_is_absent_and_downloaded_again(server, tmp_path, zoo_entry):
    from typer.testing import CliRunner

    from uvtag.cli import app

    server.files["/f.pyth"] = PAYLOAD
    zoo_entry(server.url("/f.pyth"))
    runner = CliRunner()
    assert runner.invoke(app, ["download", "test_model"]).exit_code == 0
    cached = tmp_path / "home" / "test_model.pyth"
    assert "yes" in _models_row(runner.invoke(app, ["models"]))
    cached.write_bytes(PAYLOAD[:1000])  # truncated (a full disk, a copy cut short)
    assert "yes" not in _models_row(runner.invoke(app, ["models"]))
    with pytest.warns(UserWarning, match="size mismatch"):
        result = runner.invoke(app, ["download", "test_model"])
    assert result.exit_code == 0, result.stderr
    assert cached.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/f.pyth", "/f.pyth"]
    assert "yes" in _models_row(runner.invoke(app, ["models"]))
    cached.write_bytes(PAYLOAD[:1000])
    with pytest.raises(ChecksumError, match=r"test_model\.pyth: 1000 bytes is not the 300003 downloaded; delete it"):
        resolve("test_model", offline=True)
