"""Benchmarks behind `uvtag bench`: how close uvtag runs to what the machine can do.

Every timing is the median of `runs` runs after `warmup` untimed ones. One run measures, on the
same machine state:
- the matmul peak (GFLOP/s) per precision, the reference the model rows are a fraction of;
- model forward per architecture, precision, batch size and engine: clips/s, achieved GFLOP/s
  (2 x the architecture's GMAC per view, see `model_gmac`) and the fraction of the peak. The
  peak is re-measured next to every row and the run's best is used for every fraction, so a
  load change during the run can only lower the reported fractions;
- decode rates on a generated 720p H.264 file: the ffmpeg CLI's decode speed next to uvtag's
  reader for full decode, the sliding-window pattern and sparse clip sampling;
- end to end (decode + preprocessing + model): `classify` with official views, `batch` over a
  folder of clips and `localize` over a long video, as x realtime (video seconds per wall second),
  clips/s next to the model-only clips/s for the same clips, and peak RSS of the stage.

Weights are random (timings do not depend on their values) except for a bundled model found on
disk. The result is one JSON-ready dict (`SCHEMA` names its layout) so runs can be compared
across commits; `format_markdown` renders it as the README table.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from uvtag.errors import UsageError, UvtagError
from uvtag.infer.predict import Predictor, pick_device, pick_dtype
from uvtag.model.uniformerv2 import (
    ModelConfig, UniFormerV2, build_model, fused_kernels, fused_kernels_available, gmac_per_view,
)
from uvtag.model.zoo import Checkpoint, get_checkpoint
from uvtag.results import Failure

SCHEMA = "uvtag-bench/1"
DEFAULT_ARCHS = ("k400_k710_uniformerv2_b16_8x224", "motion-tiny")
ENGINES = ("fused", "reference", "autocast", "compile")
Log = Callable[[str], None]


# ---------------------------------------------------------------------- arithmetic


def model_gmac(config: ModelConfig) -> float:
    """GMAC per view of an architecture (see `uniformerv2.gmac_per_view`)."""
    return gmac_per_view(config)


def median_seconds(fn: Callable[[], object], runs: int = 3, warmup: int = 1) -> tuple[float, list[float]]:
    """(median, all times) in seconds of `runs` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


