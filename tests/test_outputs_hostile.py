"""Outputs under hostile conditions, through the real CLI: file names and labels holding "\\r",
"\\n", quotes, commas and edge spaces; two runs on one output; a full disk; a folder that cannot
be listed."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from uvtag.batch.output import BATCH_CSV_COLUMNS, BATCH_CSV_HEADER, lock_path
from uvtag.cli import app
from uvtag.batch.merge import read_batch_file
from videogen import write_bytes, write_video

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

# Every name a file system allows: CR, LF, CRLF, quotes, commas, edge spaces, non-ASCII.
HOSTILE_NAMES = ["cr\rname.mp4", "lf\nname.mp4", "crlf\r\nname.mp4", ' lead, "q" trail .mp4', "ünï 🎬.mp4"]
# What a checkpoint's class names may hold (one line each: CR and LF are refused when it loads;
# tests/test_writers.py writes labels with them through the writers).
HOSTILE_LABELS = ['walk, "fast"', " run ", 'jump "high"', "wave,", "clap 👏 "]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line(stderr: str) -> str:
    """The single line of `stderr` (fails if there are more, or a traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames is not None and all(None not in r for r in rows)  # no row split or spilled
    return rows


def completed(out: Path, fmt: str) -> list[str]:
    """The paths of the complete videos in batch output `out`, in file order."""
    if fmt == "csv":
        return [r["path"] for r in read_rows(out) if r["row_type"] == "video" and r["rank"] == "1"]
    text = out.read_text()
    records = [json.loads(x) for x in text.splitlines()] if fmt == "jsonl" else json.loads(text)["videos"]
    return [r["path"] for r in records if r.get("record", "video") == "video"]


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> Path:
    """A folder of videos with hostile names, plus one non-video with a CR in its name."""
    d = tmp_path_factory.mktemp("hostile")
    staging = tmp_path_factory.mktemp("staging")
    for i, name in enumerate(HOSTILE_NAMES):
        video = write_video(staging / f"v{i}.mp4", num_frames=20, fps=10, size=(48, 64))
        os.rename(video, d / name)  # the encoder never sees the odd name
    write_bytes(d / "bad\rfile.mp4", b"not a video\n" * 10)
    return d


@pytest.fixture(scope="module")
def hostile_checkpoint(tmp_path_factory) -> str:
    """The tiny test model, with class names that need quoting in CSV or keep edge spaces."""
    from uvtag.model import build_model
    from uvtag.model.weights import save_checkpoint

    torch.manual_seed(0)
    model = build_model(tiny_config())
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    path = tmp_path_factory.mktemp("models") / "hostile_labels.pt"
    save_checkpoint(path, model, HOSTILE_LABELS,
                    {"dataset": "test", "protocol": {"num_clips": 1, "num_crops": 1, "sampler": "kinetics"}})
    return str(path)


@pytest.fixture(scope="module")
def hostile_batch(hostile_dir, hostile_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "labels.csv"
    result = invoke("batch", hostile_dir, "--out", out, "-m", hostile_checkpoint, "--clip", "1", "-k", "2",
                    "-q", "--no-isolate")
    assert result.exit_code == 3, result.stderr  # the non-video fails, every video is tagged
    return out


# ---------------------------------------------------------------- CSV round trips


def test_batch_csv_round_trips_hostile_names_and_labels(hostile_dir, hostile_batch):
    rows = read_rows(hostile_batch)
    videos = {str(hostile_dir / n) for n in HOSTILE_NAMES}
    assert {r["path"] for r in rows if r["row_type"] == "video" and r["rank"] == "1"} == videos
    assert {r["path"] for r in rows if r["row_type"] == "failure"} == {str(hostile_dir / "bad\rfile.mp4")}
    assert {r["row_type"] for r in rows} == {"clip", "video", "failure"}
    assert {r["label"] for r in rows if r["row_type"] != "failure"} <= set(HOSTILE_LABELS)
    assert all(float(r["score"]) >= 0 for r in rows if r["row_type"] != "failure")


def test_batch_csv_with_hostile_names_resumes_and_merges(hostile_dir, hostile_checkpoint, hostile_batch, tmp_path):
    out = tmp_path / "labels.csv"
    shutil.copy(hostile_batch, out)
    resumed = invoke("batch", hostile_dir, "--out", out, "-m", hostile_checkpoint, "--clip", "1", "-k", "2",
                     "--resume", "--no-isolate")
    assert resumed.exit_code == 3, resumed.stderr  # the non-video is retried, and fails again
    assert f"{len(HOSTILE_NAMES)} already done" in resumed.stderr
    rows = read_rows(out)
    assert rows[:-1] == read_rows(hostile_batch)  # kept as it was, then the retry's failure row
    assert rows[-1]["row_type"] == "failure" and rows[-1]["path"] == str(hostile_dir / "bad\rfile.mp4")
    merged = tmp_path / "merged.csv"
    result = invoke("merge", out, "--out", merged, "-q")
    assert result.exit_code == 3, result.stderr  # the failure is still a failure
    assert merged.read_bytes() == hostile_batch.read_bytes()  # one block per video, as one run writes


def test_batch_csv_with_hostile_names_reads_in_pandas(hostile_dir, hostile_batch):
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(hostile_batch, dtype=str, keep_default_na=False)
    assert tuple(frame.columns) == BATCH_CSV_COLUMNS
    assert frame.to_dict("records") == read_rows(hostile_batch)
    assert set(frame["path"]) == {str(hostile_dir / n) for n in HOSTILE_NAMES} | {str(hostile_dir / "bad\rfile.mp4")}


def test_classify_csv_round_trips_hostile_names_and_labels(hostile_dir, hostile_checkpoint, tmp_path):
    out = tmp_path / "tags.csv"
    videos = [hostile_dir / n for n in HOSTILE_NAMES]
    result = invoke("classify", *videos, "-m", hostile_checkpoint, "-k", "5", "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    rows = read_rows(out)
    assert [r["path"] for r in rows] == [str(v) for v in videos for _ in range(5)]
    assert all(sorted(r["label"] for r in rows if r["path"] == str(v)) == sorted(HOSTILE_LABELS) for v in videos)


def test_localize_csv_round_trips_hostile_names_and_labels(hostile_dir, hostile_checkpoint, tmp_path):
    out = tmp_path / "segments.csv"
    video = hostile_dir / HOSTILE_NAMES[0]
    result = invoke("localize", video, "-m", hostile_checkpoint, "--window", "1", "--threshold", "0",
                    "--nms-iou", "1", "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    rows = read_rows(out)
    assert {r["path"] for r in rows} == {str(video)}
    assert rows and {r["label"] for r in rows} <= set(HOSTILE_LABELS)


# ---------------------------------------------------------------- one run per output


_HOLDER = """
import sys
from uvtag.batch.output import BatchWriter
with BatchWriter.open(sys.argv[1], sys.argv[2], resume=True):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("two")
    for i in range(2):
        write_video(d / f"v{i}.mp4", num_frames=20, fps=10, size=(48, 64))
    return d


def _hold(out: Path, fmt: str) -> subprocess.Popen:
    """A second process that holds `out` open in a BatchWriter until its stdin closes."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), fmt], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_a_second_run_on_the_same_output_is_refused(tiny_checkpoint, two_videos, tmp_path, fmt):
    out = tmp_path / f"labels.{fmt}"
    batch = ["batch", two_videos, "--out", out, "-m", tiny_checkpoint, "--clip", "1", "-q", "--no-isolate"]
    assert invoke(batch[0], two_videos / "v0.mp4", *batch[2:]).exit_code == 0  # v0 done, v1 to do
    holder = _hold(out, fmt)
    before = out.read_bytes()
    try:
        refused = invoke(*batch, "--resume")
        assert refused.exit_code == 1
        line = one_line(refused.stderr)
        assert f"another uvtag run (pid {holder.pid}) is writing this file" in line and out.name in line
        assert out.read_bytes() == before
        overwrite = invoke(*batch, "--overwrite")
        assert overwrite.exit_code == 1 and f"pid {holder.pid}" in one_line(overwrite.stderr)
        assert out.read_bytes() == before
    finally:
        holder.communicate("")  # closes its stdin: the holder closes the writer and exits
    assert not lock_path(out).exists()  # a writer that closes removes its lock file
    assert invoke(*batch, "--resume").exit_code == 0
    assert completed(out, fmt) == [str(two_videos / "v0.mp4"), str(two_videos / "v1.mp4")]


def test_a_killed_run_leaves_no_lock_behind(tiny_checkpoint, two_videos, tmp_path):
    out = tmp_path / "labels.csv"
    holder = _hold(out, "csv")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(out).read_text() == f"{holder.pid}\n"  # left behind, no longer locked
    result = invoke("batch", two_videos, "--out", out, "-m", tiny_checkpoint, "--clip", "1", "-q",
                    "--no-isolate", "--resume")
    assert result.exit_code == 0, result.stderr
    assert completed(out, "csv") == [str(two_videos / "v0.mp4"), str(two_videos / "v1.mp4")]


# ---------------------------------------------------------------- a full disk


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_batch_to_a_full_disk_says_so_in_one_line(tiny_checkpoint, two_videos, tmp_path, fmt):
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    out = tmp_path / f"labels.{fmt}"
    out.symlink_to("/dev/full")
    result = invoke("batch", two_videos, "--out", out, "-m", tiny_checkpoint, "-q", "--no-isolate", "--overwrite")
    assert result.exit_code == 1
    assert one_line(result.stderr).startswith(f"error: {out}: cannot write it (No space left on device)")
    assert not lock_path(out).exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("command", ["classify", "localize"])
def test_machine_format_to_a_full_stdout_says_so_in_one_line(tiny_checkpoint, two_videos, command):
    """`uvtag classify ... --format json > /dev/full`: one line and exit 1, no traceback at exit either."""
    exe = Path(sys.executable).with_name("uvtag")
    video = sorted(Path(two_videos).iterdir())[0]
    args = [str(exe), command, str(video), "-m", tiny_checkpoint, "--format", "json", "-q", "--device", "cpu"]
    if command == "localize":
        args += ["--window", "1", "--stride", "1"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(args, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert one_line(result.stderr) == "error: standard output: cannot write it (No space left on device)"


_CAPPED = """
import os, resource, signal, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec: EFBIG instead of a kill
os.execv(sys.argv[2], sys.argv[2:])
"""


def _uvtag(*args: object, max_file_bytes: int) -> subprocess.CompletedProcess:
    """The installed `uvtag` command, run with files capped at `max_file_bytes` (RLIMIT_FSIZE): a
    write past the cap is cut short there and the next fails with EFBIG, as a filling disk does."""
    exe = Path(sys.executable).with_name("uvtag")
    assert exe.exists(), f"the uvtag console script is not installed next to {sys.executable}"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", _CAPPED, str(max_file_bytes), str(exe), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_disk_full_mid_batch_keeps_earlier_videos_and_resume_finishes(tiny_checkpoint, two_videos, tmp_path, fmt):
    v0, v1 = str(two_videos / "v0.mp4"), str(two_videos / "v1.mp4")
    common = ["-m", tiny_checkpoint, "--clip", "1", "-q", "--no-isolate"]
    reference = tmp_path / f"reference.{fmt}"
    assert invoke("batch", two_videos, "--out", reference, *common).exit_code == 0
    if fmt == "json":  # rewritten whole: the document holding v0 fits, the one adding v1 does not
        room = reference.stat().st_size - 200
    else:  # appended: v0's block fits, v1's (hundreds of bytes) is cut 50 bytes in
        v0_block = read_batch_file(reference)[0][0].text
        room = len(((BATCH_CSV_HEADER if fmt == "csv" else "") + v0_block).encode()) + 50
    out = tmp_path / f"labels.{fmt}"
    full = _uvtag("batch", two_videos, "--out", out, *common, max_file_bytes=room)
    assert full.returncode == 1
    line = one_line(full.stderr)
    assert line.startswith(f"error: {out}: cannot write it (File too large)") and "--resume" in line
    blocks, torn = read_batch_file(out)
    assert [(b.kind, b.path) for b in blocks] == [("video", v0)] and torn == (fmt != "json")  # v0 intact
    assert not lock_path(out).exists()
    assert invoke("batch", two_videos, "--out", out, *common, "--resume").exit_code == 0
    assert completed(out, fmt) == [v0, v1]


def _no_space(fd: int, data: bytes) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("command", ["classify", "localize", "merge"])
def test_whole_file_outputs_on_a_full_disk_say_so_and_keep_the_old_file(tiny_checkpoint, two_videos, tmp_path,
                                                                         monkeypatch, command):
    """The atomic write's data write fails with ENOSPC (patched in-process): one line, the old
    file untouched, no temp file left."""
    video = two_videos / "v0.mp4"
    source = tmp_path / "batch.csv"
    assert invoke("batch", video, "--out", source, "-m", tiny_checkpoint, "-q", "--no-isolate").exit_code == 0
    out = tmp_path / ("out.json" if command != "merge" else "out.csv")
    out.write_text("old\n")
    args = {
        "classify": ["classify", video, "-m", tiny_checkpoint, "--fast"],
        "localize": ["localize", video, "-m", tiny_checkpoint, "--window", "1"],
        "merge": ["merge", source],
    }[command]
    monkeypatch.setattr("uvtag.outputs.files.write_all", _no_space)
    result = invoke(*args, "--out", out, "--overwrite", "-q")
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"error: {out}: cannot write it (No space left on device); it was left untouched"
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.csv", out.name]


# ---------------------------------------------------------------- a folder that cannot be listed


def _barred(monkeypatch, folder: Path) -> None:
    """Make os.scandir fail on `folder` with EACCES, as for a chmod 000 folder when not root."""
    real = os.scandir

    def scandir(path=".", *args):
        if os.fspath(path) == str(folder):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real(path, *args)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture
def tree_with_barred_folder(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "videos"
    barred = root / "b_barred"
    barred.mkdir(parents=True)
    write_video(root / "a.mp4", num_frames=20, fps=10, size=(48, 64))
    write_video(barred / "hidden.mp4", num_frames=20, fps=10, size=(48, 64))
    write_video(root / "c.mp4", num_frames=20, fps=10, size=(48, 64))
    return root, barred


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_folder_that_cannot_be_listed_is_a_failure(tiny_checkpoint, tree_with_barred_folder, tmp_path,
                                                     monkeypatch, fmt):
    """Tests run as root, where chmod 000 does not bar reading: os.scandir is made to raise
    PermissionError for that folder in-process, which is what os.walk meets on a chmod 000 folder."""
    root, barred = tree_with_barred_folder
    _barred(monkeypatch, barred)
    out = tmp_path / f"labels.{fmt}"
    result = invoke("batch", root, "--out", out, "-m", tiny_checkpoint, "--clip", "1", "--no-isolate")
    assert result.exit_code == 3
    message = f"{barred}: cannot list this folder (Permission denied); the videos in it were not tagged"
    assert f"skipping {message}" in result.stderr.replace("\n", " ")
    assert "2 tagged, 0 already done, 1 failed of 3" in result.stderr
    if fmt == "csv":
        rows = read_rows(out)
        assert [r["path"] for r in rows if r["row_type"] == "video" and r["rank"] == "1"] == \
            [str(root / "a.mp4"), str(root / "c.mp4")]
        assert [(r["path"], r["error"]) for r in rows if r["row_type"] == "failure"] == \
            [(str(barred), f"PermissionError: {message}")]
    else:
        records = [json.loads(x) for x in out.read_text().splitlines()]
        assert [(r["record"], r["path"]) for r in records] == \
            [("failure", str(barred)), ("video", str(root / "a.mp4")), ("video", str(root / "c.mp4"))]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder: see the test above")
def test_a_chmod_000_folder_is_a_failure(tiny_checkpoint, tree_with_barred_folder, tmp_path):
    root, barred = tree_with_barred_folder
    barred.chmod(0)
    try:
        out = tmp_path / "labels.csv"
        result = invoke("batch", root, "--out", out, "-m", tiny_checkpoint, "--clip", "1", "-q", "--no-isolate")
    finally:
        barred.chmod(0o755)
    assert result.exit_code == 3
    assert [r["path"] for r in read_rows(out) if r["row_type"] == "failure"] == [str(barred)]


# ---------------------------------------------------------------- one preflight for every output


@pytest.mark.parametrize("command", ["classify", "localize", "batch", "merge", "eval"])
def test_every_command_refuses_a_folder_as_its_output_before_working(tiny_checkpoint, two_videos, tmp_path, command):
    """--out naming a directory, or a file in a folder that does not exist: one line, exit 2, nothing run."""
    video = str(sorted(Path(two_videos).iterdir())[0])
    args = {"classify": ["classify", video, "-m", tiny_checkpoint],
            "localize": ["localize", video, "-m", tiny_checkpoint, "--window", "1"],
            "batch": ["batch", str(two_videos), "-m", tiny_checkpoint, "--no-isolate"],
            "merge": ["merge", str(tmp_path / "nothing.csv")],
            "eval": ["eval", str(tmp_path / "nothing.json"), "--gt", str(tmp_path / "gt.csv")]}[command]
    folder = tmp_path / "a_folder.json"
    folder.mkdir()
    result = runner.invoke(app, args + ["--out", str(folder), "-q"])
    assert result.exit_code == 2, result.output
    assert one_line(result.stderr) == f"error: {folder}: is a directory; give a file name for the output"
    missing = tmp_path / "no" / "such" / "out.json"
    result = runner.invoke(app, args + ["--out", str(missing), "-q"])
    assert result.exit_code == 2, result.output
    assert one_line(result.stderr) == f"error: {missing}: the folder {missing.parent} does not exist"


@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_a_folder_listed_again_on_resume_leaves_no_stale_failure(tiny_checkpoint, tree_with_barred_folder, tmp_path,
                                                                 monkeypatch, fmt):
    """The folder's failure row stays in an append-only file (a tag index deletes it), but once a
    --resume has listed the folder and tagged its videos, merge and the report no longer count it."""
    import sqlite3

    root, barred = tree_with_barred_folder
    out, merged, html = tmp_path / f"labels.{fmt}", tmp_path / "merged.jsonl", tmp_path / "report.html"
    args = ["batch", root, "--out", out, "-m", tiny_checkpoint, "--clip", "1", "--no-isolate"]
    with monkeypatch.context() as barring:
        _barred(barring, barred)
        assert invoke(*args).exit_code == 3
    resumed = invoke(*args, "--resume", *(["--report", html] if fmt == "jsonl" else []))
    assert resumed.exit_code == 0 and "1 tagged, 2 already done, 0 failed of 3" in resumed.stderr
    if fmt == "sqlite":
        conn = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
        rows = sorted(conn.execute("SELECT path, status FROM videos").fetchall())
        conn.close()
        assert rows == sorted((str(p), "ok") for p in (root / "a.mp4", barred / "hidden.mp4", root / "c.mp4"))
        return
    kinds = [(r["record"], r["path"]) for r in map(json.loads, out.read_text().splitlines())]
    assert ("failure", str(barred)) in kinds and ("video", str(barred / "hidden.mp4")) in kinds
    result = invoke("merge", out, "--out", merged)
    assert result.exit_code == 0, result.stderr  # no failure left: exit 0
    assert [r["record"] for r in map(json.loads, merged.read_text().splitlines())] == ["video"] * 3
    page = html.read_text()
    assert 'id="failures"' not in page and "cannot list this folder" not in page
