"""uvtag.eval.metrics and `uvtag eval`: accuracy and confusion, ActivityNet mAP on hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from uvtag.batch.output import BatchWriter
from uvtag.cli import app
from uvtag.errors import UsageError
from uvtag.eval import metrics as ev
from uvtag.eval import readers as rd
from uvtag.eval.readers import Detection, GroundTruthSegment, PredictedLabels
from uvtag.outputs.formats import write_result
from uvtag.results import Failure, LabelScore, VideoInfo, VideoPrediction

runner = CliRunner()


def gt(video: str, label: str, start: float, end: float) -> GroundTruthSegment:
    return GroundTruthSegment(video, label, start, end)


def det(video: str, label: str, start: float, end: float, score: float) -> Detection:
    return Detection(video, label, start, end, score)


# ---------------------------------------------------------------- interpolated AP and matching


def test_presets_are_the_published_thresholds():
    assert ev.ACTIVITYNET_TIOUS == pytest.approx(np.linspace(0.5, 0.95, 10).tolist())
    assert ev.THUMOS_TIOUS == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    assert ev.parse_tious("thumos") == ev.THUMOS_TIOUS
    assert ev.parse_tious("0.3, 0.5") == (0.3, 0.5)
    for bad in ("1.5", "x", ""):
        with pytest.raises(UsageError):
            ev.parse_tious(bad)


def test_perfect_predictions_give_map_one():
    truth = [gt("v1", "run", 0, 5), gt("v1", "jump", 6, 9), gt("v2", "run", 2, 4)]
    dets = [det(g.video_id, g.label, g.start_sec, g.end_sec, 0.9) for g in truth]
    report = ev.detection_report(truth, dets, ev.ACTIVITYNET_TIOUS)
    assert report.mAP == pytest.approx((1.0,) * 10) and report.average_mAP == pytest.approx(1.0)


def test_false_positive_ranked_above_true_positive():
    truth = [gt("v", "a", 0, 10)]
    dets = [det("v", "a", 20, 30, 0.9), det("v", "a", 0, 10, 0.8)]  # FP first: P = 0, then 1/2 at R = 1
    assert ev.detection_report(truth, dets, (0.5,)).mAP[0] == pytest.approx(0.5)
    # TP, FP, TP over two segments: P = 1, 1/2, 2/3 at R = 1/2, 1/2, 1; interpolated 1*1/2 + 2/3*1/2
    truth2 = [gt("v", "a", 0, 10), gt("v", "a", 40, 50)]
    dets2 = [det("v", "a", 0, 10, 0.9), det("v", "a", 20, 30, 0.8), det("v", "a", 40, 50, 0.7)]
    assert ev.detection_report(truth2, dets2, (0.5,)).mAP[0] == pytest.approx(0.5 + 1 / 3)
    # the same detections with the TPs first: no precision loss
    dets3 = [det("v", "a", 0, 10, 0.9), det("v", "a", 40, 50, 0.8), det("v", "a", 20, 30, 0.7)]
    assert ev.detection_report(truth2, dets3, (0.5,)).mAP[0] == pytest.approx(1.0)


def test_duplicate_detections_of_one_segment_count_once():
    truth = [gt("v", "a", 0, 10), gt("v", "a", 40, 50)]
    dets = [det("v", "a", 0, 10, 0.9), det("v", "a", 0.5, 10, 0.8), det("v", "a", 40, 50, 0.7)]
    flags = ev.match_detections(dets, truth, (0.5,))
    assert flags.tolist() == [[True, False, True]]  # the duplicate is a false positive
    assert ev.detection_report(truth, dets, (0.5,)).mAP[0] == pytest.approx(0.5 + 1 / 3)


def test_a_detection_takes_the_best_unmatched_segment():
    truth = [gt("v", "a", 0, 10), gt("v", "a", 8, 18)]
    dets = [det("v", "a", 7, 17, 0.9), det("v", "a", 0, 9, 0.8)]  # IoU 0.82 with the 2nd, 0.27 with the 1st
    assert ev.match_detections(dets, truth, (0.5,)).tolist() == [[True, True]]


def test_tiou_just_below_and_just_above_the_threshold():
    truth = [gt("v", "a", 0, 10)]
    below = ev.detection_report(truth, [det("v", "a", 0, 5.49, 0.9)], (0.5, 0.55, 0.6))
    above = ev.detection_report(truth, [det("v", "a", 0, 5.51, 0.9)], (0.5, 0.55, 0.6))
    exact = ev.detection_report(truth, [det("v", "a", 0, 5.5, 0.9)], (0.55,))
    assert below.mAP == pytest.approx((1.0, 0.0, 0.0))
    assert above.mAP == pytest.approx((1.0, 1.0, 0.0))
    assert exact.mAP == pytest.approx((1.0,))  # tIoU >= threshold matches


def test_classes_without_ground_truth_are_left_out_of_the_mean():
    truth = [gt("v", "a", 0, 10), gt("v", "b", 20, 30)]
    dets = [det("v", "a", 0, 10, 0.9), det("v", "zzz", 0, 10, 0.99), det("other", "a", 0, 10, 0.95)]
    report = ev.detection_report(truth, dets, (0.5,), videos=["v"])
    assert set(report.ap) == {"a", "b"}  # zzz has no ground truth; "other" is not a ground-truth video
    assert report.ap["a"] == (pytest.approx(1.0),) and report.ap["b"] == (0.0,)  # b: no detection
    assert report.mAP[0] == pytest.approx(0.5)


def test_wrong_video_is_a_false_positive():
    truth = [gt("v1", "a", 0, 10), gt("v2", "b", 0, 10)]
    dets = [det("v2", "a", 0, 10, 0.9), det("v1", "a", 0, 10, 0.5)]
    assert ev.detection_report(truth, dets, (0.5,)).ap["a"][0] == pytest.approx(0.5)


def _reference_ap(tp: np.ndarray, npos: int) -> float:
    """Same definition, computed another way: each true positive adds 1/npos times the best
    precision reached at its rank or later."""
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return sum(prec[i:].max() for i in np.flatnonzero(tp)) / npos


def test_interpolated_ap_small_cases():
    assert ev.interpolated_ap(np.array([1, 1]), 2) == pytest.approx(1.0)
    assert ev.interpolated_ap(np.array([0, 1]), 1) == pytest.approx(0.5)
    assert ev.interpolated_ap(np.array([1, 0, 1]), 4) == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert ev.interpolated_ap(np.array([], bool), 3) == 0.0


def test_map_with_a_shifted_segment_and_a_duplicate():
    truth = [gt("v", "a", 0.0, 2.0), gt("v", "b", 2.0, 4.0), gt("w", "a", 0.0, 3.0)]
    perfect = [det(g.video_id, g.label, g.start_sec, g.end_sec, 0.9) for g in truth]
    assert ev.detection_report(truth, perfect, (0.5,)).mAP == pytest.approx((1.0,))
    shifted = [det("v", "a", 0.0, 2.0, 0.9), det("v", "b", 2.9, 5.0, 0.8), det("w", "a", 0.0, 3.0, 0.7),
               det("w", "a", 0.0, 3.0, 0.95)]
    # b: tIoU 1.1/3, missed at 0.5, found at 0.3; a: w's top copy hits, then v, then w's second copy is a false positive
    assert ev.detection_report(truth, shifted, (0.5, 0.3)).mAP == pytest.approx(((1.0 + 0.0) / 2, 1.0))


def test_interpolated_ap_matches_a_second_formulation():
    rng = np.random.default_rng(0)
    for _ in range(200):
        tp = rng.random(rng.integers(1, 30)) < 0.4
        npos = int(tp.sum()) + int(rng.integers(0, 4)) or 1
        assert ev.interpolated_ap(tp, npos) == pytest.approx(_reference_ap(tp, npos))
    assert ev.interpolated_ap(np.array([], bool), 3) == 0.0


# ---------------------------------------------------------------- classification


def _top(*labels: str) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(label, i, 0.5 / (i + 1)) for i, label in enumerate(labels))


def test_top1_top5_and_confusion():
    truth = {"/d/a.mp4": "run", "/d/b.mp4": "run", "/d/c.mp4": "jump", "/d/missing.mp4": "jump"}
    preds = [PredictedLabels("/d/a.mp4", _top("run", "jump", "sit", "lie", "clap")),
             PredictedLabels("b.mp4", _top("jump", "wave", "run", "sit", "lie")),  # matched by its file name
             PredictedLabels("/d/c.mp4", _top("wave", "clap", "sit", "stand", "lie", "jump"))]  # 6th: not top-5
    r = ev.classification_report(truth, preds)
    assert (r.num_videos, r.num_matched, r.unmatched) == (4, 3, ("/d/missing.mp4",))
    assert r.top1 == pytest.approx(1 / 4) and r.top5 == pytest.approx(2 / 4) and r.k_available == 5
    stats = {c.label: c for c in r.per_class}
    assert (stats["run"].count, stats["run"].top1_correct, stats["run"].confused_with) == (2, 1, (("jump", 1),))
    assert stats["jump"].top1_correct == 0
    assert dict(stats["jump"].confused_with) == {"wave": 1, "(no prediction)": 1}
    assert r.mean_class_accuracy == pytest.approx(0.25)
    assert r.confusion["run"] == {"run": 1, "jump": 1}
    short = ev.classification_report(truth, preds + [PredictedLabels("/d/missing.mp4", _top("x", "jump"))])
    assert short.k_available == 2 and short.top5 == pytest.approx(2 / 4)  # top-2 now: a and the new one


def _prediction(path: str, *labels: str) -> VideoPrediction:
    info = VideoInfo(path, 30, 30.0, 1.0, 64, 48)
    return VideoPrediction(path, "m", info, _top(*labels), 1)


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_read_predictions_from_classify_outputs(tmp_path, suffix):
    preds = [_prediction("x/a.mp4", "run", "jump"), _prediction("x/b é.mp4", "wave", "run")]
    out = tmp_path / f"c{suffix}"
    write_result(preds, out, suffix[1:])
    videos, failures = rd.read_predictions(out)
    assert [(v.path, [t.label for t in v.top]) for v in videos] == [
        ("x/a.mp4", ["run", "jump"]), ("x/b é.mp4", ["wave", "run"])]
    assert failures == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_read_predictions_from_batch_outputs_with_failures(tmp_path, fmt):
    out = tmp_path / f"b.{fmt}"
    with BatchWriter.open(out, fmt) as w:
        w.write_failure(Failure("x/a.mp4", "x/a.mp4: decoder crashed", "VideoError"))
        w.write_video(_prediction("x/a.mp4", "run", "jump", "wave"))  # a resumed run fixed it
        w.write_failure(Failure("x/bad.mp4", "x/bad.mp4: file is empty", "VideoError"))
    videos, failures = rd.read_predictions(out)
    assert [(v.path, [t.label for t in v.top]) for v in videos] == [("x/a.mp4", ["run", "jump", "wave"])]
    assert [(f.path, f.kind) for f in failures] == [("x/bad.mp4", "VideoError")]


def test_ground_truth_from_csv_and_from_class_folders(tmp_path):
    (tmp_path / "gt.csv").write_text("path,label\nclips/a.mp4,run\n/abs/b.mp4,jump\n")
    assert rd.read_class_gt(tmp_path / "gt.csv") == {str(tmp_path / "clips/a.mp4"): "run", "/abs/b.mp4": "jump"}
    for label, name in (("run", "1.mp4"), ("run", "2.mkv"), ("jump", "3.mp4")):
        (tmp_path / "tree" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / label / name).write_bytes(b"x")
    truth = rd.read_class_gt(tmp_path / "tree")
    assert sorted((Path(p).name, label) for p, label in truth.items()) == [
        ("1.mp4", "run"), ("2.mkv", "run"), ("3.mp4", "jump")]
    (tmp_path / "bad.csv").write_text("video,class\na.mp4,run\n")
    with pytest.raises(UsageError, match="path,label"):
        rd.read_class_gt(tmp_path / "bad.csv")


# ---------------------------------------------------------------- the command


def test_eval_command_classification(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_result([_prediction("v/a.mp4", "run", "jump"), _prediction("v/b.mp4", "run", "wave")],
                         tmp_path / "pred.json", "json")
    (tmp_path / "gt.csv").write_text("path,label\nv/a.mp4,run\nv/b.mp4,wave\n")
    result = runner.invoke(app, ["eval", "pred.json", "--gt", "gt.csv", "-f", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["task"], doc["top1"], doc["top5"]) == ("classification", 0.5, 1.0)
    assert "top-1 50.0%" in result.stderr and "wave" in result.stderr


def test_eval_command_localization(tmp_path):
    gt_doc = {"database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "a"}]},
        "v2": {"subset": "validation", "annotations": [{"segment": [5, 15], "label": "b"}]},
        "v3": {"subset": "training", "annotations": [{"segment": [0, 1], "label": "c"}]}}}
    (tmp_path / "gt.json").write_text(json.dumps(gt_doc))
    results = {"version": "VERSION 1.3", "results": {
        "v1": [{"label": "a", "score": 0.9, "segment": [0, 10]}],
        "v2": [{"label": "b", "score": 0.9, "segment": [5, 11]}]}}  # tIoU 0.6
    (tmp_path / "res.json").write_text(json.dumps(results))
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["eval", str(tmp_path / "res.json"), "--gt", str(tmp_path / "gt.json"),
                                 "--subset", "validation", "--tiou", "thumos", "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["tious"] == [0.3, 0.4, 0.5, 0.6, 0.7] and set(doc["ap"]) == {"a", "b"}
    assert doc["mAP"] == pytest.approx([1, 1, 1, 1, 0.5])  # b is lost at 0.7 only
    assert "average mAP 90.00%" in result.stderr


def test_eval_command_bad_inputs(tmp_path):
    (tmp_path / "gt.json").write_text("{}")
    (tmp_path / "r.json").write_text("{}")
    result = runner.invoke(app, ["eval", str(tmp_path / "r.json"), "--gt", str(tmp_path / "gt.json")])
    assert result.exit_code == 2 and "no 'database'" in result.stderr
    result = runner.invoke(app, ["eval", str(tmp_path / "r.json"), "--gt", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "nope.csv" in result.stderr


def test_localize_outputs_scored_against_their_own_segments(tiny_checkpoint, tmp_path):
    """uvtag localize (json and activitynet) -> uvtag eval: a ground truth equal to the output scores 1."""
    from videogen import write_video

    video = write_video(tmp_path / "clip.mp4", num_frames=80, fps=20, size=(48, 64))
    for fmt, name in (("json", "r.json"), ("activitynet", "r_anet.json")):
        result = runner.invoke(app, ["localize", str(video), "-m", tiny_checkpoint, "-w", "1", "-s", "0.5",
                                     "--threshold", "0", "-f", fmt, "--out", str(tmp_path / name), "-q"],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    segments = json.loads((tmp_path / "r.json").read_text())["segments"]
    assert segments
    dets = rd.read_detections(tmp_path / "r.json")
    assert dets == rd.read_detections(tmp_path / "r_anet.json")
    assert {d.video_id for d in dets} == {"clip"}
    database = {"clip": {"annotations": [{"label": s["label"], "segment": [s["start_sec"], s["end_sec"]]}
                                         for s in segments]}}
    (tmp_path / "gt.json").write_text(json.dumps({"database": database}))
    result = runner.invoke(app, ["eval", str(tmp_path / "r_anet.json"), "--gt", str(tmp_path / "gt.json"),
                                 "-f", "json", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["mAP"] == pytest.approx([1.0] * 10)


def test_batch_output_scored_against_class_folders(tiny_checkpoint, tmp_path, monkeypatch):
    """uvtag batch over a folder per class -> uvtag eval --gt that folder: every video matched."""
    from videogen import write_video

    monkeypatch.chdir(tmp_path)
    for label, name in (("walking", "a.mp4"), ("walking", "b.mp4"), ("running", "c.mp4")):
        (tmp_path / "val" / label).mkdir(parents=True, exist_ok=True)
        write_video(tmp_path / "val" / label / name, num_frames=20, fps=10, size=(48, 64))
    result = runner.invoke(app, ["batch", "val", "--out", "tags.jsonl", "-m", tiny_checkpoint, "--no-isolate", "-q"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    videos, _ = rd.read_predictions(tmp_path / "tags.jsonl")
    first = {Path(v.path).name: v.top[0].label for v in videos}
    truth = {"a.mp4": "walking", "b.mp4": "walking", "c.mp4": "running"}
    result = runner.invoke(app, ["eval", "tags.jsonl", "--gt", "val", "-f", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["num_matched"] == 3 and doc["unmatched"] == []
    assert doc["top1"] == pytest.approx(sum(first[n] == truth[n] for n in truth) / 3)
    assert doc["top5"] == 1.0  # 5 classes, top-5 of 5 always holds the truth
    assert sum(sum(row.values()) for row in doc["confusion"].values()) == 3
