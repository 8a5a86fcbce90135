"""Shared fixtures: a tiny checkpoint in uvtag's format (official state_dict inside) and test videos."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("COLUMNS", "120")  # stable Rich tables in CLI output

TINY_LABELS = ["walking", "running", "jumping", "waving", "clapping"]


def tiny_config():
    from uvtag.model import ModelConfig

    return ModelConfig(input_resolution=32, patch_size=8, width=32, layers=2, heads=4, t_size=4,
                       return_list=(0, 1), n_layers=2, n_dim=32, n_head=4, num_classes=len(TINY_LABELS),
                       mlp_dropout=(0.5, 0.5))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """A random-weight UniFormerV2 saved as a uvtag checkpoint: 2 clips x 3 crops, Kinetics sampler."""
    from uvtag.model import build_model
    from uvtag.model.weights import save_checkpoint

    torch.manual_seed(0)
    model = build_model(tiny_config())
    for p in model.parameters():  # every branch active, scores spread out
        torch.nn.init.normal_(p, std=0.3)
    path = tmp_path_factory.mktemp("models") / "tiny_k5.pt"
    save_checkpoint(path, model, TINY_LABELS,
                    {"dataset": "test", "protocol": {"num_clips": 2, "num_crops": 3, "sampler": "kinetics"}})
    return str(path)
