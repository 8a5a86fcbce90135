"""`run_suite`: every measurement of one `uvtag bench` run, and its markdown rendering."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from uvtag.bench.e2e import bench_end_to_end
from uvtag.bench.measure import Log, machine_info, matmul_peak
from uvtag.bench.media import bench_videos, decode_rates, ffmpeg_decode_fps
from uvtag.bench.models import DEFAULT_ARCHS, BenchModel, bench_forward, bench_model
from uvtag.infer.predict import pick_device, pick_dtype
from uvtag.model.kernels import cpu_info

SCHEMA = "uvtag-bench/1"


@dataclasses.dataclass
class BenchOptions:
    """What `run_suite` measures (see `uvtag bench --help`)."""

    archs: tuple[str, ...] = DEFAULT_ARCHS
    precisions: tuple[str, ...] = ()  # () = fp32 and bf16 (CPU) / fp32, bf16, fp16 (CUDA)
    batch_sizes: tuple[int, ...] = ()  # () = 1, 4 on the CPU; 1, 8, 32 on CUDA
    engines: tuple[str, ...] = ("fused",)
    runs: int = 3
    warmup: int = 1
    device: str = "auto"
    folder: str | Path = Path(tempfile.gettempdir()) / "uvtag_bench"
    decode: bool = True
    e2e: bool = True
    e2e_archs: tuple[str, ...] = DEFAULT_ARCHS
    e2e_precision: str = "auto"
    e2e_batch: int | None = None
    long_sec: float = 120.0
    clip_sec: float = 10.0
    num_clips: int = 12
    height: int = 720
    peak_sizes: tuple[int, ...] = ()  # () = 2048, 3072 on the CPU; 8192, 4096 on CUDA (fills an H100)


def _default_precisions(device: torch.device) -> tuple[str, ...]:
    """All three on CUDA; on the CPU fp32, and bf16 where the CPU has native bfloat16 (emulated
    bf16 is 4-7x slower than fp32; `--precision bf16` still measures it)."""
    if device.type == "cuda":
        return ("fp32", "bf16", "fp16")
    return ("fp32", "bf16") if cpu_info().native_bf16 else ("fp32",)


def _defaults(opts: BenchOptions, device: torch.device) -> BenchOptions:
    """Fill the device-dependent defaults: a GPU needs larger batches and matmuls to be busy."""
    cuda = device.type == "cuda"
    return dataclasses.replace(
        opts, precisions=opts.precisions or _default_precisions(device),
        batch_sizes=opts.batch_sizes or ((1, 8, 32) if cuda else (1, 4)),
        peak_sizes=opts.peak_sizes or ((8192, 4096) if cuda else (2048, 3072)),
    )


def _window_for(bm: BenchModel) -> tuple[float, float]:
    """Localize windows: 8 s / 4 s for zoo models, 2 s / 1 s for the small models (short actions)."""
    return (8.0, 4.0) if bm.config.input_resolution >= 224 else (2.0, 1.0)


def run_suite(opts: BenchOptions, log: Log = lambda s: None) -> dict:
    """Run every requested measurement; returns the JSON-ready result (see SCHEMA)."""
    device = pick_device(opts.device)
    opts = _defaults(opts, device)
    precisions = opts.precisions
    for p in precisions:
        pick_dtype(device, p, emulated_bf16=True)  # refuses fp16 on the CPU with the reason
    result: dict = {"schema": SCHEMA, "machine": machine_info(device), "peak_gflops": {}, "model": [], "decode": None,
                    "end_to_end": []}
    for p in precisions:
        dtype = pick_dtype(device, p, emulated_bf16=True)
        result["peak_gflops"][p] = matmul_peak(dtype, device, sizes=opts.peak_sizes, runs=max(3, opts.runs),
                                               warmup=1)["gflops"]
        log(f"matmul peak {p}: {result['peak_gflops'][p]} GFLOP/s")
    models: dict[str, BenchModel] = {}

    def adjacent_peak(p: str) -> float:
        """A quick peak right next to a model row (load drifts); the run's peak is the max seen."""
        g = matmul_peak(pick_dtype(device, p, emulated_bf16=True), device, sizes=opts.peak_sizes[:1], runs=3, warmup=1)["gflops"]
        result["peak_gflops"][p] = max(result["peak_gflops"][p], g)
        return g

    def get(name: str) -> BenchModel:
        if name not in models:
            models[name] = bench_model(name)
        return models[name]

    for arch in opts.archs:
        bm = get(arch)
        for p in precisions:
            for b in opts.batch_sizes:
                for engine in opts.engines:
                    if engine == "autocast" and p == "fp32":
                        continue  # autocast is a low-precision engine
                    before = adjacent_peak(p)
                    try:
                        row = bench_forward(bm, device=device, precision=p, batch=b, engine=engine, runs=opts.runs,
                                            warmup=opts.warmup)
                    except torch.OutOfMemoryError:
                        row = {"arch": bm.name, "precision": p, "batch": b, "engine": engine, "error": "out of memory"}
                    row["peak_adjacent_gflops"] = max(before, adjacent_peak(p))
                    result["model"].append(row)
                    log(f"forward {bm.name} {p} batch {b} {engine}: {row.get('clips_per_s')} clips/s, "
                        f"{row.get('gflops')} GFLOP/s (matmul peak next to it {row['peak_adjacent_gflops']})")
    for row in result["model"]:  # against the best peak seen in the whole run: the conservative fraction
        if "gflops" in row:
            row["fraction_of_peak"] = round(row["gflops"] / result["peak_gflops"][row["precision"]], 3)
    videos = None
    if opts.decode or opts.e2e:
        videos = bench_videos(opts.folder, opts.long_sec, opts.clip_sec, opts.num_clips, opts.height)
    ffmpeg_long = None
    if opts.decode:
        result["decode"] = decode_rates(videos["long"])  # long enough that process start-up is noise
        log(f"decode {result['decode']}")
    if opts.e2e:
        ffmpeg_long = ffmpeg_decode_fps(videos["long"])
        for arch in opts.e2e_archs:
            bm = get(arch)
            window, stride = _window_for(bm)
            batch = opts.e2e_batch  # None: what the CLI uses (see infer.predict.default_batch_size)
            result["end_to_end"].extend(bench_end_to_end(
                bm, videos, device=device, precision=opts.e2e_precision, batch=batch, window_sec=window,
                stride_sec=stride, ffmpeg_fps=ffmpeg_long,
                model_runs=1 if bm.config.input_resolution >= 224 else opts.runs, log=log))
    result["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


# ---------------------------------------------------------------------- rendering


def format_markdown(result: dict) -> str:
    """The result as markdown tables (machine line, model forward, decode, end to end)."""
    m = result["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    lines = [
        f"Measured {m['date'][:10]} on {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
        f"{m['memory_gib']} GiB{gpu}; torch {m['torch']}; load average at start {m['load_average'][0]:.2f}"
        if m.get("load_average") else f"Measured {m['date'][:10]} on {m['cpu']}{gpu}; torch {m['torch']}",
        "",
        f"CPU: {m['cpu_summary']}" if m.get("cpu_summary") else "",
        "",
        *(f"CPU kernels {p}: {plan}" + (" (no native bf16: emulated)" if p == "bf16" and not m.get("native_bf16") else "")
          for p, plan in (m.get("cpu_kernels") or {}).items() if p in result["peak_gflops"] and m["device"] == "cpu"),
        "",
        "Matmul peak: " + ", ".join(f"{p} {g} GFLOP/s" for p, g in result["peak_gflops"].items()),
        "",
        "| model | precision | batch | engine | clips/s | GFLOP/s | of peak |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in result["model"]:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['precision']} | {r['batch']} | {r['engine']} | {r['error']} | | |")
            continue
        frac = f"{100 * r['fraction_of_peak']:.0f}%" if r.get("fraction_of_peak") else "-"
        lines.append(f"| {r['arch']} | {r['precision']} | {r['batch']} | {r['engine']} | {r['clips_per_s']:.3f} | "
                     f"{r['gflops']:.0f} | {frac} |")
    d = result.get("decode")
    if d:
        lines += [
            "",
            f"Decode ({d['file']}, {d['width']}x{d['height']} H.264, {d['frames']} frames; {d['pattern']}):",
            "",
            "| ffmpeg CLI | full decode | sliding window | sparse 8-frame clip |",
            "| ---: | ---: | ---: | ---: |",
            f"| {d['ffmpeg_cli_fps'] or '-'} fps | {d['full_decode_fps']} fps | {d['sliding_window_fps']} fps | "
            f"{d['sparse_clip_ms']} ms |",
        ]
    if result.get("end_to_end"):
        lines += [
            "",
            "| task | model | precision | batch | video s | x realtime | clips/s | model-only clips/s | of model-only "
            "| frames/s (of ffmpeg) | peak RSS MiB |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["end_to_end"]:
            ff = f" ({100 * r['fraction_of_ffmpeg']:.0f}%)" if r.get("fraction_of_ffmpeg") else ""
            lines.append(
                f"| {r['task']} | {r['arch']} | {r['precision']} | {r['batch']} | {r['video_sec']:g} | {r['x_realtime']} | "
                f"{r['clips_per_s']} | {r['model_only_clips_per_s']} | {100 * r['fraction_of_model_only']:.0f}% | "
                f"{r['source_frames_per_s']:.0f}{ff} | {r['peak_rss_mib']} |"
            )
    return "\n".join(lines) + "\n"
