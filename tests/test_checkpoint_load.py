"""Reading checkpoint files: real key schemas, containers, MMAction2 layout, uvtag format, bad files."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from uvtag.cli import app
from uvtag.errors import CheckpointError
from uvtag.model.labels import read_labels
from uvtag.model import ModelConfig, build_model
from uvtag.model import weights
from uvtag.model.weights import (
    convert_mmaction2,
    load_into,
    load_model,
    load_state_dict_file,
    read_checkpoint,
    reorder_classes,
    save_checkpoint,
)
from uvtag.model.shapes import infer_architecture
from uvtag.model.zoo import get_checkpoint
from videogen import write_video

DATA = Path(__file__).parent / "data"
KEYS = {  # key schema file -> zoo entry with that architecture
    "keys_b16_k400": "k400_uniformerv2_b16_8x224",
    "keys_l14_k400": "k400_k710_uniformerv2_l14_8x224",
    "keys_l14_336_k400": "k400_k710_uniformerv2_l14_32x336",
    "keys_l14_336_frozen_k400": "frozen_k400_k710_uniformerv2_l14_8x336",
    "keys_b16_ssv2": "sthv2_uniformerv2_b16_16x224",
    "keys_l14_ssv2": "sthv2_uniformerv2_l14_16x224",
}


# --------------------------------------------------------------------------------------------
# The zoo configs produce exactly the official key schemas


def _build_on_meta(config: ModelConfig) -> torch.nn.Module:
    """Shapes and dtypes without allocating (L/14 SSv2 is ~2.3 GB in fp32)."""
    with torch.device("meta"):
        return build_model(config)


@pytest.mark.parametrize("schema, entry", sorted(KEYS.items()))
def test_zoo_config_matches_official_key_schema(schema, entry):
    ref = json.loads((DATA / "keys" / f"{schema}.json").read_text())
    model = _build_on_meta(get_checkpoint(entry).config)
    ours = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in model.state_dict().items()}
    assert list(ours) == list(ref["keys"])  # same keys, same order
    assert ours == ref["keys"]
    assert len(ours) == ref["num_tensors"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"]
    buffers = sum(b.numel() for b in model.buffers())
    assert buffers == ref.get("num_buffer_elements", 0)


def test_infer_architecture_reads_the_real_schemas():
    ref = json.loads((DATA / "keys" / "keys_l14_ssv2.json").read_text())
    fake = {k: torch.empty(v["shape"], device="meta") for k, v in ref["keys"].items()}
    assert infer_architecture(fake) == (
        "L/14 (width 1024, 24 blocks, 224 px) with 174 classes, local MHRA, temporal downsampling, 16 global blocks"
    )
    ref = json.loads((DATA / "keys" / "keys_l14_336_frozen_k400.json").read_text())
    fake = {k: torch.empty(v["shape"], device="meta") for k, v in ref["keys"].items()}
    assert infer_architecture(fake) == (
        "frozen L/14@336 (width 1024, 24 blocks, 336 px) with 400 classes, no local MHRA, 4 global blocks"
    )
    assert infer_architecture({"foo": torch.zeros(1)}).startswith("not a UniFormerV2 state dict")


# --------------------------------------------------------------------------------------------
# Tiny real weights (official fixtures) in every container


def _fixture(name: str):
    meta = json.loads((DATA / "fixtures" / f"{name}.json").read_text())
    config = ModelConfig.from_official(meta["vision_transformer_kwargs"])
    state = torch.load(DATA / "fixtures" / f"{name}.state_dict.pt", map_location="cpu", weights_only=True)
    io = torch.load(DATA / "fixtures" / f"{name}.io.pt", map_location="cpu", weights_only=True)
    return config, state, io["input"]


@pytest.fixture(scope="module")
def k400like():
    config, state, clip = _fixture("tiny_k400like_t8")
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        logits = model(clip)
    return config, state, clip, logits


def _logits(config, state_dict, clip):
    model = build_model(config)
    load_into(model, state_dict, source="test")
    with torch.inference_mode():
        return model(clip)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: OrderedDict(sd),
        lambda sd: {"epoch": 30, "model_state": sd, "optimizer_state": {}, "cfg": "TRAIN:\n  ENABLE: False\n"},
        lambda sd: {"state_dict": sd, "meta": {"epoch": 5}},
        lambda sd: {"model": sd},
        lambda sd: {"module": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["bare", "ordered", "model_state", "state_dict", "model", "module", "module_prefix", "nested_prefix"],
)
def test_containers_load_to_identical_logits(tmp_path, k400like, wrap):
    config, state, clip, expected = k400like
    path = tmp_path / "w.pyth"
    torch.save(wrap(state), path)
    loaded = read_checkpoint(path)
    assert loaded.layout == "official"
    assert list(loaded.state_dict) == list(state)
    assert torch.equal(_logits(config, loaded.state_dict, clip), expected)


def _to_mmaction2(state: dict, order: list[int]) -> dict:
    """MMAction2 layout: norm / cls_head names, head rows permuted by `order`, plus preprocessor keys."""
    out = {}
    for k, v in state.items():
        if k.startswith("backbone.transformer.proj.0."):
            k = "backbone.transformer.norm." + k.rsplit(".", 1)[1]
        elif k.startswith("backbone.transformer.proj.2."):
            k = "cls_head.fc_cls." + k.rsplit(".", 1)[1]
            v = v[order]
        out[k] = v
    out["data_preprocessor.mean"] = torch.tensor([114.75] * 3)
    out["data_preprocessor.std"] = torch.tensor([57.375] * 3)
    return out


def test_mmaction2_layout_with_permuted_rows(tmp_path, k400like):
    config, state, clip, expected = k400like
    official = [f"action {c}" for c in "jihgfedcba"]  # official order (10 classes)
    mm = sorted(official)  # MMAction2: alphabetical
    order = [official.index(n) for n in mm]  # mm row i holds official row order[i]
    path = tmp_path / "mm.pth"
    torch.save({"meta": {"mmengine_version": "0.7.0"}, "state_dict": _to_mmaction2(state, order)}, path)

    loaded = read_checkpoint(path)
    assert loaded.layout == "mmaction2"
    assert not any(k.startswith(("cls_head", "data_preprocessor", "backbone.transformer.norm")) for k in loaded.state_dict)
    mm_logits = _logits(config, loaded.state_dict, clip)  # rows in mm order
    # the head's GEMM over permuted rows may block its output differently (AVX2 kernels do): the
    # same numbers to float32 rounding, not the same bits
    torch.testing.assert_close(mm_logits, expected[:, order], rtol=1e-6, atol=1e-6)

    fixed = load_state_dict_file(path, mmaction2_labels=mm, labels=official)
    assert torch.equal(_logits(config, fixed, clip), expected)


def test_reorder_classes_refuses_different_names(k400like):
    _, state, _, _ = k400like
    names = [f"c{i}" for i in range(10)]
    with pytest.raises(CheckpointError, match="names differ"):
        reorder_classes(state, names, names[:9] + ["other"])


def _tiny_model(num_classes: int):
    """A random tiny global-only model with a real-size head, and its logits on a random clip."""
    config = ModelConfig(input_resolution=16, patch_size=4, width=32, layers=2, heads=4, t_size=4,
                         return_list=(0, 1), n_layers=2, n_dim=32, n_head=4, num_classes=num_classes)
    torch.manual_seed(0)
    model = build_model(config)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    clip = torch.randn(1, 3, 4, 16, 16)
    with torch.inference_mode():
        expected = model(clip)
    return config, model, clip, expected


def test_load_model_maps_mmaction2_rows_to_the_official_kinetics400_list(tmp_path):
    """A 400-class tiny model: MMAction2 rows (alphabetical) end up in the official K400 order."""
    config, model, clip, expected = _tiny_model(400)
    official, mm = read_labels("kinetics400"), read_labels("kinetics400_mmaction2")
    assert official != mm
    order = [official.index(n) for n in mm]
    path = tmp_path / "tiny_mm.pth"
    torch.save({"state_dict": _to_mmaction2(model.state_dict(), order)}, path)
    entry = dataclasses.replace(get_checkpoint("k400_k710_uniformerv2_b16_8x224"), config=config, num_frames=4)

    loaded_model, labels = load_model(entry, path, offline=True)
    assert labels == official
    with torch.inference_mode():
        assert torch.equal(loaded_model(clip), expected)


def test_official_file_under_an_mmaction2_entry_gets_alphabetical_rows(tmp_path):
    config, model, clip, expected = _tiny_model(600)
    path = tmp_path / "official.pyth"
    torch.save(model.state_dict(), path)
    twin = get_checkpoint("uniformerv2-large-p14-res224_clip-kinetics710-pre_u8_kinetics600-rgb_20221219-cf88e4c2")
    loaded_model, labels = load_model(dataclasses.replace(twin, config=config), path, offline=True)
    assert labels == read_labels("kinetics600_mmaction2")
    official = read_labels("kinetics600")
    with torch.inference_mode():
        assert torch.equal(loaded_model(clip), expected[:, [official.index(n) for n in labels]])


def test_mmaction2_k710_rows_that_cannot_be_mapped_are_refused(tmp_path):
    config, model, _, _ = _tiny_model(710)
    path = tmp_path / "mm_k710.pth"
    torch.save({"state_dict": _to_mmaction2(model.state_dict(), list(range(710)))}, path)
    entry = dataclasses.replace(get_checkpoint("k710_uniformerv2_b16_8x224"), config=config)
    with pytest.raises(CheckpointError, match=r"mm_k710\.pth: mmaction2 file whose rows \(kinetics710_mmaction2\) do not"):
        load_model(entry, path, offline=True)


def test_uvtag_file_for_another_architecture_is_refused(tmp_path):
    config, model, _, _ = _tiny_model(400)
    path = save_checkpoint(tmp_path / "mine.pt", model, read_labels("kinetics400"))
    with pytest.raises(CheckpointError, match="this file looks like ViT p4 .*; the model you asked for is B/16"):
        load_model(get_checkpoint("k400_uniformerv2_b16_8x224"), path, offline=True)


def test_uvtag_format_round_trip_is_bit_identical(tmp_path):
    config, state, clip = _fixture("tiny_ssv2like_t16")
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    labels = [f"class {i}" for i in range(config.num_classes)]
    path = save_checkpoint(tmp_path / "mine.uvtag.pt", model, labels, {"checkpoint": "tiny", "epoch": 3})
    assert not (tmp_path / "mine.uvtag.pt.tmp").exists()

    loaded = read_checkpoint(path)
    assert loaded.layout == "uvtag"
    assert loaded.config == config
    assert loaded.labels == tuple(labels)
    assert loaded.meta == {"checkpoint": "tiny", "epoch": 3}
    assert list(loaded.state_dict) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert loaded.state_dict[k].dtype == v.dtype and torch.equal(loaded.state_dict[k], v), k

    again, again_labels = load_model(None, path, offline=True)
    assert again_labels == tuple(labels)
    with torch.inference_mode():
        assert torch.equal(again(clip), model(clip))


def test_save_checkpoint_checks_labels_and_meta(tmp_path):
    config, state, _ = _fixture("tiny_frozen_p14_t4")
    model = build_model(config)
    with pytest.raises(ValueError, match="labels"):
        save_checkpoint(tmp_path / "x.pt", model, ["a", "b"])
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "x.pt", model, [str(i) for i in range(config.num_classes)], {"obj": object()})
    assert not (tmp_path / "x.pt").exists()


def test_missing_num_batches_tracked_is_filled(k400like):
    config, state, clip = _fixture("tiny_ssv2like_t16")
    reference = _logits(config, state, clip)
    stripped = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(stripped) < len(state)
    assert torch.equal(_logits(config, stripped, clip), reference)


# --------------------------------------------------------------------------------------------
# Files that must be refused, with one readable line


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CustomClass:
    pass


def test_pickle_that_runs_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pyth"
    torch.save({"backbone.conv1.weight": torch.zeros(1), "x": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "not a plain weights file" in message and "nothing was executed" in message
    assert "system" in message and str(path) in message and "\n" not in message
    assert not marker.exists()


def test_pickle_with_custom_class_is_refused(tmp_path):
    path = tmp_path / "custom.pth"
    torch.save({"model": _CustomClass()}, path)
    with pytest.raises(CheckpointError, match=r"not a plain weights file.*_CustomClass"):
        read_checkpoint(path)


def test_raw_pickle_is_refused(tmp_path):
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(str(tmp_path / "pwned"))))
    with pytest.raises(CheckpointError, match="raw.pkl"):
        read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_file(tmp_path, k400like):
    _, state, _, _ = k400like
    path = tmp_path / "full.pyth"
    torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"full\.pyth: truncated or corrupt checkpoint"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n", b"\x00" * 64])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"notes\.txt: (not a PyTorch checkpoint|corrupt)"):
        read_checkpoint(path)


def test_checkpoint_of_something_else(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"not a UniFormerV2 checkpoint \(no backbone"):
        read_checkpoint(path)
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "absent.pyth")


def test_wrong_architecture_message(k400like):
    _, state, _, _ = k400like
    ssv2_config, _, _ = _fixture("tiny_ssv2like_t16")
    with pytest.raises(CheckpointError) as info:
        load_into(build_model(ssv2_config), state, source="k400like.pyth")
    assert str(info.value) == (
        "k400like.pyth: this file looks like ViT p4 (width 32, 4 blocks, 16 px) with 10 classes, "
        "no local MHRA, 2 global blocks; the model you asked for is ViT p4 (width 32, 4 blocks, 16 px) "
        "with 12 classes, local MHRA, temporal downsampling, 4 global blocks"
    )


def test_wrong_class_count_message(k400like):
    config, state, _, _ = k400like
    model = build_model(dataclasses.replace(config, num_classes=400))
    with pytest.raises(CheckpointError, match="the classifier has 10 classes but the model you asked for has 400"):
        load_into(model, state, source="k400like.pyth")


def test_unexpected_keys_are_summarised(k400like):
    config, state, _, _ = k400like
    extra = dict(state, **{"backbone.ln_post.weight": torch.zeros(32)})
    with pytest.raises(CheckpointError, match=r"1 unexpected \(backbone\.ln_post\.weight\)"):
        load_into(build_model(config), extra)


def test_plain_state_dict_needs_a_zoo_entry(tmp_path, k400like):
    _, state, _, _ = k400like
    torch.save(state, tmp_path / "w.pyth")
    with pytest.raises(CheckpointError, match="name the zoo model"):
        load_model(None, tmp_path / "w.pyth", offline=True)


def test_convert_mmaction2_renames_only_head_keys():
    sd = {
        "backbone.conv1.weight": torch.zeros(1),
        "backbone.transformer.norm.weight": torch.ones(1),
        "cls_head.fc_cls.bias": torch.ones(2),
        "data_preprocessor.mean": torch.zeros(3),
    }
    assert list(convert_mmaction2(sd)) == [
        "backbone.conv1.weight",
        "backbone.transformer.proj.0.weight",
        "backbone.transformer.proj.2.bias",
    ]


# --------------------------------------------------------------------------------------------
# uvtag files with bad fields, through `uvtag classify -m FILE`: one line, no traceback, exit 1

_cli = CliRunner()


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("ckpt_videos") / "two_seconds.mp4", num_frames=40, fps=20)


def _payload(tiny_checkpoint: str) -> dict:
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


def _classify(model: Path, video: Path):
    result = _cli.invoke(app, ["classify", str(video), "-m", str(model), "-q", "-f", "json"], catch_exceptions=False)
    assert "Traceback" not in result.stderr + result.stdout
    return result


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _set(obj: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        obj = obj.setdefault(key, {}) if isinstance(obj.get(key, {}), dict) else obj[key]
    obj[last] = value


BAD_FIELDS = [  # (field to set, bad value, text the message must hold)
    ("meta", "not a mapping", "meta must be a mapping"),
    ("meta", [1, 2], "meta must be a mapping"),
    ("meta.dataset", ["kinetics"], "meta.dataset must be text"),
    ("meta.protocol", "2x3", "meta.protocol must be a mapping"),
    ("meta.protocol.num_clips", "two", "meta.protocol.num_clips must be an int 1 or more"),
    ("meta.protocol.num_clips", 2.5, "meta.protocol.num_clips must be an int"),
    ("meta.protocol.num_clips", True, "meta.protocol.num_clips must be an int"),
    ("meta.protocol.num_clips", 1_000_000, "3,000,000 views a video"),
    ("meta.protocol.num_crops", 5, "meta.protocol.num_crops must be an int 1 to 3"),
    ("meta.protocol.num_clip", 2, "unknown meta.protocol field 'num_clip'"),
    ("meta.protocol.mean", 0.45, "meta.protocol.mean must be 3 finite numbers"),
    ("meta.protocol.mean", [0.45, 0.45], "meta.protocol.mean must be 3 finite numbers"),
    ("meta.protocol.mean", ["0.45", "0.45", "0.45"], "meta.protocol.mean must be 3 finite numbers"),
    ("meta.protocol.std", [0.0, 0.0, 0.0], "meta.protocol.std must be 3 finite numbers > 0"),
    ("meta.protocol.std", [0.2, float("nan"), 0.2], "meta.protocol.std must be 3 finite numbers > 0"),
    ("meta.protocol.std", [0.2, float("inf"), 0.2], "meta.protocol.std must be 3 finite numbers > 0"),
    ("meta.protocol.sampler", "uniform", 'meta.protocol.sampler must be "kinetics" or "sth"'),
    ("meta.protocol.channel_order", 3, 'meta.protocol.channel_order must be "RGB" or "BGR"'),
    ("labels", [0, 1, 2, 3, 4], "labels[0] must be a class name"),
    ("labels", "walking", "labels must be a list of 5 class names"),
    ("labels", ["walking", "running", "", "waving", "clapping"], "labels[2] must be a class name"),
    ("labels", ["walking", "running"], "2 labels for 5 classes"),
    ("config", "tiny", "config must be a mapping"),
    ("config.input_resolution", "32", "config.input_resolution must be an int 1 or more"),
    ("config.t_size", 10**6, "config.t_size must be an int 1 to 256"),
    ("config.mlp_factor", 1e9, "config.mlp_factor must be a number in (0, 16]"),
    ("config.layers", 3, "its config describes"),  # the tensors have 2 blocks
    ("config.wdith", 32, "unknown config field 'wdith'"),
    ("version", True, "version True"),
    ("state_dict", [1, 2], "state_dict must be a mapping"),
]


@pytest.mark.parametrize("field, value, message", BAD_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD_FIELDS])
def test_uvtag_file_with_a_bad_field_is_one_line(tiny_checkpoint, short_video, tmp_path, field, value, message):
    payload = _payload(tiny_checkpoint)
    _set(payload, field, value)
    model = tmp_path / "bad.pt"
    torch.save(payload, model)
    result = _classify(model, short_video)
    assert result.exit_code == 1 and result.stdout == ""
    line = _error_line(result)
    assert message in line and "bad.pt" in line


def test_valid_protocol_fields_are_read(tiny_checkpoint, short_video, tmp_path):
    payload = _payload(tiny_checkpoint)
    payload["meta"]["protocol"] = {"num_clips": 1, "num_crops": 1, "sampler": "sth", "mean": [0, 0.5, 1],
                                   "std": [0.25, 0.5, 1], "channel_order": "BGR"}
    torch.save(payload, tmp_path / "ok.pt")
    loaded = read_checkpoint(tmp_path / "ok.pt")
    assert loaded.meta["protocol"]["mean"] == (0.0, 0.5, 1.0) and loaded.meta["dataset"] == "test"
    result = _classify(tmp_path / "ok.pt", short_video)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["videos"][0]["num_views"] == 1


def test_nan_scores_are_refused_not_written(tiny_checkpoint, short_video, tmp_path):
    payload = _payload(tiny_checkpoint)
    payload["state_dict"]["backbone.transformer.proj.2.bias"][0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    result = _classify(tmp_path / "nan.pt", short_video)
    assert result.exit_code == 1 and result.stdout == ""
    assert "not a finite number" in _error_line(result)


def _deflated_copy(src: Path, dst: Path) -> Path:
    """`src` (a torch.save zip) rewritten with every entry deflated, as a zip bomb would be."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    return dst


