"""The architectures `uvtag bench` runs (zoo, bundled or random weights) and the model-forward rows."""

from __future__ import annotations

import dataclasses
import time

import torch

from uvtag.bench.measure import median_seconds, model_gmac
from uvtag.errors import UsageError, UvtagError
from uvtag.infer.predict import Predictor, pick_dtype
from uvtag.model.uniformerv2 import ModelConfig, UniFormerV2, build_model
from uvtag.model.zoo import Checkpoint, get_checkpoint

DEFAULT_ARCHS = ("k400_k710_uniformerv2_b16_8x224", "motion-tiny")
ENGINES = ("fused", "reference", "autocast", "compile", "unpacked")
# each bench engine as Predictor arguments: autocast is the fused engine on float32 weights under
# autocast, unpacked the fused engine with oneDNN instead of MKL-packed float32 linears
PREDICTOR_ARGS = {
    "fused": {"engine": "fused"},
    "reference": {"engine": "reference"},
    "autocast": {"engine": "fused", "cast_weights": False},
    "compile": {"engine": "compile"},
    "unpacked": {"engine": "fused", "packed": False},
}


def fallback_tiny_config() -> ModelConfig:
    """A motion-tiny-sized network (64 px, patch 8, width 96, 5 blocks, full design) for random weights."""
    return ModelConfig(
        input_resolution=64, patch_size=8, width=96, layers=5, heads=4, t_size=8, temporal_downsample=True,
        no_lmhra=False, double_lmhra=True, return_list=(2, 3, 4), n_layers=3, n_dim=96, n_head=4, num_classes=9,
        mlp_dropout=(0.1, 0.1, 0.1), cls_dropout=0.1,
    )


def random_model(config: ModelConfig, seed: int = 0) -> UniFormerV2:
    """A model with random weights of realistic scale (N(0, 0.02), unit LayerNorm gains)."""
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_3.weight", "ln_pre.weight", "proj.0.weight")):
                p.fill_(1.0)
            elif p.ndim > 0:
                p.normal_(0.0, 0.02)
    return model


@dataclasses.dataclass
class BenchModel:
    """One architecture to benchmark: its feeding protocol, labels and (random or trained) weights."""

    name: str
    checkpoint: Checkpoint
    labels: tuple[str, ...]
    model: UniFormerV2
    trained: bool  # weights from a file (else random)

    @property
    def config(self) -> ModelConfig:
        return self.checkpoint.config

    def fresh_model(self) -> UniFormerV2:
        """A private copy (predictors cast and move their model in place)."""
        clone = build_model(self.config)
        clone.load_state_dict(self.model.state_dict())
        return clone


def _tiny_checkpoint(config: ModelConfig) -> Checkpoint:
    base = get_checkpoint(DEFAULT_ARCHS[0])
    return dataclasses.replace(
        base, name="tiny", dataset="none", backbone="tiny (random)", pretrain="none", config=config, labels=None,
        num_frames=config.t_size, input_size=config.input_resolution, num_clips=1, num_crops=1, urls=(), sha256=None,
        gmac_per_view=model_gmac(config), filename="tiny.pt",
    )


def bench_model(name: str) -> BenchModel:
    """Resolve an architecture: a zoo name (random weights unless its bundled file is present) or "tiny"."""
    if name == "tiny":
        config = fallback_tiny_config()
        ck = _tiny_checkpoint(config)
        return BenchModel("tiny", ck, tuple(f"class_{i}" for i in range(config.num_classes)), random_model(config), False)
    try:
        ck = get_checkpoint(name)
    except UvtagError:
        if name == "motion-tiny":  # zoo without the bundled entry: same size, random weights
            config = fallback_tiny_config()
            ck = dataclasses.replace(_tiny_checkpoint(config), name="motion-tiny")
            return BenchModel(name, ck, tuple(f"class_{i}" for i in range(config.num_classes)), random_model(config), False)
        raise
    if ck.layout == "uvtag":  # bundled: use the trained file when it is there
        try:
            from uvtag.tagger import load

            tagger = load(name, device="cpu", offline=True, progress=False)
            return BenchModel(name, tagger.checkpoint, tagger.labels, tagger.predictor.model, True)
        except UvtagError:
            pass
    labels = tuple(f"class_{i}" for i in range(ck.config.num_classes))
    return BenchModel(name, ck, labels, random_model(ck.config), False)


def bench_forward(bm: BenchModel, *, device: torch.device, precision: str, batch: int, engine: str = "fused",
                  runs: int = 3, warmup: int = 1, peaks: dict | None = None) -> dict:
    """Model-only forward throughput of one (architecture, precision, batch size, engine)."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    cfg = bm.config
    dtype = pick_dtype(device, precision, emulated_bf16=True)
    if engine == "autocast" and dtype == torch.float32:
        raise UsageError("the autocast engine needs --precision bf16 or fp16")
    predictor = Predictor(bm.fresh_model(), device, dtype, batch, **PREDICTOR_ARGS[engine])
    clips = torch.randn(batch, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution)
    t_first = time.perf_counter()
    predictor.logits(clips)  # first call (compiles, packs, allocates); not timed below
    t_first = time.perf_counter() - t_first
    med, times = median_seconds(lambda: predictor.logits(clips), runs, max(0, warmup - 1))
    gmac = model_gmac(cfg)
    gflops = batch * 2 * gmac / med
    key = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    peak = (peaks or {}).get(key)
    weights = str(next(predictor.model.parameters()).dtype).removeprefix("torch.")
    del predictor
    return {
        "arch": bm.name, "precision": key, "batch": batch, "engine": engine, "weights": weights,
        "gmac_per_view": float(f"{gmac:.5g}"), "median_s": float(f"{med:.4g}"), "times_s": [round(t, 4) for t in times],
        "first_call_s": round(t_first, 2), "clips_per_s": float(f"{batch / med:.4g}"), "gflops": float(f"{gflops:.4g}"),
        "fraction_of_peak": round(gflops / peak, 3) if peak else None,
    }
