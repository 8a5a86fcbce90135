"""Running a features job: `run_batch` with embeddings, into a `FeatureStore`.

The videos are decoded once each by `run_batch`'s background thread, their windows batched
through the model across video boundaries; the store writes each video's arrays and manifest line
as soon as its last window is done. `run_features_parallel` hands whole videos to worker
processes instead (`uvtag.batch.processes`), one per device, as `batch --workers/--devices`, and
`run_features_ray` to a Ray Data actor pool, as `batch --ray`. A row is the embedding of exactly
the clip `batch` scores for that window (`Tagger.tag_clips` with `clip_sec=window_sec`), and the
head applied to it gives those scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from uvtag.batch.processes import TaggerFactory, run_parallel
from uvtag.batch.run import BatchSummary, run_batch
from uvtag.features.store import FeatureStore
from uvtag.results import Failure, VideoPrediction
from uvtag.tagger import Tagger
from uvtag.video.files import UnreadableFolder


def run_features(tagger: Tagger, paths: Sequence[str | Path | UnreadableFolder], store: FeatureStore, *,
                 on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None) -> BatchSummary:
    """Extract the features of every video in `paths` into `store`, skipping those it already holds.

    Args:
        tagger: the loaded model.
        paths: videos (and unreadable folders, recorded as failures), in output order.
        store: an open FeatureStore; its settings give the windows.
        on_video: called after each video with its result (None when skipped), e.g. for progress.
    """
    settings = store.settings
    return run_batch(tagger, paths, store, clip_sec=settings.window_sec, stride_sec=settings.stride_sec, top=1,
                     embed=True, on_video=on_video)


def run_features_parallel(factory: TaggerFactory, devices: Sequence[str], paths: Sequence[str | Path | UnreadableFolder],
                          store: FeatureStore, *,
                          on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None
                          ) -> BatchSummary:
    """`run_features` with one worker process per entry of `devices` (see `uvtag.batch.processes.run_parallel`).

    Each video's windows are batched within that video, so rows equal single-process ones up to
    float summation order; videos are written in the order they finish.
    """
    settings = store.settings
    return run_parallel(factory, devices, paths, store, clip_sec=settings.window_sec, stride_sec=settings.stride_sec,
                        top=1, embed=True, on_video=on_video)


def run_features_ray(factory: TaggerFactory, paths: Sequence[str | Path | UnreadableFolder], store: FeatureStore, *,
                     address: str | None = None, device: str = "auto", max_actors: int | None = None,
                     on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None) -> BatchSummary:
    """`run_features` on a Ray Data actor pool (see `uvtag.batch.ray.run_ray`; needs the `ray` extra).

    Each actor extracts whole videos; their embeddings travel back inside the pickled results and
    this process writes them, so the store stays the one writer of its folder.
    """
    from uvtag.batch.ray import run_ray

    settings = store.settings
    return run_ray(factory, paths, store, address=address, device=device, max_actors=max_actors,
                   clip_sec=settings.window_sec, stride_sec=settings.stride_sec, top=1, embed=True, on_video=on_video)
