"""The fused CPU inference engine (`uvtag.model.fast`) against the reference model, and the bf16
engine's top-1.

The fixtures are the official implementation's outputs (tests/data/fixtures), covering every
architecture switch. "Reference" is the model as built (`uvtag.model.uniformerv2`, plain PyTorch
ops), which the parity tests tie to the official numbers; "fused" is the same model after
`fast.accelerate`.
"""

from __future__ import annotations

import gc

import pytest
import torch

from fixture_models import FIXTURES, load_fixture
from uvtag.errors import UsageError
from uvtag.infer.predict import Predictor
from uvtag.model import fast
from uvtag.model.fast import FusedEngine, accelerate, engine_of, fused_kernels_available, restore
from uvtag.model.uniformerv2 import QuickGELU

CPU = torch.device("cpu")

pytestmark = pytest.mark.skipif(not fused_kernels_available(), reason="this torch build has no oneDNN fused linear")

_load = load_fixture


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts calls of the engine's fused linears."""
    calls = {"n": 0}
    plain, add = FusedEngine.linear, FusedEngine.linear_add

    def count(fn):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(FusedEngine, "linear", count(plain))
    monkeypatch.setattr(FusedEngine, "linear_add", count(add))
    return calls


@pytest.mark.parametrize("name", FIXTURES)
def test_fused_path_equals_reference_and_official(name, fused_calls):
    model, io = _load(name)
    with torch.inference_mode():
        reference = model(io["input"])
    assert fused_calls["n"] == 0
    accelerate(model)
    with torch.inference_mode():
        fused = model(io["input"])
    assert fused_calls["n"] >= 4 * model.config.layers  # qkv, out_proj, c_fc, c_proj per block
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, io["logits"], rtol=1e-5, atol=1e-5)


def test_training_autograd_and_autocast_take_the_reference_path(fused_calls):
    model, io = _load("tiny_k400like_t8")
    accelerate(model)
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
    keys = list(model.state_dict())
    engine = accelerate(model)
    with torch.inference_mode():
        model(io["input"])  # fills the c_proj caches
    scaled = ("scaled", 1.0 / QuickGELU.ALPHA)
    blocks = list(model.backbone.transformer.resblocks)
    assert all(engine.weights.peek(b.mlp.c_proj.weight, scaled) is not None for b in blocks)
    with torch.no_grad():
        for block in blocks:
            block.mlp.c_proj.weight.mul_(-2.0)  # in place: same storage, new version
    assert all(engine.weights.peek(b.mlp.c_proj.weight, scaled) is None for b in blocks)  # stale
    with torch.inference_mode():
        fused = model(io["input"])
        restore(model)
        reference = model(io["input"])
    assert (reference - io["logits"]).abs().max().item() > 1e-3  # the change matters
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    assert list(model.state_dict()) == keys  # nothing added to the checkpoint layout


def test_install_and_restore_leave_the_model_as_built():
    model, io = _load("tiny_ssv2like_t16")
    keys = list(model.state_dict())
    seen = []
    model.backbone.transformer.resblocks[0].register_forward_hook(lambda *_: seen.append("block"))
    assert engine_of(model) is None
    first = accelerate(model)
    assert engine_of(model) is first and list(model.state_dict()) == keys
    second = accelerate(model, packed=False)  # a model has one engine: the new one replaces it
    assert engine_of(model) is second and not second.packed
    with torch.inference_mode():
        model(io["input"])
    assert seen == ["block"]  # the module's hooks still run around the installed forward
    assert restore(model) is model and engine_of(model) is None
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_a_copied_model_gets_its_own_engine():
    import copy

    model, io = _load("tiny_k400like_t8")
    engine = accelerate(model)
    with torch.inference_mode():
        want = model(io["input"])
    twin = copy.deepcopy(model)
    assert engine_of(twin) is not None and engine_of(twin) is not engine and len(engine_of(twin).weights) == 0
    with torch.no_grad():
        for block in twin.backbone.transformer.resblocks:
            block.mlp.c_proj.weight.mul_(0.5)
    with torch.inference_mode():
        assert torch.equal(model(io["input"]), want)  # the copy's forwards run the copy's modules
        assert not torch.equal(twin(io["input"]), want)


