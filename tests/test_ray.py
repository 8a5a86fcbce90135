"""`batch --ray`: a local Ray instance on CPU (one per module, 2 CPUs), tiny model, generated folder.

The Ray tests skip only when Ray Data is not installed (`pip install -e ".[ray]"`); the packaging
tests always run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner
from videogen import write_video

from uvtag.batch.ray import pool_plan
from uvtag.tagger import ModelOptions

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- packaging: Ray stays optional

def test_ray_is_an_optional_extra_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.lower().startswith("ray") for dep in project["dependencies"])
    assert any(dep.replace(" ", "").startswith("ray[data]>=") for dep in project["optional-dependencies"]["ray"])


def test_the_cli_and_library_never_import_ray():
    code = ("import sys, uvtag.cli, uvtag.batch.run, uvtag.batch.processes, uvtag.batch.merge, uvtag.batch.shard, uvtag.batch.ray; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("resources, device, cpus, cap, videos, expected", [
    ({"CPU": 2.0}, "auto", 1, None, 10, (2, {"num_cpus": 1.0}, "cpu")),
    ({"CPU": 64.0}, "auto", 4, None, 100, (16, {"num_cpus": 4.0}, "cpu")),
    ({"CPU": 64.0, "GPU": 8.0}, "auto", 1, None, 100, (8, {"num_gpus": 1.0, "num_cpus": 1.0}, "cuda")),
    ({"CPU": 64.0, "GPU": 8.0}, "cpu", 8, None, 100, (8, {"num_cpus": 8.0}, "cpu")),
    ({"CPU": 64.0, "GPU": 8.0}, "cuda", 1, 3, 100, (3, {"num_gpus": 1.0, "num_cpus": 1.0}, "cuda")),
    ({"CPU": 64.0}, "auto", 1, None, 5, (5, {"num_cpus": 1.0}, "cpu")),
    ({"CPU": 1.0}, "auto", 4, None, 5, (1, {"num_cpus": 4.0}, "cpu")),
])
def test_pool_plan(resources, device, cpus, cap, videos, expected):
    assert pool_plan(resources, device, cpus, cap, videos) == expected


# ---------------------------------------------------------------- a local Ray instance

@dataclasses.dataclass(frozen=True)
class Poisoned:
    """Loads the real model; tagging `once` kills the actor the first time, `always` every time."""

    spec: ModelOptions
    once: str
    always: str
    marker: str

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
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ray") / "videos"
    d.mkdir()
    for i in range(4):
        write_video(d / f"r{i}.mp4", num_frames=16 + 8 * i, fps=8)
    (d / "junk.mp4").write_bytes(b"junk")
    return d


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ray_gives_the_single_process_labels_and_scores(ray_local, tiny_checkpoint, folder, tmp_path):
    from uvtag.cli import app

    args = ["batch", str(folder), "-m", tiny_checkpoint, "--clip", "1", "-q", "--no-isolate"]
    single, on_ray = tmp_path / "single.jsonl", tmp_path / "ray.jsonl"
    assert CliRunner().invoke(app, args + ["-o", str(single)]).exit_code == 3  # junk.mp4 fails
    result = CliRunner().invoke(app, args + ["-o", str(on_ray), "--ray", "local"])
    assert result.exit_code == 3, result.stderr
    expected = {r["path"]: r for r in _records(single)}
    got = {r["path"]: r for r in _records(on_ray)}
    assert len(got) == len(_records(on_ray)) == 5  # each video once
    assert {p: r["record"] for p, r in got.items()} == {p: r["record"] for p, r in expected.items()}
    for path, record in got.items():
        if record["record"] == "failure":
            assert record == expected[path]
            continue
        want = expected[path]
        assert record["video"] == want["video"]
        for a, b in zip([record] + record["clips"], [want] + want["clips"], strict=True):
            assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
            assert [t["score"] for t in a["top"]] == pytest.approx([t["score"] for t in b["top"]], abs=1e-6)


def test_a_killed_actor_is_retried_and_nothing_is_written_twice(ray_local, tiny_checkpoint, folder, tmp_path):
    import uvtag
    from uvtag.batch.output import BatchWriter
    from uvtag.batch.ray import run_ray
    from uvtag.batch.run import run_batch
    from uvtag.video.files import find_videos

    paths = [str(p) for p in find_videos([folder])]
    once, always = paths[1], paths[2]
    out = tmp_path / "out.jsonl"
    with BatchWriter.open(out, "jsonl") as writer:  # an earlier run, stopped after one video
        run_batch(uvtag.load(tiny_checkpoint), paths[3:4], writer, clip_sec=1.0)
    factory = Poisoned(ModelOptions(tiny_checkpoint), once, always, str(tmp_path / "killed"))
    with BatchWriter.open(out, "jsonl", resume=True) as writer:
        summary = run_ray(factory, paths, writer, clip_sec=1.0, max_actors=1)
    assert (tmp_path / "killed").exists()
    assert summary.skipped == 1 and summary.done == len(paths) - 3
    records = _records(out)
    assert sorted(r["path"] for r in records) == sorted(paths)  # complete, each video once
    kinds = {r["path"]: (r["record"], r.get("kind")) for r in records}
    assert kinds[once] == ("video", None)  # killed once, retried by Ray, then tagged
    assert kinds[always] == ("failure", "WorkerCrash")
    crash = next(r for r in records if r["path"] == always)
    assert crash["error"] == f"{always}: a Ray worker died while tagging it, 2 times"


def test_features_on_ray_equal_the_single_process_rows(ray_local, tiny_checkpoint, folder, tmp_path):
    import numpy as np

    from uvtag.cli import app
    from uvtag.features import read_manifest

    args = ["features", str(folder), "-m", tiny_checkpoint, "--window", "1", "--stride", "0.5", "-q", "--no-isolate"]
    single, on_ray = tmp_path / "single", tmp_path / "ray"
    assert CliRunner().invoke(app, args + ["--out", str(single)]).exit_code == 3  # junk.mp4 fails
    result = CliRunner().invoke(app, args + ["--out", str(on_ray), "--ray", "local", "--workers", "2"])
    assert result.exit_code == 3, result.stderr
    want = {r["path"]: r for r in read_manifest(single)}
    got = {r["path"]: r for r in read_manifest(on_ray)}
    assert len(read_manifest(on_ray)) == len(got) == 5  # each video once
    assert {p: r["record"] for p, r in got.items()} == {p: r["record"] for p, r in want.items()}
    for path, record in got.items():
        if record["record"] == "video":
            assert (record["features"], record["start_sec"]) == (want[path]["features"], want[path]["start_sec"])
            np.testing.assert_allclose(np.load(on_ray / record["features"]), np.load(single / record["features"]),
                                       atol=1e-6)


def test_a_name_that_is_not_utf8_travels_through_ray(ray_local, tiny_checkpoint, folder, tmp_path):
    from uvtag.cli import app

    videos = tmp_path / "videos"
    videos.mkdir()
    name = os.fsdecode(os.path.join(os.fsencode(videos), b"caf\xe9.mp4"))  # a Latin-1 name on disk
    write_video(name, num_frames=16, fps=8)
    out = tmp_path / "ray.jsonl"
    result = CliRunner().invoke(app, ["batch", str(videos), "-m", tiny_checkpoint, "--clip", "1", "-q", "--no-isolate",
                                      "-o", str(out), "--ray", "local"])
    assert result.exit_code == 0, result.stderr
    (record,) = [json.loads(line) for line in out.read_bytes().decode("utf-8", "surrogateescape").splitlines()]
    assert record["record"] == "video" and record["path"] == name
