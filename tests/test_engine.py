"""The fused CPU inference engine against the reference path, and the bf16 engine's top-1.

The fixtures are the official implementation's outputs (tests/data/fixtures), covering every
architecture switch. "Reference" is the plain-PyTorch path (`fused_kernels(False)`), which the
parity tests tie to the official numbers.
"""

from __future__ import annotations

import pytest
import torch

from fixture_models import FIXTURES, load_fixture
from uvtag.infer.predict import Predictor
from uvtag.model import uniformerv2 as uv
from uvtag.model.uniformerv2 import fused_kernels, fused_kernels_available

CPU = torch.device("cpu")

pytestmark = pytest.mark.skipif(not fused_kernels_available(), reason="this torch build has no oneDNN fused linear")

_load = load_fixture


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts calls of the oneDNN fused linears."""
    calls = {"n": 0}
    plain, add = uv._linear2d, uv._linear2d_add

    def count(fn):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(uv, "_linear2d", count(plain))
    monkeypatch.setattr(uv, "_linear2d_add", count(add))
    return calls


@pytest.mark.parametrize("name", FIXTURES)
def test_fused_path_equals_reference_and_official(name, fused_calls):
    model, io = _load(name)
    with torch.inference_mode(), fused_kernels(False):
        reference = model(io["input"])
    assert fused_calls["n"] == 0
    with torch.inference_mode():
        fused = model(io["input"])
    assert fused_calls["n"] >= 4 * model.config.layers  # qkv, out_proj, c_fc, c_proj per block
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, io["logits"], rtol=1e-5, atol=1e-5)


def test_training_autograd_and_autocast_take_the_reference_path(fused_calls):
    model, io = _load("tiny_k400like_t8")
    model.train()
    logits = model(io["input"])
    logits.sum().backward()
    assert model.backbone.transformer.resblocks[0].mlp.c_proj.weight.grad is not None
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(io["input"])
    with torch.no_grad():
        model.double()(io["input"].double())  # float64 stays on the reference path
    assert fused_calls["n"] == 0


def test_scaled_weight_cache_follows_new_weights():
    model, io = _load("tiny_k400like_t8")
    with torch.inference_mode():
        model(io["input"])  # fills the c_proj caches
    with torch.no_grad():
        for block in model.backbone.transformer.resblocks:
            block.mlp.c_proj.weight.mul_(-2.0)  # in place: same storage, new version
    with torch.inference_mode():
        fused = model(io["input"])
        with fused_kernels(False):
            reference = model(io["input"])
    assert (reference - io["logits"]).abs().max().item() > 1e-3  # the change matters
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    assert "_uvtag_scaled" not in model.state_dict()  # nothing added to the checkpoint layout
    assert not any("scaled" in k for k in model.state_dict())


def test_fused_path_is_batch_invariant():
    model, io = _load("tiny_single_lmhra_t8")
    with torch.inference_mode():
        whole = model(io["input"])
        singles = torch.cat([model(io["input"][i : i + 1]) for i in range(io["input"].shape[0])])
    torch.testing.assert_close(whole, singles, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FIXTURES)
def test_bf16_weights_keep_top1(name):
    model, io = _load(name)
    predictor = Predictor(model, CPU, torch.bfloat16)
    assert predictor.cast_weights and model.backbone.conv1.weight.dtype == torch.bfloat16
    logits = predictor.logits(io["input"])
    assert logits.dtype == torch.float32
    assert torch.equal(logits.argmax(1), io["logits"].argmax(1))
    diff = (logits - io["logits"]).abs().max().item()
    assert 0 < diff < 0.1  # measured 0.011-0.029 on these fixtures (logits of order 1)


def test_bf16_weights_reference_path_matches_fused():
    model, io = _load("tiny_ssv2like_t16")
    model = model.to(torch.bfloat16)
    x = io["input"].to(torch.bfloat16)
    with torch.inference_mode():
        fused = model(x).float()
        with fused_kernels(False):
            reference = model(x).float()
    assert torch.equal(fused.argmax(1), reference.argmax(1))
    assert (fused - reference).abs().max().item() < 0.05


def test_fp32_predictor_and_autocast_option():
    model, io = _load("tiny_frozen_p14_t4")
    got = Predictor(model, CPU, torch.float32, batch_size=1).logits(io["input"])
    torch.testing.assert_close(got, io["logits"], rtol=1e-5, atol=1e-5)
    auto = Predictor(model, CPU, torch.bfloat16, cast_weights=False)
    assert not auto.cast_weights and model.backbone.conv1.weight.dtype == torch.float32  # autocast keeps fp32 weights
    assert torch.equal(auto.logits(io["input"]).argmax(1), io["logits"].argmax(1))


def test_fused_kernels_switch_restores_state():
    assert uv._FUSED_STATE["enabled"]
    with fused_kernels(False):
        assert not uv._FUSED_STATE["enabled"]
        with pytest.raises(RuntimeError):
            with fused_kernels(True):
                raise RuntimeError("inside")
        assert not uv._FUSED_STATE["enabled"]
    assert uv._FUSED_STATE["enabled"]


def test_small_models_run_single_threaded_and_restore_threads():
    model, io = _load("tiny_k400like_t8")
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, _a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    predictor = Predictor(model, CPU, batch_size=1)
    assert predictor.threads == 1  # a few MMAC per clip: below SMALL_MODEL_GMAC
    predictor.logits(io["input"])
    assert seen == [1, 1] and torch.get_num_threads() == before
    seen.clear()
    Predictor(model, CPU, batch_size=2, threads=before).logits(io["input"])
    assert seen == [before]


def test_predictor_respects_the_callers_switch(fused_calls):
    model, io = _load("tiny_k400like_t8")
    predictor = Predictor(model, CPU)
    with fused_kernels(False):
        reference = predictor.logits(io["input"])
    assert fused_calls["n"] == 0
    fused = predictor.logits(io["input"])
    assert fused_calls["n"] > 0
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- MKL-packed float32 linears

needs_packing = pytest.mark.skipif(not uv.packed_gemm_available(), reason="this torch build has no MKL packed GEMM")


@needs_packing
def test_packed_linears_match_plain_linear():
    torch.manual_seed(0)
    x, w, b = torch.randn(300, 768), torch.randn(1024, 768) / 30, torch.randn(1024)
    other = torch.randn(300, 1024)
    with torch.inference_mode():
        plain = torch.nn.functional.linear(x, w, b)
        torch.testing.assert_close(uv._linear2d(x, w, b), plain, rtol=1e-5, atol=1e-4)
        assert id(w) in uv._PACKED  # big enough: packed once, cached
        packed = uv._PACKED[id(w)][2]
        torch.testing.assert_close(uv._linear2d(x[:7], w, b, "swish"), torch.nn.functional.silu(plain[:7]),
                                   rtol=1e-5, atol=1e-4)  # another row count reuses the packing
        assert uv._PACKED[id(w)][2] is packed
        torch.testing.assert_close(uv._linear2d_add(x, other, w, b), other + plain, rtol=1e-5, atol=1e-4)
        small = torch.randn(64, 768)
        uv._linear2d(x, small, None)
        assert id(small) not in uv._PACKED  # below _PACK_MIN_NUMEL: oneDNN, no 8 MB packed buffer
        view = w[:512]  # kept alive, so that a packing of it would still be in the cache
        uv._linear2d(x, view, b[:512])
        assert id(view) not in uv._PACKED
        with uv.packed_weights(False):
            w2 = w.clone()
            torch.testing.assert_close(uv._linear2d(x, w2, b), plain, rtol=1e-5, atol=1e-4)
            assert id(w2) not in uv._PACKED


@needs_packing
def test_environment_turns_packing_off(monkeypatch):
    x, w = torch.randn(40, 512), torch.randn(512, 512)
    monkeypatch.setenv("UVTAG_PACKED_GEMM", "0")
    with torch.inference_mode():
        torch.testing.assert_close(uv._linear2d(x, w, None), x @ w.T, rtol=1e-5, atol=1e-4)
    assert id(w) not in uv._PACKED
    monkeypatch.setenv("UVTAG_PACKED_GEMM", "1")
    with torch.inference_mode():
        uv._linear2d(x, w, None)
    assert id(w) in uv._PACKED


@needs_packing
@pytest.mark.parametrize("name", FIXTURES)
def test_fused_path_with_packed_weights_equals_official(name, monkeypatch):
    monkeypatch.setattr(uv, "_PACK_MIN_NUMEL", 0)  # the fixtures' widths are tiny: pack every weight
    model, io = _load(name)
    with torch.inference_mode():
        fused = model(io["input"])
        with fused_kernels(False):
            reference = model(io["input"])
    packed = [p for p in model.parameters() if id(p) in uv._PACKED and uv._PACKED[id(p)][0]() is p]
    assert len(packed) >= 3 * model.config.layers  # in_proj, out_proj, c_fc per block (c_proj's cached copy too)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, io["logits"], rtol=1e-5, atol=1e-5)


@needs_packing
def test_packed_weights_follow_new_weights_and_leave_with_the_model(monkeypatch):
    import gc

    monkeypatch.setattr(uv, "_PACK_MIN_NUMEL", 0)
    model, io = _load("tiny_k400like_t8")
    with torch.inference_mode():
        model(io["input"])
    ids = [id(p) for p in model.parameters() if id(p) in uv._PACKED]
    assert ids
    with torch.no_grad():
        for block in model.backbone.transformer.resblocks:
            block.attn.in_proj_weight.mul_(-1.5)  # in place: same tensor, new version -> packed again
    with torch.inference_mode():
        fused = model(io["input"])
        with fused_kernels(False):
            reference = model(io["input"])
    assert (reference - io["logits"]).abs().max().item() > 1e-3
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    assert not any("packed" in k for k in model.state_dict())
    del model, block
    gc.collect()
    assert not any(i in uv._PACKED for i in ids)  # the packed copies were freed with their weights
