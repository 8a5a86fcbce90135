"""`uvtag doctor`: what is installed, what works, what is missing (plain checks, no model run)."""

from __future__ import annotations

import importlib
import os
import platform
import shutil
from pathlib import Path

from uvtag.errors import describe

Check = tuple[str, bool, str]  # (name, ok, detail); names starting "optional" never fail the run


def _module(name: str, label: str, optional: bool = False) -> Check:
    title = f"optional: {label}" if optional else label
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # ImportError, or a broken binary wheel
        return title, False, describe(e)
    return title, True, str(getattr(mod, "__version__", "installed"))


def _torch() -> list[Check]:
    try:
        import torch
    except Exception as e:
        return [("torch", False, f"cannot import torch: {e}; see the README for the install command")]
    rows = [("torch", True, f"{torch.__version__}, {torch.get_num_threads()} CPU threads, "
                            f"CPU capability {torch.backends.cpu.get_cpu_capability()}")]
    rows += _cpu(torch)
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(("optional: CUDA", True, f"{torch.cuda.device_count()} device(s): {names}"))
    else:
        rows.append(("optional: CUDA", False, "no CUDA device visible to torch; uvtag runs on the CPU"))
    return rows


def _cpu(torch) -> list[Check]:
    """The CPU's instruction sets and the kernels each CPU precision runs on it."""
    from uvtag.model.kernels import cpu_info, kernel_plan

    cpu = cpu_info()
    bf16 = kernel_plan(torch.bfloat16)
    bf16 += "" if cpu.native_bf16 else " (no native bf16: --precision bf16 is refused, fp32 is 4-7x faster here)"
    return [("CPU", True, cpu.summary()),
            ("CPU fp32 kernels", True, kernel_plan(torch.float32)),
            ("optional: CPU bf16 kernels", cpu.native_bf16, bf16)]


def _decoders() -> list[Check]:
    from uvtag.video.backends import BACKEND_MODULES
    from uvtag.video.reader import BACKENDS

    rows = []
    for i, name in enumerate(BACKENDS):
        module = BACKEND_MODULES[name]
        ok_name, ok, detail = _module(module, f"video decoder {name}", optional=i > 0)
        rows.append((ok_name, ok, f"{detail} (order {i + 1} of {len(BACKENDS)})" if ok else detail))
    ffmpeg = shutil.which("ffmpeg")
    rows.append(("optional: ffmpeg CLI", ffmpeg is not None, ffmpeg or "not needed; only the decode benchmark compares to it"))
    return rows


def _cache(cache_dir: str | Path | None) -> list[Check]:
    from uvtag.model.download import cache_dir as resolve_cache
    from uvtag.model.download import local_file
    from uvtag.model.zoo import available_models, get_checkpoint

    root = resolve_cache(cache_dir)
    probe = root if root.exists() else root.parent
    writable = os.access(probe, os.W_OK) if probe.exists() else False
    rows = [("cache folder", writable, f"{root} ({'writable' if writable else 'not writable'})")]
    found = [n for n in available_models() if local_file(get_checkpoint(n), cache_dir)]
    rows.append(("optional: checkpoints on disk", bool(found), ", ".join(found) or "none yet: `uvtag download NAME`"))
    return rows


def run_checks(cache_dir: str | Path | None = None) -> list[Check]:
    """Every check as (name, ok, detail)."""
    rows: list[Check] = [("python", True, f"{platform.python_version()} on {platform.machine()}")]
    rows += _torch()
    rows += [_module("numpy", "numpy"), _module("typer", "typer"), _module("rich", "rich")]
    rows += _decoders()
    rows += _cache(cache_dir)
    return rows
