"""Inference stages: views, batched prediction, sliding windows, segments."""
