"""The checkpoint zoo and the bundled label lists."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from uvtag.errors import UnknownModelError, UsageError
from uvtag.model.labels import available_label_lists, labels_for, placeholder_labels, read_label_file, read_labels
from uvtag.model.shapes import describe_config
from uvtag.model.zoo import (
    CHECKPOINTS,
    HF_ROOT,
    MMACTION2_ROOT,
    OSS_ROOT,
    available_models,
    get_checkpoint,
)

ENTRIES = [c for c in CHECKPOINTS.values() if c.layout != "uvtag"]  # released files only; bundled models: test_demo
OFFICIAL = [c for c in ENTRIES if c.layout == "official"]
MMACTION2 = [c for c in ENTRIES if c.layout == "mmaction2"]


def test_counts_per_dataset_match_model_zoo_table():
    assert len(OFFICIAL) == 49
    assert len(MMACTION2) == 23
    per_dataset = Counter(c.dataset for c in OFFICIAL)
    assert per_dataset == {
        "Kinetics-710": 4, "Kinetics-400": 10, "Kinetics-600": 10, "Kinetics-700": 10,
        "Moments in Time v1": 3, "Something-Something V1": 4, "Something-Something V2": 4,
        "ActivityNet v1.3": 2, "HACS": 2,
    }
    assert available_models() == list(CHECKPOINTS)
    assert available_models("official") == [c.name for c in OFFICIAL]
    assert len(set(available_models())) == len(ENTRIES) + len(available_models("uvtag"))
    assert available_models("uvtag") == ["motion-tiny"]


@pytest.mark.parametrize("c", ENTRIES, ids=lambda c: c.name)
def test_entry_is_well_formed(c):
    cfg = c.config
    assert cfg.t_size == c.num_frames
    assert cfg.input_resolution == c.input_size
    assert c.num_views == c.num_clips * c.num_crops
    assert c.num_crops in (1, 3) and c.num_clips >= 1
    assert c.mean == (0.45,) * 3 and c.std == (0.225,) * 3
    assert c.gmac_per_view > 0 and c.gmac_per_video == pytest.approx(c.gmac_per_view * c.num_views)
    assert c.urls and all(u.startswith("https://") for u in c.urls)
    assert c.filenames[0] == c.filename
    assert c.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", c.sha256)
    if c.layout == "official":
        assert c.filename == f"{c.name}.pyth"
        assert c.urls[-1].startswith(OSS_ROOT) and c.urls[-1].endswith("/" + c.filename)
        assert c.sha256_prefix is None
    else:
        assert c.filename == f"{c.name}.pth" and len(c.urls) == 1
        assert c.urls[0].startswith(MMACTION2_ROOT) and c.urls[0].endswith("/" + c.filename)
        assert c.sha256 is None and c.sha256_prefix == c.name[-8:]
    # the backbone string, the geometry and the name agree
    geometry = {"B/16": (16, 768, 12, 224), "L/14": (14, 1024, 24, 224), "L/14@336": (14, 1024, 24, 336)}
    assert (cfg.patch_size, cfg.width, cfg.layers, cfg.input_resolution) == geometry[c.backbone.removeprefix("frozen ")]
    assert cfg.frozen == c.backbone.startswith("frozen ")
    assert cfg.n_dim == cfg.width and cfg.n_head == cfg.heads
    assert cfg.return_list == tuple(range(cfg.layers - cfg.n_layers, cfg.layers))


@pytest.mark.parametrize("c", ENTRIES, ids=lambda c: c.name)
def test_family_settings(c):
    cfg = c.config
    if c.dataset.startswith("Something-Something"):
        assert (cfg.no_lmhra, cfg.double_lmhra, cfg.temporal_downsample) == (False, True, True)
        assert cfg.n_layers == (8 if c.backbone == "B/16" else 16)
        assert (c.channel_order, c.sampler, c.num_clips, c.num_crops) == ("BGR", "sth", 1, 3)
        assert cfg.num_classes == 174
    else:
        assert (cfg.no_lmhra, cfg.temporal_downsample, cfg.n_layers) == (True, False, 4)
        assert (c.channel_order, c.sampler) == ("RGB", "kinetics")


@pytest.mark.parametrize("c", ENTRIES, ids=lambda c: c.name)
def test_label_list_fits_the_head(c):
    names = labels_for(c.labels, c.num_classes)
    assert len(names) == c.num_classes == len(set(names))
    if c.labels is None:
        assert names == placeholder_labels(c.num_classes) and "placeholder" in c.notes


def test_specific_rows():
    c = get_checkpoint("k400_k710_uniformerv2_b16_8x224")
    assert c.urls[0] == HF_ROOT + "k400%2Bk710_uniformerv2_b16_8x224.pyth"
    assert c.urls[1] == OSS_ROOT + "k400/k400_k710_uniformerv2_b16_8x224.pyth"
    assert c.sha256 == "743da61c97f6281bd11ef1d364c2101698c8e89ff7722ee957378e36ef344005"
    assert "k400+k710_uniformerv2_b16_8x224.pyth" in c.filenames
    assert (c.num_clips, c.num_crops, c.top1, c.pretrain) == (4, 3, 85.6, "CLIP+K710")
    assert get_checkpoint("mit_uniformerv2_b16_8x224").sha256.startswith("99af00a7")
    assert get_checkpoint("mit_uniformerv2_l14_8x336").urls == (OSS_ROOT + "mitv1/mit_uniformerv2_l14_8x336.pyth",)

    frozen = get_checkpoint("frozen_k400_uniformerv2_l14_8x336")
    assert (frozen.num_clips, frozen.num_crops, frozen.top1, frozen.config.frozen) == (3, 1, 86.7, True)
    big = get_checkpoint("k600_k710_uniformerv2_l14_64x336")
    assert (big.num_frames, big.num_clips, big.num_crops, big.gmac_per_view) == (64, 2, 3, 12535.6)
    anet = get_checkpoint("anet_uniformerv2_l14_32x224")
    assert (anet.num_clips, anet.num_views, anet.config.num_classes, anet.labels) == (10, 30, 200, "activitynet")
    ssv2 = get_checkpoint("sthv2_uniformerv2_l14_32x224")
    assert (ssv2.config.t_size, ssv2.config.frames_inside, ssv2.config.return_list) == (32, 16, tuple(range(8, 24)))
    assert get_checkpoint("sthv2_uniformerv2_b16_16x224").config.return_list == tuple(range(4, 12))
    assert get_checkpoint("sthv1_uniformerv2_b16_16x224").labels is None
    assert get_checkpoint("k710_uniformerv2_l14_8x224").config.num_classes == 710


def test_mmaction2_entries_mirror_their_official_twins():
    mm = get_checkpoint("uniformerv2-large-p14-res336_clip-kinetics710-pre_u32_kinetics400-rgb_20221219-1dd7650f")
    twin = get_checkpoint("k400_k710_uniformerv2_l14_32x336")
    assert mm.config == twin.config and mm.num_views == twin.num_views and mm.top1 == twin.top1
    assert mm.labels == "kinetics400_mmaction2" and mm.sha256_prefix == "1dd7650f"
    assert mm.urls[0].endswith("kinetics400/" + mm.filename)
    retrained = get_checkpoint("uniformerv2-base-p16-res224_clip_8xb32-u8_kinetics400-rgb_20230313-e29fc968")
    assert retrained.top1 is None and "not the official weights" in retrained.notes
    mit = get_checkpoint("uniformerv2-large-p16-res224_clip-kinetics710-kinetics-k400-pre_u8_mitv1-rgb_20221219-882c0598")
    assert mit.labels == "mit" and mit.backbone == "L/14"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError) as info:
        get_checkpoint("k400_uniformerv2_b16_8x22")
    message = str(info.value)
    assert message.startswith("unknown model 'k400_uniformerv2_b16_8x22'; closest known names: k400_uniformerv2_b16_8x224, ")
    assert f"{len(CHECKPOINTS)} known names" in message and "\n" not in message
    assert info.value.exit_code == 2
    with pytest.raises(UnknownModelError, match=r"unknown model 'resnet50'; closest known names: k710_uniformerv2_b16_8x224"):
        get_checkpoint("resnet50")


def test_aliases():
    assert get_checkpoint("k400+k710_uniformerv2_b16_8x224").name == "k400_k710_uniformerv2_b16_8x224"
    assert get_checkpoint("k400_uniformerv2_b16_8x224.pyth").name == "k400_uniformerv2_b16_8x224"


def test_describe_config():
    assert describe_config(get_checkpoint("k400_uniformerv2_b16_8x224").config) == (
        "B/16 (width 768, 12 blocks, 224 px) with 400 classes, no local MHRA, 4 global blocks"
    )
    assert describe_config(get_checkpoint("frozen_k710_uniformerv2_l14_8x336").config).startswith(
        "frozen L/14@336 (width 1024, 24 blocks, 336 px) with 710 classes"
    )


# --------------------------------------------------------------------------------------------
# Label lists


def test_bundled_lists():
    lists = available_label_lists()
    assert {"kinetics400", "kinetics600", "kinetics700", "kinetics710", "mit", "sthv2", "activitynet", "hacs"} <= set(lists)
    for name in lists:
        names = read_labels(name)
        assert len(names) == len(set(names)) and all(n == n.strip() and n for n in names), name
    assert read_labels("kinetics400")[:3] == ("riding a bike", "marching", "dodgeball")
    assert read_labels("mit")[:3] == ("clapping", "praying", "dropping")
    assert read_labels("kinetics400") is read_labels("kinetics400")  # cached


@pytest.mark.parametrize("n", [400, 600, 700])
def test_mmaction2_kinetics_lists_are_alphabetical_permutations(n):
    official, mm = read_labels(f"kinetics{n}"), read_labels(f"kinetics{n}_mmaction2")
    assert set(official) == set(mm) and official != mm
    assert list(mm) == sorted(mm)


def test_kinetics710_starts_with_kinetics400():
    assert read_labels("kinetics710")[:400] == read_labels("kinetics400")


def test_unknown_label_list():
    with pytest.raises(UsageError, match="unknown label list 'kinetics401'; bundled lists: activitynet"):
        read_labels("kinetics401")
    with pytest.raises(UsageError):
        read_labels("../labels/kinetics400")
    with pytest.raises(UsageError, match="has 400 names but the model has 10 classes"):
        labels_for("kinetics400", 10)


def test_read_label_file(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("jumping\nrunning\n\n", encoding="utf-8")
    assert read_label_file(f) == ("jumping", "running")
    f.write_text("jumping\njumping\n", encoding="utf-8")
    with pytest.raises(UsageError, match="appears twice"):
        read_label_file(f)
    f.write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(UsageError, match="line 2 is empty"):
        read_label_file(f)
    with pytest.raises(UsageError, match="cannot read"):
        read_label_file(tmp_path / "absent.txt")
