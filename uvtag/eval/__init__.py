"""Scoring predictions against ground truth (`uvtag eval`): accuracy and localization mAP."""
