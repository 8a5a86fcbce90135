"""The official implementation's tiny random-weight models (tests/data/fixtures), loaded into ours."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from uvtag.model import ModelConfig, build_model

DATA = Path(__file__).parent / "data" / "fixtures"
FIXTURES = ["tiny_k400like_t8", "tiny_ssv2like_t16", "tiny_frozen_p14_t4", "tiny_single_lmhra_t8"]


def load_fixture(name: str):
    """(our model with the fixture's weights, the fixture's inputs/outputs dict)."""
    meta = json.loads((DATA / f"{name}.json").read_text())
    model = build_model(ModelConfig.from_official(meta["vision_transformer_kwargs"]))
    model.load_state_dict(torch.load(DATA / f"{name}.state_dict.pt", map_location="cpu", weights_only=True))
    io = torch.load(DATA / f"{name}.io.pt", map_location="cpu", weights_only=True)
    return model, io
