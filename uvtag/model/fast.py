"""The fast inference engine: fused forwards installed on a built UniFormerV2.

`accelerate(model)` makes a `FusedEngine` and installs its forwards on every `LocalBlock` and
`GlobalDecoder` of `model`, as instance attributes named `forward`: `nn.Module.__call__`, hooks,
parameters and `state_dict()` stay the reference model's, and `restore(model)` takes the forwards
off again. The engine computes the reference function with fewer passes over memory: per backbone
block five linears with the bias, the QuickGELU and the residual add fused in, two LayerNorms and
SDPA. QuickGELU(h) = silu(1.702 h) / 1.702: the 1.702 is folded into ln_2 and c_fc's bias, the
1/1.702 into a cached copy of c_proj's weight.

Kernels per linear:
- CPU, float32 weights of at least `PACK_MIN_NUMEL` elements, when the engine is `packed`: MKL's
  GEMM on the weight pre-packed once (as torch.compile's CPU freezing does), then an in-place
  SiLU or residual add. 9% faster for B/16 than oneDNN's linear at batch 1 and 4 (interleaved A/B
  in one process; README, Performance), at the cost of the packed copies' memory (~0.55 GB RSS
  for B/16). Smaller weights are not packed: MKL's packed buffer has a floor of ~8 MB.
- CPU otherwise: oneDNN's linear with the SiLU or the residual add fused in, where this CPU has
  it for the dtype; ATen's linear with an in-place SiLU or add where it has not. Which kernels
  exist per dtype is probed once (`uvtag.model.kernels`): a kernel this CPU lacks is never called.
- CUDA: ATen's linear (cuBLAS adds the bias in its epilogue), one in-place SiLU, one in-place add.

An installed forward takes the fused path only where nothing can observe the difference (the
function is the same to the dtype's rounding): CPU tensors in float32 or bfloat16, or CUDA
tensors in float32, bfloat16 or float16, whose dtype equals the weights', with autograd and
autocast off. Anything else (training, autograd, autocast, float64) runs the module's reference
forward.

The engine owns the weights it derives (the scaled c_proj copies, the MKL packings) in a
`DerivedWeights` cache, each entry tied to its weight's storage, version, dtype and device, so
that `load_state_dict`, in-place changes, `.to(dtype)` and device moves rebuild it on the next
call; a weight's entries are dropped when the weight is freed.
"""

from __future__ import annotations

import copy
import os
import weakref
from collections.abc import Callable, Hashable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from uvtag.model.kernels import kernel_available
from uvtag.model.uniformerv2 import GlobalDecoder, LocalBlock, PackedAttention, QuickGELU

__all__ = ["FusedEngine", "accelerate", "engine_of", "fused_kernels_available", "packed_gemm_available",
           "packed_gemm_from_environment", "restore"]

PACK_MIN_NUMEL = 256 * 256
PACKED_GEMM_VARIABLE = "UVTAG_PACKED_GEMM"  # "0" turns the MKL-packed float32 linears off


def fused_kernels_available(dtype: torch.dtype = torch.float32) -> bool:
    """True when oneDNN's fused linear (`torch.ops.mkldnn._linear_pointwise`, with SiLU and with a
    residual add) runs in `dtype` on this CPU."""
    return kernel_available("onednn_linear", dtype) and kernel_available("onednn_linear_add", dtype)


def packed_gemm_available() -> bool:
    """True when this torch build has MKL's pre-packed float32 linear (`torch.ops.mkl._mkl_linear`)."""
    return kernel_available("mkl_packed", torch.float32)


