"""Tagger: a loaded model plus how to feed it; classify, tag clips and localize videos.

Load once with `uvtag.load(...)`, call many times. Each method chains pure stages (sampling,
transforms, views, windows, segments) around the two I/O points: the video reader and the
`Predictor`. Results are the typed records of `uvtag.results`.

Two input paths:
- `classify` feeds the checkpoint's official test views exactly as the official pipeline does
  (full-resolution decode, normalise, short-side resize of the whole clip, crops). Where the
  resize of each frame alone gives the same bits (all official input sizes), every frame is
  normalised and resized as soon as it is decoded, so memory follows the resized size, not the
  source's; frames too large for `uvtag.video.transforms.MAX_FULL_RES_BYTES` are refused.
- `tag_clips` and `localize` look at many spans of one video. They stream the video once,
  decode each needed frame once at the already-resized size (the decoder scales it), normalise and
  crop it once, and reuse it in every overlapping window. This is not bit-exact to the official
  resize (the decoder's bilinear scaler is used instead of torch's), which is irrelevant for
  untrimmed video where no official protocol exists, and it is several times faster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch

from uvtag.errors import CheckpointError, UsageError, UvtagError, describe
from uvtag.infer.clips import assemble_clips, needed_frames, prefetch
from uvtag.infer.device_prep import ClipPrep, prepare_frame
from uvtag.infer.predict import Predictor, default_batch_size, pick_device, pick_dtype
from uvtag.infer.segments import to_segments
from uvtag.infer.views import aggregate, check_view_count, official_views, top_k
from uvtag.infer.windows import clip_spans, window_spans
from uvtag.model.download import resolve
from uvtag.model.shapes import describe_config
from uvtag.model.uniformerv2 import UniFormerV2, build_model
from uvtag.model.weights import load_into, load_model, read_checkpoint
from uvtag.model.zoo import CHECKPOINTS, KINETICS_MEAN, KINETICS_STD, Checkpoint, get_checkpoint
from uvtag.results import ClipPrediction, Failure, LocalizationResult, VideoFeatures, VideoInfo, VideoPrediction
from uvtag.video.isolated import IsolatedReader
from uvtag.video.reader import VideoReader, open_video
from uvtag.video.sampling import sample_span_indices, timestamps_to_frame_range
from uvtag.video.transforms import (
    check_full_resolution,
    crop_views,
    normalized_resized,
    resize_frame_by_frame,
    resized_shape,
    spatial_indices,
    to_views,
)

PREPROCESS = ("host", "uint8", "device")  # see Tagger
DEFAULT_MODEL = "k400_k710_uniformerv2_b16_8x224"  # Kinetics-400, B/16, on the author's HF mirror too
Span = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class SegmentOptions:
    """How window scores become segments (see `uvtag.infer.segments.to_segments`)."""

    threshold: float = 0.3
    smooth_windows: int = 1
    min_duration_sec: float = 0.0
    merge_gap_sec: float = 0.0
    nms_iou: float | None = 0.5
    top_k_per_window: int | None = 1


class Tagger:
    """A model ready to tag videos.

    Args:
        model: a UniFormerV2 with its weights loaded.
        checkpoint: the zoo entry (or an equivalent built from a uvtag file) saying how to feed it.
        labels: class names, one per logit.
        device, precision, batch_size: see `uvtag.infer.predict`.
        backend: force a video backend ("pyav", "decord", "opencv"); None = automatic.
        isolate: decode in child processes (reused from file to file), so a decoder crash or hang
            costs that video only; `decode_timeout_sec` bounds each decode request.
        preprocess: how `span_clips` (batch, localize) prepares frames: "host" (normalised on the
            CPU), "uint8" (the decoder resizes, the uint8 crop crosses to the model's device and
            is normalised there: the same clips) or "device" (full-size frames cross, as their
            YUV planes where the decoder allows, and are converted and resized there: within a
            few levels, see `uvtag.infer.device_prep`).
    """

    def __init__(self, model: UniFormerV2, checkpoint: Checkpoint, labels: Sequence[str], *,
                 device: str = "auto", precision: str = "auto", batch_size: int | None = None,
                 backend: str | None = None, isolate: bool = False, decode_timeout_sec: float = 60.0,
                 preprocess: str = "host") -> None:
        if preprocess not in PREPROCESS:
            raise UsageError(f"unknown preprocess {preprocess!r}; choose one of {', '.join(PREPROCESS)}")
        if len(labels) != checkpoint.config.num_classes:
            raise CheckpointError(f"{len(labels)} class names for a model with {checkpoint.config.num_classes} classes")
        dev = pick_device(device)
        self.checkpoint = checkpoint
        self.labels = tuple(labels)
        self.backend = backend
        self.isolate = isolate
        self.decode_timeout_sec = decode_timeout_sec
        self.preprocess = preprocess
        self.predictor = Predictor(model, dev, pick_dtype(dev, precision), batch_size or default_batch_size(model, dev))

    @property
    def name(self) -> str:
        """The model's name (zoo name or file stem)."""
        return self.checkpoint.name

    def open(self, path: str | Path) -> VideoReader | IsolatedReader:
        """Open a video with this tagger's backend and isolation choice (raises VideoError)."""
        if self.isolate:
            return IsolatedReader(path, self.backend, self.decode_timeout_sec)
        return open_video(path, self.backend)

    # ------------------------------------------------------------------ classify

    def classify_views(self, reader: VideoReader, num_clips: int | None = None,
                       num_crops: int | None = None) -> torch.Tensor:
        """The official test views of one video: float32 [V, 3, T, c, c], ordered v = k * S + s.

        The needed frames are decoded in one pass. Where resizing frame by frame is exact
        (`resize_frame_by_frame`), each frame is normalised and resized as it arrives (one
        full-resolution frame held at a time); otherwise a clip is transformed whole once its
        frames are in. Raises VideoError for frames too large for `MAX_FULL_RES_BYTES`.
        """
        ck, info = self.checkpoint, reader.info
        views = official_views(info.num_frames, ck.num_frames, num_clips or ck.num_clips,
                           num_crops or ck.num_crops, ck.sampler)
        crops = sorted({v.spatial_index for v in views})
        clips = list(dict.fromkeys(v.frame_indices for v in views))  # one decode per temporal clip
        needed = needed_frames(clips)
        by_frame = resize_frame_by_frame(info.height, info.width, ck.input_size, ck.num_frames)
        if by_frame:
            check_full_resolution(info.path, info.height, info.width, 1)
        else:
            check_full_resolution(info.path, info.height, info.width, ck.num_frames, len(needed))
        decoded = reader.iter_frames(needed)
        out: list[torch.Tensor] = [torch.empty(0)] * len(clips)
        if by_frame:
            resized = ((i, normalized_resized(f[None], ck.input_size, ck.mean, ck.std, ck.channel_order))
                       for i, f in decoded)  # [3, 1, h, w] per frame
            for c, parts in assemble_clips(clips, resized):
                out[c] = crop_views(torch.cat(parts, dim=1), ck.input_size, crops)
        else:
            for c, frames in assemble_clips(clips, decoded):
                out[c] = to_views(np.stack(frames), ck.input_size, ck.mean, ck.std, crops, ck.channel_order)
        return torch.cat(out)

    def predict_views(self, path: str | Path, views: torch.Tensor, info: VideoInfo, top: int) -> VideoPrediction:
        """Video prediction from its views (softmax per view, mean over views)."""
        probs = aggregate(self.predictor.logits(views))
        return VideoPrediction(str(path), self.name, info, top_k(probs, self.labels, top), views.shape[0])

    def classify(self, path: str | Path, *, top: int = 5, num_clips: int | None = None,
                 num_crops: int | None = None) -> VideoPrediction:
        """Top-`top` labels of one video under the checkpoint's official test views (or the given ones)."""
        with self.open(path) as reader:
            views = self.classify_views(reader, num_clips, num_crops)
            info = reader.info
        return self.predict_views(path, views, info, top)

    def classify_many(self, paths: Sequence[str | Path], *, top: int = 5, num_clips: int | None = None,
                      num_crops: int | None = None) -> Iterator[VideoPrediction | Failure]:
        """`classify` over many videos, decoding the next video while the model runs on this one.

        Yields, in input order, a VideoPrediction per video or a Failure for a video that cannot be read.
        Too many views (`uvtag.infer.views.MAX_VIEWS`) raise UsageError before any video is opened.
        """
        check_view_count(num_clips or self.checkpoint.num_clips, num_crops or self.checkpoint.num_crops)

        def decoded():
            for path in paths:
                try:
                    with self.open(path) as reader:
                        yield path, self.classify_views(reader, num_clips, num_crops), reader.info
                except UvtagError as e:
                    yield path, Failure(str(path), str(e), type(e).__name__), None
                except Exception as e:  # anything else while preparing one video is that video's failure
                    yield path, Failure(str(path), f"{path}: {describe(e)}", type(e).__name__), None

        for path, views, info in prefetch(decoded(), depth=1):
            yield views if isinstance(views, Failure) else self.predict_views(path, views, info, top)

    # ------------------------------------------------------------------ spans (batch, localize)

    def span_clips(self, reader: VideoReader, spans: Sequence[Span]) -> Iterator[tuple[int, torch.Tensor]]:
        """(span index, clip [3, T, c, c]) for each span, decoding the video once, frames reused.

        Each span is sampled with the official sampler inside its frame range; the centre crop
        (crop 0 for Something-Something, as the official 1-crop rule) is taken.
        """
        ck = self.checkpoint
        times = reader.timestamps_sec()
        plans = []
        for start, end in spans:
            first, stop = timestamps_to_frame_range(start, end, times)
            plans.append(sample_span_indices(first, stop, ck.num_frames, 0, 1, ck.sampler))
        size = resized_shape(reader.info.height, reader.info.width, ck.input_size)
        crop = spatial_indices(1, ck.sampler)

        prep, device = ClipPrep.for_checkpoint(ck), self.predictor.device

        def prepared():
            needed = needed_frames(plans)
            if self.preprocess == "device" and isinstance(reader, VideoReader):  # YUV planes cross, resized there
                frames = reader.iter_frames(needed, raw=True)
            else:
                frames = reader.iter_frames(needed, size=None if self.preprocess == "device" else size)
            for index, frame in frames:
                if self.preprocess != "host":
                    yield index, prepare_frame(frame, prep, device)  # [3, c, c] on the model's device
                    continue
                view = to_views(frame[None], ck.input_size, ck.mean, ck.std, crop, ck.channel_order)
                yield index, view[0, :, 0]  # [3, c, c], normalised and cropped once per frame

        for c, frames in assemble_clips(plans, prepared()):
            yield c, torch.stack(frames, dim=1)  # [3, T, c, c]

    @overload
    def score_spans(self, reader: VideoReader, spans: Sequence[Span], *, embed: Literal[False] = False) -> np.ndarray: ...

    @overload
    def score_spans(self, reader: VideoReader, spans: Sequence[Span], *,
                    embed: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    def score_spans(self, reader: VideoReader, spans: Sequence[Span], *,
                    embed: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Class probabilities per span, float32 [len(spans), num_classes]; decoding overlaps inference.

        With `embed`, (probabilities, embeddings float32 [len(spans), C]): each span's video
        embedding, the vector the classifier head turned into its scores.
        """
        scores = np.zeros((len(spans), len(self.labels)), np.float32)
        embeddings = np.zeros((len(spans), self.embed_dim), np.float32) if embed else None
        clips = prefetch(self.span_clips(reader, spans), depth=2 * self.predictor.batch_size)
        for c, logits, *embedding in self.predictor.stream(clips, embed=embed):
            scores[c] = torch.softmax(logits, dim=-1).numpy()
            if embeddings is not None:
                embeddings[c] = embedding[0].numpy()
        return scores if embeddings is None else (scores, embeddings)

    @property
    def embed_dim(self) -> int:
        """C, the length of the model's video embedding."""
        return self.checkpoint.config.width

    def _span_predictions(self, spans: Sequence[Span], scores: np.ndarray, top: int) -> tuple[ClipPrediction, ...]:
        return tuple(
            ClipPrediction(float(s), float(e), top_k(torch.from_numpy(p), self.labels, top))
            for (s, e), p in zip(spans, scores)
        )

    def default_clip_sec(self) -> float:
        """Batch clip length: 10 s (Kinetics-style clips) or 4 s (Something-Something)."""
        return 4.0 if self.checkpoint.sampler == "sth" else 10.0

    def tag_clips(self, path: str | Path, *, clip_sec: float | None = None, stride_sec: float | None = None,
                  top: int = 5, embed: bool = False) -> VideoPrediction:
        """Labels for consecutive clips along a video plus a video summary (mean of clip scores).

        With `embed`, the prediction's `embeddings` holds each clip's video embedding [num_clips, C].
        """
        embeddings = None
        with self.open(path) as reader:
            info = reader.info
            spans = clip_spans(info.duration_sec, clip_sec or self.default_clip_sec(), stride_sec)
            if embed:
                scores, embeddings = self.score_spans(reader, spans, embed=True)
            else:
                scores = self.score_spans(reader, spans)
        summary = top_k(torch.from_numpy(scores.mean(axis=0)), self.labels, top)
        return VideoPrediction(str(path), self.name, info, summary, len(spans), self._span_predictions(spans, scores, top),
                               embeddings=embeddings)

    def features(self, path: str | Path, *, window_sec: float | None = None,
                 stride_sec: float | None = None) -> VideoFeatures:
        """The video embedding of each window along a video, float32 [num_windows, C] in time order.

        Windows of `window_sec` (default: the batch clip length, `default_clip_sec`) every
        `stride_sec` (default: `window_sec`, back to back), as `tag_clips` makes its clips: row i
        is the embedding of the clip `tag_clips` scores for window i (its head gives those scores).
        """
        window = window_sec or self.default_clip_sec()
        stride = window if stride_sec is None else stride_sec
        prediction = self.tag_clips(path, clip_sec=window, stride_sec=stride, top=1, embed=True)
        return VideoFeatures.from_prediction(prediction, window, stride, self.checkpoint.num_frames)

    def localize(self, path: str | Path, *, window_sec: float = 8.0, stride_sec: float | None = None,
                 top: int = 5, options: SegmentOptions = SegmentOptions()) -> LocalizationResult:
        """Sliding windows over an untrimmed video, merged into temporal segments."""
        with self.open(path) as reader:
            info = reader.info
            spans = window_spans(info.duration_sec, window_sec, stride_sec)
            scores = self.score_spans(reader, spans)
        segments = to_segments(spans, scores, self.labels, **dataclasses.asdict(options))
        stride = stride_sec if stride_sec is not None else window_sec / 2
        return LocalizationResult(
            str(path), self.name, info, window_sec, stride, self._span_predictions(spans, scores, top),
            tuple(segments), self.labels, params=dataclasses.asdict(options),
        )

    def watch(self, source: str, *, window_sec: float = 8.0, stride_sec: float | None = None, top: int = 5,
              options: SegmentOptions = SegmentOptions(), **live):
        """Sliding windows over a live source ("-", a file, /dev/videoN, a URL), as an iterable
        `uvtag.live.watch.Watch` of typed events (`uvtag.live.events`); `live` takes its
        `source_options` and `max_queue`. Raises SourceError when no frame comes."""
        from uvtag.live.watch import Watch

        return Watch(self, source, window_sec=window_sec, stride_sec=stride_sec, top=top, segments=options, **live)


# ---------------------------------------------------------------------- loading


def _checkpoint_from_uvtag(path: Path, config, meta: dict) -> Checkpoint:
    """A Checkpoint describing how to feed a uvtag-format file (protocol stored in its meta)."""
    proto = dict(meta.get("protocol") or {})
    return Checkpoint(
        name=path.stem, dataset=str(meta.get("dataset", "custom")), backbone=describe_config(config),
        pretrain=str(meta.get("pretrain", "")), config=config, labels=None,
        num_frames=config.t_size, input_size=config.input_resolution,
        num_clips=int(proto.get("num_clips", 1)), num_crops=int(proto.get("num_crops", 1)),
        filename=path.name, urls=(),
        mean=tuple(proto.get("mean", KINETICS_MEAN)), std=tuple(proto.get("std", KINETICS_STD)),
        channel_order=str(proto.get("channel_order", "RGB")), sampler=str(proto.get("sampler", "kinetics")),
    )


def _looks_like_path(model: str | Path) -> bool:
    text = str(model)
    return isinstance(model, Path) or text not in CHECKPOINTS and (Path(text).expanduser().exists() or "/" in text or "." in text)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Which model to load and how to run it: every option `load` takes, as one picklable value.

    The CLI builds one from its options and hands it to `load`, to the worker processes and to
    the Ray actors alike (each worker calls it with its own device).

    Attributes:
        model: a zoo name (see `uvtag models`) or a checkpoint file: a uvtag checkpoint (carries
            its config, labels and protocol) or an official/MMAction2 file, whose zoo entry is
            taken from `arch` or from the file's official name.
        arch: the zoo entry an official file belongs to (frames, views, labels).
        device: "auto", "cpu", "cuda", "cuda:N".
        precision: "auto" (fp32 on CPU, bf16/fp16 on CUDA), "fp32", "bf16", "fp16".
        batch_size: clips per forward pass (default: 8 on CUDA; 2 on the CPU, 16 for small models).
        backend: force a video backend.
        cache_dir, offline: where and whether to download (see `uvtag.model.download`).
        isolate: decode in reused child processes (a crashing decoder costs one video).
    """

    model: str | Path = DEFAULT_MODEL
    arch: str | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    backend: str | None = None
    cache_dir: str | Path | None = None
    offline: bool | None = None
    isolate: bool = False

    def load(self, progress: bool = True) -> Tagger:
        """The `Tagger` these options describe (downloads with a progress bar when `progress`)."""
        return _load(self, progress)

    def fetch(self, progress: bool = True) -> None:
        """Download a zoo model's weights now, once, so that worker processes only read the cache.

        A file path or an unknown name is left to the workers (they report it per video).
        """
        if Path(self.model).expanduser().exists():
            return
        try:
            checkpoint = get_checkpoint(str(self.model))
        except UvtagError:
            return
        resolve(checkpoint, self.cache_dir, offline=self.offline, progress=progress)

    def __call__(self, device: str) -> Tagger:
        """Load a `Tagger` on `device`, quietly (what each worker process or actor runs)."""
        return dataclasses.replace(self, device=device).load(progress=False)


def load(model: str | Path = DEFAULT_MODEL, *, progress: bool = True, **options) -> Tagger:
    """Load a model by zoo name or file path and return a `Tagger`.

    `options` are the other fields of `ModelOptions` (arch, device, precision, batch_size,
    backend, cache_dir, offline, isolate); `progress` shows a bar while weights download.
    """
    return ModelOptions(model, **options).load(progress)


def _load(o: ModelOptions, progress: bool) -> Tagger:
    model, arch, cache_dir, offline = o.model, o.arch, o.cache_dir, o.offline
    common = dict(device=o.device, precision=o.precision, batch_size=o.batch_size, backend=o.backend, isolate=o.isolate)
    if not str(model).strip():
        raise UsageError("the model name is empty; pass a zoo name (list them with `uvtag models`) or a checkpoint file")
    if not _looks_like_path(model):
        checkpoint = get_checkpoint(str(model))
        net, labels = load_model(checkpoint, None, cache_dir=cache_dir, offline=offline, progress=progress)
        return Tagger(net, checkpoint, labels, **common)
    path = Path(model).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file (and not a zoo name; see `uvtag models`)")
    zoo_name = arch or (path.stem if path.stem in CHECKPOINTS else None)
    if zoo_name is not None:
        checkpoint = get_checkpoint(zoo_name)
        net, labels = load_model(checkpoint, path, cache_dir=cache_dir, offline=offline, progress=progress)
        return Tagger(net, dataclasses.replace(checkpoint, name=path.stem), labels, **common)
    loaded = read_checkpoint(path)
    if loaded.layout != "uvtag":
        raise CheckpointError(
            f"{path}: a plain {loaded.layout} state dict does not say how to feed it; "
            "pass --arch with its zoo name (frames, views, labels), e.g. --arch " + DEFAULT_MODEL
        )
    net = build_model(loaded.config)
    load_into(net, loaded.state_dict, source=str(path))
    return Tagger(net, _checkpoint_from_uvtag(path, loaded.config, loaded.meta), loaded.labels, **common)