def test_fused_path_is_batch_invariant():
    model, io = _load("tiny_single_lmhra_t8")
    accelerate(model)
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
        reference = model(x).float()
        accelerate(model)
        fused = model(x).float()
    assert torch.equal(fused.argmax(1), reference.argmax(1))
    assert (fused - reference).abs().max().item() < 0.05


def test_fp32_predictor_and_autocast_option():
    model, io = _load("tiny_frozen_p14_t4")
    got = Predictor(model, CPU, torch.float32, batch_size=1).logits(io["input"])
    torch.testing.assert_close(got, io["logits"], rtol=1e-5, atol=1e-5)
    auto = Predictor(model, CPU, torch.bfloat16, cast_weights=False)
    assert not auto.cast_weights and model.backbone.conv1.weight.dtype == torch.float32  # autocast keeps fp32 weights
    assert torch.equal(auto.logits(io["input"]).argmax(1), io["logits"].argmax(1))


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


def test_predictor_chooses_its_engine_once(fused_calls):
    model, io = _load("tiny_k400like_t8")
    predictor = Predictor(model, CPU, engine="reference")
    assert predictor.fused is None and engine_of(model) is None
    reference = predictor.logits(io["input"])
    assert fused_calls["n"] == 0
    predictor = Predictor(model, CPU)
    assert predictor.engine == "fused" and engine_of(model) is predictor.fused
    fused = predictor.logits(io["input"])
    assert fused_calls["n"] > 0
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    Predictor(model, CPU, engine="reference")
    assert engine_of(model) is None  # the model runs its reference forwards again
    with pytest.raises(UsageError, match="unknown engine"):
        Predictor(model, CPU, engine="turbo")


# ---------------------------------------------------------------- MKL-packed float32 linears

needs_packing = pytest.mark.skipif(not fast.packed_gemm_available(), reason="this torch build has no MKL packed GEMM")


def _packed(engine: FusedEngine, model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The model's parameters the engine holds a current packing of."""
    return [p for p in model.parameters() if engine.weights.peek(p, "mkl_packed") is not None]


@needs_packing
def test_packed_linears_match_plain_linear():
    torch.manual_seed(0)
    x, w, b = torch.randn(300, 768), torch.randn(1024, 768) / 30, torch.randn(1024)
    other = torch.randn(300, 1024)
    engine = FusedEngine()
    with torch.inference_mode():
        plain = torch.nn.functional.linear(x, w, b)
        torch.testing.assert_close(engine.linear(x, w, b), plain, rtol=1e-5, atol=1e-4)
        packed = engine.weights.peek(w, "mkl_packed")
        assert packed is not None  # big enough: packed once, cached
        torch.testing.assert_close(engine.linear(x[:7], w, b, "swish"), torch.nn.functional.silu(plain[:7]),
                                   rtol=1e-5, atol=1e-4)  # another row count reuses the packing
        assert engine.weights.peek(w, "mkl_packed") is packed
        torch.testing.assert_close(engine.linear_add(x, other, w, b), other + plain, rtol=1e-5, atol=1e-4)
        small = torch.randn(64, 768)
        engine.linear(x, small, None)
        assert engine.weights.peek(small, "mkl_packed") is None  # below PACK_MIN_NUMEL: oneDNN, no 8 MB buffer
        view = w[:512]  # kept alive, so that a packing of it would still be in the cache
        engine.linear(x, view, b[:512])
        assert engine.weights.peek(view, "mkl_packed") is None
        unpacked = FusedEngine(packed=False)
        torch.testing.assert_close(unpacked.linear(x, w, b), plain, rtol=1e-5, atol=1e-4)
        assert len(unpacked.weights) == 0


@needs_packing
def test_environment_turns_packing_off_once_when_the_predictor_is_built(monkeypatch):
    assert fast.packed_gemm_from_environment({}) and fast.packed_gemm_from_environment({"UVTAG_PACKED_GEMM": "1"})
    assert not fast.packed_gemm_from_environment({"UVTAG_PACKED_GEMM": "0"})
    model, io = _load("tiny_k400like_t8")
    monkeypatch.setenv("UVTAG_PACKED_GEMM", "0")
    predictor = Predictor(model, CPU)
    monkeypatch.setenv("UVTAG_PACKED_GEMM", "1")  # read when the predictor was built, not per call
    predictor.fused.pack_min_numel = 0  # the fixtures' widths are tiny: pack every weight that may be
    predictor.logits(io["input"])
    assert not predictor.fused.packed and not _packed(predictor.fused, model)
    predictor = Predictor(model, CPU)
    predictor.fused.pack_min_numel = 0
    predictor.logits(io["input"])
    assert predictor.fused.packed and _packed(predictor.fused, model)
    assert not Predictor(model, CPU, packed=False).fused.packed  # the argument wins over the environment


@needs_packing
@pytest.mark.parametrize("name", FIXTURES)
def test_fused_path_with_packed_weights_equals_official(name):
    model, io = _load(name)
    with torch.inference_mode():
        reference = model(io["input"])
    engine = accelerate(model)
    engine.pack_min_numel = 0  # the fixtures' widths are tiny: pack every weight
    with torch.inference_mode():
        fused = model(io["input"])
    assert len(_packed(engine, model)) >= 3 * model.config.layers  # in_proj, out_proj, c_fc per block
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, io["logits"], rtol=1e-5, atol=1e-5)