def packed_gemm_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment leaves the packed float32 linears on (`UVTAG_PACKED_GEMM=0` turns them off)."""
    return environ.get(PACKED_GEMM_VARIABLE, "1") != "0"


# --------------------------------------------------------------------------------------------
# Weights derived once and cached


def _stamp(w: torch.Tensor) -> tuple:
    """What a derived copy of w depends on: its storage (held weakly, so it cannot be mistaken for a
    later storage at the same address), where w lies in it, its version, dtype and device."""
    return (StorageWeakRef(w.untyped_storage()), w.storage_offset(), tuple(w.shape), w.stride(), w._version,
            w.dtype, w.device)


def _forget(cache_ref: weakref.ref, key: int) -> None:
    cache = cache_ref()
    if cache is not None:
        cache._by_weight.pop(key, None)


class DerivedWeights:
    """Tensors computed from weights (a scaled copy, an MKL packing), cached per weight and kind.

    An entry is rebuilt when its weight's `_stamp` changed (`load_state_dict` and in-place changes
    bump the version; `.to(dtype)` and device moves give the weight a new storage), and dropped
    when the weight is freed. A copied cache (deepcopy) starts empty.
    """

    def __init__(self) -> None:
        # id(weight) -> (weak reference to it, {kind: (stamp, derived tensor)})
        self._by_weight: dict[int, tuple[weakref.ref, dict[Hashable, tuple[tuple, torch.Tensor]]]] = {}

    def get(self, w: torch.Tensor, kind: Hashable, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The `kind` tensor derived from w by `make(w.detach())`, made on first use and after w changed."""
        slot = self._by_weight.get(id(w))
        if slot is None or slot[0]() is not w:  # first sight of this weight
            slot = (weakref.ref(w), {})
            self._by_weight[id(w)] = slot
            weakref.finalize(w, _forget, weakref.ref(self), id(w))  # its entries go with it
        stamp = _stamp(w)
        entry = slot[1].get(kind)
        if entry is None or entry[0] != stamp:  # new, or w changed since
            with torch.inference_mode(False), torch.no_grad():
                entry = (stamp, make(w.detach()))
            slot[1][kind] = entry
        return entry[1]

    def peek(self, w: torch.Tensor, kind: Hashable) -> torch.Tensor | None:
        """The cached `kind` tensor of w if it is there and still matches w, else None."""
        slot = self._by_weight.get(id(w))
        if slot is None or slot[0]() is not w:
            return None
        entry = slot[1].get(kind)
        return entry[1] if entry is not None and entry[0] == _stamp(w) else None

    def __len__(self) -> int:
        """Weights with cached entries."""
        return len(self._by_weight)

    def __deepcopy__(self, memo: dict) -> DerivedWeights:
        return DerivedWeights()


# --------------------------------------------------------------------------------------------
# The engine


def _layer_norm2d(x: torch.Tensor, ln: nn.LayerNorm, scale: float = 1.0) -> torch.Tensor:
    """scale * LayerNorm(x) on [M, C], in x's dtype (the kernel accumulates in float32)."""
    w, b = ln.weight.to(x.dtype), ln.bias.to(x.dtype)
    if scale != 1.0:
        w, b = w * scale, b * scale
    return F.layer_norm(x, ln.normalized_shape, w, b, ln.eps)


