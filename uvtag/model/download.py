"""Finding checkpoint files: the cache, `weights/` folders, and downloads.

`resolve` sends every name or path through one place: an existing path is used as is; a zoo name
is looked up in the cache dir, then in `weights/` folders, else downloaded into
`<cache>/<file>.part` (resumed with an HTTP Range request), checked against the server's size
and the known sha256, and renamed into place only after that, so an interrupted download never
looks complete.

One process at a time downloads a given file: `<cache>/<file>.lock` is held (`fcntl.flock`) from
the cache check to the rename, and a second process waits for it, then uses the finished file.
The size of every completed download is kept in `<cache>/<file>.size`; a cache file of another
size counts as damaged (listed as absent, downloaded again).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from uvtag import __version__
from uvtag.errors import (
    CheckpointError,
    ChecksumError,
    DownloadError,
    OfflineError,
    UnknownModelError,
    UsageError,
    first_line,
    one_line,
)
from uvtag.model.zoo import Checkpoint, get_checkpoint

try:
    import fcntl
except ImportError:  # not POSIX: downloads are not locked against each other
    fcntl = None

__all__ = ["cache_dir", "local_file", "resolve", "sha256_file", "stall_seconds", "weights_dirs"]

CHUNK_BYTES = 1 << 20  # 1 MiB per read, for hashing and downloading
DEFAULT_TIMEOUT_SEC = 10.0  # per connect / read; a dead network fails fast
DEFAULT_STALL_SEC = 60.0  # a download bringing under STALL_MIN_BYTES in this long has stalled
STALL_ENV = "UVTAG_DOWNLOAD_STALL_S"
STALL_MIN_BYTES = 1024
_CHECKPOINT_SUFFIXES = (".pyth", ".pth", ".pt", ".ckpt", ".bin")





def cache_dir(path: str | Path | None = None) -> Path:
    """Where downloads go: `path` if given, else $UVTAG_HOME, else ~/.cache/uvtag."""
    return _cache_root(path)


def _cache_root(path: str | Path | None) -> Path:
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("UVTAG_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "uvtag"


def weights_dirs() -> list[Path]:
    """Folders searched for hand-placed files: the repository's weights/, then ./weights."""
    repo = Path(__file__).resolve().parents[2] / "weights"
    here = Path.cwd() / "weights"
    return [repo] if repo.resolve() == here.resolve() else [repo, here]


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("UVTAG_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def stall_seconds(value: float | None = None) -> float:
    """The stall limit: `value` if given, else $UVTAG_DOWNLOAD_STALL_S, else 60 s.

    Raises UsageError for a value that is not a positive number of seconds.
    """
    text = os.environ.get(STALL_ENV, "").strip() if value is None else str(value)
    if not text:
        return DEFAULT_STALL_SEC
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        where = f"{STALL_ENV}={text!r}" if value is None else f"stall timeout {text!r}"
        raise UsageError(f"{where} is not a positive number of seconds")
    return seconds


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _bad_digest(path: Path, checkpoint: Checkpoint) -> str | None:
    """None if the file matches the known sha256 (or prefix, or nothing is known), else its digest."""
    expected = checkpoint.expected_digest
    if not expected:
        return None
    got = sha256_file(path)
    return None if got.startswith(expected.lower()) else got


def _size_note(target: Path) -> Path:
    return target.with_name(target.name + ".size")  # bytes of the completed download


def _recorded_size(target: Path) -> int | None:
    """The size written when `target` was downloaded; None if none was (or it is unreadable)."""
    try:
        return int(_size_note(target).read_text().strip())
    except (OSError, ValueError):
        return None


def _size_ok(target: Path) -> bool:
    """False only when a size was recorded for `target` and the file has another."""
    expected = _recorded_size(target)
    return expected is None or target.stat().st_size == expected


def resolve(
    checkpoint_or_path: Checkpoint | str | Path,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SEC,
    stall_timeout: float | None = None,
) -> Path:
    """A verified local file for a zoo entry, a zoo name, or a path.

    Args:
        checkpoint_or_path: an existing file is returned as is; a `Checkpoint` or zoo name is
            looked up in the cache, then in weights/ folders, then downloaded.
        cache_dir: overrides $UVTAG_HOME and ~/.cache/uvtag.
        offline: never touch the network (None: $UVTAG_OFFLINE=1).
        progress: progress bar on stderr while downloading.
        timeout: seconds per connection attempt / read.
        stall_timeout: a download that brings under 1 KiB in this many seconds fails, and so
            does one silent for this long or `timeout` (None: $UVTAG_DOWNLOAD_STALL_S, else 60).
    Raises UsageError (empty name, bad stall timeout), CheckpointError (missing path),
    UnknownModelError, OfflineError, ChecksumError, DownloadError.
    """
    if isinstance(checkpoint_or_path, Checkpoint):
        checkpoint = checkpoint_or_path
    else:
        if isinstance(checkpoint_or_path, str) and not checkpoint_or_path.strip():
            raise UsageError("the model name is empty; pass a zoo name (list them with `uvtag models`) or a file")
        candidate = Path(checkpoint_or_path).expanduser()
        if candidate.exists():
            if not candidate.is_file():
                raise CheckpointError(f"{candidate}: not a regular file")
            return candidate
        text = str(checkpoint_or_path)
        if isinstance(checkpoint_or_path, Path) or os.sep in text:
            raise CheckpointError(f"{candidate}: no such file")
        try:
            checkpoint = get_checkpoint(text)
        except UnknownModelError:
            if text.endswith(_CHECKPOINT_SUFFIXES):
                raise CheckpointError(f"{candidate}: no such file (and not a zoo model name)") from None
            raise
    limits = _Limits(timeout, stall_seconds(stall_timeout))
    return _resolve_checkpoint(checkpoint, _cache_root(cache_dir), _offline(offline), progress, limits)


def local_file(checkpoint: Checkpoint, cache_dir: str | Path | None = None) -> Path | None:
    """Where `checkpoint` already is on disk (cache, then weights/ folders), without hashing; None if nowhere.

    A quick look for listings: a cache file whose size is not the one recorded at download
    counts as absent; `resolve` is what verifies the checksum before use.
    """
    cached = _cache_root(cache_dir) / checkpoint.filename
    if cached.is_file() and _size_ok(cached):
        return cached
    candidates = [d / n for d in weights_dirs() for n in checkpoint.filenames]
    return next((p for p in candidates if p.is_file()), None)


@dataclass(frozen=True)
class _Limits:
    """How long a download may wait: `timeout` per connect / read, `stall` for slow progress."""

    timeout: float
    stall: float

    @property
    def socket(self) -> float:
        """The socket timeout: a silent server is a stall too."""
        return min(self.timeout, self.stall)


def _resolve_checkpoint(checkpoint: Checkpoint, root: Path, offline: bool, progress: bool, limits: _Limits) -> Path:
    target = root / checkpoint.filename
    problem = _cache_problem(target, checkpoint)
    if problem is None:
        return target
    if offline and problem[0] != "absent":
        raise ChecksumError(f"{target}: {problem[1]}; delete it, or go online to download it again")
    for folder in weights_dirs():
        for name in checkpoint.filenames:
            hand = folder / name
            if hand.is_file():
                got = _bad_digest(hand, checkpoint)
                if got is not None:
                    raise ChecksumError(
                        f"{hand}: sha256 {got} is not the expected {checkpoint.expected_digest} of "
                        f"{checkpoint.name}; replace or remove that file"
                    )
                return hand
    if not checkpoint.urls:
        where = " or ".join(str(d / checkpoint.filename) for d in weights_dirs())
        raise OfflineError(f"{checkpoint.name} has no download location and is not on disk; put {checkpoint.filename} at {where}")
    if offline:
        raise OfflineError(
            f"{checkpoint.name} is not on disk and downloads are off (offline); download "
            f"{checkpoint.urls[0]} by hand and save it as {target}"
        )
    _make_folder(target.parent)
    with _exclusive(target.with_name(target.name + ".lock"), _waiting_note(target, progress)):
        problem = _cache_problem(target, checkpoint)  # again: another process may have downloaded it meanwhile
        if problem is None:
            return target
        if problem[0] != "absent":
            warnings.warn(f"{target}: {problem[0]} mismatch (damaged cache file); downloading it again", stacklevel=3)
            _remove(target)
            _remove(_size_note(target))
        return _download_any(checkpoint, target, progress, limits)


def _cache_problem(target: Path, checkpoint: Checkpoint) -> tuple[str, str] | None:
    """None if the cache file is whole, else (what is wrong: "absent", "size" or "sha256", the details)."""
    absent = ("absent", f"{target} is not there")
    if not target.is_file():
        return absent
    try:  # another process may remove it meanwhile
        size = target.stat().st_size
        expected = _recorded_size(target)
        if expected is not None and size != expected:
            return "size", f"{size} bytes is not the {expected} downloaded"
        got = _bad_digest(target, checkpoint)
    except FileNotFoundError:
        return absent
    if got is not None:
        return "sha256", f"sha256 {got} is not the expected {checkpoint.expected_digest}"
    return None


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache folder {folder} ({e.strerror}); set UVTAG_HOME") from None


def _waiting_note(target: Path, progress: bool) -> Callable[[], None]:
    def note() -> None:
        if progress:
            print(f"waiting for another uvtag process downloading {target.name}", file=sys.stderr, flush=True)

    return note


@contextmanager
def _exclusive(lock_path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created, and removed on release); `on_wait` runs
    once if another process holds it. Unlocked where fcntl does not exist."""
    if fcntl is None:
        yield
        return
    waited = False
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DownloadError(f"cannot write in the cache folder {lock_path.parent} ({e.strerror}); set UVTAG_HOME") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    waited = True
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if _is_open_file(fd, lock_path):
            break
        os.close(fd)  # the holder removed that lock file on release: lock the new one
    try:
        yield
    finally:
        _remove(lock_path)  # still held: a waiter on this inode sees it gone and retries
        os.close(fd)


def _is_open_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class _FetchFailed(Exception):
    """One URL failed; the message is the reason."""


def _download_any(checkpoint: Checkpoint, target: Path, progress: bool, limits: _Limits) -> Path:
    """Try every URL in order; verify size and checksum; record the size; atomically move into place."""
    part = target.with_name(target.name + ".part")
    failures: list[str] = []
    checksum_failures = 0
    for url in checkpoint.urls:
        try:
            total = _fetch(url, part, progress, limits)
        except _FetchFailed as e:
            failures.append(f"{url} ({e})")
            continue
        size = part.stat().st_size
        if total is not None and size != total:
            failures.append(f"{url} ({size} bytes on disk, not the {total} the server announced)")
            _remove(part)
            _remove(_url_note(part))
            continue
        got = _bad_digest(part, checkpoint)
        if got is not None:
            failures.append(f"{url} (sha256 {got[:16]}... is not the expected {checkpoint.expected_digest[:16]}...)")
            checksum_failures += 1
            _remove(part)
            _remove(_url_note(part))
            continue
        try:
            _size_note(target).write_text(f"{size}\n")
            os.replace(part, target)
        except OSError as e:
            raise DownloadError(f"cannot move {part} to {target} ({e.strerror}); check the cache folder") from None
        _remove(_url_note(part))
        return target
    if part.exists() and part.stat().st_size == 0:
        _remove(part)
    kept = f" (the partial download {part.name} resumes next time)" if part.exists() else ""
    if not part.exists():
        _remove(_url_note(part))
    error = ChecksumError if checksum_failures == len(failures) else DownloadError
    raise error(
        f"could not download {checkpoint.name}; tried {'; '.join(failures)}{kept}. "
        f"Download it by hand and save it as {target}"
    )


def _url_note(part: Path) -> Path:
    return part.with_name(part.name + ".url")  # which URL the .part bytes came from, and its full size


def _read_note(note: Path) -> tuple[str, int | None] | None:
    """(URL, full size or None) from a .url note; None if there is no readable note."""
    try:
        lines = note.read_text().split()
    except OSError:
        return None
    if not lines:
        return None
    size = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
    return lines[0], size


def _write_note(note: Path, url: str, total: int | None) -> None:
    note.write_text(url + ("" if total is None else f"\n{total}") + "\n")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class _Restart(Exception):
    """The bytes in the .part file cannot be continued; the download starts from zero."""


class _Stalled(Exception):
    """The server sent (almost) nothing for the stall timeout; the message says what it sent."""


def _fetch(url: str, part: Path, progress: bool, limits: _Limits, max_resumes: int = 2) -> int | None:
    """Stream `url` into `part`, resuming from its current size; retry a dropped stream.

    Returns the full size the server announced (None if it sent no length).
    """
    note = _url_note(part)
    known = _read_note(note)
    if part.exists() and (known is None or known[0] != url):
        _remove(part)  # bytes from another mirror (or unknown) must not be continued
    resumes = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        known = _read_note(note)
        expected = known[1] if offset and known is not None and known[0] == url else None
        if expected is not None and offset > expected:
            _remove(part)  # more bytes than the file has: not a prefix of it
            offset, expected = 0, None
        try:
            return _fetch_once(url, part, offset, expected, progress, limits)
        except HTTPError as e:
            if e.code == 416 and offset:  # range not satisfiable: start over once
                _remove(part)
                if resumes < max_resumes:
                    resumes += 1
                    continue
            raise _FetchFailed(_http_reason(e)) from None
        except _Restart:
            _remove(part)
            if resumes < max_resumes:
                resumes += 1
                continue
            raise _FetchFailed("the file changed on the server while resuming") from None
        except _Stalled as e:
            raise _FetchFailed(f"stalled: {e}") from None
        except (URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or first_line(e)
            if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
                reason = f"no answer in {limits.socket:g} s"
            grew = part.exists() and part.stat().st_size > offset
            if grew and resumes < max_resumes:
                resumes += 1
                continue
            raise _FetchFailed(one_line(reason, 160)) from None


def _http_reason(e: HTTPError) -> str:
    if 300 <= e.code < 400:
        return f"HTTP {e.code}: redirect loop or too many redirects"
    return one_line(f"HTTP {e.code} {e.reason}", 160)


def _content_range_total(header: str) -> int | None:
    """The full size in a `bytes a-b/total` header; None if it is `*` or unreadable."""
    total = header.rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _fetch_once(url: str, part: Path, offset: int, expected: int | None, progress: bool, limits: _Limits) -> int | None:
    """One request: continue `part` from `offset` (or rewrite it), return the announced full size.

    `expected` is the full size announced when the .part was started; a different one means
    the file changed and raises _Restart.
    """
    headers = {"User-Agent": f"uvtag/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urlopen(Request(url, headers=headers), timeout=limits.socket) as response:
        resumed = offset > 0 and response.status == 206
        content_range = response.headers.get("Content-Range", "")
        if resumed and not content_range.startswith(f"bytes {offset}-"):
            raise OSError(f"server answered the range request with {content_range!r}")
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None and length.isdigit() else None
        if resumed and expected is not None and _content_range_total(content_range) not in (None, expected):
            raise _Restart()
        _write_note(_url_note(part), url, total)
        watch = _StallWatch(limits.stall)
        with open(part, "ab" if resumed else "wb") as out, _progress_bar(part, total, start, progress) as bar:
            while chunk := _read_some(response, limits):
                out.write(chunk)
                bar.update(len(chunk))
                watch.received(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"connection closed after {size} of {total} bytes")
    return total


def _read_some(response: http.client.HTTPResponse, limits: _Limits) -> bytes:
    """Whatever the server has sent (up to 1 MiB, b"" at the end); silence is a stall."""
    try:
        return response.read1(CHUNK_BYTES)
    except TimeoutError:
        hint = f"; {STALL_ENV} sets the limit" if limits.stall <= limits.timeout else ""
        raise _Stalled(f"no data for {limits.socket:g} s{hint}") from None


class _StallWatch:
    """Raises _Stalled when `stall` seconds go by bringing fewer than STALL_MIN_BYTES."""

    def __init__(self, stall: float) -> None:
        self.stall = stall
        self.since = time.monotonic()
        self.bytes = 0

    def received(self, n: int) -> None:
        now = time.monotonic()
        self.bytes += n
        if self.bytes >= STALL_MIN_BYTES:
            self.since, self.bytes = now, 0
        elif now - self.since > self.stall:
            raise _Stalled(f"under {STALL_MIN_BYTES} bytes in {self.stall:g} s; {STALL_ENV} sets the limit")


def _progress_bar(part: Path, total: int | None, start: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
        desc=part.name.removesuffix(".part"), disable=not enabled, leave=False,
    )
