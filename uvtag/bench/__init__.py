"""Benchmarks behind `uvtag bench`: how close uvtag runs to what the machine can do.

Every timing is the median of `runs` runs after `warmup` untimed ones. One run measures, on the
same machine state:
- the matmul peak (GFLOP/s) per precision, the reference the model rows are a fraction of;
- model forward per architecture, precision, batch size and engine: clips/s, achieved GFLOP/s
  (2 x the architecture's GMAC per view, see `model_gmac`) and the fraction of the peak. The
  peak is re-measured next to every row and the run's best is used for every fraction, so a
  load change during the run can only lower the reported fractions;
- decode rates on a generated 720p H.264 file: the ffmpeg CLI's decode speed next to uvtag's
  reader for full decode, the sliding-window pattern and sparse clip sampling;
- end to end (decode + preprocessing + model): `classify` with official views, `batch` over a
  folder of clips and `localize` over a long video, as x realtime (video seconds per wall second),
  clips/s next to the model-only clips/s for the same clips, and peak RSS of the stage.

Weights are random (timings do not depend on their values) except for a bundled model found on
disk. The result is one JSON-ready dict (`SCHEMA` names its layout) so runs can be compared
across commits; `format_markdown` renders it as the README table.

Modules: `measure` (medians, matmul peak, RSS, machine facts), `models` (architectures and
model-forward rows), `media` (benchmark videos, decode rates), `e2e` (classify/batch/localize
rows), `suite` (`run_suite`, `format_markdown`).
"""

from uvtag.bench.e2e import bench_end_to_end
from uvtag.bench.measure import Log, machine_info, matmul_peak, median_seconds, model_gmac, peak_rss_mib, reset_peak_rss
from uvtag.bench.media import bench_videos, decode_rates, ffmpeg_decode_fps, make_video, repeat_video, window_frame_indices
from uvtag.bench.models import DEFAULT_ARCHS, ENGINES, BenchModel, bench_forward, bench_model, fallback_tiny_config, random_model
from uvtag.bench.suite import SCHEMA, BenchOptions, format_markdown, run_suite

__all__ = [
    "DEFAULT_ARCHS", "ENGINES", "SCHEMA", "BenchModel", "BenchOptions", "Log", "bench_end_to_end", "bench_forward",
    "bench_model", "bench_videos", "decode_rates", "fallback_tiny_config", "ffmpeg_decode_fps", "format_markdown",
    "machine_info", "make_video", "matmul_peak", "median_seconds", "model_gmac", "peak_rss_mib", "random_model",
    "repeat_video", "reset_peak_rss", "run_suite", "window_frame_indices",
]