# ---------------------------------------------------------------------- machine


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on: CPU, cores, memory, torch, GPU, date, load."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib,
        "cpu_features": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx512_fp16"}),
        "torch": torch.__version__,
        "fused_kernels": fused_kernels_available(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    return info


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (VmHWM; resettable with `reset_peak_rss`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux /proc/self/clear_refs); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, *, sizes: Sequence[int] = (2048, 3072), runs: int = 5,
                warmup: int = 2) -> dict:
    """Best median GFLOP/s of square [n, n] @ [n, n] matmuls (2 n^3 FLOPs each) over `sizes`.

    On the CPU both GEMM libraries torch can call are tried (torch.mm, i.e. MKL for float32, and
    oneDNN's linear, which the fused engine uses), so the peak is the best either reaches.
    """
    best = {"gflops": 0.0, "n": None, "kernel": None}
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        kernels = {"mm": lambda: torch.mm(a, b)}
        if device.type == "cpu" and fused_kernels_available():
            kernels["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
        for name, kernel in kernels.items():

            def step() -> None:
                kernel()
                _sync(device)

            med, _ = median_seconds(step, runs, warmup)
            gflops = 2 * n**3 / med / 1e9
            if gflops > best["gflops"]:
                best = {"gflops": round(gflops, 1), "n": n, "kernel": name}
    return best


# ---------------------------------------------------------------------- models


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
    dtype = pick_dtype(device, precision)
    if engine == "autocast" and dtype == torch.float32:
        raise UsageError("the autocast engine needs --precision bf16 or fp16")
    predictor = Predictor(bm.fresh_model(), device, dtype, batch, compile=engine == "compile",
                          cast_weights=False if engine == "autocast" else None)
    clips = torch.randn(batch, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution)
    t_first = time.perf_counter()
    with fused_kernels(engine != "reference"):
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


# ---------------------------------------------------------------------- videos


def make_video(path: str | Path, seconds: float, *, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """Write a moving-texture H.264 file (x264 veryfast, keyframe every 250 frames) with PyAV."""
    import av

    path = Path(path)
    rng = np.random.default_rng(1)
    tile = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(tile, 8, axis=0), 8, axis=1)[:height, :width]
    tmp = path.with_name(path.name + ".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": "250"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(round(seconds * fps))):
            frame = np.roll(texture, (2 * i, 3 * i), axis=(0, 1))
            frame[: height // 4, : width // 6] = (5 * i) % 256  # a changing patch
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    tmp.replace(path)
    return path


def repeat_video(src: str | Path, dst: str | Path, times: int) -> Path:
    """Concatenate `times` copies of src by remuxing its packets (no re-encoding)."""
    import av

    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".part.mp4")
    with av.open(str(src)) as probe:
        span = int(probe.streams.video[0].duration)
    with av.open(str(tmp), "w") as out:
        target = None
        for k in range(times):
            with av.open(str(src)) as inp:
                stream = inp.streams.video[0]
                if target is None:
                    target = out.add_stream_from_template(stream)
                for packet in inp.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.pts += k * span
                    packet.dts += k * span
                    packet.stream = target
                    out.mux(packet)
    tmp.replace(dst)
    return dst


def bench_videos(folder: str | Path, long_sec: float, clip_sec: float, num_clips: int, height: int = 720) -> dict:
    """Generate (once; cached by name) a base clip, a long file and a folder of clips."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    width = (height * 16 // 9) // 2 * 2
    base = d / f"base_{height}p_{clip_sec:g}s.mp4"
    if not base.exists():
        make_video(base, clip_sec, width=width, height=height)
    repeats = max(1, int(round(long_sec / clip_sec)))
    long = d / f"long_{height}p_{repeats * clip_sec:g}s.mp4"
    if not long.exists():
        repeat_video(base, long, repeats)
    clips_dir = d / f"clips_{height}p_{clip_sec:g}s"
    clips_dir.mkdir(exist_ok=True)
    clips = []
    for i in range(num_clips):
        c = clips_dir / f"clip_{i:03d}.mp4"
        if not c.exists():
            shutil.copyfile(base, c)
        clips.append(c)
    return {"base": base, "long": long, "clips": clips}


# ---------------------------------------------------------------------- decode


def ffmpeg_decode_fps(path: str | Path, threads: int | None = None, runs: int = 2) -> float | None:
    """Frames/s of `ffmpeg -threads N -i path -f null -` (best of runs after one warm-up); None without ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    from uvtag.video.reader import open_video

    with open_video(path) as r:
        n = r.info.num_frames
    cmd = [exe, "-v", "error", "-nostdin", "-threads", str(threads or os.cpu_count() or 1), "-i", str(path), "-f", "null", "-"]
    subprocess.run(cmd, check=True, capture_output=True)
    best = min(median_seconds(lambda: subprocess.run(cmd, check=True, capture_output=True), 1, 0)[0] for _ in range(runs))
    return round(n / best, 1)


def window_frame_indices(num_frames: int, fps: float, window_sec: float, stride_sec: float, frames: int) -> list[int]:
    """Sorted union of the frames of all sliding windows (`frames` spread uniformly per window)."""
    win, stride = max(1, int(round(window_sec * fps))), max(1, int(round(stride_sec * fps)))
    needed: set[int] = set()
    for start in range(0, max(1, num_frames - win + 1), stride):
        needed.update(int(start + (k * win) // frames) for k in range(frames))
    return sorted(i for i in needed if i < num_frames)


def decode_rates(path: str | Path, *, short_side: int = 224, window_sec: float = 2.0, stride_sec: float = 1.0,
                 frames: int = 8, runs: int = 1) -> dict:
    """uvtag reader decode rates on one file next to the ffmpeg CLI's (source frames per second)."""
    from uvtag.video.reader import open_video
    from uvtag.video.transforms import resized_shape

    out: dict = {"file": Path(path).name, "ffmpeg_cli_fps": ffmpeg_decode_fps(path)}
    with open_video(path) as r:
        n, fps = r.info.num_frames, r.info.fps
        size = resized_shape(r.info.height, r.info.width, short_side)
        out.update(frames=n, width=r.info.width, height=r.info.height)
        t_full, _ = median_seconds(lambda: sum(1 for _ in r.iter_frames(range(n))), runs, 0)
        needed = window_frame_indices(n, fps, window_sec, stride_sec, frames)
        t_win, _ = median_seconds(lambda: sum(1 for _ in r.iter_frames(needed, size=size)), runs, 0)
    sparse = [int((k + 0.5) * n / frames) for k in range(frames)]

    def sparse_clip() -> None:
        with open_video(path) as r2:
            r2.get_frames(sparse, size=size)

    t_sparse, _ = median_seconds(sparse_clip, max(3, runs), 0)
    out.update(
        full_decode_fps=round(n / t_full, 1),
        sliding_window_fps=round(n / t_win, 1),  # source frames per second of wall time
        sliding_window_frames_converted=len(needed),
        sparse_clip_ms=round(t_sparse * 1000, 1),
        sparse_frames_per_s=round(frames / t_sparse, 1),
        pattern=f"{frames} frames per {window_sec:g} s window, stride {stride_sec:g} s, {size[0]}x{size[1]}",
    )
    return out


# ---------------------------------------------------------------------- end to end


def _model_only(predictor: Predictor, checkpoint: Checkpoint, num_clips: int, runs: int = 1) -> float:
    """Median seconds the predictor needs for `num_clips` random clips of the checkpoint's input shape."""
    s = checkpoint.input_size
    clips = torch.randn(num_clips, 3, checkpoint.num_frames, s, s)
    predictor.logits(clips[: min(num_clips, predictor.batch_size)])  # warm
    return median_seconds(lambda: predictor.logits(clips), runs, 0)[0]


def _e2e_row(task: str, tagger, video_sec: float, frames: int, clips: int, wall: float, model_s: float,
             ffmpeg_fps: float | None = None) -> dict:
    row = {
        "task": task, "arch": tagger.name, "precision": {torch.float32: "fp32", torch.bfloat16: "bf16",
                                                         torch.float16: "fp16"}[tagger.predictor.dtype],
        "batch": tagger.predictor.batch_size, "video_sec": round(video_sec, 2), "wall_s": round(wall, 3),
        "x_realtime": round(video_sec / wall, 2), "clips": clips, "clips_per_s": round(clips / wall, 3),
        "model_only_clips_per_s": round(clips / model_s, 3), "fraction_of_model_only": round(model_s / wall, 3),
        "source_frames_per_s": round(frames / wall, 1), "peak_rss_mib": round(peak_rss_mib()),
    }
    if ffmpeg_fps:
        row["ffmpeg_cli_fps"] = ffmpeg_fps
        row["fraction_of_ffmpeg"] = round(frames / wall / ffmpeg_fps, 3)
    if tagger.predictor.device.type == "cuda":
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(tagger.predictor.device) / 2**20)
    return row


def _reset_peaks(device: torch.device) -> None:
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_end_to_end(bm: BenchModel, videos: dict, *, device: torch.device, precision: str, batch: int | None,
                     window_sec: float, stride_sec: float, tasks: Sequence[str] = ("classify", "batch", "localize"),
                     ffmpeg_fps: float | None = None, model_runs: int = 1, log: Log = lambda s: None) -> list[dict]:
    """classify / batch / localize through the real `Tagger` and batch runner, each vs model-only
    (the same number of clips through the same predictor, median of `model_runs`)."""
    from uvtag.batch import run_batch
    from uvtag.tagger import Tagger
    from uvtag.video.reader import open_video
    from uvtag.infer.windows import clip_spans, window_spans
    from uvtag.batch_writer import BatchWriter

    tagger = Tagger(bm.fresh_model(), bm.checkpoint, bm.labels, device=str(device), precision=precision,
                    batch_size=batch)
    rows = []
    with open_video(videos["base"]) as r:
        base_info = r.info
    with open_video(videos["long"]) as r:
        long_info = r.info
    if "classify" in tasks:  # as `uvtag classify` over several files: the next video decodes while this one runs
        paths = [str(p) for p in videos["clips"]]
        views = bm.checkpoint.num_clips * bm.checkpoint.num_crops * len(paths)
        model_s = _model_only(tagger.predictor, bm.checkpoint, views, model_runs)
        tagger.classify(videos["base"])  # warm the decoder and allocator once
        _reset_peaks(device)
        t0 = time.perf_counter()
        results = list(tagger.classify_many(paths))
        wall = time.perf_counter() - t0
        failed = [r for r in results if isinstance(r, Failure)]
        if failed:
            raise UvtagError(f"bench classify: {failed[0].error}")
        rows.append(_e2e_row("classify", tagger, base_info.duration_sec * len(paths), base_info.num_frames * len(paths),
                             views, wall, model_s))
        log(f"  e2e classify {bm.name}: {rows[-1]['x_realtime']}x realtime")
    if "batch" in tasks:
        spans_per = len(clip_spans(base_info.duration_sec, tagger.default_clip_sec()))
        n_clips = spans_per * len(videos["clips"])
        model_s = _model_only(tagger.predictor, bm.checkpoint, n_clips, model_runs)
        for isolate in (True, False):  # the CLI decodes in (reused) child processes by default
            tagger.isolate = isolate
            with tempfile.TemporaryDirectory() as tmp:
                _reset_peaks(device)
                t0 = time.perf_counter()
                with BatchWriter.open(Path(tmp) / "out.jsonl", "jsonl") as writer:
                    summary = run_batch(tagger, [str(p) for p in videos["clips"]], writer)
                wall = time.perf_counter() - t0
            if summary.failures:
                raise UvtagError(f"bench batch: {summary.failures[0].error}")
            rows.append(_e2e_row("batch" if isolate else "batch --no-isolate", tagger,
                                 base_info.duration_sec * len(videos["clips"]),
                                 base_info.num_frames * len(videos["clips"]), n_clips, wall, model_s))
            log(f"  e2e {rows[-1]['task']} {bm.name}: {rows[-1]['x_realtime']}x realtime")
        tagger.isolate = False
    if "localize" in tasks:
        n_clips = len(window_spans(long_info.duration_sec, window_sec, stride_sec))
        model_s = _model_only(tagger.predictor, bm.checkpoint, n_clips, model_runs)
        _reset_peaks(device)
        t0 = time.perf_counter()
        tagger.localize(videos["long"], window_sec=window_sec, stride_sec=stride_sec)
        wall = time.perf_counter() - t0
        rows.append(_e2e_row("localize", tagger, long_info.duration_sec, long_info.num_frames, n_clips, wall, model_s,
                             ffmpeg_fps))
        rows[-1]["window"] = f"{window_sec:g}s/{stride_sec:g}s"
        log(f"  e2e localize {bm.name}: {rows[-1]['x_realtime']}x realtime")
    return rows


# ---------------------------------------------------------------------- the suite


@dataclasses.dataclass
class BenchOptions:
    """What `run_suite` measures (see `uvtag bench --help`)."""

    archs: tuple[str, ...] = DEFAULT_ARCHS
    precisions: tuple[str, ...] = ()  # () = fp32 and bf16 (CPU) / fp32, bf16, fp16 (CUDA)
    batch_sizes: tuple[int, ...] = (1, 4)
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
    peak_sizes: tuple[int, ...] = (2048, 3072)


def _default_precisions(device: torch.device) -> tuple[str, ...]:
    return ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")


def _window_for(bm: BenchModel) -> tuple[float, float]:
    """Localize windows: 8 s / 4 s for zoo models, 2 s / 1 s for the small models (short actions)."""
    return (8.0, 4.0) if bm.config.input_resolution >= 224 else (2.0, 1.0)


def run_suite(opts: BenchOptions, log: Log = lambda s: None) -> dict:
    """Run every requested measurement; returns the JSON-ready result (see SCHEMA)."""
    device = pick_device(opts.device)
    precisions = opts.precisions or _default_precisions(device)
    for p in precisions:
        pick_dtype(device, p)  # refuses fp16 on the CPU with the reason
    result: dict = {"schema": SCHEMA, "machine": machine_info(device), "peak_gflops": {}, "model": [], "decode": None,
                    "end_to_end": []}
    for p in precisions:
        dtype = pick_dtype(device, p)
        result["peak_gflops"][p] = matmul_peak(dtype, device, sizes=opts.peak_sizes, runs=max(3, opts.runs),
                                               warmup=1)["gflops"]
        log(f"matmul peak {p}: {result['peak_gflops'][p]} GFLOP/s")
    models: dict[str, BenchModel] = {}

    def adjacent_peak(p: str) -> float:
        """A quick peak right next to a model row (load drifts); the run's peak is the max seen."""
        g = matmul_peak(pick_dtype(device, p), device, sizes=opts.peak_sizes[:1], runs=3, warmup=1)["gflops"]
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
