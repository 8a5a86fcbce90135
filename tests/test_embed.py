"""Video embeddings: the vector the classifier head reads, under every engine, through the
predictor, `Tagger.tag_clips` and `run_batch`.

The fixtures are the official implementation's tiny models (tests/data/fixtures); `motion-tiny`
is the bundled model. An embedding is right when the head applied to it gives the model's logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import uvtag
from fixture_models import FIXTURES, load_fixture
from uvtag.batch.run import run_batch
from uvtag.infer.predict import Predictor
from uvtag.model.fast import engine_of
from uvtag.synth import clip_rng, random_clip, write_video

CPU = torch.device("cpu")


def _head(model: torch.nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.head(embeddings)


@pytest.mark.parametrize("name", FIXTURES)
def test_reference_forward_is_the_head_of_the_embedding(name):
    model, io = load_fixture(name)
    with torch.inference_mode():
        logits = model(io["input"])
        embeddings, head_logits = model.embed(io["input"])
    assert embeddings.shape == (io["input"].shape[0], model.config.width) == (io["input"].shape[0], model.embed_dim)
    assert torch.equal(head_logits, logits)  # one code path: the same bits
    torch.testing.assert_close(logits, io["logits"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(embeddings[0], embeddings[1])  # a real per-clip vector


@pytest.mark.parametrize("engine", ["fused", "reference"])
@pytest.mark.parametrize("name", FIXTURES)
def test_predictor_embed_matches_logits(name, engine):
    model, io = load_fixture(name)
    n = io["input"].shape[0]
    clips = torch.cat([io["input"]] * 3)[: 2 * n + 1]  # at batch 2: full batches and a short one
    predictor = Predictor(model, CPU, batch_size=2, engine=engine)
    assert (engine_of(model) is not None) == (engine == "fused")
    embeddings, logits = predictor.embed(clips)
    assert embeddings.dtype == logits.dtype == torch.float32
    assert embeddings.shape == (2 * n + 1, model.config.width) and logits.shape == (2 * n + 1, model.config.num_classes)
    assert torch.equal(logits, predictor.logits(clips))  # same batches, same numbers
    torch.testing.assert_close(_head(model, embeddings), logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logits[:n], io["logits"], rtol=1e-5, atol=1e-5)


def test_predictor_embed_of_no_clips_is_empty():
    model, io = load_fixture(FIXTURES[0])
    embeddings, logits = Predictor(model, CPU).embed(io["input"][:0])
    assert embeddings.numel() == 0 and logits.numel() == 0


def test_stream_carries_embeddings_in_order():
    model, io = load_fixture(FIXTURES[0])
    predictor = Predictor(model, CPU, batch_size=2)
    items = [(f"clip{i}", io["input"][i % 2]) for i in range(5)]
    rows = list(predictor.stream(iter(items), embed=True))
    assert [r[0] for r in rows] == [k for k, _ in items]
    embeddings, logits = predictor.embed(torch.stack([c for _, c in items]))
    assert torch.equal(torch.stack([r[1] for r in rows]), logits)
    assert torch.equal(torch.stack([r[2] for r in rows]), embeddings)
    plain = list(predictor.stream(iter(items)))
    assert all(len(r) == 2 for r in plain)
    assert torch.equal(torch.stack([r[1] for r in plain]), logits)


@pytest.fixture(scope="module")
def motion_tiny():
    return uvtag.load("motion-tiny", device="cpu", batch_size=3)


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_motion_tiny_embeddings_reproduce_logits(motion_tiny, engine):
    model = motion_tiny.predictor.model
    cfg = model.config
    torch.manual_seed(1)
    clips = torch.randn(4, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution)
    predictor = Predictor(model, CPU, batch_size=3, engine=engine)
    embeddings, logits = predictor.embed(clips)
    assert embeddings.shape == (4, motion_tiny.embed_dim)
    assert torch.equal(logits, predictor.logits(clips))
    torch.testing.assert_close(_head(model, embeddings), logits, rtol=1e-6, atol=1e-6)
    Predictor(model, CPU, batch_size=3)  # leave the shared model with the fused engine, as loaded


def test_compiled_embeddings_reproduce_logits(motion_tiny):
    """Under the compile engine `embed` runs eagerly; its logits match eager's."""
    for model, clips in ((load_fixture("tiny_frozen_p14_t4")[0], load_fixture("tiny_frozen_p14_t4")[1]["input"]),
                         (motion_tiny.predictor.model, None)):
        cfg = model.config
        if clips is None:
            clips = torch.randn(3, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution)
        eager = Predictor(model, CPU, batch_size=2, engine="reference").logits(clips)
        compiled = Predictor(model, CPU, batch_size=2, engine="compile")
        embeddings, logits = compiled.embed(clips)
        torch.testing.assert_close(logits, eager, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(_head(model, embeddings), logits, rtol=1e-5, atol=1e-5)
    Predictor(motion_tiny.predictor.model, CPU, batch_size=3)


@pytest.fixture(scope="module")
def motion_video(tmp_path_factory):
    scene = random_clip(clip_rng("test", 7, 0), "moving left")
    return write_video(scene, tmp_path_factory.mktemp("embed") / "left", "h264")


def test_tag_clips_embeddings_are_those_of_the_clips_it_scored(motion_tiny, motion_video):
    plain = motion_tiny.tag_clips(motion_video, clip_sec=0.5, stride_sec=0.25, top=9)
    embedded = motion_tiny.tag_clips(motion_video, clip_sec=0.5, stride_sec=0.25, top=9, embed=True)
    assert plain.embeddings is None
    assert embedded == plain  # the same labels and scores, to the bit
    rows = embedded.embeddings
    assert rows.dtype == np.float32 and rows.shape == (len(embedded.clips), motion_tiny.embed_dim)
    spans = [(c.start_sec, c.end_sec) for c in embedded.clips]
    with motion_tiny.open(motion_video) as reader:
        clips = torch.stack([clip for _, clip in sorted(motion_tiny.span_clips(reader, spans), key=lambda t: t[0])])
    want, _ = motion_tiny.predictor.embed(clips)
    np.testing.assert_allclose(rows, want.numpy(), rtol=1e-6, atol=1e-6)
    probs = torch.softmax(_head(motion_tiny.predictor.model, torch.from_numpy(rows)), dim=-1).numpy()
    for clip, p in zip(embedded.clips, probs):
        for label in clip.top:
            assert abs(p[label.index] - label.score) < 1e-6


class _Collect:
    """A BatchWriter stand-in that keeps what it is given."""

    def __init__(self) -> None:
        self.videos, self.failures = [], []

    def completed(self) -> set[str]:
        return set()

    def write_video(self, prediction) -> None:
        self.videos.append(prediction)

    def write_failure(self, failure) -> None:
        self.failures.append(failure)


def test_run_batch_embeddings_across_videos(motion_tiny, motion_video, tmp_path):
    other = write_video(random_clip(clip_rng("test", 7, 1), "growing"), tmp_path / "grow", "h264")
    paths = [str(motion_video), str(tmp_path / "missing.mp4"), str(other)]
    plain, embedded = _Collect(), _Collect()
    run_batch(motion_tiny, paths, plain, clip_sec=0.5)
    run_batch(motion_tiny, paths, embedded, clip_sec=0.5, embed=True)
    assert len(embedded.failures) == 1 and [v.path for v in embedded.videos] == [str(motion_video), str(other)]
    for got, want in zip(embedded.videos, plain.videos):
        assert want.embeddings is None and got == want
        assert got.embeddings.shape == (len(got.clips), motion_tiny.embed_dim)
        alone = motion_tiny.tag_clips(got.path, clip_sec=0.5, embed=True)
        np.testing.assert_allclose(got.embeddings, alone.embeddings, rtol=1e-5, atol=1e-5)
