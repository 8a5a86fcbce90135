"""The only code that calls the model: device and precision choice, batched forward passes.

Clips go in as float32 [B, 3, T, H, W] (normalised, on the CPU); logits come back as float32
[B, num_classes] on the CPU, whatever the device and precision used inside. `embed` gives the
video embeddings too (float32 [B, C], the vector the classifier head reads) with the logits the
head makes of them: in eager mode the same numbers as `logits` for the same batches.

Choices (each kept because `uvtag bench` measured it, see the README's benchmark table):
- the engine, chosen once per predictor: "fused" (the default) installs `uvtag.model.fast`'s
  fused forwards on the model (MKL/oneDNN on the CPU where the CPU has them for the dtype, cuBLAS
  epilogues and in-place activations on CUDA), which run whenever the weights are in the compute
  dtype; "reference" runs the model's own forwards; "compile" wraps the reference model in
  `torch.compile` (CUDA graphs on CUDA via "reduce-overhead"), and pads a short last batch to the
  batch size, so that one compiled shape serves every call;
- the MKL-packed float32 linears of the fused engine: on unless `packed=False`, or unless
  `UVTAG_PACKED_GEMM=0` is in the environment when the predictor is built;
- bf16 on a CPU without native bfloat16 (no avx512_bf16 / AMX) is refused by `pick_dtype`:
  emulated, it is 4-7x slower than fp32;
- bfloat16/float16 cast the weights once (CPU bfloat16: 2.3x faster than autocast, which
  re-casts every weight on every call; CUDA: see the README's GPU table); `cast_weights=False`
  keeps float32 weights and runs under autocast instead (where the fused forwards run the
  reference ones);
- CUDA batches are pinned and copied with non_blocking; CUDA float32 runs without TF32;
- small models (< SMALL_MODEL_GMAC per clip) run with one intra-op thread on the CPU: their ops
  are too small to split, and two threads stall at every op's barrier whenever the decoding
  thread holds a core (motion-tiny localize: 20 s -> 4.9 s on 2 cores).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext

import torch

from uvtag.errors import DeviceError, UsageError
from uvtag.model.fast import FusedEngine, accelerate, packed_gemm_from_environment, restore
from uvtag.model.kernels import cpu_info
from uvtag.model.uniformerv2 import gmac_per_view

SMALL_MODEL_GMAC = 2.0  # below this per clip, one CPU thread beats two (see the module docstring)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINES = ("fused", "reference", "compile")


def pick_device(requested: str | None = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda[:i]' without CUDA is a DeviceError."""
    name = (requested or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {requested} asked for CUDA, but torch sees no CUDA GPU here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise DeviceError(f"device {requested!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def default_batch_size(model: torch.nn.Module, device: torch.device) -> int:
    """Clips per forward pass when the user gives none: 8 on CUDA; on the CPU 2, or 16 for small
    models (motion-tiny on 1 thread: 116 clips/s at batch 2, 142 at 4, 179 at 16, 187 at 32)."""
    if device.type == "cuda":
        return 8
    config = getattr(model, "config", None)
    return 16 if config is not None and gmac_per_view(config) < SMALL_MODEL_GMAC else 2


def pick_dtype(device: torch.device, precision: str = "auto", *, emulated_bf16: bool = False) -> torch.dtype:
    """Compute dtype: fp32 on CPU by default (exact to the official numbers); bf16/fp16 on CUDA.

    bf16 on a CPU without native bfloat16 instructions is refused (UsageError) unless
    `emulated_bf16` (benchmarks): emulated, B/16 and motion-tiny ran 3.8-6.7x slower than fp32
    (tests/benchmarks/bench_precision.py, kernels capped to AVX2), so nothing is gained by it.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("fp16 on the CPU is about 70x slower than fp32 here; use --precision fp32 or bf16")
    if precision == "bf16" and device.type == "cpu" and not emulated_bf16 and not cpu_info().native_bf16:
        raise UsageError(f"bf16 on this CPU ({cpu_info().summary()}) has no native bfloat16 instructions "
                         "(avx512_bf16 or AMX) and runs 4-7x slower than fp32; use --precision fp32, the CPU default")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Predictor:
    """Runs a model over batches of clips on one device, in one precision.

    Args:
        model: a UniFormerV2 in eval mode. Changed in place: moved to `device`, cast when
            `cast_weights`, and given the fused engine's forwards (or stripped of any, for the other
            engines), so predictors sharing one model share the last one's engine.
        device: where to run.
        dtype: compute precision. float32 runs plainly; bfloat16/float16 cast the weights once by
            default, or run under autocast with float32 weights when `cast_weights=False`.
        batch_size: clips per forward pass; halved automatically on out-of-memory.
        engine: "fused" (the default), "reference" or "compile" (first call compiles: tens of
            seconds); see the module docstring.
        cast_weights: None or True = cast the weights to a bfloat16/float16 `dtype` once (the fused
            engine then runs in that dtype); False = keep float32 weights and run under autocast.
            Ignored for float32.
        packed: the fused engine's MKL-packed float32 linears; None = on unless the environment has
            `UVTAG_PACKED_GEMM=0` (read here, once).
        threads: CPU intra-op threads while this predictor runs; None = 1 for small models,
            torch's setting otherwise.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32,
                 batch_size: int = 4, *, engine: str = "fused", cast_weights: bool | None = None,
                 packed: bool | None = None, threads: int | None = None) -> None:
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        if engine not in ENGINES:
            raise UsageError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if cast_weights is None:
            cast_weights = dtype != torch.float32
        self.cast_weights = bool(cast_weights) and dtype != torch.float32
        model = model.eval().to(device)
        self.model = model.to(dtype) if self.cast_weights else model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.engine = engine
        config = getattr(model, "config", None)
        small = config is not None and gmac_per_view(config) < SMALL_MODEL_GMAC
        self.threads = threads if threads is not None else (1 if small and device.type == "cpu" else None)
        self.fused: FusedEngine | None = None
        if engine == "fused":
            self.fused = accelerate(self.model, packed=packed_gemm_from_environment() if packed is None else packed)
        else:
            restore(self.model)  # compiled graphs are traced through the reference forwards
        self._call = self.model
        if engine == "compile":
            self._call = self._compiled(self.model)

    def _compiled(self, fn):
        mode = "reduce-overhead" if self.device.type == "cuda" else None  # CUDA graphs for fixed shapes
        return torch.compile(fn, dynamic=False, mode=mode)

    def _autocast(self):
        if self.dtype == torch.float32 or self.cast_weights:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _to_device(self, clips: torch.Tensor) -> torch.Tensor:
        """Host batch -> model input: pinned + non-blocking on CUDA, cast when the weights are."""
        if self.device.type == "cuda" and clips.device.type == "cpu":  # clips prepared on the GPU stay there
            if not clips.is_pinned():
                clips = clips.pin_memory()
            clips = clips.to(self.device, non_blocking=True)
        return clips.to(self.dtype) if self.cast_weights else clips

    def _forward(self, clips: torch.Tensor) -> torch.Tensor:
        n = clips.shape[0]
        with torch.inference_mode(), self._autocast(), self._no_tf32():
            return self._call(self._input(clips))[:n].float().cpu()

    def _forward_embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = clips.shape[0]
        with torch.inference_mode(), self._autocast(), self._no_tf32():
            # eager under every engine: torch.compile of the bound `embed` gave NaN logits with the
            # kernels capped to AVX2 (an AVX2-only CPU), while eager and the compiled forward agreed
            embeddings, logits = self.model.embed(self._input(clips))
            return embeddings[:n].float().cpu(), logits[:n].float().cpu()

    def _input(self, clips: torch.Tensor) -> torch.Tensor:
        n = clips.shape[0]
        if self.engine == "compile" and n < self.batch_size:  # one shape for the compiled graph: pad, then drop
            clips = torch.cat([clips, clips[-1:].expand(self.batch_size - n, *clips.shape[1:])])
        return self._to_device(clips)

    @contextmanager
    def _no_tf32(self):
        """float32 on CUDA means float32: cuDNN's default TF32 convolutions moved the fixtures'
        logits by up to 8e-4 (H100); with it off they match the official ones to 1.2e-6."""
        if self.device.type != "cuda" or self.dtype != torch.float32:
            yield
            return
        before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before

    @contextmanager
    def _threads(self):
        before = torch.get_num_threads()
        if self.threads is not None and self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def logits(self, clips: torch.Tensor) -> torch.Tensor:
        """clips float [B, 3, T, H, W] -> logits float32 [B, num_classes] on the CPU."""
        with self._threads():
            (logits,) = self._batched(clips, lambda chunk: (self._forward(chunk),), 1)
            return logits

    def embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clips float [B, 3, T, H, W] -> (embeddings float32 [B, C], logits float32 [B, num_classes]),
        both on the CPU; logits = the head applied to the embeddings (batched as `logits`)."""
        with self._threads():
            embeddings, logits = self._batched(clips, self._forward_embed, 2)
            return embeddings, logits

    def _batched(self, clips: torch.Tensor, run: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
                 outputs: int) -> tuple[torch.Tensor, ...]:
        """`run` over chunks of `batch_size` clips, its `outputs` tensors concatenated per position
        (empty tensors for no clips); on out-of-memory the batch size is halved and the chunk retried."""
        out: list[tuple[torch.Tensor, ...]] = []
        start = 0
        while start < clips.shape[0]:
            chunk = clips[start : start + self.batch_size]
            try:
                out.append(run(chunk))
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                self.batch_size = max(1, self.batch_size // 2)  # back off and retry this chunk
                continue
            start += chunk.shape[0]
        if not out:
            return tuple(torch.empty(0) for _ in range(outputs))
        return tuple(torch.cat(parts) for parts in zip(*out))

    def stream(self, items: Iterable[tuple[object, torch.Tensor]], *, embed: bool = False) -> Iterator[tuple]:
        """Batch (key, clip [3, T, H, W]) pairs across calls; yields, in order, (key, logits
        [num_classes]), or with `embed` (key, logits [num_classes], embedding [C])."""
        keys: list[object] = []
        clips: list[torch.Tensor] = []
        for key, clip in items:
            keys.append(key)
            clips.append(clip)
            if len(clips) >= self.batch_size:
                yield from self._rows(keys, torch.stack(clips), embed)
                keys, clips = [], []
        if clips:
            yield from self._rows(keys, torch.stack(clips), embed)

    def _rows(self, keys: list[object], clips: torch.Tensor, embed: bool) -> Iterator[tuple]:
        if not embed:
            yield from zip(keys, self.logits(clips))
            return
        embeddings, logits = self.embed(clips)
        yield from zip(keys, logits, embeddings)
