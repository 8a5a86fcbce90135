"""`uvtag bench` end to end on a tiny configuration: structure of the JSON and the table (not timed)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from uvtag.bench import model_gmac, window_frame_indices
from uvtag.cli import app
from uvtag.model.zoo import get_checkpoint

runner = CliRunner()

TINY_ARGS = ["bench", "--arch", "tiny", "--batch-sizes", "2", "--runs", "1", "--warmup", "0", "--height", "72",
             "--clip-sec", "2", "--long-sec", "4", "--num-clips", "2", "--peak-size", "128", "--device", "cpu"]


@pytest.mark.parametrize("name", ["k400_k710_uniformerv2_b16_8x224", "k400_k710_uniformerv2_l14_16x224",
                                  "sthv2_uniformerv2_b16_16x224", "k400_k710_uniformerv2_l14_32x336"])
def test_gmac_formula_matches_the_spec_table(name):
    ck = get_checkpoint(name)
    assert model_gmac(ck.config) == pytest.approx(ck.gmac_per_view, abs=0.05)


def test_window_frame_indices():
    # 30 fps, 2 s windows (60 frames), stride 1 s, 4 frames per window, 120 frames: windows at 0, 30, 60
    assert window_frame_indices(120, 30.0, 2.0, 1.0, 4) == [0, 15, 30, 45, 60, 75, 90, 105]
    assert window_frame_indices(10, 30.0, 2.0, 1.0, 4) == [0]  # shorter than a window: one at 0, clipped


def test_bench_runs_end_to_end_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    result = runner.invoke(app, TINY_ARGS + ["--dir", str(tmp_path / "videos"), "--json", str(out),
                                             "--markdown", str(md), "--precision", "fp32", "--precision", "bf16",
                                             "--engine", "fused", "--engine", "reference", "--engine", "autocast",
                                             "--engine", "unpacked"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "uvtag-bench/1"
    assert {"date", "cpu", "cores", "torch", "device", "load_average"} <= set(data["machine"])
    assert set(data["peak_gflops"]) == {"fp32", "bf16"} and all(v > 0 for v in data["peak_gflops"].values())
    rows = data["model"]
    assert {(r["precision"], r["engine"]) for r in rows} == (
        {(p, e) for p in ("fp32", "bf16") for e in ("fused", "reference", "unpacked")} | {("bf16", "autocast")})  # no fp32 autocast
    for r in rows:
        assert r["arch"] == "tiny" and r["batch"] == 2 and len(r["times_s"]) == 1
        assert r["clips_per_s"] == pytest.approx(2 / r["median_s"], rel=0.01)
        assert r["gflops"] == pytest.approx(r["clips_per_s"] * 2 * r["gmac_per_view"], rel=0.01)
        assert r["fraction_of_peak"] == pytest.approx(r["gflops"] / data["peak_gflops"][r["precision"]], rel=0.02)
    assert {r["engine"]: r["weights"] for r in rows if r["precision"] == "bf16"} == {
        "fused": "bfloat16", "reference": "bfloat16", "autocast": "float32", "unpacked": "bfloat16"}
    assert data["machine"]["packed_gemm"] in (True, False) and data["machine"]["native_bf16"] in (True, False)
    assert set(data["machine"]["cpu_kernels"]) == {"fp32", "bf16"} and "AVX2" in data["machine"]["cpu_summary"]
    d = data["decode"]
    assert d["frames"] == 120 and d["height"] == 72  # the long file: two 2 s clips
    assert d["full_decode_fps"] > 0 and d["sliding_window_fps"] > 0 and d["sparse_clip_ms"] > 0
    assert "ffmpeg_cli_fps" in d
    e2e = {r["task"]: r for r in data["end_to_end"]}
    assert set(e2e) == {"classify", "batch", "batch --no-isolate", "localize"}
    assert e2e["batch"]["video_sec"] == pytest.approx(4.0, abs=0.1)  # two 2 s clips
    assert e2e["classify"]["video_sec"] == pytest.approx(4.0, abs=0.1) and e2e["classify"]["clips"] == 2  # 1 view each
    assert e2e["localize"]["video_sec"] == pytest.approx(4.0, abs=0.1)
    assert e2e["localize"]["clips"] == 3  # 2 s windows every 1 s over 4 s
    for r in e2e.values():
        assert r["x_realtime"] == pytest.approx(r["video_sec"] / r["wall_s"], rel=0.02)
        assert r["model_only_clips_per_s"] > 0 and r["peak_rss_mib"] > 0
    table = md.read_text()
    assert "| tiny | fp32 | 2 | fused |" in table and "| localize | tiny |" in table
    assert "Matmul peak: fp32" in table
    assert "CPU: " in table and "CPU kernels fp32: " in table and "CPU kernels bf16: " in table


def test_bench_json_to_stdout_without_e2e(tmp_path):
    result = runner.invoke(app, TINY_ARGS + ["--dir", str(tmp_path), "--no-e2e", "--no-decode", "--precision", "fp32",
                                             "--json", "-", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["decode"] is None and data["end_to_end"] == [] and len(data["model"]) == 1


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp16"], "70x slower"),
    (["--engine", "turbo"], "unknown engine"),
    (["--batch-sizes", "0"], "positive"),
])
def test_bench_usage_errors(tmp_path, args, message):
    result = runner.invoke(app, TINY_ARGS + ["--dir", str(tmp_path), "--no-e2e", "--no-decode"] + args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_device_dependent_defaults(monkeypatch):
    from uvtag.bench import suite
    from uvtag.bench.suite import BenchOptions, _defaults
    from uvtag.model.kernels import CpuInfo

    monkeypatch.setattr(suite, "cpu_info", lambda: CpuInfo("Xeon", frozenset({"avx2", "avx512f", "amx_bf16"})))
    cpu = _defaults(BenchOptions(), torch.device("cpu"))
    assert (cpu.batch_sizes, cpu.peak_sizes, cpu.precisions) == ((1, 4), (2048, 3072), ("fp32", "bf16"))
    monkeypatch.setattr(suite, "cpu_info", lambda: CpuInfo("EPYC", frozenset({"avx2"})))  # bf16 would be emulated
    assert _defaults(BenchOptions(), torch.device("cpu")).precisions == ("fp32",)
    gpu = _defaults(BenchOptions(), torch.device("cuda"))  # a GPU is busy only with larger work
    assert (gpu.batch_sizes, gpu.peak_sizes, gpu.precisions) == ((1, 8, 32), (8192, 4096), ("fp32", "bf16", "fp16"))
    mine = _defaults(BenchOptions(batch_sizes=(2,), peak_sizes=(64,), precisions=("bf16",)), torch.device("cuda"))
    assert (mine.batch_sizes, mine.peak_sizes, mine.precisions) == ((2,), (64,), ("bf16",))
