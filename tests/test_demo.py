"""`uvtag demo`: offline, generates videos, classifies and localizes them with the bundled model."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from uvtag.cli import app

runner = CliRunner()


def test_demo_runs_offline_and_writes_its_results(tmp_path, monkeypatch):
    monkeypatch.setenv("UVTAG_HOME", str(tmp_path / "empty_cache"))  # nothing cached: weights/ must serve
    monkeypatch.setenv("UVTAG_OFFLINE", "1")
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network used")))
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("classify.json", "localize.json", "truth.csv", "untrimmed.mp4"):
        assert (out / name).is_file(), name
    assert len(list(out.glob("0*_*.*"))) == 9
    text = result.output
    assert "motion-tiny on 9 generated clips" in text and "localize untrimmed.mp4" in text
    assert "clips right" in text  # the score is shown, right or wrong (the bundled model is preliminary)
    classified = json.loads((out / "classify.json").read_text())
    assert classified["model"] == "motion-tiny" and len(classified["videos"]) == 9
    located = json.loads((out / "localize.json").read_text())
    truth = (out / "truth.csv").read_text().splitlines()
    assert len(truth) >= 1 + 6 + 9  # header, the untrimmed video's 6+ actions and the 9 clips
    assert located["schema_version"] == 1 and located["windows"]


def test_demo_refuses_a_bad_out_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["demo", "--out", str(blocker / "sub")])
    assert result.exit_code != 0
