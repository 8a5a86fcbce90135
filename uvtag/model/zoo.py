"""The checkpoint zoo: every released UniFormerV2 file, with its architecture and how to feed it.

Names are the official file stems of MODEL_ZOO.md in the official repository OpenGVLab/UniFormerV2
(`k400_k710_uniformerv2_b16_8x224`) and, for MMAction2's re-hosted files, MMAction2's own file
stems. Each `Checkpoint` holds the `ModelConfig` (architecture only) plus everything about the
weights: locations, checksum, label list, test protocol (frames, clips x crops), normalisation
and channel order.

The per-family settings are those of the official configs (exp/*/config.yaml in that repository):
Kinetics/K710/MiT/ANet/HACS ("global-only"): no local MHRA, no temporal downsampling, 4 global
blocks on the last 4 backbone blocks. Something-Something ("full"): double local MHRA,
temporal downsampling, 8 (B/16) or 16 (L/14) global blocks.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from uvtag.errors import UnknownModelError
from uvtag.model.uniformerv2 import ModelConfig

__all__ = [
    "CHECKPOINTS",
    "Checkpoint",
    "available_models",
    "get_checkpoint",
]

OSS_ROOT = "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/uniformerv2/"  # official MODEL_ZOO.md links
HF_ROOT = "https://huggingface.co/Andy1621/uniformerv2/resolve/main/"  # author's HF mirror (2 files)
MMACTION2_ROOT = "https://download.openmmlab.com/mmaction/v1.0/recognition/uniformerv2/"
KINETICS_MEAN = (0.45, 0.45, 0.45)  # official DATA.MEAN, on pixels / 255
KINETICS_STD = (0.225, 0.225, 0.225)  # official DATA.STD


@dataclass(frozen=True)
class Checkpoint:
    """One downloadable weight file and how to run it (official MODEL_ZOO test protocol)."""

    name: str  # file stem, e.g. "k400_k710_uniformerv2_b16_8x224"
    dataset: str  # e.g. "Kinetics-400"
    backbone: str  # "B/16", "L/14", "L/14@336", "frozen L/14@336"
    pretrain: str  # e.g. "CLIP+K710"
    config: ModelConfig
    labels: str | None  # stem in uvtag/assets/labels, None = names unknown (placeholders)
    num_frames: int  # frames per clip fed to the model
    input_size: int  # crop side in pixels (= config.input_resolution)
    num_clips: int  # temporal clips per video at test time
    num_crops: int  # spatial crops per clip (3 = left/centre/right, 1 = centre)
    filename: str  # file name in the cache and in weights/
    urls: tuple[str, ...]  # every known location, tried in order
    sha256: str | None = None  # full hex digest where known
    sha256_prefix: str | None = None  # MMAction2 names carry the first 8 hex digits
    layout: str = "official"  # "official" (bare backbone.* state dict), "mmaction2" or "uvtag" (bundled)
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    channel_order: str = "RGB"  # "BGR" for Something-Something (trained on cv2-decoded frames)
    sampler: str = "kinetics"  # "kinetics" (decoded video) or "sth" (frame list, 1-based names)
    top1: float | None = None  # reported top-1 (%) under this protocol, None if not reported
    gmac_per_view: float = 0.0  # multiply-accumulates per view, in 1e9
    notes: str = ""

    @property
    def num_views(self) -> int:
        """Views per video at test time (clips x crops)."""
        return self.num_clips * self.num_crops

    @property
    def num_classes(self) -> int:
        """Rows of the classifier head."""
        return self.config.num_classes

    @property
    def gmac_per_video(self) -> float:
        """Multiply-accumulates for the full test protocol, in 1e9."""
        return self.gmac_per_view * self.num_views

    @property
    def filenames(self) -> tuple[str, ...]:
        """Every name this file is known by (official name first, then each mirror's)."""
        names = [self.filename] + [unquote(u.rsplit("/", 1)[-1]) for u in self.urls]
        return tuple(dict.fromkeys(names))

    @property
    def expected_digest(self) -> str | None:
        """The known sha256 (full) or its prefix, lower case; None if nothing is known."""
        return self.sha256 or self.sha256_prefix


# --------------------------------------------------------------------------------------------
# Architectures (geometry of the official constructors, slowfast/models/uniformerv2_model.py)

_VIT = {  # backbone geometry fixed by the official constructors
    "B/16": dict(input_resolution=224, patch_size=16, width=768, layers=12, heads=12, output_dim=512),
    "L/14": dict(input_resolution=224, patch_size=14, width=1024, layers=24, heads=16, output_dim=768),
    "L/14@336": dict(input_resolution=336, patch_size=14, width=1024, layers=24, heads=16, output_dim=768),
}


def kinetics_config(vit: str, num_classes: int, frames: int, *, frozen: bool = False, drop: bool = False) -> ModelConfig:
    """Global-only family: plain CLIP ViT + 4 global blocks on the last 4 backbone blocks."""
    geo = _VIT[vit]
    last = geo["layers"]
    return ModelConfig(
        **geo,
        t_size=frames,
        temporal_downsample=False,
        no_lmhra=True,
        return_list=tuple(range(last - 4, last)),
        n_layers=4,
        n_dim=geo["width"],
        n_head=geo["heads"],
        num_classes=num_classes,
        frozen=frozen,
        backbone_drop_path_rate=0.2 if drop else 0.0,  # training only (ANet/HACS)
        drop_path_rate=0.4 if drop else 0.0,
    )


def sth_config(vit: str, frames: int, num_classes: int = 174) -> ModelConfig:
    """Full family: double local MHRA, temporal downsampling, global blocks on the last 8/16."""
    geo = _VIT[vit]
    n = 8 if vit == "B/16" else 16
    last = geo["layers"]
    return ModelConfig(
        **geo,
        t_size=frames,
        temporal_downsample=True,
        no_lmhra=False,
        double_lmhra=True,
        dw_reduction=1.5,
        return_list=tuple(range(last - n, last)),
        n_layers=n,
        n_dim=geo["width"],
        n_head=geo["heads"],
        num_classes=num_classes,
        mlp_dropout=(0.5,) * n,
        backbone_drop_path_rate=0.2,  # training only
        drop_path_rate=0.4,
    )


# --------------------------------------------------------------------------------------------
# Official entries (MODEL_ZOO.md of OpenGVLab/UniFormerV2)

_DATASETS = {  # key: (dataset name, classes, label list)
    "k710": ("Kinetics-710", 710, "kinetics710"),
    "k400": ("Kinetics-400", 400, "kinetics400"),
    "k600": ("Kinetics-600", 600, "kinetics600"),
    "k700": ("Kinetics-700", 700, "kinetics700"),
    "mit": ("Moments in Time v1", 339, "mit"),
    "sthv1": ("Something-Something V1", 174, None),
    "sthv2": ("Something-Something V2", 174, "sthv2"),
    "anet": ("ActivityNet v1.3", 200, "activitynet"),
    "hacs": ("HACS", 200, "hacs"),
}
_FOLDER = {"mit": "mitv1"}  # OSS folder when it differs from the key

# multiply-accumulates per view, computed analytically; they agree with the FLOPs column of
# configs/recognition/uniformerv2/README.md in open-mmlab/mmaction2 (0.1T, 0.7T, 1.3T, ...)
_GMAC = {  # (backbone, frames, family) -> GMAC
    ("B/16", 8, "k"): 148.1, ("L/14", 8, "k"): 665.6, ("L/14", 16, "k"): 1331.2, ("L/14", 32, "k"): 2662.4,
    ("L/14@336", 8, "k"): 1567.0, ("L/14@336", 32, "k"): 6267.8, ("L/14@336", 64, "k"): 12535.6,
    ("B/16", 16, "s"): 187.2, ("B/16", 32, "s"): 374.4, ("L/14", 16, "s"): 858.2, ("L/14", 32, "s"): 1716.2,
}

_HF_FILES = {  # official stem -> (HF file name, sha256); the only UniFormerV2 weights on HF
    "k400_k710_uniformerv2_b16_8x224": (
        "k400+k710_uniformerv2_b16_8x224.pyth",
        "743da61c97f6281bd11ef1d364c2101698c8e89ff7722ee957378e36ef344005",
    ),
    "mit_uniformerv2_b16_8x224": (
        "mit_uniformerv2_b16_8x224.pyth",
        "99af00a793ca63b4f92885c1f50799e8140c22f2c0e790a22079c5772deb7d73",
    ),
}

_VIT_TAG = {"B/16": "b16", "L/14": "l14", "L/14@336": "l14"}


def _official(
    ds: str, vit: str, frames: int, views: tuple[int, int], top1: float | None, *, k710: bool = False, frozen: bool = False
) -> Checkpoint:
    """One MODEL_ZOO row. views = (crops, clips) as written in MODEL_ZOO ("8x3x4")."""
    dataset, num_classes, labels = _DATASETS[ds]
    res = _VIT[vit]["input_resolution"]
    stem = f"{'frozen_' if frozen else ''}{ds}{'_k710' if k710 else ''}_uniformerv2_{_VIT_TAG[vit]}_{frames}x{res}"
    sth = ds.startswith("sth")
    if sth:
        config = sth_config(vit, frames, num_classes)
        pretrain = "CLIP"
    else:
        config = kinetics_config(vit, num_classes, frames, frozen=frozen, drop=ds in ("anet", "hacs"))
        pretrain = {"mit": "CLIP+K710+K400", "anet": "CLIP+K710+K400", "hacs": "CLIP+K710+K400"}.get(
            ds, "CLIP+K710" if k710 else "CLIP"
        )
    filename = f"{stem}.pyth"
    urls = [OSS_ROOT + f"{_FOLDER.get(ds, ds)}/{filename}"]
    sha256 = None
    if stem in _HF_FILES:
        hf_name, sha256 = _HF_FILES[stem]
        urls.insert(0, HF_ROOT + quote(hf_name))  # HF first: its sha256 is known
    crops, clips = views
    return Checkpoint(
        name=stem,
        dataset=dataset,
        backbone=("frozen " if frozen else "") + vit,
        pretrain=pretrain,
        config=config,
        labels=labels,
        num_frames=frames,
        input_size=res,
        num_clips=clips,
        num_crops=crops,
        filename=filename,
        urls=tuple(urls),
        sha256=sha256,
        channel_order="BGR" if sth else "RGB",
        sampler="sth" if sth else "kinetics",
        top1=top1,
        gmac_per_view=_GMAC[(vit, frames, "s" if sth else "k")],
        notes="class names unknown (no SSv1 list is bundled): placeholders class_0..173" if labels is None else "",
    )


def _kinetics_family(ds: str, tops: dict[str, float | None]) -> list[Checkpoint]:
    """The K400/K600/K700 rows, which share one pattern; tops keyed by a short row id."""
    t = tops.get
    return [
        _official(ds, "B/16", 8, (3, 4), t("b16")),
        _official(ds, "B/16", 8, (3, 4), t("b16_k710"), k710=True),
        _official(ds, "L/14", 8, (3, 4), t("l14_8"), k710=True),
        _official(ds, "L/14", 16, (3, 4), t("l14_16"), k710=True),
        _official(ds, "L/14", 32, (3, 2), t("l14_32"), k710=True),
        _official(ds, "L/14@336", 32, (3, 2), t("l336_32"), k710=True),
        _official(ds, "L/14@336", 64, (3, 2), t("l336_64"), k710=True),
        _official(ds, "L/14@336", 8, (1, 3), t("frozen"), frozen=True),
        _official(ds, "L/14@336", 8, (1, 3), t("frozen_k710"), k710=True, frozen=True),
        _official(ds, "L/14@336", 32, (3, 4), t("frozen_k710_32"), k710=True, frozen=True),
    ]


def _official_entries() -> list[Checkpoint]:
    entries = [
        _official("k710", "B/16", 8, (3, 4), None),
        _official("k710", "L/14", 8, (3, 4), None),
        _official("k710", "L/14@336", 8, (3, 4), None),
        _official("k710", "L/14@336", 8, (1, 3), None, frozen=True),
    ]
    k = ("b16", "b16_k710", "l14_8", "l14_16", "l14_32", "l336_32", "l336_64", "frozen", "frozen_k710", "frozen_k710_32")
    entries += _kinetics_family("k400", dict(zip(k, (84.4, 85.6, 88.8, 89.1, 89.3, 89.7, 90.0, 86.7, 87.8, 88.9))))
    entries += _kinetics_family("k600", dict(zip(k, (85.0, 86.1, 89.0, 89.4, 89.5, 89.9, 90.1, 87.4, 88.2, 89.2))))
    entries += _kinetics_family("k700", dict(zip(k, (75.8, 76.3, 80.8, 81.2, 81.5, 82.1, 82.7, 79.6, 79.7, 80.8))))
    entries += [
        _official("mit", "B/16", 8, (3, 4), 42.6),
        _official("mit", "L/14", 8, (3, 4), 47.0),
        _official("mit", "L/14@336", 8, (3, 4), 47.8),
    ]
    for ds, tops in (("sthv1", (56.8, 59.4, 60.5, 62.7)), ("sthv2", (69.5, 70.7, 72.1, 73.0))):
        entries += [
            _official(ds, vit, frames, (3, 1), top)
            for (vit, frames), top in zip((("B/16", 16), ("B/16", 32), ("L/14", 16), ("L/14", 32)), tops)
        ]
    entries += [
        _official("anet", "L/14", 16, (3, 10), 94.3),
        _official("anet", "L/14", 32, (3, 10), 94.7),
        _official("hacs", "L/14", 16, (3, 10), 95.5),
        _official("hacs", "L/14", 32, (3, 10), 95.4),
    ]
    return entries


# --------------------------------------------------------------------------------------------
# MMAction2 files: other key layout (norm / cls_head) and, for Kinetics, alphabetical label order

_MM_KINETICS_L14 = {  # (classes, frames, resolution) -> sha256 prefix; converted from the official files
    (400, 8, 224): "972ea063", (400, 16, 224): "6dc86d05", (400, 32, 224): "56a46f64", (400, 32, 336): "1dd7650f",
    (600, 8, 224): "cf88e4c2", (600, 16, 224): "38ff0e3e", (600, 32, 224): "d450d071", (600, 32, 336): "f984f5d2",
    (700, 8, 224): "bfb9f401", (700, 16, 224): "745209d2", (700, 32, 224): "eebe7056", (700, 32, 336): "95cf9046",
}
_MM_B16_DIR = "uniformerv2-base-p16-res224_clip{pre}_{gpus}xb32-u8_{ds}-rgb"  # retrained by MMAction2


def _mm_files() -> list[tuple[str, str, bool]]:
    """(path under MMACTION2_ROOT, official twin, converted from the official file?)."""
    files = [
        (f"kinetics{n}/uniformerv2-large-p14-res{res}_clip-kinetics710-pre_u{f}_kinetics{n}-rgb_20221219-{h}.pth",
         f"k{n}_k710_uniformerv2_l14_{f}x{res}", True)
        for (n, f, res), h in _MM_KINETICS_L14.items()
    ]
    d = "uniformerv2-base-p16-res224_clip-pre_u8_kinetics710-rgb"
    files.append((f"{d}/{d}_20230612-63cdbad9.pth", "k710_uniformerv2_b16_8x224", True))
    for res, h in ((224, "d002a407"), (336, "d723ddc1")):
        files.append((f"kinetics710/uniformerv2-large-p14-res{res}_clip-pre_u8_kinetics710-rgb_20230612-{h}.pth",
                      f"k710_uniformerv2_l14_8x{res}", True))
    for res, h in ((224, "882c0598"), (336, "9020986e")):  # "p16" is MMAction2's spelling of these L/14 files
        files.append((f"mitv1/uniformerv2-large-p16-res{res}_clip-kinetics710-kinetics-k400-pre_u8_mitv1-rgb_"
                      f"20221219-{h}.pth", f"mit_uniformerv2_l14_8x{res}", True))
    for pre, gpus, ds, h, twin in (
        ("", 8, "kinetics400", "e29fc968", "k400_uniformerv2_b16_8x224"),
        ("-kinetics710-pre", 8, "kinetics400", "75be0806", "k400_k710_uniformerv2_b16_8x224"),
        ("-kinetics710-pre", 8, "kinetics600", "544f06f0", "k600_k710_uniformerv2_b16_8x224"),
        ("", 8, "kinetics700", "f02e48ad", "k700_uniformerv2_b16_8x224"),
        ("-kinetics710-pre", 8, "kinetics700", "69070837", "k700_k710_uniformerv2_b16_8x224"),
        ("-kinetics710-kinetics-k400-pre", 16, "mitv1", "a6f4a567", "mit_uniformerv2_b16_8x224"),
    ):
        d = _MM_B16_DIR.format(pre=pre, gpus=gpus, ds=ds)
        files.append((f"{d}/{d}_20230313-{h}.pth", twin, False))
    return files


def _mmaction2(path: str, twin: Checkpoint, converted: bool) -> Checkpoint:
    """An MMAction2 file: same architecture and protocol as its official twin, own layout/labels."""
    filename = path.rsplit("/", 1)[-1]
    mm_labels = None if twin.labels is None else f"{twin.labels}_mmaction2"
    if twin.labels in ("mit",):  # MMAction2 re-ordered only the Kinetics heads
        mm_labels = twin.labels
    what = "converted from the official file" if converted else "retrained by MMAction2, not the official weights"
    return Checkpoint(
        name=filename[: -len(".pth")],
        dataset=twin.dataset,
        backbone=twin.backbone,
        pretrain=twin.pretrain,
        config=twin.config,
        labels=mm_labels,
        num_frames=twin.num_frames,
        input_size=twin.input_size,
        num_clips=twin.num_clips,
        num_crops=twin.num_crops,
        filename=filename,
        urls=(MMACTION2_ROOT + path,),
        sha256_prefix=re.search(r"-([0-9a-f]{8})\.pth$", filename).group(1),
        layout="mmaction2",
        top1=twin.top1 if converted else None,
        gmac_per_view=twin.gmac_per_view,
        notes=f"MMAction2 file, {what} ({twin.name})",
    )


# --------------------------------------------------------------------------------------------
# Models trained by uvtag and shipped in the repository's weights/ folder (uvtag format)


def motion_tiny_config() -> ModelConfig:
    """The bundled synthetic-motion model: full design (double local MHRA, temporal downsampling,
    3 global blocks) at 64 px, patch 8, width 96, 5 blocks, 8 frames, 9 classes."""
    return ModelConfig(
        input_resolution=64, patch_size=8, width=96, layers=5, heads=4, t_size=8, temporal_downsample=True,
        no_lmhra=False, double_lmhra=True, dw_reduction=1.5, return_list=(2, 3, 4), n_layers=3, n_dim=96,
        n_head=4, num_classes=9, mlp_dropout=(0.1,) * 3, cls_dropout=0.1,
    )


def _bundled_entries() -> list[Checkpoint]:
    return [
        Checkpoint(
            name="motion-tiny", dataset="synthetic motion", backbone="tiny (w96, p8, 64 px)", pretrain="none",
            config=motion_tiny_config(), labels="motion", num_frames=8, input_size=64, num_clips=1, num_crops=3,
            filename="motion-tiny.pt", urls=(), layout="uvtag", top1=MOTION_TINY_TOP1, gmac_per_view=0.2,
            notes="trained by `uvtag train synthetic:motion` on 2 CPU cores; see weights/MOTION_TINY.md",
        ),
    ]


MOTION_TINY_TOP1 = 0.9767  # `uvtag classify` + `uvtag eval` on 300 fresh encoded clips (tests/test_motion_model.py)


def _build_zoo() -> dict[str, Checkpoint]:
    official = {c.name: c for c in _official_entries()}
    mm = [_mmaction2(path, official[twin], conv) for path, twin, conv in _mm_files()]
    zoo = dict(official)
    for c in mm:
        zoo[c.name] = c
    for c in _bundled_entries():
        zoo[c.name] = c
    return zoo


CHECKPOINTS: dict[str, Checkpoint] = _build_zoo()


def available_models(layout: str | None = None) -> list[str]:
    """Zoo names in table order; `layout` ("official" / "mmaction2" / "uvtag") filters."""
    return [n for n, c in CHECKPOINTS.items() if layout is None or c.layout == layout]


def get_checkpoint(name: str) -> Checkpoint:
    """The zoo entry `name`; also accepts its file name or the HF spelling (`k400+k710_...`).

    Raises UnknownModelError listing the closest names.
    """
    if name in CHECKPOINTS:
        return CHECKPOINTS[name]
    for c in CHECKPOINTS.values():
        if name in c.filenames or name in (f.rsplit(".", 1)[0] for f in c.filenames):
            return c
    close = difflib.get_close_matches(name, list(CHECKPOINTS), n=5, cutoff=0.5)
    known = f"{len(CHECKPOINTS)} known names: `uvtag models` or uvtag.available_models()"
    if not close:
        close = [n for n in CHECKPOINTS if n.endswith("b16_8x224")][:5]
    raise UnknownModelError(f"unknown model {name!r}; closest known names: {', '.join(close)} ({known})")
