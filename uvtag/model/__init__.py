"""UniFormerV2: the network, its configuration and the checkpoint zoo."""

from uvtag.model.uniformerv2 import ModelConfig, UniFormerV2, build_model

__all__ = ["ModelConfig", "UniFormerV2", "build_model"]