def test_zip_bomb_is_refused_before_inflating(tiny_checkpoint, short_video, tmp_path, monkeypatch):
    payload = _payload(tiny_checkpoint)
    payload["padding"] = torch.zeros(32 << 20, dtype=torch.uint8)  # 32 MiB of zeros deflate to ~32 KiB
    torch.save(payload, tmp_path / "plain.pt")
    bomb = _deflated_copy(tmp_path / "plain.pt", tmp_path / "bomb.pt")
    assert bomb.stat().st_size * 64 < (32 << 20)
    assert _classify(bomb, short_video).exit_code == 0  # torch inflates deflated entries; under 1 GiB: fine
    monkeypatch.setattr(weights, "INFLATE_FREE_BYTES", 1 << 20)  # the bound, scaled down to 1 MiB
    assert _classify(tmp_path / "plain.pt", short_video).exit_code == 0  # stored entries: ratio ~1
    inflated = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: inflated.append(a))
    result = _classify(bomb, short_video)
    assert result.exit_code == 1
    line = _error_line(result)
    assert "bomb.pt: its zip entries would inflate to 32 MiB" in line and "refused before inflating" in line
    assert inflated == []  # torch.load never ran


def test_default_inflate_bound_refuses_6_mb_that_declare_2_gb(tmp_path, monkeypatch):
    path = tmp_path / "bomb.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(6_000_000))
    monkeypatch.setattr(weights, "_declared_inflated_bytes", lambda p: 2_000_000_000)
    with pytest.raises(CheckpointError, match=r"inflate to 1,907 MiB from a 5\.7 MiB file \(333x, at most 64x above 1 GiB\)"):
        read_checkpoint(path)
    monkeypatch.setattr(weights, "_declared_inflated_bytes", lambda p: 1_000_000_000)  # under 1 GiB: inflated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)
