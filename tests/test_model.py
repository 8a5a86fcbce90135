"""Model construction, configuration checks and input validation."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from uvtag.model import ModelConfig, build_model

TINY = dict(
    input_resolution=16, patch_size=4, width=32, layers=4, heads=4, t_size=8, return_list=(2, 3),
    n_layers=2, n_dim=32, n_head=4, num_classes=5, mlp_dropout=(0.5, 0.5), output_dim=32,
)


@pytest.mark.parametrize(
    "switches",
    [
        dict(),  # Kinetics family
        dict(no_lmhra=False, double_lmhra=True, temporal_downsample=True),  # SSv2 family
        dict(no_lmhra=False, double_lmhra=False, temporal_downsample=True),
        dict(frozen=True),
        dict(no_lmhra=False, temporal_downsample=False, t_size=3),
    ],
)
def test_forward_shape_and_finite(switches):
    config = ModelConfig(**{**TINY, **switches})
    model = build_model(config)
    clip = torch.randn(3, 3, config.t_size, 16, 16)
    with torch.inference_mode():
        logits = model(clip)
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_fresh_model_is_the_image_vit_plus_gate():
    """The official init makes LMHRA and the global branch no-ops, so a fresh model ignores frame order."""
    config = ModelConfig(**{**TINY, "no_lmhra": False, "temporal_downsample": False})
    model = build_model(config)
    clip = torch.randn(1, 3, 8, 16, 16)
    shuffled = clip[:, :, torch.randperm(8)]
    with torch.inference_mode():
        torch.testing.assert_close(model(clip), model(shuffled), rtol=1e-5, atol=1e-5)


def test_batch_items_are_independent():
    config = ModelConfig(**{**TINY, "no_lmhra": False, "temporal_downsample": True})
    model = build_model(config)
    for p in model.parameters():  # make every branch active
        torch.nn.init.normal_(p, std=0.1)
    clips = torch.randn(3, 3, 8, 16, 16)
    with torch.inference_mode():
        together = model(clips)
        alone = torch.cat([model(clips[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_wrong_frame_count_is_an_error_not_a_regrouping():
    model = build_model(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="built for 8 frames per clip, got 16"):
        model(torch.randn(1, 3, 16, 16, 16))


def test_wrong_resolution_is_an_error():
    model = build_model(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="takes 16x16 frames, got 20x20"):
        model(torch.randn(1, 3, 8, 20, 20))


def test_wrong_rank_is_an_error():
    model = build_model(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="expected a clip tensor"):
        model(torch.randn(3, 8, 16, 16))


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(temporal_downsample=True, t_size=5), "t_size must be even"),
        (dict(return_list=(2, 7)), "must index backbone blocks"),
        (dict(return_list=(2,)), "must have n_layers=2 entries"),
        (dict(input_resolution=18), "not a multiple of patch_size"),
        (dict(n_dim=64), "must equal width"),
    ],
)
def test_config_rejects_what_the_official_code_gets_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**TINY, **bad})


def test_from_official_ignores_checkpointing_and_rejects_unknown():
    kwargs = {**TINY, "use_checkpoint": True, "checkpoint_num": [0]}
    kwargs["return_list"] = list(kwargs["return_list"])
    assert ModelConfig.from_official(kwargs) == ModelConfig(**TINY)
    with pytest.raises(ValueError, match="unknown official"):
        ModelConfig.from_official({**TINY, "bogus": 1})


def test_config_round_trips_through_plain_data():
    config = replace(ModelConfig(**TINY), frozen=True)
    assert ModelConfig(**json.loads(json.dumps(config.to_dict()))) == config


def test_the_network_module_holds_no_engine():
    """uniformerv2.py is the reference network only: no mutable module state, no environment, no
    engine imports, one forward per block (the fused engine lives in uvtag.model.fast)."""
    import __future__
    import ast
    import inspect
    import types

    from uvtag.model import uniformerv2 as uv

    source = inspect.getsource(uv)
    assert "environ" not in source and "getenv" not in source
    imported = {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module for node in ast.walk(ast.parse(source))
                                            if isinstance(node, ast.ImportFrom)}
    assert not imported & {"os", "weakref", "contextlib", "uvtag.model.kernels", "uvtag.model.fast"}
    for name in ("_FUSED_STATE", "_PACK_STATE", "_PACKED", "_VOLUME_LAYOUT", "fused_kernels", "packed_weights",
                 "_packed_weight", "_scaled_weight", "_linear2d", "_fused_ok"):
        assert not hasattr(uv, name), name
    immutable = (int, float, str, bytes, bool, tuple, frozenset, type(None), type, types.ModuleType,
                 types.FunctionType, __future__._Feature)
    for name, value in vars(uv).items():
        if name.startswith("__"):
            continue
        assert isinstance(value, immutable), f"uniformerv2.{name} is mutable module state ({type(value).__name__})"
    for cls in (uv.LocalBlock, uv.GlobalDecoder, uv.PackedAttention):
        forwards = [n for n in vars(cls) if "forward" in n or "fused" in n]
        assert forwards == ["forward"], (cls.__name__, forwards)
    model = build_model(ModelConfig(**TINY))
    assert not any("forward" in m.__dict__ for m in model.modules())  # nothing installed on a built model
