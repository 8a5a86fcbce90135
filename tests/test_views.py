"""Test views (order, frames, crops), score aggregation and top-k."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from uvtag.errors import UsageError
from uvtag.infer import views
from uvtag.infer.views import View, aggregate, aggregate_groups, top_k
from uvtag.results import LabelScore
from uvtag.video.sampling import sample_clip_indices

DATA = Path(__file__).parent / "data" / "protocol"


def test_views_match_official_e2e_order() -> None:
    data = torch.load(DATA / "e2e_k400_n50.pt", map_location="cpu", weights_only=True)
    got = views.official_views(50, 8, 4, 3, "kinetics")
    assert len(got) == 12
    assert [v.clip_index for v in got] == data["clip_of_view"].tolist()
    assert [v.spatial_index for v in got] == data["spatial_idx_of_view"].tolist()
    assert [list(v.frame_indices) for v in got] == data["indices"].tolist()


def test_views_single_crop_position_depends_on_sampler() -> None:
    kin = views.official_views(300, 8, 3, 1, "kinetics")
    sth = views.official_views(300, 8, 3, 1, "sth")
    assert [v.spatial_index for v in kin] == [1, 1, 1]
    assert [v.spatial_index for v in sth] == [0, 0, 0]
    assert [v.clip_index for v in kin] == [0, 1, 2]
    assert kin[2].frame_indices == tuple(sample_clip_indices(300, 8, 2, 3))


def test_views_ssv2_protocol() -> None:
    got = views.official_views(40, 16, 1, 3, "sth")
    assert [(v.clip_index, v.spatial_index) for v in got] == [(0, 0), (0, 1), (0, 2)]
    assert all(len(v.frame_indices) == 16 for v in got)


def test_view_is_frozen_and_hashable() -> None:
    v = View(0, 1, (1, 2, 3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.clip_index = 2  # type: ignore[misc]
    assert hash(v) == hash(View(0, 1, (1, 2, 3)))


def test_views_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        views.official_views(0, 8, 1, 3)
    with pytest.raises(ValueError):
        views.official_views(10, 8, 1, 5)
    with pytest.raises(ValueError):
        views.official_views(10, 8, 0, 3)


def test_views_are_bounded_before_any_is_built() -> None:
    assert len(views.official_views(50, 8, 333, 3)) == 999
    with pytest.raises(UsageError, match=r"1,000,000 clips x 3 crops make 3,000,000 views"):
        views.official_views(50, 8, 1_000_000, 3)
    with pytest.raises(UsageError, match=r"1,001 clips x 1 crops make 1,001 views"):
        views.official_views(50, 8, 1_001, 1)
    assert views.MAX_VIEWS == 1_000


def test_aggregate_is_mean_of_softmax() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    got = aggregate(logits)
    want = (torch.softmax(logits[0], 0) + torch.softmax(logits[1], 0)) / 2
    assert torch.allclose(got, want, atol=1e-7, rtol=0)
    assert got.dtype == torch.float32
    assert torch.isclose(got.sum(), torch.tensor(1.0))
    # averaging probabilities is not averaging logits: here the winners differ
    assert got.argmax().item() == 1
    logits2 = torch.tensor([[20.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    assert aggregate(logits2).argmax().item() == 1
    assert logits2.mean(0).argmax().item() == 0


def test_aggregate_same_argmax_as_official_sum_and_order_free() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 400, generator=g) * 3
    official_sum = torch.softmax(logits, dim=-1).sum(0)
    got = aggregate(logits)
    assert got.argmax() == official_sum.argmax()
    assert torch.allclose(got * 12, official_sum, atol=1e-6, rtol=1e-5)
    assert torch.allclose(aggregate(logits.flip(0)), got, atol=1e-7, rtol=0)


def test_aggregate_half_precision_input() -> None:
    logits = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=torch.float16)
    assert aggregate(logits).dtype == torch.float32


def test_aggregate_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        aggregate(torch.zeros(5))
    with pytest.raises(ValueError):
        aggregate(torch.zeros(0, 5))


def test_aggregate_groups_equals_per_group_aggregate() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(10, 7, generator=g)
    ids = [0, 0, 0, 2, 2, 1, 0, 1, 2, 2]
    got = aggregate_groups(logits, ids)
    assert got.shape == (3, 7)
    for group in range(3):
        rows = [i for i, gid in enumerate(ids) if gid == group]
        assert torch.allclose(got[group], aggregate(logits[rows]), atol=1e-7, rtol=0)
    assert torch.allclose(aggregate_groups(logits, torch.tensor(ids)), got)


def test_aggregate_groups_rejects_bad_ids() -> None:
    logits = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="group ids for"):
        aggregate_groups(logits, [0, 1])
    with pytest.raises(ValueError, match="no views"):
        aggregate_groups(logits, [0, 2, 2])
    with pytest.raises(ValueError, match=">= 0"):
        aggregate_groups(logits, [0, -1, 1])


def test_top_k() -> None:
    probs = torch.tensor([0.1, 0.5, 0.1, 0.3])
    labels = ["a", "b", "c", "d"]
    got = top_k(probs, labels, 3)
    assert got == (
        LabelScore("b", 1, pytest.approx(0.5)),
        LabelScore("d", 3, pytest.approx(0.3)),
        LabelScore("a", 0, pytest.approx(0.1)),  # tie with "c": lower index first
    )
    assert all(isinstance(x.score, float) for x in got)
    assert [x.label for x in top_k(probs, labels, 10)] == ["b", "d", "a", "c"]


def test_top_k_rejects_bad_input() -> None:
    probs = torch.tensor([0.2, 0.8])
    with pytest.raises(ValueError, match="labels"):
        top_k(probs, ["a"], 1)
    with pytest.raises(ValueError, match="k must"):
        top_k(probs, ["a", "b"], 0)
    with pytest.raises(ValueError, match=r"\[K\]"):
        top_k(probs[None], ["a", "b"], 1)
