"""Scene discovery, pair enumeration, scene-level sampling, debug subsets, the split and the bad-data policy."""
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.data import BadSampleError, SkippedSample, collate_skipping
from laq.data.datasets import PairDataset, SceneDataset, SubsetWithEpoch
from laq.data.scenes import Scene, discover_scenes, split_scenes
from laq.synth import write_dataset


def fake_scene(n_frames: int, name: str = "s") -> Scene:
    return Scene(folder=Path(name), frames=[Path(f"{name}/frame_{i:04d}.jpg") for i in range(n_frames)])


def test_pair_counts_per_offsets():
    scenes = [fake_scene(100)]
    assert len(PairDataset(scenes, [15, 30, 60], 8, {})) == 85 + 70 + 40
    assert len(PairDataset(scenes, [30], 8, {})) == 70
    two = [fake_scene(100, "a"), fake_scene(31, "b")]
    assert len(PairDataset(two, [30], 8, {})) == 70 + 1
    assert all(t + o < len(two[i].frames) for i, t, o in PairDataset(two, [30], 8, {}).pairs)


def test_scene_level_never_identical_never_clamped_and_new_each_epoch():
    scenes = [fake_scene(n, f"s{n}") for n in (5, 31, 40, 100)]
    dataset = SceneDataset(scenes, [4, 30], 8, {}, seed=3)
    draws = {}
    for epoch in range(30):
        dataset.set_epoch(epoch)
        for index, scene in enumerate(scenes):
            start, offset = dataset.draw(index)
            assert offset > 0 and 0 <= start and start + offset <= len(scene.frames) - 1
            draws.setdefault(index, set()).add((start, offset))
    assert len(draws[3]) > 10  # a new pair each epoch
    assert {o for _, o in draws[0]} == {4}  # the 5-frame scene can only use offset 4


def test_scene_level_is_deterministic_given_seed_epoch_index():
    scenes = [fake_scene(50, f"s{i}") for i in range(4)]
    a, b = SceneDataset(scenes, [10], 8, {}, seed=1), SceneDataset(scenes, [10], 8, {}, seed=1)
    a.set_epoch(5), b.set_epoch(5)
    assert [a.draw(i) for i in range(4)] == [b.draw(i) for i in range(4)]
    b.set_epoch(6)
    assert [a.draw(i) for i in range(4)] != [b.draw(i) for i in range(4)]


def test_debug_subset_depends_on_seed_only():
    base = PairDataset([fake_scene(100)], [15, 30, 60], 8, {})
    first = SubsetWithEpoch(base, 10, sampling_seed=42).indices
    assert first == SubsetWithEpoch(base, 10, sampling_seed=42).indices
    assert first != SubsetWithEpoch(base, 10, sampling_seed=43).indices
    assert first != list(range(10))  # not the first N
    assert len(set(first)) == 10


def test_split_is_by_scene_and_deterministic():
    scenes = [fake_scene(20, f"s{i}") for i in range(50)]
    train, val = split_scenes(scenes, 0.2, seed=7)
    assert len(val) == 10 and len(train) == 40
    assert not {s.folder for s in train} & {s.folder for s in val}
    train2, val2 = split_scenes(scenes, 0.2, seed=7)
    assert [s.folder for s in val] == [s.folder for s in val2]
    pairs_train = PairDataset(train, [5], 8, {})
    pairs_val = PairDataset(val, [5], 8, {})
    train_folders = {pairs_train.scenes[i].folder for i, _, _ in pairs_train.pairs}
    assert not train_folders & {pairs_val.scenes[i].folder for i, _, _ in pairs_val.pairs}


