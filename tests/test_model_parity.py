"""Our UniFormerV2 against the official implementation's outputs (tests/data/fixtures).

The fixtures hold random-weight tiny models covering every switch of the architecture: global-only
(Kinetics family), double local MHRA with temporal downsampling (SSv2 family), frozen (no balance,
patch 14) and single local MHRA. Logits and every intermediate the official code exposes through
forward hooks are compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uvtag.model import ModelConfig, build_model

DATA = Path(__file__).parent / "data" / "fixtures"
FIXTURES = ["tiny_k400like_t8", "tiny_ssv2like_t16", "tiny_frozen_p14_t4", "tiny_single_lmhra_t8"]


def _load(name: str):
    meta = json.loads((DATA / f"{name}.json").read_text())
    config = ModelConfig.from_official(meta["vision_transformer_kwargs"])
    state = torch.load(DATA / f"{name}.state_dict.pt", map_location="cpu", weights_only=True)
    io = torch.load(DATA / f"{name}.io.pt", map_location="cpu", weights_only=True)
    return config, state, io


def _capture(model) -> dict[str, torch.Tensor]:
    """Forward hooks that record our tensors under the fixture's names, in the fixture's layouts."""
    seen: dict[str, torch.Tensor] = {}
    bb = model.backbone
    tr = bb.transformer

    def keep(name, fn=lambda t: t):
        return lambda _m, _inp, out: seen.__setitem__(name, fn(out).detach().clone())

    bb.conv1.register_forward_hook(keep("patch_embed"))
    bb.ln_pre.register_forward_hook(keep("ln_pre"))
    for i, block in enumerate(tr.resblocks):
        # ours is batch-first [N*T, L, C]; the official stream is sequence-first [L, N*T, C]
        block.register_forward_hook(keep(f"resblock.{i}", lambda t: t.transpose(0, 1)))
        for branch in ("lmhra1", "lmhra2"):
            if hasattr(block, branch):
                getattr(block, branch).register_forward_hook(keep(f"resblock.{i}.{branch}"))
    for j, conv in enumerate(tr.dpe):
        conv.register_forward_hook(keep(f"dpe.{j}"))
    for j, dec in enumerate(tr.dec):
        dec.register_forward_hook(keep(f"dec.{j}", lambda t: t.transpose(0, 1)))  # [N,1,C] -> [1,N,C]
    tr.proj.register_forward_pre_hook(lambda _m, args: seen.__setitem__("head_input", args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("name", FIXTURES)
def test_logits_match_official_float32(name):
    config, state, io = _load(name)
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        logits = model(io["input"])
    assert logits.shape == io["logits"].shape
    torch.testing.assert_close(logits, io["logits"], rtol=1e-5, atol=1e-5)
    assert torch.equal(logits.argmax(1), io["logits"].argmax(1))


@pytest.mark.parametrize("name", FIXTURES)
def test_logits_match_official_float64(name):
    config, state, io = _load(name)
    model = build_model(config).double()
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        logits = model(io["input"].double())
    assert (logits - io["logits_f64"]).abs().max().item() <= 1e-9


@pytest.mark.parametrize("name", FIXTURES)
def test_every_intermediate_matches(name):
    config, state, io = _load(name)
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    seen = _capture(model)
    with torch.inference_mode():
        model(io["input"])
    expected = io["intermediates"]
    assert set(expected) <= set(seen), f"not captured: {sorted(set(expected) - set(seen))}"
    for key, ref in expected.items():
        got = seen[key]
        assert got.shape == ref.shape, key
        tol = 1e-5 * max(1.0, ref.abs().max().item())
        assert (got - ref).abs().max().item() <= tol, key


@pytest.mark.parametrize("name", FIXTURES)
def test_state_dict_round_trips_in_official_order(name):
    config, state, _ = _load(name)
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    ours = model.state_dict()
    assert list(ours) == list(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)


def test_every_component_matters():
    """Zeroing the global branch's output projection must move the logits (the parity is not vacuous)."""
    config, state, io = _load("tiny_k400like_t8")
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        before = model(io["input"])
        for dec in model.backbone.transformer.dec:
            dec.attn.out_proj.weight.zero_()
        after = model(io["input"])
    assert (before - after).abs().max().item() > 0.1


def test_bf16_autocast_keeps_top1():
    config, state, io = _load("tiny_ssv2like_t16")
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(io["input"]).float()
    assert torch.equal(logits.argmax(1), io["logits"].argmax(1))
    assert (logits - io["logits"]).abs().max().item() < 0.25
