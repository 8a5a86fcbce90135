"""uvtag: tag actions in videos with UniFormerV2."""

__version__ = "0.1.0"
