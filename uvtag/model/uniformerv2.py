"""UniFormerV2 (arXiv 2211.09552), exact to the official implementation's checkpoints.

A CLIP image ViT run frame by frame ("local UniBlocks", optionally with local temporal MHRA and a
temporally downsampling patch embedding), read by a side branch of global UniBlocks (a 3x3x3
depthwise "DPE" conv plus a one-query cross-attention decoder), fused with the backbone's
class token and classified by a LayerNorm + Linear head.

Every attribute name equals the official state_dict key (`backbone.conv1.weight`,
`backbone.transformer.resblocks.{i}.lmhra1.pos_embed.{0..3}`, `...dpe.{j}`, `...dec.{j}`,
`...balance`, `...proj.{0,2}`); class names are ours.

Names used for dimensions throughout:
    N  videos in the batch            C  backbone width (= n_dim of the global blocks)
    T  frames seen by the transformer (input frames, halved by temporal downsampling)
    g  patches per side (input_resolution // patch_size)   L = 1 + g*g tokens per frame
Layouts:
    input clip             [N, 3, T_in, R, R]   (normalised pixels, channels first then time)
    backbone token stream  [N*T, L, C]          batch-first; row n*T + t; token 0 is the frame's
                                                class token, token 1 + h*g + w is patch (h, w)
                                                (the official code runs sequence-first [L, N*T, C];
                                                batch-first saves a transpose around every SDPA call)
    video volume           [N, C, T, g, g]      for LMHRA and DPE convolutions
    global query           [N, 1, C]

This file is the reference network: one forward per module, plain PyTorch ops, training and
inference alike. The fast inference engine (`uvtag.model.fast`) installs fused forwards on a
built model's blocks; it depends on this file, never the reverse.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModelConfig", "UniFormerV2", "build_model", "gmac_per_view"]


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one UniFormerV2 network (no weights, no preprocessing).

    Field names mirror the official `VisionTransformer` keyword arguments. The last group is
    training-only (dropout and drop-path are the identity in eval mode).
    """

    input_resolution: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    t_size: int = 8  # input frames per clip (before temporal downsampling)
    temporal_downsample: bool = False
    no_lmhra: bool = True
    double_lmhra: bool = True
    dw_reduction: float = 1.5
    return_list: tuple[int, ...] = (8, 9, 10, 11)
    n_layers: int = 4
    n_dim: int = 768
    n_head: int = 12
    mlp_factor: float = 4.0
    num_classes: int = 400
    frozen: bool = False
    output_dim: int = 512  # CLIP projection size; stored by the official code, never used
    # training only
    backbone_drop_path_rate: float = 0.0
    drop_path_rate: float = 0.0
    mlp_dropout: tuple[float, ...] = field(default=(0.5, 0.5, 0.5, 0.5))
    cls_dropout: float = 0.5

    # official kwargs that change nothing numerically (gradient checkpointing)
    _IGNORED_OFFICIAL = ("use_checkpoint", "checkpoint_num")

    def __post_init__(self) -> None:
        object.__setattr__(self, "return_list", tuple(int(i) for i in self.return_list))
        object.__setattr__(self, "mlp_dropout", tuple(float(p) for p in self.mlp_dropout))
        problems = self._problems()
        if problems:
            raise ValueError("invalid UniFormerV2 config: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        out = []
        if self.input_resolution % self.patch_size:
            out.append(f"input_resolution {self.input_resolution} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            out.append(f"width {self.width} is not divisible by heads {self.heads}")
        if self.n_dim != self.width:
            out.append(f"n_dim {self.n_dim} must equal width {self.width} (the global blocks read backbone tokens)")
        if self.n_dim % self.n_head:
            out.append(f"n_dim {self.n_dim} is not divisible by n_head {self.n_head}")
        if self.t_size < 1:
            out.append(f"t_size must be >= 1, got {self.t_size}")
        if self.temporal_downsample and self.t_size % 2:
            out.append(f"temporal downsampling halves the frames, so t_size must be even, got {self.t_size}")
        if len(self.return_list) != self.n_layers:
            out.append(f"return_list {list(self.return_list)} must have n_layers={self.n_layers} entries")
        if any(not 0 <= i < self.layers for i in self.return_list):
            out.append(f"return_list {list(self.return_list)} must index backbone blocks 0..{self.layers - 1}")
        if list(self.return_list) != sorted(set(self.return_list)):
            out.append(f"return_list {list(self.return_list)} must be strictly increasing")
        if len(self.mlp_dropout) < self.n_layers:
            out.append(f"mlp_dropout needs {self.n_layers} entries, got {len(self.mlp_dropout)}")
        if self.num_classes < 1:
            out.append(f"num_classes must be >= 1, got {self.num_classes}")
        return out

    @classmethod
    def from_official(cls, kwargs: dict) -> "ModelConfig":
        """Build from the official `VisionTransformer(**kwargs)` keyword arguments."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(kwargs) - known - set(cls._IGNORED_OFFICIAL)
        if unknown:
            raise ValueError(f"unknown official UniFormerV2 arguments: {sorted(unknown)}")
        return cls(**{k: v for k, v in kwargs.items() if k in known})

    def to_dict(self) -> dict:
        """Plain-data form (lists, numbers, bools) for saving inside checkpoints."""
        d = asdict(self)
        d["return_list"] = list(self.return_list)
        d["mlp_dropout"] = list(self.mlp_dropout)
        return d

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.input_resolution // self.patch_size

    @property
    def frames_inside(self) -> int:
        """Frames the transformer sees (t_size, halved by temporal downsampling)."""
        return self.t_size // 2 if self.temporal_downsample else self.t_size

    @property
    def lmhra_dim(self) -> int:
        """Bottleneck width of the local MHRA (official: int(C // dw_reduction))."""
        return int(self.width // self.dw_reduction)


def gmac_per_view(config: ModelConfig) -> float:
    """Multiply-accumulates of one forward pass per view (one clip), in 1e9.

    Counts every matmul/conv: patch embedding, per backbone block 12*C^2 per token plus 2*L^2*C
    per frame for attention, local MHRA convolutions, DPE (27 per patch and channel), the global
    decoders and the head (LayerNorm, softmax and activations are not counted). Equals the
    spec's table (B/16 8x224: 148.1, L/14 8x224: 665.6).
    """
    T, g, C, p = config.frames_inside, config.grid, config.width, config.patch_size
    L = 1 + g * g
    macs = T * g * g * C * 3 * p * p * (3 if config.temporal_downsample else 1)
    block = T * L * 12 * C * C + 2 * T * L * L * C
    if not config.no_lmhra:
        r = config.lmhra_dim
        block += (2 if config.double_lmhra else 1) * (2 * T * g * g * C * r + 3 * T * g * g * r)
    macs += config.layers * block
    hidden = round(config.mlp_factor * C)
    macs += config.n_layers * (27 * T * g * g * C + 2 * C * C + 2 * T * L * C * C + 2 * T * L * C + 2 * C * hidden)
    return (macs + C * config.num_classes) / 1e9


# --------------------------------------------------------------------------------------------
# Small pieces


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back (CLIP's fp16-safe LayerNorm, same keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            return super().forward(x)
        w, b = self.weight, self.bias  # .float() is a no-op for float32 parameters
        return F.layer_norm(x.float(), self.normalized_shape, w.float(), b.float(), self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation CLIP was trained with."""

    ALPHA = 1.702

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.ALPHA * x)


class DropPath(nn.Module):
    """Stochastic depth per sample (training only; identity in eval mode or at p=0)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


def _linspace(stop: float, n: int) -> list[float]:
    """n drop-path rates from 0 to stop (plain Python: works on the meta device too)."""
    return [stop * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def _mlp(dim: int, hidden: int, dropout: float | None = None) -> nn.Sequential:
    layers = [("c_fc", nn.Linear(dim, hidden)), ("gelu", QuickGELU())]
    if dropout is not None:
        layers.append(("dropout", nn.Dropout(dropout)))
    layers.append(("c_proj", nn.Linear(hidden, dim)))
    return nn.Sequential(OrderedDict(layers))


class PackedAttention(nn.Module):
    """Multi-head attention with `nn.MultiheadAttention`'s parameter layout.

    `in_proj_weight` [3C, C] holds the q, k, v projections row-stacked, as in the official
    checkpoints. The attention itself goes through `F.scaled_dot_product_attention`.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over tokens. x: [B, L, C] -> [B, L, C]."""
        B, L, C = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # [B, L, 3C]
        q, k, v = qkv.view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, h, L, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, h, L, d]
        return self.out_proj(out.transpose(1, 2).reshape(B, L, C))

    def cross(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Cross-attention. query [B, Q, C] attends to memory [B, M, C] -> [B, Q, C]."""
        B, Q, C = query.shape
        M, h = memory.shape[1], self.heads
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, w[:C], b[:C]).view(B, Q, h, C // h).transpose(1, 2)  # [B, h, Q, d]
        kv = F.linear(memory, w[C:], b[C:]).view(B, M, 2, h, C // h).permute(2, 0, 3, 1, 4)  # 2 x [B, h, M, d]
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # [B, h, Q, d]
        return self.out_proj(out.transpose(1, 2).reshape(B, Q, C))


# --------------------------------------------------------------------------------------------
# Local UniBlock: CLIP residual block with optional local temporal MHRA


class LocalMHRA(nn.Module):
    """Local temporal relation aggregator: BN -> 1x1x1 down -> depthwise temporal k=3 -> 1x1x1 up."""

    def __init__(self, dim: int, reduced: int) -> None:
        super().__init__()
        self.pos_embed = nn.Sequential(
            nn.BatchNorm3d(dim),
            nn.Conv3d(dim, reduced, kernel_size=1),
            nn.Conv3d(reduced, reduced, kernel_size=(3, 1, 1), padding=(1, 0, 0), groups=reduced),
            nn.Conv3d(reduced, dim, kernel_size=1),
        )
        nn.init.zeros_(self.pos_embed[3].weight)  # starts as a no-op, as officially
        nn.init.zeros_(self.pos_embed[3].bias)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """volume [N, C, T, g, g] -> the residual to add, same shape."""
        return self.pos_embed(volume)


def _to_volume(patches: torch.Tensor, n: int) -> torch.Tensor:
    """[N*T, g*g, C] patch tokens -> [N, C, T, g, g], laid out for the depthwise convolutions.

    On CUDA the volume is made contiguous first: cuDNN's depthwise 3x3x3 convolution takes 0.72 ms
    on a contiguous B/16 batch of 32 clips but 4.6 ms on the strided view (H100, bf16 and fp32
    alike). On the CPU the view is as fast as either copy (oneDNN reorders it itself).
    """
    nt, hw, c = patches.shape
    g = math.isqrt(hw)
    vol = patches.view(n, nt // n, g, g, c).permute(0, 4, 1, 2, 3)
    return vol.contiguous() if patches.device.type == "cuda" else vol


def _from_volume(volume: torch.Tensor) -> torch.Tensor:
    """[N, C, T, g, g] -> [N*T, g*g, C] patch tokens."""
    n, c, t, g, _ = volume.shape
    return volume.permute(0, 2, 3, 4, 1).reshape(n * t, g * g, c)


class LocalBlock(nn.Module):
    """Backbone block: [LMHRA1] -> attention -> [LMHRA2] -> MLP, each a residual branch."""

    def __init__(self, cfg: ModelConfig, drop_path: float) -> None:
        super().__init__()
        C = cfg.width
        self.use_lmhra = not cfg.no_lmhra
        self.double = self.use_lmhra and cfg.double_lmhra
        if self.use_lmhra:
            self.lmhra1 = LocalMHRA(C, cfg.lmhra_dim)
            if self.double:
                self.lmhra2 = LocalMHRA(C, cfg.lmhra_dim)
        self.attn = PackedAttention(C, cfg.heads)
        self.ln_1 = LayerNorm32(C)
        self.mlp = _mlp(C, C * 4)
        self.ln_2 = LayerNorm32(C)
        self.drop_path = DropPath(drop_path)

    def add_local(self, lmhra: LocalMHRA, x: torch.Tensor, n: int) -> torch.Tensor:
        """x [N*T, L, C] with lmhra's residual added to its patch tokens (class tokens untouched)."""
        delta = _from_volume(lmhra(_to_volume(x[:, 1:], n)))
        return torch.cat([x[:, :1], x[:, 1:] + self.drop_path(delta)], dim=1)

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """x [N*T, L, C] -> [N*T, L, C]; n is the number of videos N."""
        if self.use_lmhra:
            x = self.add_local(self.lmhra1, x, n)
        x = x + self.drop_path(self.attn(self.ln_1(x)))
        if self.double:
            x = self.add_local(self.lmhra2, x, n)
        return x + self.drop_path(self.mlp(self.ln_2(x)))


# --------------------------------------------------------------------------------------------
# Global UniBlock: one learnable query reads every token of every frame


class GlobalDecoder(nn.Module):
    """One-query transformer decoder layer (official `Extractor`)."""

    def __init__(self, dim: int, heads: int, mlp_factor: float, dropout: float, drop_path: float) -> None:
        super().__init__()
        self.attn = PackedAttention(dim, heads)
        self.ln_1 = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, round(mlp_factor * dim), dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.ln_3 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path)
        nn.init.xavier_uniform_(self.mlp.c_fc.weight)
        for p in (self.attn.out_proj.weight, self.attn.out_proj.bias, self.mlp.c_proj.weight, self.mlp.c_proj.bias):
            nn.init.zeros_(p)  # the global branch starts as a no-op

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query [N, 1, C], memory [N, T*L, C] -> updated query [N, 1, C]."""
        query = query + self.drop_path(self.attn.cross(self.ln_1(query), self.ln_3(memory)))
        return query + self.drop_path(self.mlp(self.ln_2(query)))


class Transformer(nn.Module):
    """Backbone blocks, the global side branch, fusion and head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        C = cfg.width
        self.return_list = cfg.return_list
        self.frozen = cfg.frozen
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, C))
        if not cfg.frozen:
            self.balance = nn.Parameter(torch.zeros(C))
        bdpr = _linspace(cfg.backbone_drop_path_rate, cfg.layers)
        self.resblocks = nn.ModuleList(LocalBlock(cfg, bdpr[i]) for i in range(cfg.layers))
        self.dpe = nn.ModuleList(
            nn.Conv3d(C, C, kernel_size=3, padding=1, groups=C, bias=True) for _ in range(cfg.n_layers)
        )
        for conv in self.dpe:
            nn.init.zeros_(conv.bias)
        dpr = _linspace(cfg.drop_path_rate, cfg.n_layers)
        self.dec = nn.ModuleList(
            GlobalDecoder(cfg.n_dim, cfg.n_head, cfg.mlp_factor, cfg.mlp_dropout[j], dpr[j])
            for j in range(cfg.n_layers)
        )
        self.proj = nn.Sequential(nn.LayerNorm(C), nn.Dropout(cfg.cls_dropout), nn.Linear(C, cfg.num_classes))

    def _global_tokens(self, j: int, x: torch.Tensor, n: int) -> torch.Tensor:
        """Tokens of one backbone output with DPE added to the patches: [N*T, L, C] -> [N, T*L, C]."""
        nt, L, C = x.shape
        pos = _from_volume(self.dpe[j](_to_volume(x[:, 1:], n)))  # [N*T, g*g, C]
        tokens = torch.cat([x[:, :1], x[:, 1:] + pos], dim=1)  # a new tensor: the stream is untouched
        return tokens.view(n, (nt // n) * L, C)  # time-major, then token

    def features(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """x [N*T, L, C] -> the video embedding [N, C]: the vector the head (`proj`) reads."""
        query = self.temporal_cls_token.expand(n, -1, -1).to(x.dtype)  # [N, 1, C]
        j = 0
        for i, block in enumerate(self.resblocks):
            x = block(x, n)
            if j < len(self.return_list) and i == self.return_list[j]:
                query = self.dec[j](query, self._global_tokens(j, x, n))
                j += 1
        feature = query[:, 0]  # [N, C]
        if not self.frozen:
            nt, L, C = x.shape
            frame_cls = x[:, 0].view(n, nt // n, C).mean(dim=1)  # last block's class tokens, mean over T
            w = torch.sigmoid(self.balance)
            feature = (1 - w) * feature + w * frame_cls
        return feature

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """x [N*T, L, C] -> logits [N, num_classes]."""
        return self.proj(self.features(x, n))


class VideoViT(nn.Module):
    """CLIP ViT patch/token front end plus the `Transformer` (official `VisionTransformer`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        C, p = cfg.width, cfg.patch_size
        scale = C**-0.5
        self.cfg = cfg
        self.class_embedding = nn.Parameter(scale * torch.randn(C))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid**2 + 1, C))
        if cfg.temporal_downsample:
            self.conv1 = nn.Conv3d(3, C, (3, p, p), stride=(2, p, p), padding=(1, 0, 0), bias=False)
        else:
            self.conv1 = nn.Conv3d(3, C, (1, p, p), stride=(1, p, p), padding=0, bias=False)
        self.ln_pre = LayerNorm32(C)
        self.transformer = Transformer(cfg)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """clip [N, 3, T_in, R, R] -> video embedding [N, C] (what the head reads)."""
        return self.transformer.features(*self._tokens(clip))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip [N, 3, T_in, R, R] -> logits [N, num_classes]."""
        return self.transformer(*self._tokens(clip))

    def _tokens(self, clip: torch.Tensor) -> tuple[torch.Tensor, int]:
        """clip [N, 3, T_in, R, R] -> (token stream [N*T, L, C], N)."""
        n = clip.shape[0]
        x = self.conv1(clip)  # [N, C, T, g, g]
        x = _from_volume(x)  # [N*T, g*g, C]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [N*T, L, C]
        return self.ln_pre(x), n


class UniFormerV2(nn.Module):
    """The top-level network; its only child is `backbone`, as in the official checkpoints."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.backbone = VideoViT(cfg)

    def check_input(self, clip: torch.Tensor) -> None:
        """Raise ValueError unless clip is [N, 3, t_size, R, R] (the official code regroups silently)."""
        cfg = self.config
        want = f"[N, 3, {cfg.t_size}, {cfg.input_resolution}, {cfg.input_resolution}]"
        if clip.ndim != 5 or clip.shape[1] != 3:
            raise ValueError(f"expected a clip tensor {want}, got shape {list(clip.shape)}")
        if clip.shape[2] != cfg.t_size:
            raise ValueError(
                f"this model was built for {cfg.t_size} frames per clip, got {clip.shape[2]} "
                f"(shape {list(clip.shape)}, expected {want})"
            )
        if clip.shape[3] != cfg.input_resolution or clip.shape[4] != cfg.input_resolution:
            raise ValueError(
                f"this model takes {cfg.input_resolution}x{cfg.input_resolution} frames, got "
                f"{clip.shape[3]}x{clip.shape[4]} (expected {want})"
            )

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip: float [N, 3, T, H, W], normalised. Returns raw logits [N, num_classes]."""
        self.check_input(clip)
        return self.backbone(clip)

    def embed(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clip: float [N, 3, T, H, W], normalised. Returns (video embedding [N, C], raw logits
        [N, num_classes]), the logits being `head(embedding)`: the numbers `forward` gives."""
        self.check_input(clip)
        feature = self.backbone.features(clip)
        return feature, self.head(feature)

    @property
    def head(self) -> nn.Sequential:
        """The classifier: embedding [N, C] -> logits [N, num_classes] (LayerNorm, Dropout, Linear)."""
        return self.backbone.transformer.proj

    @property
    def embed_dim(self) -> int:
        """C, the length of a video embedding."""
        return self.config.width


def build_model(config: ModelConfig) -> UniFormerV2:
    """A UniFormerV2 in eval mode with the official initialisation (weights still to be loaded)."""
    return UniFormerV2(config).eval()
