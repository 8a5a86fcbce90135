"""`uvtag merge`: combine batch outputs (shards, parallel or resumed runs) into one file.

Reads any number of batch files (csv, jsonl or json; a file cut short by a kill is read up to its
last complete video), keeps one block per video, and writes one batch file in the same layout as
`uvtag batch` (see `uvtag.outputs.formats`), which `--resume` accepts:

- a video complete in several files is kept once (the first file given wins) and counted as a
  duplicate; a failure is dropped when any file has that video complete, otherwise its last
  failure is kept (video rows are authoritative, as in the writers); the failure of a folder
  that could not be listed is dropped once a video inside it follows (the folder was listed
  again, e.g. by a --resume after its permissions were fixed), counted as a duplicate too;
- with the input list (`expected`, the same files and folders the shards were given), videos are
  written in that order, so merging the shards of a run reproduces the single-process output, and
  every video missing from all files is reported; without it, the order is first seen.

csv merges only with csv (the CSV layout drops the video metadata json/jsonl carry); json and
jsonl mix freely. A tag index (sqlite, `uvtag.index`) reads and writes like json/jsonl, and takes
csv files too (their videos without the metadata CSV lacks, their model the other files'); it is
built in a temp file and renamed into place. Paths are matched exactly as written, so run every
shard with the same inputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uvtag.batch.output import BATCH_CSV_HEADER, BATCH_FORMATS, CsvBlocks, csv_rows, drop_lock, take_lock
from uvtag.errors import UsageError
from uvtag.outputs.files import ENCODING, atomic_write, check_output
from uvtag.outputs.formats import format_from_path
from uvtag.results import SCHEMA_VERSION, ClipPrediction, Failure, LabelScore, VideoInfo, VideoPrediction
from uvtag.video.files import folders_above


@dataclasses.dataclass(frozen=True)
class Block:
    """One video or failure read from a batch file.

    `text` is its exact text for csv and jsonl files; `record` is its JSON record (json/jsonl,
    without schema_version); `model` is the video's model name where the format has it.
    """

    path: str
    kind: str  # "video" or "failure"
    fmt: str
    text: str = ""
    record: dict[str, Any] | None = None
    model: str | None = None


@dataclasses.dataclass
class MergeSummary:
    """What a merge found and wrote."""

    files: int = 0
    videos: int = 0
    failures: int = 0  # videos written as failures (no file has them complete)
    duplicates: int = 0  # blocks dropped: a second copy of a video, or a superseded failure (a folder's too)
    torn: list[str] = dataclasses.field(default_factory=list)  # files cut short by a kill
    missing: list[str] = dataclasses.field(default_factory=list)  # expected, in no file
    unexpected: list[str] = dataclasses.field(default_factory=list)  # in a file, not expected


def _read_csv(text: str, name: str) -> tuple[list[Block], bool]:
    if not text.startswith(BATCH_CSV_HEADER):
        raise UsageError(f"{name}: not a uvtag batch CSV (its header differs)")
    blocks: list[Block] = []
    lines: list[str] = []
    pos = len(BATCH_CSV_HEADER)
    ends = CsvBlocks()
    for row, raw in csv_rows(text, pos, name):
        pos += len(raw)
        lines.append(raw)
        if ends.add(row[0], row[1], row[4]):
            blocks.append(Block(row[1], row[0], "csv", "".join(lines)))
            lines = []
    return blocks, pos < len(text) or bool(lines)


def _record_block(record: Any, fmt: str, text: str, where: str) -> Block:
    if not isinstance(record, dict) or record.get("record") not in ("video", "failure") or "path" not in record:
        raise UsageError(f"{where} is not a uvtag batch record")
    record = {k: v for k, v in record.items() if k != "schema_version"}
    return Block(record["path"], record["record"], fmt, text, record, record.get("model"))


def _read_jsonl(text: str, name: str) -> tuple[list[Block], bool]:
    lines = text.split("\n")
    blocks = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{name}: line {number} is not JSON") from None
        blocks.append(_record_block(record, "jsonl", line + "\n", f"{name}: line {number}"))
    return blocks, bool(lines[-1])


def _read_json(text: str, name: str) -> tuple[list[Block], bool]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{name}: not valid JSON ({e})") from None
    if not (isinstance(document, dict) and isinstance(document.get("videos"), list)
            and isinstance(document.get("failures"), list)):
        raise UsageError(f"{name}: not a uvtag batch JSON document")
    items = document["videos"] + document["failures"]
    return [_record_block(r, "json", "", f"{name}: an entry") for r in items], False


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "json": _read_json}


def read_batch_file(path: str | os.PathLike[str], fmt: str | None = None) -> tuple[list[Block], bool]:
    """The blocks of one batch file, in file order, and whether its end was torn by a kill.

    Raises:
        UsageError: a missing file, or one that is not a uvtag batch file of its format.
    """
    source = Path(path)
    chosen = format_from_path(source, fmt, BATCH_FORMATS)
    if chosen == "sqlite":
        from uvtag.index.records import read_records

        return [_record_block(r, "json", "", f"{source}: a video") for r in read_records(source)], False
    try:
        text = source.read_bytes().decode(*ENCODING)
    except OSError as e:
        raise UsageError(f"{source}: cannot read it ({e.strerror or e})") from None
    return _READERS[chosen](text, str(source))


def pick_blocks(files: Sequence[Sequence[Block]], expected: Sequence[str] | None,
                summary: MergeSummary) -> list[Block]:
    """One block per video, in output order (see the module docstring); fills `summary`. Pure."""
    sequence = [b for blocks in files for b in blocks]
    relisted = relisted_folders(sequence)
    chosen: dict[str, Block] = {}
    for n, block in enumerate(sequence):
        if n in relisted:
            summary.duplicates += 1
            continue
        kept = chosen.get(block.path)
        if kept is None:
            chosen[block.path] = block
            continue
        summary.duplicates += 1
        if kept.kind == "failure" and (block.kind == "video" or kept.kind == block.kind):
            chosen[block.path] = block  # a video beats a failure; a later failure supersedes
    if expected is None:
        order = list(chosen)
    else:
        wanted = dict.fromkeys(expected)
        summary.missing = [p for p in wanted if p not in chosen]
        summary.unexpected = [p for p in chosen if p not in wanted]
        order = [p for p in wanted if p in chosen] + summary.unexpected
    out = [chosen[p] for p in order]
    summary.videos = sum(b.kind == "video" for b in out)
    summary.failures = len(out) - summary.videos
    return out


def relisted_folders(blocks: Sequence[Block]) -> set[int]:
    """Positions of the failure blocks of folders that a later video block lies inside: a folder
    that could not be listed, listed by a later run. Pure (compares the path strings)."""
    later: set[str] = set()  # every folder holding a video block seen so far, walking back
    out: set[int] = set()
    for n in range(len(blocks) - 1, -1, -1):
        block = blocks[n]
        if block.kind == "video":
            later.update(folders_above(block.path))
        elif block.path.rstrip("/") in later:
            out.add(n)
    return out


def _document_record(block: Block) -> dict[str, Any]:
    return block.record if block.record is not None else {}


def merged_text(blocks: Sequence[Block], fmt: str) -> str:
    """The text of a batch file in `fmt` holding `blocks` (the `uvtag.outputs.formats` layouts).

    Raises:
        UsageError: csv blocks into json/jsonl or the reverse.
    """
    if any((b.fmt == "csv") != (fmt == "csv") for b in blocks):
        raise UsageError("csv batch files merge only into csv or sqlite, and json/jsonl/sqlite only into json, jsonl or sqlite")
    if fmt == "csv":
        return BATCH_CSV_HEADER + "".join(b.text for b in blocks)
    if fmt == "jsonl":
        return "".join(b.text if b.fmt == "jsonl" else
                       json.dumps({"schema_version": SCHEMA_VERSION, **_document_record(b)}, ensure_ascii=False) + "\n"
                       for b in blocks)
    videos = [_document_record(b) for b in blocks if b.kind == "video"]
    document = {"schema_version": SCHEMA_VERSION, "model": videos[0].get("model") if videos else None,
                "videos": videos, "failures": [_document_record(b) for b in blocks if b.kind == "failure"]}
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def merge_outputs(sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], fmt: str | None = None, *,
                  expected: Sequence[str] | None = None, overwrite: bool = False) -> MergeSummary:
    """Merge batch files `sources` into `out` (written atomically); see the module docstring.

    Args:
        sources: batch outputs to combine; each one's format follows its extension.
        out: the merged file; its format is `fmt` or follows its extension.
        expected: every video path the run should hold, in output order (e.g. `find_videos`).
        overwrite: replace an existing `out`.

    Raises:
        UsageError: no sources, `out` is a source or exists, unreadable or mixed-up files, or
            videos tagged by different models.
        OutputError: `out` cannot be written, or a batch run is writing it (its `<out>.lock`).
    """
    target = Path(out)
    chosen = format_from_path(target, fmt, BATCH_FORMATS)
    if not sources:
        raise UsageError("merge needs at least one batch file")
    if any(Path(s).resolve() == target.resolve() for s in sources):
        raise UsageError(f"{target}: is also an input; write the merge to a new file")
    check_output(target, overwrite)
    summary = MergeSummary(files=len(sources))
    files = []
    for source in sources:
        blocks, torn = read_batch_file(source)
        files.append(blocks)
        if torn:
            summary.torn.append(str(source))
    models = sorted({b.model for blocks in files for b in blocks if b.kind == "video" and b.model})
    if len(models) > 1:
        raise UsageError(f"the files hold videos tagged by different models ({', '.join(models)}); merge each model apart")
    blocks = pick_blocks(files, expected, summary)
    if chosen == "sqlite":
        from uvtag.index.writer import write_database

        write_database(target, [_block_result(b, models[0] if models else None) for b in blocks])
        return summary
    lock = take_lock(target)  # a batch run writing `out` holds it: replacing the file would lose its work
    try:
        atomic_write(target, merged_text(blocks, chosen).encode(*ENCODING))
    finally:
        drop_lock(target, lock)
    return summary


def _block_result(block: Block, model: str | None) -> VideoPrediction | Failure:
    """The result a block holds, for a tag index (`model` for blocks that name none: csv)."""
    from uvtag.index.records import result_from_record

    if block.record is not None:
        return result_from_record(block.record, model)
    rows = [row for row, _ in csv_rows(block.text, 0, block.path)]
    if block.kind == "failure":
        kind, _, error = rows[0][8].partition(": ")
        return Failure(block.path, error, kind) if error else Failure(block.path, kind)
    clips: list[tuple[float, float, list[LabelScore]]] = []
    top: list[LabelScore] = []
    duration = 0.0
    for kind, _, start, end, rank, label, index, score, _ in rows:
        if kind == "clip" and (rank == "1" or not clips):
            clips.append((float(start), float(end), []))
        if kind == "video":
            duration = float(end)
        if label:
            (clips[-1][2] if kind == "clip" else top).append(LabelScore(label, int(index), float(score)))
    info = VideoInfo(block.path, 0, 0.0, duration, 0, 0)
    return VideoPrediction(block.path, model or "", info, tuple(top), len(clips),
                           tuple(ClipPrediction(s, e, tuple(labels)) for s, e, labels in clips))