@needs_packing
def test_packed_weights_follow_new_weights_and_leave_with_the_model():
    model, io = _load("tiny_k400like_t8")
    engine = accelerate(model)
    engine.pack_min_numel = 0
    with torch.inference_mode():
        model(io["input"])
    assert _packed(engine, model)
    with torch.no_grad():
        for block in model.backbone.transformer.resblocks:
            block.attn.in_proj_weight.mul_(-1.5)  # in place: same tensor, new version -> packed again
    with torch.inference_mode():
        fused = model(io["input"])
        restore(model)
        reference = model(io["input"])
    assert (reference - io["logits"]).abs().max().item() > 1e-3
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    assert not any("packed" in k for k in model.state_dict())
    assert len(engine.weights) > 0
    del model, block
    gc.collect()
    assert len(engine.weights) == 0  # the cached copies were freed with their weights


@needs_packing
@pytest.mark.parametrize("cast", ["dtype round trip", "load_state_dict"])
def test_cached_copies_follow_casts_and_loaded_weights(cast):
    model, io = _load("tiny_ssv2like_t16")
    engine = accelerate(model)
    engine.pack_min_numel = 0
    with torch.inference_mode():
        model(io["input"])  # packs and scales the float32 weights
    if cast == "dtype round trip":  # same tensors, same versions; new storages, rounded to bfloat16
        model.to(torch.bfloat16).to(torch.float32)
    else:
        state = {k: v * 0.9 if v.is_floating_point() and v.ndim == 2 else v for k, v in model.state_dict().items()}
        model.load_state_dict(state)
    with torch.inference_mode():
        fused = model(io["input"])
        restore(model)
        reference = model(io["input"])
    assert (reference - io["logits"]).abs().max().item() > 1e-4  # the change matters
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


def test_dropping_the_model_frees_the_engine_copies_without_a_collection():
    model, io = _load("tiny_k400like_t8")
    engine = accelerate(model)
    with torch.inference_mode():
        model(io["input"])
    assert len(engine.weights) > 0
    gc.disable()
    try:
        del model  # the installed forwards hold their modules weakly: no reference cycle to wait for
        assert len(engine.weights) == 0
    finally:
        gc.enable()
