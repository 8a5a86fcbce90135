"""Timing and machine facts: medians, the matmul peak, peak RSS, what the machine is."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from uvtag.model.fast import fused_kernels_available, packed_gemm_available
from uvtag.model.kernels import cpu_info, kernel_available, kernel_plan
from uvtag.model.uniformerv2 import ModelConfig, gmac_per_view

Log = Callable[[str], None]


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
    cpu = cpu_info()
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu.name,
        "cpu_summary": cpu.summary(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib,
        "cpu_features": sorted(cpu.flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx512_fp16"}),
        "isa_caps": dict(cpu.caps),
        "native_bf16": cpu.native_bf16,
        "cpu_kernels": {"fp32": kernel_plan(torch.float32), "bf16": kernel_plan(torch.bfloat16)},
        "torch": torch.__version__,
        "fused_kernels": fused_kernels_available(),
        "packed_gemm": packed_gemm_available(),
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

    On the CPU every GEMM torch can call is tried (torch.mm, i.e. MKL for float32; oneDNN's linear;
    for float32 MKL with the weight pre-packed, as the fused engine runs its linears), so the peak is
    the best any reaches.
    """
    best = {"gflops": 0.0, "n": None, "kernel": None}
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        kernels = {"mm": lambda: torch.mm(a, b)}
        if device.type == "cpu" and kernel_available("onednn_linear", dtype):
            kernels["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
        if device.type == "cpu" and dtype == torch.float32 and packed_gemm_available():
            packed = torch.ops.mkl._mkl_reorder_linear_weight(b, n)
            kernels["mkl packed"] = lambda: torch.ops.mkl._mkl_linear(a, packed, b, None, n)
        for name, kernel in kernels.items():

            def step() -> None:
                kernel()
                _sync(device)

            med, _ = median_seconds(step, runs, warmup)
            gflops = 2 * n**3 / med / 1e9
            if gflops > best["gflops"]:
                best = {"gflops": round(gflops, 1), "n": n, "kernel": name}
    return best
