"""uvtag: tag actions in videos with UniFormerV2.

    import uvtag
    tagger = uvtag.load("k400_k710_uniformerv2_b16_8x224")   # or a checkpoint file
    tagger.classify("video.mp4").top                           # official test views
    tagger.tag_clips("video.mp4", clip_sec=10).clips          # labels per consecutive clip
    tagger.localize("long.mp4", window_sec=8).segments        # temporal segments
    tagger.features("long.mp4", window_sec=2).features        # video embeddings per window [T, C]
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {  # heavy imports (torch) happen on first use, so `uvtag --help` stays fast
    "load": ("uvtag.tagger", "load"),
    "Tagger": ("uvtag.tagger", "Tagger"),
    "ModelOptions": ("uvtag.tagger", "ModelOptions"),
    "SegmentOptions": ("uvtag.tagger", "SegmentOptions"),
    "available_models": ("uvtag.model.zoo", "available_models"),
    "get_checkpoint": ("uvtag.model.zoo", "get_checkpoint"),
    "open_video": ("uvtag.video.reader", "open_video"),
    "VideoInfo": ("uvtag.results", "VideoInfo"),
    "LabelScore": ("uvtag.results", "LabelScore"),
    "ClipPrediction": ("uvtag.results", "ClipPrediction"),
    "VideoPrediction": ("uvtag.results", "VideoPrediction"),
    "Segment": ("uvtag.results", "Segment"),
    "LocalizationResult": ("uvtag.results", "LocalizationResult"),
    "VideoFeatures": ("uvtag.results", "VideoFeatures"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'uvtag' has no attribute {name!r}")
