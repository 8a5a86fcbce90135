"""`uvtag batch --ray`: the batch on a Ray cluster, with Ray Data (optional extra `uvtag[ray]`).

The dataset holds file PATHS only, never decoded frames (Ray's own video reader makes one row per
frame, which is wrong for clip models and ships pixels between nodes). `map_batches` runs
`TagVideos`, a callable class, in an actor pool sized to the cluster: each actor loads the model
once and decodes and tags whole videos where it runs (one GPU per actor on GPU clusters, else
`cpus_per_actor` CPUs). Videos must therefore be readable at the same path on every node (a
shared or mounted file system).

The driver streams results as they finish and writes each one through the kill-safe
`BatchWriter`, skipping any path already written: a restarted job resumes from the file
(`--resume`), and a video is never written twice even when Ray re-executes a task. An actor that
dies (killed, out of memory, segfault) is restarted and its task retried by Ray; a video that
kills its actor more than `retries` times is written as a failure instead of being retried
forever (unfinished attempts are counted by a small bookkeeping actor).

Ray is imported only here and only when called, so the core package neither needs nor loads it.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from uvtag.batch.output import BatchWriter
from uvtag.batch.run import BatchSummary, _failure, skip_completed
from uvtag.errors import UsageError, UvtagError, first_line
from uvtag.results import Failure, VideoPrediction

MAX_BLOCKS = 10_000  # rows per block grow past this many videos (fewer, larger Ray tasks)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError("--ray needs Ray Data, an optional extra: pip install 'uvtag[ray]'") from None
    return ray


class AttemptLog:
    """Bookkeeping actor: unfinished attempts per video (an attempt whose actor died never ends)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def begin(self, path: str) -> int:
        """Start an attempt; returns how many attempts of `path` are now unfinished (1 = first)."""
        self._open[path] = self._open.get(path, 0) + 1
        return self._open[path]

    def end(self, path: str) -> None:
        """The attempt finished (with a result or a recorded failure)."""
        self._open.pop(path, None)


