"""CLIP initialisation: timm's CLIP ViT (random weights) and our backbone loaded from it give the
same per-frame features (class token after the last block, before CLIP's ln_post)."""

from __future__ import annotations

import pytest
import torch

from uvtag.train.init import clip_state_from_timm, inflate_patch_kernel, model_config

try:
    import timm
    from timm.models.vision_transformer import VisionTransformer
except ImportError as e:  # CI installs timm through the `train` extra; without it this file cannot run
    pytest.skip(f"timm is not importable ({e}); install uvtag[train]", allow_module_level=True)


def _per_frame_cls(model, clip: torch.Tensor) -> torch.Tensor:
    """Our backbone's class tokens after the last local block: [N*T', C]."""
    seen = {}
    hook = model.backbone.transformer.resblocks[-1].register_forward_hook(lambda m, i, o: seen.setdefault("x", o))
    with torch.no_grad():
        model(clip)
    hook.remove()
    return seen["x"][:, 0]


def _timm_pre_head(vit: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """timm's class token after the last block, before its final norm (= CLIP before ln_post)."""
    with torch.no_grad():
        x = vit.patch_embed(images)
        x = vit._pos_embed(x)
        x = vit.norm_pre(x)
        x = vit.blocks(x)
    return x[:, 0]


def _our_model(width: int, layers: int, heads: int, patch: int, size: int, frames: int):
    from uvtag.model import ModelConfig, build_model

    cfg = model_config("tiny", 5, frames, dropout=0.0, drop_path=0.0)
    cfg = ModelConfig(**{**cfg.to_dict(), "input_resolution": size, "patch_size": patch, "width": width,
                         "layers": layers, "heads": heads, "n_dim": width, "n_head": heads,
                         "return_list": list(range(layers - 2, layers)), "n_layers": 2, "mlp_dropout": [0.0, 0.0]})
    return build_model(cfg)


def test_inflation_places_the_2d_kernel_at_the_centre():
    w = torch.randn(4, 3, 2, 2)
    assert torch.equal(inflate_patch_kernel(w, 1)[:, :, 0], w)
    three = inflate_patch_kernel(w, 3)
    assert three.shape == (4, 3, 3, 2, 2)
    assert torch.equal(three[:, :, 1], w) and not three[:, :, 0].any() and not three[:, :, 2].any()


def test_small_clip_vit_features_match_per_frame():
    torch.manual_seed(0)
    # CLIP settings: pre-norm (ln_pre), QuickGELU, LayerNorm eps 1e-5 (timm's default is 1e-6)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4, pre_norm=True,
                            act_layer="quick_gelu", norm_layer=torch.nn.LayerNorm, num_classes=0,
                            global_pool="token").eval()
    for p in vit.parameters():  # timm zero-inits some tensors: randomise everything
        torch.nn.init.normal_(p, std=0.2)
    ours = _our_model(64, 3, 4, 8, 32, frames=6).eval()
    mapped = clip_state_from_timm(vit.state_dict(), kernel_t=3)
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    assert not unexpected
    assert not [k for k in missing if not any(s in k for s in ("lmhra", "dpe", "dec.", "transformer.proj.", "balance", "temporal_cls"))]
    clip = torch.randn(2, 3, 6, 32, 32)
    got = _per_frame_cls(ours, clip)  # temporal downsampling: frames 0, 2, 4 of each video
    frames = clip[:, :, 0::2].permute(0, 2, 1, 3, 4).reshape(-1, 3, 32, 32)  # [N*3, 3, 32, 32]
    want = _timm_pre_head(vit, frames)
    assert got.shape == want.shape == (6, 64)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()


def test_vit_base_patch16_clip_224_maps_onto_every_b16_backbone_tensor():
    vit = timm.create_model("vit_base_patch16_clip_224", pretrained=False, num_classes=0)
    mapped = clip_state_from_timm(vit.state_dict(), kernel_t=3)
    from uvtag.model import build_model

    ours = build_model(model_config("b16", 10, 8)).state_dict()
    image_keys = {k for k in ours if not any(s in k for s in ("lmhra", "dpe", "dec.", "transformer.proj.", "balance", "temporal_cls"))}
    assert set(mapped) == image_keys
    assert all(mapped[k].shape == ours[k].shape for k in mapped)
