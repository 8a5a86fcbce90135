"""Training UniFormerV2 on your own classes (`uvtag train`): data, augmentation, loop, metrics."""

from uvtag.train.loop import EpochStats, TrainSettings, validate, train

__all__ = ["EpochStats", "TrainSettings", "validate", "train"]
