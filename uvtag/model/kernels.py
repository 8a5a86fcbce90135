"""What this CPU and this torch build can run: instruction sets and per-dtype kernel probes.

The fused inference engine (`uvtag.model.fast`) calls three CPU kernels beyond plain ATen ops:
- `onednn_linear`: oneDNN's linear with the bias and an optional SiLU fused in
  (`torch.ops.mkldnn._linear_pointwise`);
- `onednn_linear_add`: the same with a residual add fused in (`..._linear_pointwise.binary`);
- `mkl_packed`: MKL's GEMM on a pre-packed weight (`torch.ops.mkl._mkl_linear`; float32 only).
Whether each exists depends on the dtype and the CPU: on a CPU without AVX-512 oneDNN has no
bfloat16 inner product at all ("could not create a primitive descriptor"), and its binary post-op
needs avx512bw/vl/dq or avx_ne_convert. So each kernel is probed once per dtype, on first use, by
running it on a small input and comparing with plain ATen ops; a kernel that fails or disagrees
is never called for that dtype, and the engine uses ATen's linear with an in-place SiLU or
add there instead (the same function, one extra pass over the output).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from uvtag.errors import describe

KERNELS = ("onednn_linear", "onednn_linear_add", "mkl_packed")

# oneDNN's ONEDNN_MAX_CPU_ISA levels, lowest first; bfloat16 arithmetic is native from AVX512_CORE_BF16
_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")
_BF16_LEVEL = _ONEDNN_ISAS.index("AVX512_CORE_BF16")
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's name and instruction-set flags, and any environment caps on what kernels may use."""

    name: str
    flags: frozenset[str]
    caps: tuple[tuple[str, str], ...] = ()  # (variable, value) of the ISA caps set in the environment

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def bf16_flag(self) -> bool:
        """The CPU has bfloat16 arithmetic instructions (avx512_bf16 or AMX)."""
        return "avx512_bf16" in self.flags or self.amx

    @property
    def native_bf16(self) -> bool:
        """bfloat16 runs on the CPU's own instructions: the flag, and no oneDNN cap below it."""
        caps = dict(self.caps)
        return self.bf16_flag and onednn_cap_allows_bf16(caps.get("ONEDNN_MAX_CPU_ISA") or caps.get("DNNL_MAX_CPU_ISA"))

    def summary(self) -> str:
        """One line: name and the instruction sets that matter here, e.g. 'AMD EPYC: AVX2 yes, ...'."""
        def yn(v: bool) -> str:
            return "yes" if v else "no"

        text = (f"{self.name}: AVX2 {yn(self.avx2)}, AVX-512 {yn(self.avx512)}, bf16 {yn(self.bf16_flag)}, "
                f"AMX {yn(self.amx)}")
        if self.caps:
            text += "; capped by " + " ".join(f"{k}={v}" for k, v in self.caps)
        return text


def onednn_cap_allows_bf16(cap: str | None) -> bool:
    """Whether a ONEDNN_MAX_CPU_ISA value leaves oneDNN its bfloat16 instructions (unset/unknown: yes)."""
    if not cap:
        return True
    name = cap.strip().upper()
    return name not in _ONEDNN_ISAS or _ONEDNN_ISAS.index(name) >= _BF16_LEVEL


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in a /proc/cpuinfo text ('', {}) where absent."""
    name, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if name and flags:
            break
    return name, flags


@cache
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once from /proc/cpuinfo; elsewhere the platform's name, no flags)."""
    try:
        name, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        name, flags = "", frozenset()
    caps = tuple((k, os.environ[k]) for k in ISA_CAP_VARIABLES if os.environ.get(k))
    return CpuInfo(name or platform.processor() or platform.machine(), flags, caps)


def _probe(name: str, dtype: torch.dtype) -> str | None:
    """Run kernel `name` in `dtype` on a small input; None when it works, else why not."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 64, generator=g).to(dtype)
    w = torch.randn(96, 64, generator=g).to(dtype)
    b = torch.randn(96, generator=g).to(dtype)
    other = torch.randn(8, 96, generator=g).to(dtype)
    ref = F.linear(x.float(), w.float(), b.float())
    try:
        if name == "onednn_linear":
            if not torch.backends.mkldnn.is_available():
                return "torch was built without oneDNN"
            got, want = torch.ops.mkldnn._linear_pointwise(x, w, b, "swish", [], ""), F.silu(ref)
        elif name == "onednn_linear_add":
            if not torch.backends.mkldnn.is_available():
                return "torch was built without oneDNN"
            got, want = torch.ops.mkldnn._linear_pointwise.binary(x, other, w, b, "add"), ref + other.float()
        elif name == "mkl_packed":
            if dtype != torch.float32:
                return "float32 only"
            packed = torch.ops.mkl._mkl_reorder_linear_weight(w, x.shape[0])
            got, want = torch.ops.mkl._mkl_linear(x, packed, w, b, x.shape[0]), ref
        else:
            raise ValueError(f"unknown kernel {name!r}; known: {', '.join(KERNELS)}")
    except (AttributeError, RuntimeError, NotImplementedError) as e:  # missing op, or no primitive for this CPU
        return describe(e, 120)
    tol = 1e-4 if dtype == torch.float32 else 5e-2  # bfloat16 keeps 8 bits of mantissa
    if got.dtype != dtype or got.shape != want.shape or not torch.allclose(got.float(), want, rtol=tol, atol=tol * 8):
        return "wrong results on a probe input"
    return None


@cache
def kernel_problem(name: str, dtype: torch.dtype) -> str | None:
    """Why CPU kernel `name` cannot run in `dtype` here (None when it can); probed once per process."""
    return _probe(name, dtype)


def kernel_available(name: str, dtype: torch.dtype) -> bool:
    """True when CPU kernel `name` (one of KERNELS) runs correctly in `dtype` on this machine."""
    return kernel_problem(name, dtype) is None


def kernel_plan(dtype: torch.dtype) -> str:
    """Which kernels the fused engine runs on the CPU for its linears in `dtype` here, in one line."""
    parts = []
    if kernel_available("mkl_packed", dtype):
        parts.append("MKL packed GEMM for large weights (SiLU and residual add in place)")
    parts.append("oneDNN linear with SiLU fused" if kernel_available("onednn_linear", dtype)
                 else "ATen linear with in-place SiLU")
    parts.append("oneDNN linear with residual add fused" if kernel_available("onednn_linear_add", dtype)
                 else "ATen linear with in-place residual add")
    return "; ".join(parts)