class TagVideos:
    """Ray Data UDF: holds one loaded Tagger; maps {"path": [N]} to {"path": [N], "result": [N]}.

    `result` is the pickled VideoPrediction or Failure of each video (exact floats, any fields).
    """

    def __init__(self, factory: Callable[[str], Any], device: str, job: dict[str, Any], attempts: Any,
                 retries: int, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.tagger = factory(device)
        self.job, self.attempts, self.retries = job, attempts, retries

    def _tag(self, path: str) -> VideoPrediction | Failure:
        import ray

        tries = ray.get(self.attempts.begin.remote(path))
        if tries > self.retries + 1:
            result: VideoPrediction | Failure = Failure(
                path, f"{path}: a Ray worker died while tagging it, {tries - 1} times", "WorkerCrash")
        else:
            try:
                result = self.tagger.tag_clips(path, **self.job)
            except Exception as e:  # one bad file must never fail the task
                result = _failure(path, e)
        ray.get(self.attempts.end.remote(path))
        return result

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        paths = [os.fsdecode(p) for p in batch["path"]]
        results = [pickle.dumps(self._tag(p)) for p in paths]
        return {"path": np.array([os.fsencode(p) for p in paths], dtype=object), "result": np.array(results, dtype=object)}


def pool_plan(resources: dict[str, float], device: str, cpus_per_actor: int,
              max_actors: int | None, videos: int) -> tuple[int, dict[str, float], str]:
    """(actors, resources per actor, device inside an actor) for a cluster. Pure.

    GPUs present and `device` not "cpu": one actor per GPU, each with 1 GPU and 1 CPU, on "cuda"
    (Ray sets CUDA_VISIBLE_DEVICES per actor). Otherwise one actor per `cpus_per_actor` CPUs, on
    "cpu". Never more actors than `max_actors` or `videos`; always at least one.
    """
    gpus = int(resources.get("GPU", 0))
    if gpus > 0 and device != "cpu":
        size, per_actor, inside = gpus, {"num_gpus": 1.0, "num_cpus": 1.0}, "cuda"
    else:
        size, per_actor, inside = int(resources.get("CPU", 1)) // cpus_per_actor, {"num_cpus": float(cpus_per_actor)}, "cpu"
    size = min(size, max_actors or size, videos)
    return max(1, size), per_actor, inside


def _cause(error: BaseException) -> str:
    """One line for an error Ray wrapped: the UvtagError inside it if any, else its last line."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        if isinstance(e, UvtagError):
            return first_line(e, 10_000)
        seen.append(e)
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1].strip() if lines else ''}"


def run_ray(factory: Callable[[str], Any], paths: Sequence[str | Path], writer: BatchWriter, *,
            address: str | None = None, device: str = "auto", cpus_per_actor: int = 1,
            max_actors: int | None = None, clip_sec: float | None = None, stride_sec: float | None = None,
            top: int = 5, embed: bool = False, retries: int = 1, progress_bars: bool = False,
            on_video: Callable[[str, VideoPrediction | Failure | None], None] | None = None) -> BatchSummary:
    """Tag `paths` into `writer` with a Ray Data actor pool (see the module docstring).

    Args:
        factory: device -> Tagger, run once per actor (e.g. `uvtag.tagger.ModelOptions`); must pickle.
        paths, writer, clip_sec, stride_sec, top, embed, on_video: as for `uvtag.batch.run.run_batch`
            (embeddings travel inside each pickled result).
        address: the cluster: None or "local" = `ray.init()` (RAY_ADDRESS, a cluster started on this
            machine, or a new local one), "auto", "ray://HOST:10001" or "HOST:6379". An already
            initialised Ray is used as is (and left running).
        device: "cpu" keeps a GPU cluster's actors on CPU; anything else uses GPUs when present.
        cpus_per_actor: CPUs (and torch threads) per actor on CPU clusters.
        max_actors: cap on the actor pool (`--workers`).
        retries: times a video may kill its actor before it is written as a failure.
        progress_bars: show Ray Data's own progress bars.

    Raises:
        UsageError: Ray is not installed. UvtagError: the pipeline failed (e.g. the model could
        not be loaded in the actors); the videos written so far stay written.
    """
    ray = _import_ray()
    summary, todo = skip_completed(paths, writer, on_video)
    if not todo:
        return summary
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address in (None, "", "local") else address, logging_level=logging.WARNING)
    try:
        _stream(ray, factory, list(todo), writer, summary, device=device, cpus_per_actor=cpus_per_actor,
                max_actors=max_actors, job=dict(clip_sec=clip_sec, stride_sec=stride_sec, top=top, embed=embed),
                retries=retries, progress_bars=progress_bars, on_video=on_video)
    finally:
        if started_here:
            ray.shutdown()
    return summary


def _stream(ray: Any, factory: Callable[[str], Any], todo: list[str], writer: BatchWriter, summary: BatchSummary, *,
            device: str, cpus_per_actor: int, max_actors: int | None, job: dict[str, Any], retries: int,
            progress_bars: bool, on_video: Callable[[str, VideoPrediction | Failure | None], None] | None) -> None:
    """Build the pipeline and write its rows as they arrive, each path at most once."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress_bars
    size, per_actor, inside = pool_plan(ray.cluster_resources(), device, cpus_per_actor, max_actors, len(todo))
    attempts = ray.remote(num_cpus=0)(AttemptLog).remote()
    blocks = min(len(todo), MAX_BLOCKS)
    # paths travel as their file-system bytes: an Arrow string column cannot hold a name that is not UTF-8
    dataset = ray.data.from_items([{"path": os.fsencode(p)} for p in todo], override_num_blocks=blocks).map_batches(
        TagVideos, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs=dict(factory=factory, device=inside, job=job, attempts=attempts, retries=retries,
                                   threads=max(1, int(per_actor["num_cpus"]))),
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size), **per_actor,
    )  # Ray Data restarts dead pool actors and retries their tasks by default (max_restarts=-1)
    written: set[str] = set()
    try:
        for row in dataset.iter_rows():
            path = os.fsdecode(row["path"])
            if path in written:  # a re-executed task: the first copy is already on disk
                continue
            result = pickle.loads(row["result"])
            written.add(path)
            summary.record(writer, path, result, on_video)
    except (UvtagError, KeyboardInterrupt):
        raise
    except Exception as e:  # Ray's wrappers: report the root cause in one line
        raise UvtagError(f"the Ray pipeline stopped after {len(written)} videos: {_cause(e)}") from e
    finally:
        ray.kill(attempts)
