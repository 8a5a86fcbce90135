"""CUDA checks and forward-pass variants that `uvtag bench` does not separate out.

Run on a machine with a GPU:  python tests/benchmarks/bench_gpu.py [--quick] [--device cuda]
(prints numbers; not collected by pytest). `--device cpu --quick` only checks that it runs.

1. Equivalence: the fixtures' tiny models (official logits) through the Predictor on the device in
   fp32, bf16/fp16 autocast and bf16/fp16 weights, and on CUDA the plain model in fp32 with torch's
   default TF32 convolutions (which the Predictor turns off): max |logit diff| and top-1 agreement.
2. Forward variants for B/16 8x224 and L/14 8x224 (random weights), input already on the device,
   timed with CUDA events (median): fp32, bf16/fp16 autocast, bf16/fp16 weights, each through the
   reference model and the fused engine (`uvtag.model.fast.accelerate`); a profile of the fused
   engine's kernels; the global branch's depthwise conv in three memory layouts.
3. The host-to-device cost: the same batch through `Predictor.logits` from host float32 (what the
   pipeline hands over today) and uint8 moved then normalised on the device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fixture loader
from fixture_models import FIXTURES, load_fixture  # noqa: E402
from uvtag.bench.models import random_model  # noqa: E402
from uvtag.infer.predict import Predictor  # noqa: E402
from uvtag.model import build_model  # noqa: E402
from uvtag.model.fast import accelerate  # noqa: E402
from uvtag.model.uniformerv2 import gmac_per_view  # noqa: E402
from uvtag.model.zoo import get_checkpoint  # noqa: E402



def _time(fn, device: torch.device, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)
    ts = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    return statistics.median(ts)


def equivalence(device: torch.device) -> list[dict]:
    rows = []
    for name in FIXTURES:
        model, io = load_fixture(name)
        ref = io["logits"]
        variants = {"fp32": (torch.float32, False)}
        if device.type == "cuda":
            variants |= {"bf16 autocast": (torch.bfloat16, False), "bf16 weights": (torch.bfloat16, True),
                         "fp16 autocast": (torch.float16, False), "fp16 weights": (torch.float16, True)}
        else:
            variants |= {"bf16 weights": (torch.bfloat16, True)}
        outputs = {label: Predictor(load_fixture(name)[0], device, dtype, 8, cast_weights=cast).logits(io["input"])
                   for label, (dtype, cast) in variants.items()}
        if device.type == "cuda":  # what the Predictor avoids: float32 with torch's default TF32 convolutions
            torch.backends.cudnn.allow_tf32 = True
            accelerate(model.to(device))
            with torch.inference_mode():
                outputs["fp32 with TF32 convs"] = model(io["input"].to(device)).cpu()
        for label, out in outputs.items():
            rows.append({"fixture": name, "variant": label, "max_abs_diff": float((out - ref).abs().max()),
                         "top1_same": bool(torch.equal(out.argmax(1), ref.argmax(1)))})
    return rows


def forward_variants(device: torch.device, arch: str, batches: list[int], runs: int, warmup: int) -> list[dict]:
    """Input already on the device; (weights dtype, autocast, fused engine) combinations."""
    ck = get_checkpoint(arch)
    cfg = ck.config
    gmac = gmac_per_view(cfg)
    rows = []
    state = random_model(cfg).state_dict()
    low = (torch.bfloat16, torch.float16) if device.type == "cuda" else (torch.bfloat16,)

    def make(dtype: torch.dtype):
        m = build_model(cfg)
        m.load_state_dict(state)
        return m.eval().to(device).to(dtype)

    variants = [("fp32 reference", torch.float32, torch.float32, False), ("fp32 fused", torch.float32, torch.float32, True)]
    for dt in low:
        tag = "bf16" if dt == torch.bfloat16 else "fp16"
        variants += [(f"{tag} autocast", torch.float32, dt, False), (f"{tag} weights reference", dt, dt, False),
                     (f"{tag} weights fused", dt, dt, True)]
    for label, wdtype, dtype, fused in variants:
        model = make(wdtype)
        if fused:
            accelerate(model)
        for b in batches:
            x = torch.randn(b, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution, device=device, dtype=wdtype)
            ctx = (lambda: torch.autocast(device.type, dtype=dtype)) if wdtype != dtype else nullcontext

            def fwd():
                with torch.inference_mode(), ctx():
                    model(x)

            try:
                s = _time(fwd, device, runs, warmup)
            except torch.OutOfMemoryError:
                rows.append({"arch": arch, "variant": label, "batch": b, "error": "oom"})
                torch.cuda.empty_cache()
                continue
            rows.append({"arch": arch, "variant": label, "batch": b, "ms": round(s * 1e3, 2),
                         "clips_per_s": round(b / s, 2), "tflops": round(b * 2 * gmac / s / 1e3, 1)})
            print(json.dumps(rows[-1]), flush=True)
        model = None  # free it before the next variant
    return rows


def profile(device: torch.device, arch: str, batch: int, dtype: torch.dtype) -> str:
    """Top kernels of one forward through the fused engine (torch.profiler), as a table."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    cfg = get_checkpoint(arch).config
    model = random_model(cfg).eval().to(device).to(dtype)
    accelerate(model)
    x = torch.randn(batch, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution, device=device, dtype=dtype)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode():
        model(x)
        with torch_profile(activities=acts) as prof:
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=60)


