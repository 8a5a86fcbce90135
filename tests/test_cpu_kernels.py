"""The engine knows the CPU it runs on: instruction sets, per-dtype kernel probes, their fall-backs.

Every test here holds on any x86-64 CPU: facts about a CPU come from a CpuInfo built in the test
(not from this machine's), and the fall-back path is forced by marking kernels missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fixture_models import FIXTURES, load_fixture
from uvtag.cli import app
from uvtag.model import fast, kernels
from uvtag.model.kernels import KERNELS, CpuInfo, kernel_plan, kernel_problem, onednn_cap_allows_bf16, parse_cpuinfo
from videogen import write_video

runner = CliRunner()

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
model name\t: something else
flags\t\t: avx512f
"""
AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def test_parse_cpuinfo_reads_the_first_processor():
    name, flags = parse_cpuinfo(CPUINFO)
    assert name == "AMD EPYC 7B13"
    assert flags == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize("cap, allowed", [(None, True), ("", True), ("AVX2", False), ("avx512_core", False),
                                          ("AVX512_CORE_VNNI", False), ("AVX512_CORE_BF16", True),
                                          ("AVX512_CORE_AMX", True), ("ALL", True)])
def test_onednn_cap_levels(cap, allowed):
    assert onednn_cap_allows_bf16(cap) is allowed


def test_native_bf16_needs_the_flag_and_no_cap():
    amx = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    assert CpuInfo("Xeon", amx).native_bf16
    assert CpuInfo("Zen 4", frozenset({"avx2", "avx512f", "avx512_bf16"})).native_bf16
    assert not CpuInfo("Skylake", frozenset({"avx2", "avx512f"})).native_bf16  # AVX-512 alone emulates bf16
    assert not CpuInfo("EPYC", frozenset({"avx2"})).native_bf16
    capped = CpuInfo("Xeon", amx, (("ONEDNN_MAX_CPU_ISA", "AVX2"),))
    assert not capped.native_bf16
    line = capped.summary()
    assert line == "Xeon: AVX2 yes, AVX-512 yes, bf16 yes, AMX yes; capped by ONEDNN_MAX_CPU_ISA=AVX2"


def test_every_probe_answers_without_raising():
    for name in KERNELS:
        for dtype in (torch.float32, torch.bfloat16):
            problem = kernel_problem(name, dtype)
            assert problem is None or (isinstance(problem, str) and problem and "\n" not in problem)
    assert kernel_problem("mkl_packed", torch.bfloat16) == "float32 only"
    for dtype in (torch.float32, torch.bfloat16):
        assert "linear" in kernel_plan(dtype)
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels._probe("warp_drive", torch.float32)


@pytest.fixture
def no_cpu_kernels(monkeypatch):
    """The fused engine on a CPU that has none of the probed kernels (ATen ops only)."""
    monkeypatch.setattr(fast, "kernel_available", lambda name, dtype: False)


@pytest.mark.parametrize("name", FIXTURES)
def test_fused_path_without_cpu_kernels_equals_the_reference(name, no_cpu_kernels):
    model, io = load_fixture(name)
    with torch.inference_mode():
        reference = model(io["input"])
        fast.accelerate(model)
        fused = model(io["input"])
    # the same function through other kernels (one rounding per op): a float32 tolerance, not bits
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused, io["logits"], rtol=1e-4, atol=1e-5)


def test_bf16_without_cpu_kernels_keeps_top1(no_cpu_kernels):
    model, io = load_fixture(FIXTURES[0])
    engine = fast.accelerate(model.to(torch.bfloat16))
    with torch.inference_mode():
        bf16 = model(io["input"].to(torch.bfloat16)).float()
    assert len(engine.weights) > 0  # the fused forwards ran (their scaled c_proj copies are cached)
    assert torch.equal(bf16.argmax(1), io["logits"].argmax(1))


def _uvtag(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("uvtag")  # the installed console script
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_classify_bf16_on_a_cpu_without_native_bf16(tmp_path, tiny_checkpoint):
    """With the kernels capped to AVX2 (what an AVX2-only CPU offers) bf16 is refused in one line, exit 2;
    without the cap it runs where the CPU has native bf16, and is refused where it has not."""
    video = write_video(tmp_path / "v.mp4", num_frames=40, fps=20)
    capped = _uvtag("classify", str(video), "-m", tiny_checkpoint, "--precision", "bf16", "--format", "json",
                    env=AVX2_CAP)
    assert capped.returncode == 2, capped.stderr
    assert "no native bfloat16" in capped.stderr and "--precision fp32" in capped.stderr
    assert "Traceback" not in capped.stderr and len(capped.stderr.strip().splitlines()) == 1
    fp32 = _uvtag("classify", str(video), "-m", tiny_checkpoint, "--format", "json", env=AVX2_CAP)
    assert fp32.returncode == 0, fp32.stderr
    plain = _uvtag("classify", str(video), "-m", tiny_checkpoint, "--precision", "bf16", "--format", "json", env={})
    if kernels.cpu_info().native_bf16:
        assert plain.returncode == 0, plain.stderr
        scores = [{t["label"]: t["score"] for t in json.loads(r.stdout)["videos"][0]["top"]} for r in (plain, fp32)]
        assert scores[0].keys() == scores[1].keys()
        assert all(abs(scores[0][k] - scores[1][k]) < 0.05 for k in scores[1])  # bf16 rounding of a softmax
    else:
        assert plain.returncode == 2 and "no native bfloat16" in plain.stderr


def test_doctor_reports_the_cpu_and_the_kernels_per_precision(tmp_path):
    result = runner.invoke(app, ["doctor", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "AVX2" in out and "AVX-512" in out and "AMX" in out
    assert "fp32 kernels" in out and "bf16 kernels" in out
