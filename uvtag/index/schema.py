"""The tag index: one SQLite file holding a batch's videos, clips and labels, versioned.

Schema version `SCHEMA_VERSION` (in `PRAGMA user_version`; `PRAGMA application_id` is
`APPLICATION_ID`, so another program's database is told apart from an old uvtag one):

    meta         key TEXT PRIMARY KEY, value TEXT: `schema_version`, `uvtag_version` (of the run
                 that created the file), `model` (the model every video was tagged by; absent
                 until a video that names it is written), `embedding_dim` (once an embedding is
                 stored).
    videos       id, path TEXT UNIQUE (as the batch was given it), status 'ok' | 'failed', error
                 and error_kind (failures: the one-line reason and the error class), model,
                 duration_sec, fps, num_frames, width, height (as displayed), rotation, codec,
                 backend, size_bytes (on disk when written; NULL if unknown), num_views (clips
                 tagged), embedding BLOB (little-endian float32 [dim]: the L2-normalised mean of
                 the clip embeddings, NULL without --embed) and dim. Metadata a source lacks
                 (a merged CSV has no fps...) is NULL.
    clips        id, video_id -> videos, start_sec, end_sec; index (video_id, start_sec).
    clip_labels  clip_id -> clips, video_id (the clip's, repeated so that search ranks videos from
                 the index alone), rank (1-based), label, class_index (0-based), score in [0, 1];
                 primary key (clip_id, rank); index (label, score, video_id) for search.
    video_labels video_id -> videos, rank, label, class_index, score: the video's own top-k
                 (mean of its clip scores); index (label, score).
    labels       class_index PRIMARY KEY, label UNIQUE: every label a stored row names, so a
                 query's label can be checked (and a misspelling corrected) without a model.

Text that names files (a video's path, its error, the model) is stored as TEXT when it is valid
UTF-8 and otherwise as a BLOB of its file-system bytes (a name on disk that is not UTF-8 reaches
Python as a surrogate-escaped str, which SQLite's TEXT cannot hold): `to_db` and `from_db` map
between the two, so every such name reads back exactly as it was given.

Writing a video deletes the failure row of any folder above it (a folder that could not be
listed, listed by a later run). Deleting a video deletes its clips and labels (foreign keys,
ON DELETE CASCADE). The file is in WAL mode; writers take the write lock at the start of each video's transaction (BEGIN
IMMEDIATE) and wait up to `BUSY_TIMEOUT_MS` for another writer's transaction to end.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from uvtag import __version__
from uvtag.errors import OutputError, UsageError

SCHEMA_VERSION = 1  # bump when a table or column changes meaning or name
APPLICATION_ID = 0x75767467  # "uvtg"
BUSY_TIMEOUT_MS = 120_000  # how long a writer waits for another writer's video transaction

_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE videos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    error_kind TEXT,
    model TEXT,
    duration_sec REAL,
    fps REAL,
    num_frames INTEGER,
    width INTEGER,
    height INTEGER,
    rotation INTEGER,
    codec TEXT,
    backend TEXT,
    size_bytes INTEGER,
    num_views INTEGER,
    embedding BLOB,
    dim INTEGER
);
CREATE TABLE clips (
    id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start_sec REAL NOT NULL,
    end_sec REAL NOT NULL
);
CREATE INDEX clips_by_video ON clips (video_id, start_sec);
CREATE TABLE clip_labels (
    clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    video_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    label TEXT NOT NULL,
    class_index INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (clip_id, rank)
) WITHOUT ROWID;
CREATE INDEX clip_labels_by_label ON clip_labels (label, score, video_id);
CREATE TABLE video_labels (
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    rank INTEGER NOT NULL,
    label TEXT NOT NULL,
    class_index INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (video_id, rank)
) WITHOUT ROWID;
CREATE INDEX video_labels_by_label ON video_labels (label, score);
CREATE TABLE labels (class_index INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE);
"""


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def _settings(conn: sqlite3.Connection, durable: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")


def _version(conn: sqlite3.Connection, path: Path) -> tuple[int, int, bool]:
    """(application_id, user_version, whether it has tables) of an open database."""
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise UsageError(f"{path}: not a SQLite database ({e})") from None
    return app, version, bool(tables)


def _check(path: Path, app: int, version: int) -> None:
    if app != APPLICATION_ID:
        raise UsageError(f"{path}: not a uvtag tag index (a SQLite database another program wrote)")
    if version != SCHEMA_VERSION:
        raise UsageError(f"{path}: a tag index of schema version {version}; this uvtag reads version "
                         f"{SCHEMA_VERSION}: use the uvtag that wrote it, or write a new database")


def connect_reader(path: str | Path) -> sqlite3.Connection:
    """An open, read-only connection to an existing tag index.

    Raises:
        UsageError: no such file, not SQLite, not a uvtag index, or another schema version.
    """
    db = Path(path)
    if not db.is_file():
        raise UsageError(f"{db}: no such tag index (write one with `uvtag batch DIR --out {db.name}`)")
    try:
        conn = sqlite3.connect(_uri(db, "ro"), uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise UsageError(f"{db}: cannot open it ({e})") from None
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    app, version, tables = _version(conn, db)
    if not tables:
        conn.close()
        raise UsageError(f"{db}: an empty database, not a uvtag tag index")
    try:
        _check(db, app, version)
    except UsageError:
        conn.close()
        raise
    return conn


def connect_writer(path: str | Path, durable: bool = True) -> sqlite3.Connection:
    """An open read-write connection to the tag index at `path`, created (empty) if missing.

    Two processes creating the same file at once are serialised: the tables are made inside
    one immediate transaction, by whichever comes first.

    Args:
        durable: every commit reaches the disk (synchronous=FULL); False for a file that is
            renamed into place only once complete.

    Raises:
        UsageError: not SQLite, not a uvtag index, or another schema version.
        OutputError: it cannot be created or written.
    """
    db = Path(path)
    try:
        conn = sqlite3.connect(_uri(db, "rwc"), uri=True, isolation_level=None)
        _settings(conn, durable)
    except sqlite3.Error as e:
        raise OutputError(f"{db}: cannot open it for writing ({e})") from None
    try:
        app, version, tables = _version(conn, db)
        if tables:
            _check(db, app, version)
        _initialise(conn, db)
    except BaseException:
        conn.close()
        raise
    return conn


def _initialise(conn: sqlite3.Connection, db: Path) -> None:
    """WAL mode; the tables and meta rows if no one has made them yet."""
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            app, version, tables = _version(conn, db)
            if not tables:
                for statement in filter(str.strip, _TABLES.split(";")):
                    conn.execute(statement)
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                 [("schema_version", str(SCHEMA_VERSION)), ("uvtag_version", __version__)])
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            else:
                _check(db, app, version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        raise OutputError(f"{db}: cannot write it ({e})") from None


def to_db(text: str) -> str | bytes:
    """`text` as stored: itself when it is valid UTF-8, else its file-system bytes (a BLOB)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def from_db(value: str | bytes | None) -> str | None:
    """The str that `to_db` stored as `value` (None stays None)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    """The meta table as a dict."""
    return {key: from_db(value) for key, value in conn.execute("SELECT key, value FROM meta").fetchall()}
