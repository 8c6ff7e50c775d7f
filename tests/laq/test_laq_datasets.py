"""Scene discovery, pair enumeration, scene-level sampling, debug subsets, the split and the bad-data policy."""
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.data import BadSampleError, SkippedSample, collate_skipping, sorted_frames
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
    assert [p.name for p in sorted_frames(video)] == [
        "img_00001.jpg", "img_00002.jpg", "img_3.jpg", "img_00010.jpg", "img_00100.jpg"]
    scenes, report = discover_scenes(str(tmp_path / "root"))  # 4..9 and 11..99 are missing: the run 1-3 is kept
    assert len(scenes) == 1 and [p.name for p in scenes[0].frames] == ["img_00001.jpg", "img_00002.jpg", "img_3.jpg"]
    assert "3->10, 10->100" in report.skipped[0][1]


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


def test_truncated_jpeg_and_png_are_bad_samples(tmp_path):
    """OpenCV decodes a truncated JPEG partially (grey end, only a libjpeg warning); common.read_image refuses it, so
    the pair is skipped and counted (strict: an error naming the file)."""
    write_dataset(tmp_path / "a", scenes=1, frames=4, image_size=32, square=6, step_px=1)
    frame = tmp_path / "a" / "scene_0000" / "frame_0001.jpg"
    frame.write_bytes(frame.read_bytes()[: len(frame.read_bytes()) // 2])
    png = tmp_path / "a" / "scene_0000" / "frame_0003.png"
    cv2.imwrite(str(png), np.zeros((32, 32, 3), np.uint8))
    png.write_bytes(png.read_bytes()[:-20])
    (tmp_path / "a" / "scene_0000" / "frame_0003.jpg").unlink()
    scenes, _ = discover_scenes(str(tmp_path / "a"))
    items = [PairDataset(scenes, [1], 32, {})[i] for i in range(3)]
    assert [isinstance(item, SkippedSample) for item in items] == [True, True, True]
    assert "Truncated image" in items[0].reason and items[2].path.endswith("frame_0003.png")
    with pytest.raises(BadSampleError, match="Truncated image.*frame_0001.jpg"):
        PairDataset(scenes, [1], 32, {}, strict=True)[0]


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


def test_gap_in_frame_numbering_splits_the_scene_so_no_pair_bridges_it(tmp_path):
    write_dataset(tmp_path / "a", scenes=2, frames=8, image_size=16, square=4, step_px=1)
    (tmp_path / "a" / "scene_0000" / "frame_0004.jpg").unlink()  # frame 4 missing: 0-3 and 5-7
    scenes, report = discover_scenes(str(tmp_path / "a"))
    runs = [[int(p.stem.split("_")[1]) for p in s.frames] for s in scenes if s.folder.name == "scene_0000"]
    assert runs == [[0, 1, 2, 3], [5, 6, 7]] and "3->5" in report.skipped[0][1]
    pairs = PairDataset(scenes, [2], 16, {})
    for i, t, o in pairs.pairs:
        numbers = [int(p.stem.split("_")[1]) for p in pairs.scenes[i].frames]
        assert numbers[t + o] - numbers[t] == o  # two frames apart means two frames apart
    train, val = split_scenes(scenes, 0.5, seed=0)  # the two runs of one folder stay on one side
    assert not {s.folder for s in train} & {s.folder for s in val}
    with pytest.raises(BadSampleError, match="frame numbering jumps"):
        discover_scenes(str(tmp_path / "a"), strict=True)
    strided = tmp_path / "strided" / "v"
    strided.mkdir(parents=True)
    for number in (0, 2, 4, 6):  # every other frame kept: regular, not a gap
        cv2.imwrite(str(strided / f"img_{number:05d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert len(discover_scenes(str(tmp_path / "strided"), layout="rawframes")[0]) == 1


def test_short_csv_row_is_a_named_error_or_skip(tmp_path):
    write_dataset(tmp_path / "a", scenes=3, frames=4, image_size=16, square=4, step_px=1)
    lines = (tmp_path / "a" / "scenes.csv").read_text().splitlines()
    lines[2] = "1,scene_0001"  # 2 of 7 fields
    (tmp_path / "a" / "scenes.csv").write_text("\n".join(lines) + "\n")
    scenes, report = discover_scenes(str(tmp_path / "a"))
    assert len(scenes) == 2 and "scenes.csv:3" in report.skipped[0][0] and "2 fields" in report.skipped[0][1]
    with pytest.raises(BadSampleError, match=r"scenes.csv:3: row has 2 fields, the header has 7"):
        discover_scenes(str(tmp_path / "a"), strict=True)


def test_scene_folders_outside_the_root_are_refused_unless_allowed(tmp_path):
    write_dataset(tmp_path / "outside", scenes=1, frames=4, image_size=16, square=4, step_px=1)
    root = tmp_path / "root"
    root.mkdir()
    _write_csv(root, [{"scene_folder": "../outside/scene_0000"}])
    with pytest.raises(BadSampleError, match="scenes.csv: scene_folder.*points outside the data folder.*allow_outside_root"):
        discover_scenes(str(root))
    _write_csv(root, [{"scene_folder": str(tmp_path / "outside" / "scene_0000")}])
    with pytest.raises(BadSampleError, match="outside"):
        discover_scenes(str(root))
    scenes, _ = discover_scenes(str(root), allow_outside_root=True)
    assert len(scenes) == 1


def test_split_by_keeps_a_source_on_one_side_and_val_filters_choose_val(tmp_path):
    scenes = [Scene(folder=Path(f"{src}_part_{k}"), frames=[Path(f"f{i}.jpg") for i in range(5)],
                    meta={"source": src, "part": str(k), "source_position": str(k / 4)})
              for src in ("a", "b", "c", "d", "e") for k in range(4)]
    for seed in range(5):
        train, val = split_scenes(scenes, 0.4, seed, split_by="source")
        assert {s.meta["source"] for s in train}.isdisjoint({s.meta["source"] for s in val})
        assert len(val) == 8  # two whole sources
    train, val = split_scenes(scenes, 0.0, 0, val_filters={"source_position": [">=", 0.75]})
    assert {s.meta["part"] for s in val} == {"3"} and len(train) == 15  # the last quarter of every source
    with pytest.raises(ValueError, match="both sides"):
        split_scenes(scenes, 0.0, 0, split_by="source", val_filters={"source_position": [">=", 0.75]})
    with pytest.raises(ValueError, match="split_by='camera'"):
        split_scenes(scenes, 0.2, 0, split_by="camera")


def test_scene_level_validation_has_k_fixed_draws_per_scene():
    scenes = [fake_scene(40, f"s{i}") for i in range(3)]
    val = SceneDataset(scenes, [5, 10], 8, {}, seed=1, draws=8)
    assert len(val) == 24
    draws = [val.draw(i) for i in range(len(val))]
    assert len(set(draws[:8])) > 4  # several different pairs of scene 0
    assert draws == [SceneDataset(scenes, [5, 10], 8, {}, seed=1, draws=8).draw(i) for i in range(24)]
    single = SceneDataset(scenes, [5, 10], 8, {}, seed=1)  # draws=1 is the training behaviour, unchanged
    assert len(single) == 3 and [single.draw(i) for i in range(3)] == [
        SceneDataset(scenes, [5, 10], 8, {}, seed=1, draws=1).draw(i) for i in range(3)]


def test_reverse_and_augment_give_real_pairs(tmp_path):
    write_dataset(tmp_path / "a", scenes=2, frames=5, image_size=16, square=4, step_px=1)
    scenes, _ = discover_scenes(str(tmp_path / "a"))
    forward = PairDataset(scenes, [2], 16, {})
    both = PairDataset(scenes, [2], 16, {}, reverse=True)
    assert len(both) == 2 * len(forward)
    i, t, o = both.pairs[len(forward)]
    assert o == -2 and torch.equal(both[len(forward)]["first"], forward[forward.pairs.index((i, t + o, 2))]["future"])
    augmented = PairDataset(scenes, [2], 16, {}, augment=True, seed=3)
    a, b = augmented[0], augmented[0]
    assert torch.equal(a["first"], b["first"])  # drawn from (seed, epoch, index): the same after a resume
    augmented.set_epoch(1)
    assert not torch.equal(augmented[0]["first"], a["first"])
    assert a["first"].shape == (3, 16, 16) and 0 <= float(a["first"].min()) and float(a["first"].max()) <= 1
