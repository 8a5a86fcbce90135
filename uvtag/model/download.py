"""Finding checkpoint files: the cache, `weights/` folders, and downloads.

`resolve` sends every name or path through one place: an existing path is used as is; a zoo name
is looked up in the cache dir, then in `weights/` folders, else downloaded into
`<cache>/<file>.part` (resumed with an HTTP Range request), hashed in chunks, and renamed into
place only after verification, so an interrupted download never looks complete.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import warnings
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from uvtag import __version__
from uvtag.errors import CheckpointError, ChecksumError, DownloadError, OfflineError, UnknownModelError
from uvtag.model.zoo import Checkpoint, get_checkpoint

__all__ = ["cache_dir", "local_file", "resolve", "sha256_file", "weights_dirs"]

CHUNK_BYTES = 1 << 20  # 1 MiB per read, for hashing and downloading
DEFAULT_TIMEOUT_SEC = 10.0  # per connect / read; a dead network fails fast
_CHECKPOINT_SUFFIXES = (".pyth", ".pth", ".pt", ".ckpt", ".bin")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


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


def resolve(
    checkpoint_or_path: Checkpoint | str | Path,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SEC,
) -> Path:
    """A verified local file for a zoo entry, a zoo name, or a path.

    Args:
        checkpoint_or_path: an existing file is returned as is; a `Checkpoint` or zoo name is
            looked up in the cache, then in weights/ folders, then downloaded.
        cache_dir: overrides $UVTAG_HOME and ~/.cache/uvtag.
        offline: never touch the network (None: $UVTAG_OFFLINE=1).
        progress: progress bar on stderr while downloading.
        timeout: seconds per connection attempt / read.
    Raises CheckpointError (missing path), UnknownModelError, OfflineError, ChecksumError, DownloadError.
    """
    if isinstance(checkpoint_or_path, Checkpoint):
        checkpoint = checkpoint_or_path
    else:
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
    return _resolve_checkpoint(checkpoint, _cache_root(cache_dir), _offline(offline), progress, timeout)


def local_file(checkpoint: Checkpoint, cache_dir: str | Path | None = None) -> Path | None:
    """Where `checkpoint` already is on disk (cache, then weights/ folders), without hashing; None if nowhere.

    A quick look for listings; `resolve` is what verifies the checksum before use.
    """
    root = _cache_root(cache_dir)
    candidates = [root / checkpoint.filename] + [d / n for d in weights_dirs() for n in checkpoint.filenames]
    return next((p for p in candidates if p.is_file()), None)


def _resolve_checkpoint(checkpoint: Checkpoint, root: Path, offline: bool, progress: bool, timeout: float) -> Path:
    target = root / checkpoint.filename
    if target.is_file():
        got = _bad_digest(target, checkpoint)
        if got is None:
            return target
        if offline:
            raise ChecksumError(
                f"{target}: sha256 {got} is not the expected {checkpoint.expected_digest}; "
                "delete it, or go online to download it again"
            )
        warnings.warn(f"{target}: sha256 mismatch (damaged cache file); downloading it again", stacklevel=3)
        target.unlink()
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
    return _download_any(checkpoint, target, progress, timeout)


class _FetchFailed(Exception):
    """One URL failed; the message is the reason."""


def _download_any(checkpoint: Checkpoint, target: Path, progress: bool, timeout: float) -> Path:
    """Try every URL in order; verify; atomically move into place."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache folder {target.parent} ({e.strerror}); set UVTAG_HOME") from None
    part = target.with_name(target.name + ".part")
    failures: list[str] = []
    checksum_failures = 0
    for url in checkpoint.urls:
        try:
            _fetch(url, part, progress, timeout)
        except _FetchFailed as e:
            failures.append(f"{url} ({e})")
            continue
        got = _bad_digest(part, checkpoint)
        if got is not None:
            failures.append(f"{url} (sha256 {got[:16]}... is not the expected {checkpoint.expected_digest[:16]}...)")
            checksum_failures += 1
            _remove(part)
            _remove(_url_note(part))
            continue
        os.replace(part, target)
        _remove(_url_note(part))
        return target
    kept = f" (the partial download {part.name} resumes next time)" if part.exists() else ""
    if not part.exists():
        _remove(_url_note(part))
    error = ChecksumError if checksum_failures == len(failures) else DownloadError
    raise error(
        f"could not download {checkpoint.name}; tried {'; '.join(failures)}{kept}. "
        f"Download it by hand and save it as {target}"
    )


def _url_note(part: Path) -> Path:
    return part.with_name(part.name + ".url")  # which URL the .part bytes came from


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fetch(url: str, part: Path, progress: bool, timeout: float, max_resumes: int = 2) -> None:
    """Stream `url` into `part`, resuming from its current size; retry a dropped stream."""
    note = _url_note(part)
    if part.exists() and (not note.exists() or note.read_text().strip() != url):
        _remove(part)  # bytes from another mirror (or unknown) must not be continued
    note.write_text(url)
    resumes = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, offset, progress, timeout)
            return
        except HTTPError as e:
            if e.code == 416 and offset:  # range not satisfiable: start over once
                _remove(part)
                if resumes < max_resumes:
                    resumes += 1
                    continue
            raise _FetchFailed(f"HTTP {e.code} {e.reason}") from None
        except (URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or _first_line(e) or type(e).__name__
            grew = part.exists() and part.stat().st_size > offset
            if grew and resumes < max_resumes:
                resumes += 1
                continue
            raise _FetchFailed(str(reason)) from None


def _fetch_once(url: str, part: Path, offset: int, progress: bool, timeout: float) -> None:
    headers = {"User-Agent": f"uvtag/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urlopen(Request(url, headers=headers), timeout=timeout) as response:
        resumed = offset > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise OSError(f"server answered the range request with {response.headers.get('Content-Range')!r}")
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as out, _progress_bar(part, total, start, progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"connection closed after {size} of {total} bytes")


def _progress_bar(part: Path, total: int | None, start: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
        desc=part.name.removesuffix(".part"), disable=not enabled, leave=False,
    )
