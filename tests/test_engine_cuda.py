"""The fused inference engine on CUDA (skipped without a GPU; see the README's GPU table), and the
compiled predictor's fixed batch shape (everywhere)."""

from __future__ import annotations

import pytest
import torch

from fixture_models import FIXTURES, load_fixture
from uvtag.infer.predict import Predictor
from uvtag.model.fast import FusedEngine, engine_of

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

_load = load_fixture


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts calls of the engine's fused linears (bias, and SiLU where asked, in one call)."""
    calls = {"n": 0}
    plain = FusedEngine.linear

    def counted(*args, **kwargs):
        calls["n"] += 1
        return plain(*args, **kwargs)

    monkeypatch.setattr(FusedEngine, "linear", counted)
    return calls


@cuda
@pytest.mark.parametrize("name", FIXTURES)
def test_cuda_fp32_fused_path_matches_official(name, fused_calls):
    model, io = _load(name)
    torch.backends.cudnn.allow_tf32 = True  # torch's default; the predictor must switch it off for fp32
    logits = Predictor(model, torch.device("cuda"), torch.float32, batch_size=8).logits(io["input"])
    assert fused_calls["n"] >= 2 * model.config.layers  # qkv and c_fc of every block went the fused way
    torch.testing.assert_close(logits, io["logits"], rtol=1e-5, atol=1e-5)
    assert torch.backends.cudnn.allow_tf32  # restored


@cuda
@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_low_precision_weights_keep_top1(name, dtype, fused_calls):
    model, io = _load(name)
    predictor = Predictor(model, torch.device("cuda"), dtype)
    assert predictor.cast_weights and model.backbone.conv1.weight.dtype == dtype
    logits = predictor.logits(io["input"])
    assert fused_calls["n"] > 0
    assert torch.equal(logits.argmax(1), io["logits"].argmax(1))
    assert (logits - io["logits"]).abs().max().item() < 0.1  # H100: bf16 0.012-0.021, fp16 0.0015-0.0043


def test_compiled_predictor_pads_short_batches_to_one_shape(monkeypatch):
    """torch.compile(dynamic=False) recompiles for every new batch size: the predictor pads the last
    short batch to its batch size and drops the padding's logits."""
    model, io = _load("tiny_k400like_t8")
    Predictor(model, torch.device("cpu"))  # an engine installed earlier is taken off for compiling
    seen = []

    def fake_compile(module, **kwargs):
        assert engine_of(module) is None  # what is compiled is the reference model

        def run(x):
            seen.append(x.shape[0])
            return module(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    clips = torch.cat([io["input"]] * 3)[:5]  # 5 clips, batch size 4: 4 + 1 padded to 4
    got = Predictor(model, torch.device("cpu"), torch.float32, batch_size=4, engine="compile").logits(clips)
    want = Predictor(model, torch.device("cpu"), torch.float32, batch_size=4).logits(clips)
    assert seen == [4, 4]
    assert got.shape == (5, model.config.num_classes)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