def _write_csv(root: Path, rows: list[dict]) -> None:
    with open(root / "scenes.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_discovery_filters_and_several_roots(tmp_path):
    write_dataset(tmp_path / "a", scenes=6, frames=6, image_size=32, square=6, step_px=1, actions=3)
    write_dataset(tmp_path / "b", scenes=4, frames=6, image_size=32, square=6, step_px=1, actions=2, seed=1)
    scenes, _ = discover_scenes([str(tmp_path / "a"), str(tmp_path / "b")])
    assert len(scenes) == 10 and [int(f.stem.split("_")[1]) for f in scenes[0].frames] == list(range(6))
    only_one, _ = discover_scenes([str(tmp_path / "a")], {"label": 1})
    assert {s.meta["label"] for s in only_one} == {"1"} and len(only_one) == 2
    listed, _ = discover_scenes([str(tmp_path / "a")], {"label_name": ["left", "down"]})
    assert {s.meta["label_name"] for s in listed} == {"left", "down"}
    greater, _ = discover_scenes([str(tmp_path / "a")], {"scene_idx": [">", 3]})
    assert sorted(int(s.meta["scene_idx"]) for s in greater) == [4, 5]


def test_rawframes_layout_orders_by_frame_number(tmp_path):
    video = tmp_path / "root" / "12345"
    video.mkdir(parents=True)
    for number in (1, 2, 10, 100):
        cv2.imwrite(str(video / f"img_{number:05d}.jpg"), np.full((16, 16, 3), number, np.uint8))
    (video / "img_3.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    scenes, _ = discover_scenes(str(tmp_path / "root"))
    assert len(scenes) == 1 and [p.name for p in scenes[0].frames] == [
        "img_00001.jpg", "img_00002.jpg", "img_3.jpg", "img_00010.jpg", "img_00100.jpg"]


def test_missing_folder_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_scenes(str(tmp_path / "nowhere"))


def test_short_scene_and_missing_column_skip_or_raise(tmp_path):
    write_dataset(tmp_path / "a", scenes=3, frames=6, image_size=32, square=6, step_px=1)
    scenes, report = discover_scenes(str(tmp_path / "a"), min_frames=7)
    assert scenes == [] and len(report.skipped) == 3
    with pytest.raises(BadSampleError, match="scene_0000"):
        discover_scenes(str(tmp_path / "a"), min_frames=7, strict=True)
    scenes, report = discover_scenes(str(tmp_path / "a"), {"no_such_column": 1})
    assert scenes == [] and "no_such_column" in report.skipped[0][1]
    with pytest.raises(BadSampleError, match="scenes.csv"):
        discover_scenes(str(tmp_path / "a"), {"no_such_column": 1}, strict=True)


def test_corrupt_jpeg_skipped_and_counted_or_raised(tmp_path):
    write_dataset(tmp_path / "a", scenes=2, frames=4, image_size=32, square=6, step_px=1)
    bad = tmp_path / "a" / "scene_0000" / "frame_0001.jpg"
    bad.write_bytes(b"not a jpeg at all")
    scenes, _ = discover_scenes(str(tmp_path / "a"))
    lenient = PairDataset(scenes, [1], 32, {}, strict=False)
    items = [lenient[i] for i in range(len(lenient))]
    skipped = [item for item in items if isinstance(item, SkippedSample)]
    assert len(skipped) == 2 and all(str(bad) == s.path for s in skipped)  # (0,1) and (1,2) use the bad frame
    batch = collate_skipping(items)
    assert batch["first"].shape == (len(items) - 2, 3, 32, 32) and len(batch["skipped"]) == 2
    strict = PairDataset(scenes, [1], 32, {}, strict=True)
    with pytest.raises(BadSampleError, match="frame_0001.jpg"):
        strict[0]


def test_item_dict_contract(tmp_path):
    write_dataset(tmp_path / "a", scenes=2, frames=5, image_size=32, square=6, step_px=1, actions=2)
    scenes, _ = discover_scenes(str(tmp_path / "a"))
    item = SceneDataset(scenes, [2], 24, {"0": 0, "1": 1})[1]
    assert item["first"].shape == (3, 24, 24) and item["first"].dtype == torch.float32
    assert 0.0 <= float(item["first"].min()) and float(item["future"].max()) <= 1.0
    assert int(item["offset"]) == 2 and int(item["label"]) == 1 and int(item["scene"]) == 1
    assert not torch.equal(item["first"], item["future"])
