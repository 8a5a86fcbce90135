"""Several worker processes, one queue, one kill-safe writer (`batch --workers/--devices`).

Worker processes are real (spawn); the factories below are module-level so they pickle, and a
"poisoned" video kills its worker with SIGKILL from inside, as a segfault or the OOM killer would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videogen import write_video

import uvtag
from uvtag.batch.output import BatchWriter
from uvtag.batch.processes import plan_devices, run_parallel
from uvtag.batch.run import run_batch
from uvtag.errors import UsageError, UvtagError
from uvtag.tagger import ModelOptions


@dataclasses.dataclass(frozen=True)
class Poisoned:
    """Loads the real model; tagging `once` kills the worker the first time, `always` every time."""

    spec: ModelOptions
    once: str
    always: str
    marker: str  # exists after the first kill on `once`

    def __call__(self, device: str):
        tagger = self.spec(device)
        real = tagger.tag_clips

        def tag_clips(path, **job):
            if path == self.always or (path == self.once and not os.path.exists(self.marker)):
                Path(self.marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, **job)

        tagger.tag_clips = tag_clips
        return tagger


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("par") / "videos"
    (d / "sub").mkdir(parents=True)
    for i in range(5):
        write_video(d / ("sub" if i % 2 else "") / f"v{i}.mp4", num_frames=20 + 5 * i, fps=10)
    (d / "bad.mp4").write_bytes(b"not a video\n")
    return d


def _videos(folder: Path) -> list[str]:
    from uvtag.video.files import find_videos

    return [str(p) for p in find_videos([folder])]


def _single(tiny_checkpoint: str, paths: list[str], out: Path) -> Path:
    import uvtag

    with BatchWriter.open(out, out.suffix[1:]) as writer:
        run_batch(uvtag.load(tiny_checkpoint, batch_size=1, device="cpu"), paths, writer, clip_sec=1.0)  # as the workers
    return out


def _jsonl_paths(out: Path) -> list[str]:
    return [json.loads(line)["path"] for line in out.read_text().splitlines()]


def test_cli_workers_give_the_single_process_output(tiny_checkpoint, folder, tmp_path):
    from uvtag.cli import app

    single = tmp_path / "single.csv"
    args = ["batch", str(folder), "-m", tiny_checkpoint, "--clip", "1", "--batch-size", "1", "-q", "--no-isolate"]
    runner = CliRunner()
    assert runner.invoke(app, args + ["--out", str(single)]).exit_code == 3  # bad.mp4 failed
    parallel = tmp_path / "parallel.csv"
    result = runner.invoke(app, args + ["--out", str(parallel), "--workers", "2"])
    assert result.exit_code == 3, result.stderr
    ordered = tmp_path / "ordered.csv"  # workers write in finishing order; merge restores input order
    assert runner.invoke(app, ["merge", str(parallel), "--out", str(ordered), "-i", str(folder), "-q"]).exit_code == 3
    assert ordered.read_bytes() == single.read_bytes()
    assert sorted(parallel.read_text().splitlines()) == sorted(single.read_text().splitlines())


def test_dead_workers_are_replaced_videos_retried_once_then_failed(tiny_checkpoint, folder, tmp_path):
    paths = _videos(folder)
    once, always = paths[1], paths[3]
    expected = {json.loads(line)["path"]: line for line in
                _single(tiny_checkpoint, paths, tmp_path / "single.jsonl").read_text().splitlines()}
    out = tmp_path / "out.jsonl"
    with BatchWriter.open(out, "jsonl") as writer:  # a run killed after one video: resume skips it
        run_batch(__import__("uvtag").load(tiny_checkpoint, batch_size=1, device="cpu"), paths[2:3], writer, clip_sec=1.0)
    factory = Poisoned(ModelOptions(tiny_checkpoint, batch_size=1), once, always, str(tmp_path / "killed"))
    seen = []
    with BatchWriter.open(out, "jsonl", resume=True) as writer:
        summary = run_parallel(factory, ["cpu", "cpu"], paths, writer, clip_sec=1.0,
                               on_video=lambda p, r: seen.append(p))
    assert summary.skipped == 1 and summary.done == len(paths) - 3
    assert sorted(f.path for f in summary.failures) == sorted([always, str(folder / "bad.mp4")])
    crash = next(f for f in summary.failures if f.path == always)
    assert crash.kind == "WorkerCrash"
    assert crash.error == f"{always}: worker process died while tagging it (signal 9, SIGKILL), 2 times"
    written = _jsonl_paths(out)
    assert sorted(written) == sorted(paths) and len(set(written)) == len(written)  # all, once each
    assert sorted(seen) == sorted(paths)
    lines = {json.loads(line)["path"]: line for line in out.read_text().splitlines()}
    for path in set(paths) - {always, str(folder / "bad.mp4")}:  # once-killed video included
        assert lines[path] == expected[path]  # bit-identical to the single-process run


def test_a_worker_that_cannot_load_the_model_stops_the_run(folder, tmp_path):
    with BatchWriter.open(tmp_path / "out.csv", "csv") as writer:
        with pytest.raises(UvtagError, match=r"^worker on cpu: .*nope\.pt: no such model file"):
            run_parallel(ModelOptions(str(tmp_path / "nope.pt")), ["cpu"], _videos(folder), writer)


def test_everything_already_done_starts_no_worker(tiny_checkpoint, folder, tmp_path):
    out = _single(tiny_checkpoint, _videos(folder)[1:3], tmp_path / "done.jsonl")
    with BatchWriter.open(out, "jsonl", resume=True) as writer:
        summary = run_parallel(ModelOptions(str(tmp_path / "never-loaded.pt")), ["cpu"], _videos(folder)[1:3], writer)
    assert summary.skipped == 2 and summary.done == 0


@pytest.mark.parametrize("devices, workers, device, expected", [
    (None, None, "auto", None),
    (None, 1, "cpu", None),
    (None, 3, "cpu", ["cpu"] * 3),
    ("cuda:0,cuda:1", None, "auto", ["cuda:0", "cuda:1"]),
    (" cuda:0 , cuda:1 ", 2, "cpu", ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]),
    ("cpu", None, "auto", ["cpu"]),
])
def test_plan_devices(devices, workers, device, expected):
    assert plan_devices(devices, workers, device) == expected


@pytest.mark.parametrize("devices, workers, message", [(",", None, "names no device"), (None, 0, "at least 1")])
def test_plan_devices_refuses(devices, workers, message):
    with pytest.raises(UsageError, match=message):
        plan_devices(devices, workers)


@pytest.mark.parametrize("extra, message", [
    (["--shard", "4/4"], "the index must be 0 to 3"),
    (["--ray", "local", "--devices", "cpu,cpu"], "drop --devices"),
    (["--devices", ","], "names no device"),
])
def test_cli_refuses_before_loading_anything(folder, tmp_path, extra, message):
    from uvtag.cli import app

    result = CliRunner().invoke(app, ["batch", str(folder), "-o", str(tmp_path / "x.csv"), "-m", "nope.pt", *extra])
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_model_options_pickle_and_load_on_the_worker_device(tiny_checkpoint):
    """One value carries every model option from the CLI to `load` and into worker processes."""
    import pickle

    options = ModelOptions(tiny_checkpoint, batch_size=1, precision="fp32", device="cuda:7")
    tagger = pickle.loads(pickle.dumps(options))("cpu")  # each worker swaps in its own device
    assert tagger.predictor.device.type == "cpu" and tagger.predictor.batch_size == 1
    assert uvtag.load(tiny_checkpoint, device="cpu", batch_size=1).labels == tagger.labels
