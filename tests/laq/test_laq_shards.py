"""WebDataset shards: the writer script and the reader give back the same pairs, split across workers; the writer
mixes scenes; index entries are plain paths; too few shards for the readers is refused at start-up."""
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from common.data import collate_skipping
from laq.config_schema import compose_config
from laq.data.build import build_datasets
from laq.data.datasets import PairDataset
from laq.data.scenes import discover_scenes, split_scenes
from laq.data.shards import read_index, shard_dataset, shard_paths
from laq.synth import write_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "laq" / "scripts" / "1_make_shards.py"


def make_shards(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_write_read_round_trip(tmp_path, monkeypatch):
    write_dataset(tmp_path / "frames", scenes=6, frames=5, image_size=32, square=6, step_px=1, actions=3)
    make_shards(monkeypatch, "--src", str(tmp_path / "frames"), "--out", str(tmp_path / "shards"),
                "--offsets", "1", "3", "--val_split", "0.34", "--max_count", "7", "--seed", "5")
    index = read_index(tmp_path / "shards")
    scenes, _ = discover_scenes(str(tmp_path / "frames"))
    train_scenes, val_scenes = split_scenes(scenes, 0.34, 5)
    expected = PairDataset(train_scenes, [1, 3], 32, {"0": 0, "1": 1, "2": 2})
    assert index["train"]["samples"] == len(expected) == (4 + 2) * len(train_scenes)
    assert index["val"]["samples"] == 6 * len(val_scenes)
    assert len(index["train"]["shards"]) == -(-len(expected) // 7)

    dataset = shard_dataset(tmp_path / "shards", "train", 32, shuffle_buffer=0, seed=0, repeat=False)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_skipping)
    got = []
    for batch in loader:
        for i in range(batch["first"].shape[0]):
            got.append((int(batch["scene"][i]), int(batch["offset"][i]), int(batch["label"][i]),
                        batch["first"][i], batch["future"][i]))
    assert len(got) == len(expected)  # every sample exactly once across the two workers
    want = {}
    for i in range(len(expected)):
        item = expected[i]
        want.setdefault((int(item["scene"]), int(item["offset"]), int(item["label"])), []).append(item)
    for scene, offset, label, first, future in got:
        candidates = want[(scene, offset, label)]
        assert any(torch.allclose(first, c["first"]) and torch.allclose(future, c["future"]) for c in candidates)


def test_shuffle_buffer_changes_order_not_content(tmp_path, monkeypatch):
    write_dataset(tmp_path / "frames", scenes=4, frames=8, image_size=16, square=4, step_px=1)
    make_shards(monkeypatch, "--src", str(tmp_path / "frames"), "--out", str(tmp_path / "s"),
                "--offsets", "1", "--val_split", "0", "--max_count", "100")
    plain = [(int(s["scene"]), float(s["first"].sum())) for s in
             shard_dataset(tmp_path / "s", "train", 16, shuffle_buffer=0, seed=0, repeat=False)]
    mixed = [(int(s["scene"]), float(s["first"].sum())) for s in
             shard_dataset(tmp_path / "s", "train", 16, shuffle_buffer=50, seed=0, repeat=False)]
    assert sorted(plain) == sorted(mixed) and plain != mixed


def test_writer_shuffles_pairs_with_a_fixed_seed(tmp_path, monkeypatch):
    """Scenes are interleaved in the shard (not written scene after scene), the same for the same --seed."""
    write_dataset(tmp_path / "frames", scenes=6, frames=8, image_size=16, square=4, step_px=1)

    def written_scenes(out: str, seed: str) -> list[int]:
        make_shards(monkeypatch, "--src", str(tmp_path / "frames"), "--out", str(tmp_path / out), "--offsets", "1",
                    "--val_split", "0", "--max_count", "100", "--seed", seed)
        return [int(s["scene"]) for s in shard_dataset(tmp_path / out, "train", 16, shuffle_buffer=0, seed=0,
                                                       repeat=False)]

    first, again, other = written_scenes("a", "3"), written_scenes("b", "3"), written_scenes("c", "4")
    assert first == again and first != other and sorted(first) == sorted(other)
    runs = 1 + sum(a != b for a, b in zip(first, first[1:]))  # scene changes in the stream
    assert runs > 20  # 42 pairs of 6 scenes; in scene order there would be 6 runs


def test_index_entries_must_be_paths_inside_the_folder(tmp_path, monkeypatch):
    write_dataset(tmp_path / "frames", scenes=2, frames=4, image_size=16, square=4, step_px=1)
    make_shards(monkeypatch, "--src", str(tmp_path / "frames"), "--out", str(tmp_path / "s"), "--offsets", "1",
                "--val_split", "0")
    index_path = tmp_path / "s" / "index.json"
    good = json.loads(index_path.read_text())
    for entry in ("pipe:cat /etc/passwd", "../outside.tar", "/abs/train-000000.tar", "https://host/x.tar"):
        index = json.loads(json.dumps(good))
        index["train"]["shards"] = [entry]
        index_path.write_text(json.dumps(index))
        with pytest.raises(ValueError, match="not a path inside the shard folder"):
            shard_paths(tmp_path / "s", "train")
    index_path.write_text(json.dumps(good))
    assert shard_paths(tmp_path / "s", "train") == [(tmp_path / "s" / "train-000000.tar").resolve()]


def test_fewer_shards_than_readers_is_refused_with_the_numbers(tmp_path, monkeypatch):
    write_dataset(tmp_path / "frames", scenes=4, frames=6, image_size=16, square=4, step_px=1)
    make_shards(monkeypatch, "--src", str(tmp_path / "frames"), "--out", str(tmp_path / "s"), "--offsets", "1",
                "--val_split", "0", "--max_count", "7")  # 20 pairs -> 3 shards
    cfg = compose_config(["experiment=laq_full", f"data.folder={tmp_path / 's'}", "data.num_workers=2"])
    build_datasets(cfg.data, world_size=1)  # 3 shards >= 1 x 2 readers
    with pytest.raises(ValueError, match=r"3 'train' shard\(s\) for 2 process\(es\) x 2 DataLoader worker\(s\) = 4"):
        build_datasets(cfg.data, world_size=2)
