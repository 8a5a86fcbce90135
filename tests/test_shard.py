"""`--shard i/n`: every input in exactly one shard, the same split on every run and machine."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from uvtag.errors import UsageError
from uvtag.batch.shard import parse_shard, select_shard, shard_key, shard_of

_NAME_CHARS = "abcxyz019 _-.é中"


def _random_tree(rng: random.Random, root: str) -> list[str]:
    """A random list of distinct video paths under `root`, some nested, some odd names."""
    paths: set[str] = set()
    for _ in range(rng.randrange(0, 60)):
        depth = rng.randrange(0, 3)
        parts = ["".join(rng.choice(_NAME_CHARS) for _ in range(rng.randrange(1, 8))) for _ in range(depth + 1)]
        paths.add(os.path.join(root, *parts[:-1], parts[-1] + rng.choice([".mp4", ".mkv", ".MOV"])))
    return sorted(paths)


@pytest.mark.parametrize("seed", range(25))
def test_shards_cover_every_input_exactly_once(seed):
    rng = random.Random(seed)
    inputs = [f"/data/set{k}" for k in range(rng.randrange(1, 4))]
    paths = [p for root in inputs for p in _random_tree(rng, root)]
    paths += [f"/loose/file{k}.mp4" for k in range(rng.randrange(0, 5))]  # files given directly
    count = rng.randrange(1, 12)
    shards = [select_shard(paths, inputs + paths[-3:], i, count) for i in range(count)]
    flat = [p for shard in shards for p in shard]
    assert sorted(flat) == sorted(paths)  # everything, nothing twice
    assert len(flat) == len(set(flat))
    for shard in shards:  # each shard keeps the input order
        assert shard == [p for p in paths if p in set(shard)]


@pytest.mark.parametrize("seed", range(10))
def test_the_split_does_not_depend_on_the_mount_point_or_the_input_order(seed):
    rng = random.Random(100 + seed)
    relative = [p.removeprefix("/r/") for p in _random_tree(rng, "/r")]
    count = rng.randrange(2, 9)
    on_a = [f"/mnt/a/videos/{p}" for p in relative]
    on_b = [f"data/videos/{p}" for p in relative]
    for i in range(count):
        got_a = select_shard(on_a, ["/mnt/a/videos"], i, count)
        got_b = select_shard(on_b, ["other", "data/videos"], i, count)
        assert [p.removeprefix("/mnt/a/videos/") for p in got_a] == [p.removeprefix("data/videos/") for p in got_b]


def test_adding_a_video_moves_no_other_video():
    paths = [f"v/{k}.mp4" for k in range(200)]
    before = {p: shard_of(shard_key(p, ["v"]), 5) for p in paths}
    after = {p: shard_of(shard_key(p, ["v"]), 5) for p in paths + ["v/new.mp4"]}
    assert all(after[p] == before[p] for p in paths)


def test_shard_keys():
    assert shard_key("/x/videos/a/b.mp4", ["/x/videos"]) == "a/b.mp4"
    assert shard_key("/x/videos/a/b.mp4", ["/x", "/x/videos"]) == "a/b.mp4"  # innermost folder
    assert shard_key("/elsewhere/c.mp4", ["/x/videos"]) == "c.mp4"
    assert shard_key("clip.mp4", ["clip.mp4"]) == "clip.mp4"  # a file given directly


def test_shard_numbers_are_fixed_forever():
    """Golden values: sha256-based, so the same on every machine and Python (no hash seed)."""
    assert [shard_of(k, 7) for k in ("a.mp4", "dir/b.mkv", "é/ü.mp4")] == [0, 5, 2]
    code = "from uvtag.batch.shard import shard_of; print(shard_of('dir/b.mkv', 1000))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outs == {f"{shard_of('dir/b.mkv', 1000)}\n"}


def test_roughly_balanced():
    sizes = [len(select_shard([f"{k}.mp4" for k in range(4000)], [], i, 4)) for i in range(4)]
    assert min(sizes) > 900 and max(sizes) < 1100


@pytest.mark.parametrize("text,expected", [("0/1", (0, 1)), ("3/4", (3, 4)), (" 2/10 ", (2, 10))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text,message", [
    ("4/4", "the index must be 0 to 3"), ("-1/4", "the index must be 0 to 3"), ("1", "expected i/n"),
    ("a/b", "expected i/n"), ("1/0", "expected i/n"),
])
def test_parse_shard_refuses(text, message):
    with pytest.raises(UsageError, match=message):
        parse_shard(text)