def dpe_layouts(device: torch.device, runs: int, warmup: int) -> list[dict]:
    """The global branch's depthwise 3x3x3 conv on B/16 tokens: as our layout hands it over vs
    contiguous NCDHW vs channels_last_3d."""
    rows = []
    for dtype in ((torch.float32, torch.bfloat16) if device.type == "cuda" else (torch.float32,)):
        conv = torch.nn.Conv3d(768, 768, 3, padding=1, groups=768).to(device, dtype)
        tokens = torch.randn(32 * 8, 197, 768, device=device, dtype=dtype)
        vol = tokens[:, 1:].view(32, 8, 14, 14, 768).permute(0, 4, 1, 2, 3)
        for label, x in (("strided view", vol), ("NCDHW", vol.contiguous()),
                         ("channels_last_3d", vol.contiguous(memory_format=torch.channels_last_3d))):
            with torch.inference_mode():
                s = _time(lambda: conv(x), device, runs, warmup)
            rows.append({"op": "dpe conv", "dtype": str(dtype), "layout": label, "ms": round(s * 1e3, 3)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def host_paths(device: torch.device, arch: str, batch: int, runs: int, warmup: int) -> list[dict]:
    """Predictor.logits from host float32 vs uint8 moved and normalised on the device."""
    ck = get_checkpoint(arch)
    cfg = ck.config
    p = Predictor(random_model(cfg), device, torch.bfloat16 if device.type == "cuda" else torch.float32, batch)
    shape = (batch, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution)
    xf = torch.randn(shape)
    xu = torch.randint(0, 256, shape, dtype=torch.uint8)
    mean = torch.tensor(ck.mean, device=device).view(1, 3, 1, 1, 1) * 255
    std = torch.tensor(ck.std, device=device).view(1, 3, 1, 1, 1) * 255
    rows = []

    def from_float():
        p.logits(xf)

    def from_uint8():
        with torch.inference_mode():
            x = xu.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else xu
            x = (x.float() - mean) / std
            x = x.to(p.dtype) if p.cast_weights else x
            with p._autocast():
                p.model(x).float().cpu()

    xp = xf.pin_memory() if device.type == "cuda" else xf

    def from_pinned_float():
        p.logits(xp)

    for label, fn in (("host float32 -> logits", from_float), ("host pinned float32 -> logits", from_pinned_float),
                      ("host uint8 -> device normalise -> logits", from_uint8)):
        s = _time(fn, device, runs, warmup)
        rows.append({"arch": arch, "path": label, "batch": batch, "ms": round(s * 1e3, 2),
                     "clips_per_s": round(batch / s, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--arch", action="append", help="zoo names (default: B/16 and L/14 8x224)")
    args = ap.parse_args()
    device = torch.device(args.device)
    result: dict = {"torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    print(json.dumps(result), flush=True)
    result["equivalence"] = equivalence(device)
    for r in result["equivalence"]:
        print(json.dumps(r), flush=True)
    if args.quick:
        archs, batches, runs, warmup = ["k400_k710_uniformerv2_b16_8x224"], [1], 1, 0
    else:
        archs, batches, runs, warmup = (args.arch or ["k400_k710_uniformerv2_b16_8x224",
                                                      "k400_k710_uniformerv2_l14_8x224"], [1, 8, 32], 10, 3)
    result["dpe"] = dpe_layouts(device, runs, warmup)
    low = torch.bfloat16 if device.type == "cuda" else torch.float32
    result["profile"] = profile(device, archs[0], batches[-1], low)
    print(result["profile"], flush=True)
    result["forward"] = []
    result["host"] = []
    for arch in archs:
        result["forward"] += forward_variants(device, arch, batches, runs, warmup)
        result["host"] += host_paths(device, arch, batches[-1], runs, warmup)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