class FusedEngine:
    """Fused inference forwards for a UniFormerV2's `LocalBlock`s and `GlobalDecoder`s, with their caches.

    Args:
        packed: run float32 CPU linears with at least `pack_min_numel` weight elements through
            MKL's GEMM on pre-packed weights (where this torch build has it).
        pack_min_numel: the smallest weight that is packed.
    """

    def __init__(self, *, packed: bool = True, pack_min_numel: int = PACK_MIN_NUMEL) -> None:
        self.packed = packed
        self.pack_min_numel = pack_min_numel
        self.weights = DerivedWeights()

    def install(self, model: nn.Module) -> nn.Module:
        """Put this engine's forwards on every LocalBlock and GlobalDecoder of `model` (in place)."""
        for module in model.modules():
            if isinstance(module, LocalBlock):
                module.forward = _InstalledForward(self.local_block, module)
            elif isinstance(module, GlobalDecoder):
                module.forward = _InstalledForward(self.global_decoder, module)
        return model

    # -------------------------------------------------------------- when the fused path runs

    @staticmethod
    def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether the fused path may run for activations x against a layer's weight."""
        if weight.dtype != x.dtype or torch.is_grad_enabled():
            return False
        if x.device.type == "cuda":
            return x.dtype in (torch.float32, torch.bfloat16, torch.float16) and not torch.is_autocast_enabled("cuda")
        return x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and not torch.is_autocast_enabled("cpu")

    # -------------------------------------------------------------- linears

    def packed_weight(self, w: torch.Tensor, rows: int) -> torch.Tensor | None:
        """w packed for MKL's GEMM (cached until w changes), or None where packing does not apply."""
        if not self.packed or w.dtype != torch.float32 or w.numel() < self.pack_min_numel:
            return None
        if w._base is not None or not w.is_contiguous():  # a view made per call would be packed per call
            return None
        if not packed_gemm_available():
            return None
        return self.weights.get(w, "mkl_packed", lambda t: torch.ops.mkl._mkl_reorder_linear_weight(t, rows))

    def scaled_weight(self, w: torch.Tensor, scale: float) -> torch.Tensor:
        """w * scale, contiguous (cached until w changes; nothing is added to the model's state_dict)."""
        return self.weights.get(w, ("scaled", scale), lambda t: (t * scale).contiguous())

    def linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, post: str = "none") -> torch.Tensor:
        """x [M, K] @ w[O, K].T + b, then `post` ("none" or "swish") -> [M, O].

        CPU: MKL (packed float32) or one oneDNN pass where the CPU has them for x's dtype; otherwise,
        and on CUDA (cuBLAS adds the bias in its epilogue), ATen's linear and an in-place SiLU.
        """
        if x.device.type == "cpu":
            packed = self.packed_weight(w, x.shape[0])
            if packed is not None:
                y = torch.ops.mkl._mkl_linear(x, packed, w, b, x.shape[0])
                return F.silu(y, inplace=True) if post == "swish" else y
            if kernel_available("onednn_linear", x.dtype):
                return torch.ops.mkldnn._linear_pointwise(x, w, b, post, [], "")
        y = F.linear(x, w, b)
        return F.silu(y, inplace=True) if post == "swish" else y

    def linear_add(self, x: torch.Tensor, other: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """other + x @ w.T + b; x [M, K], other [M, O] -> [M, O].

        CPU: MKL (packed float32) then an in-place add, or one oneDNN pass, where the CPU has them for
        x's dtype; otherwise, and on CUDA, ATen's linear and an in-place add.
        """
        if x.device.type == "cpu":
            packed = self.packed_weight(w, x.shape[0])
            if packed is not None:
                return torch.ops.mkl._mkl_linear(x, packed, w, b, x.shape[0]).add_(other)
            if kernel_available("onednn_linear_add", x.dtype):
                return torch.ops.mkldnn._linear_pointwise.binary(x, other, w, b, "add")
        return F.linear(x, w, b).add_(other)

    # -------------------------------------------------------------- attention

    def attention_residual(self, attn: PackedAttention, h: torch.Tensor, residual: torch.Tensor, B: int,
                           L: int) -> torch.Tensor:
        """residual + attn(h) on flattened tokens. h, residual: [B*L, C] -> [B*L, C]."""
        C = h.shape[1]
        qkv = self.linear(h, attn.in_proj_weight, attn.in_proj_bias)  # [B*L, 3C]
        q, k, v = qkv.view(B, L, 3, attn.heads, C // attn.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, h, L, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, h, L, d]; the CPU kernel stores it [B, L, h, d]
        return self.linear_add(out.transpose(1, 2).reshape(B * L, C), residual, attn.out_proj.weight, attn.out_proj.bias)

    def cross(self, attn: PackedAttention, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """attn.cross with the key/value projection's bias fused in (no broadcast copy).
        query [B, Q, C], memory [B, M, C] -> [B, Q, C]."""
        B, Q, C = query.shape
        M, h = memory.shape[1], attn.heads
        w, b = attn.in_proj_weight, attn.in_proj_bias
        q = F.linear(query, w[:C], b[:C]).view(B, Q, h, C // h).transpose(1, 2)  # [B, h, Q, d]
        kv = self.linear(memory.reshape(B * M, C), w[C:], b[C:])
        kv = kv.view(B, M, 2, h, C // h).permute(2, 0, 3, 1, 4)  # 2 x [B, h, M, d]
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # [B, h, Q, d]
        return attn.out_proj(out.transpose(1, 2).reshape(B, Q, C))

    # -------------------------------------------------------------- installed forwards

    def local_block(self, block: LocalBlock, x: torch.Tensor, n: int) -> torch.Tensor:
        """`LocalBlock.forward`: 5 fused linears, 2 LayerNorms and SDPA per block, no other passes."""
        if not self.applies(x, block.attn.in_proj_weight):
            return type(block).forward(block, x, n)
        NT, L, C = x.shape
        if block.use_lmhra:
            x = block.add_local(block.lmhra1, x, n)
        x2 = x.reshape(NT * L, C)
        x2 = self.attention_residual(block.attn, _layer_norm2d(x2, block.ln_1), x2, NT, L)
        if block.double:
            x2 = block.add_local(block.lmhra2, x2.view(NT, L, C), n).reshape(NT * L, C)
        a = QuickGELU.ALPHA
        fc, proj = block.mlp.c_fc, block.mlp.c_proj
        h = self.linear(_layer_norm2d(x2, block.ln_2, a), fc.weight, self.scaled_weight(fc.bias, a), "swish")  # a * QuickGELU
        x2 = self.linear_add(h, x2, self.scaled_weight(proj.weight, 1.0 / a), proj.bias)
        return x2.view(NT, L, C)

    def global_decoder(self, dec: GlobalDecoder, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """`GlobalDecoder.forward` with the fused key/value projection."""
        if not self.applies(memory, dec.attn.in_proj_weight):
            return type(dec).forward(dec, query, memory)
        query = query + dec.drop_path(self.cross(dec.attn, dec.ln_1(query), dec.ln_3(memory)))
        return query + dec.drop_path(dec.mlp(dec.ln_2(query)))


class _InstalledForward:
    """One module's `forward` attribute: an engine method called with the module first.

    The module is held weakly, so that a model and its engine form no reference cycle (the model,
    its weights and the engine's cached copies are freed as soon as the model is dropped).
    """

    __slots__ = ("method", "module")

    def __init__(self, method: Callable[..., torch.Tensor], module: nn.Module) -> None:
        self.method = method
        self.module = weakref.ref(module)

    def __call__(self, *args: object) -> torch.Tensor:
        return self.method(self.module(), *args)

    @property
    def engine(self) -> FusedEngine:
        return self.method.__self__

    def __deepcopy__(self, memo: dict) -> _InstalledForward:
        # copy.deepcopy registers a module's copy in memo before it copies the module's attributes
        module_copy = memo.get(id(self.module()))
        if module_copy is None:
            raise TypeError("an installed forward is copied with its module only")
        engine = copy.deepcopy(self.engine, memo)
        return _InstalledForward(getattr(engine, self.method.__name__), module_copy)


def accelerate(model: nn.Module, *, packed: bool = True) -> FusedEngine:
    """Install a new FusedEngine's forwards on `model` (replacing any engine it had) and return the engine."""
    engine = FusedEngine(packed=packed)
    engine.install(model)
    return engine


def engine_of(model: nn.Module) -> FusedEngine | None:
    """The engine installed on `model`, or None where it runs its reference forwards."""
    for module in model.modules():
        forward = module.__dict__.get("forward")
        if isinstance(forward, _InstalledForward):
            return forward.engine
    return None


def restore(model: nn.Module) -> nn.Module:
    """Take any installed engine forwards off `model` (in place): it runs the reference forwards again."""
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), _InstalledForward):
            del module.forward
    return model
