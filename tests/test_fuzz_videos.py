"""A small seeded fuzz run: damaged mp4/mkv/avi files cost only themselves, with one line each.

Byte flips, overwritten blocks and truncations of three tiny generated videos (a few hundred
variants of this kind found AttributeError, av.error.PermissionError, av.error.MemoryError and
IndexError escaping the decoders). Each variant goes through the reader API, and the whole folder,
with good copies of the originals, goes through `uvtag classify` and `uvtag batch` once each.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videogen import write_video

from uvtag.cli import app
from uvtag.errors import VideoError
from uvtag.video.reader import open_video

SEED = 66  # among the seeds tried, one whose variants raised both AttributeError and av.error.PermissionError
VARIANTS_PER_SOURCE = 14  # x 3 containers = 42 damaged files
SOURCES = {".mp4": "h264", ".mkv": "h264", ".avi": "mpeg4"}

runner = CliRunner()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One damaged copy of `data`: flipped bytes, an overwritten block, or a truncation.

    Damage lands in the first kilobyte half of the time: container headers and codec parameters
    live there, and their damage gives the least expected errors.
    """
    out = bytearray(data)
    span = min(len(out), 1024) if rng.random() < 0.5 else len(out)
    kind = rng.choice(["flip", "block", "truncate"])
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            out[rng.randrange(span)] = rng.randrange(256)
    elif kind == "block":
        at, size = rng.randrange(span), rng.randint(4, 256)
        out[at : at + size] = bytes(rng.randrange(256) for _ in range(size))
    else:
        del out[rng.randrange(16, len(out)) :]
    return bytes(out)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """(good originals, damaged variants), all in one folder."""
    folder = tmp_path_factory.mktemp("fuzz")
    rng = random.Random(SEED)
    good, damaged = [], []
    for suffix, codec in SOURCES.items():
        src = write_video(folder / f"good{suffix}", num_frames=24, codec=codec, fps=12, gop=6, size=(48, 64))
        good.append(src)
        data = src.read_bytes()
        for k in range(VARIANTS_PER_SOURCE):
            path = folder / f"bad{k:02d}{suffix}"
            path.write_bytes(mutate(data, rng))
            damaged.append(path)
    return good, damaged


def read_everything(path: Path) -> None:
    """What the commands do with a reader: timestamps, any-order frames, a resized forward stream."""
    with open_video(path) as r:
        n = r.info.num_frames
        r.timestamps_sec()
        r.get_frames([n - 1, 0, n // 2])
        for _ in r.iter_frames(range(n), size=(24, 32)):
            pass


def test_the_reader_raises_only_one_line_video_errors(fuzzed):
    good, damaged = fuzzed
    for path in good:
        read_everything(path)
    for path in damaged:
        try:
            read_everything(path)
        except VideoError as e:
            message = str(e)
            assert message.startswith(f"{path}: ") and "\n" not in message, message


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def _failed_paths(stderr: str, prefix: str) -> set[str]:
    """Paths named by one-line failure reports ("failed: <path>: reason")."""
    found = set()
    for line in stderr.splitlines():
        if line.startswith(prefix):
            found.add(line[len(prefix) :].split(": ", 1)[0])
    return found


def test_classify_over_the_fuzzed_folder(tiny_checkpoint, fuzzed, capfd):
    good, damaged = fuzzed
    everything = [str(p) for p in good + damaged]
    result = runner.invoke(app, ["classify", *everything, "-m", tiny_checkpoint, "--fast", "-f", "jsonl", "-q"])
    worker_err = capfd.readouterr().err  # anything a decoder wrote straight to fd 2
    _no_traceback(result.stdout, result.stderr, worker_err)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 3), result.stderr
    tagged = {json.loads(line)["path"] for line in result.stdout.splitlines()}
    failed = _failed_paths(result.stderr, "failed: ")
    assert tagged | failed == set(everything) and not tagged & failed
    assert {str(p) for p in good} <= tagged
    assert result.exit_code == (3 if failed else 0)


def test_batch_over_the_fuzzed_folder(tiny_checkpoint, fuzzed, tmp_path, capfd):
    good, damaged = fuzzed
    out = tmp_path / "labels.csv"
    folder = good[0].parent
    result = runner.invoke(app, ["batch", str(folder), "--out", str(out), "-m", tiny_checkpoint, "--clip", "1", "-q"])
    worker_err = capfd.readouterr().err  # the decode workers' stderr is this process's fd 2
    _no_traceback(result.stdout, result.stderr, worker_err)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 3), result.stderr
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    tagged = {r["path"] for r in rows if r["row_type"] == "video"}
    failures = {r["path"]: r["error"] for r in rows if r["row_type"] == "failure"}
    assert tagged | set(failures) == {str(p) for p in good + damaged} and not tagged & set(failures)
    assert {str(p) for p in good} <= tagged
    for path, error in failures.items():  # the CSV error column is "Kind: message"
        kind, _, message = error.partition(": ")
        assert kind.isidentifier() and message.startswith(f"{path}: ") and "\n" not in error, error
        assert "signal 9" not in error, error  # a worker's exception is reported as itself, not as our kill
    assert result.exit_code == (3 if failures else 0)
