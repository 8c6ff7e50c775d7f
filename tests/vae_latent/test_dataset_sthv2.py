import json

import pytest
import torch

from common.data import BadSampleError, SkippedSample, collate_skipping
from vae_latent.dataset_sthv2 import FrameDataset, build_datasets, discover_videos, split_videos
from vae_latent.vae_config import load_config


def data_params(path, **values):
    params = load_config()["data_params"]
    params.update(data_path=str(path), val_fraction=0.2, **values)
    return params


def test_frames_layout_is_found_sorted_by_frame_number(frames_data):
    (frames_data / "frames" / "1000" / "img_00010.jpg").write_bytes(
        (frames_data / "frames" / "1000" / "img_00000.jpg").read_bytes())
    videos, layout = discover_videos(frames_data)
    assert layout == "frames" and [v.video_id for v in videos] == [str(1000 + i) for i in range(6)]
    assert [p.name for p in videos[0].frames] == ["img_00000.jpg", "img_00001.jpg", "img_00002.jpg",
                                                   "img_00003.jpg", "img_00010.jpg"]


def test_laq_scene_layout_is_read_from_scenes_csv(scenes_data):
    videos, layout = discover_videos(scenes_data)
    assert layout == "scenes" and [v.video_id for v in videos] == [f"scene_{i:03d}" for i in range(6)]
    assert videos[0].frames[0].name == "frame_0000.jpg" and len(videos[0].frames) == 4


def test_missing_data_path_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_videos(tmp_path / "nowhere")


def test_official_label_files_define_the_split(frames_data):
    labels = frames_data / "labels"
    labels.mkdir()
    (labels / "something-something-v2-train.json").write_text(json.dumps(
        [{"id": "1000", "label": "x", "template": "x", "placeholders": []},
         {"id": "1002", "label": "y", "template": "y", "placeholders": []}]))
    (labels / "something-something-v2-validation.json").write_text(json.dumps([{"id": "1005", "label": "z"}]))
    videos, _ = discover_videos(frames_data)
    train, val, how = split_videos(videos, frames_data)
    assert [v.video_id for v in train] == ["1000", "1002"] and [v.video_id for v in val] == ["1005"]
    assert "something-something-v2-train.json" in how


def test_hash_split_is_deterministic_disjoint_and_order_independent(frames_data):
    videos, _ = discover_videos(frames_data)
    train, val, how = split_videos(videos, frames_data, val_fraction=0.3)
    train2, val2, _ = split_videos(list(reversed(videos)), frames_data, val_fraction=0.3)
    assert {v.video_id for v in val} == {v.video_id for v in val2} and len(val) >= 1
    assert {v.video_id for v in train} | {v.video_id for v in val} == {v.video_id for v in videos}
    assert not {v.video_id for v in train} & {v.video_id for v in val}
    assert "hash" in how


def test_one_frame_per_video_repeats_per_epoch_and_changes_between_epochs(frames_data):
    videos, _ = discover_videos(frames_data)
    dataset = FrameDataset(videos, 16, "one", seed=7)
    assert len(dataset) == 6
    draws = []
    for epoch in range(6):
        dataset.set_epoch(epoch)
        draws.append([dataset.locate(i)[1] for i in range(6)])
    dataset.set_epoch(0)
    assert [dataset.locate(i)[1] for i in range(6)] == draws[0]
    assert len({tuple(d) for d in draws}) > 1
    item = dataset[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["image"].min() >= -1 and item["image"].max() <= 1 and item["image"].min() < 0


def test_all_frames_mode_covers_every_frame(frames_data):
    videos, _ = discover_videos(frames_data)
    dataset = FrameDataset(videos, 16, "all")
    assert len(dataset) == 24
    assert {dataset.locate(i) for i in range(24)} == {(v, f) for v in range(6) for f in range(4)}
    train, val, _ = build_datasets(data_params(frames_data, frames_per_video="all"), 16, 0)
    assert len(train) + len(val) == 24 and len(val) % 4 == 0 and len(val) > 0


def test_bad_frame_is_skipped_or_raises_in_strict_mode(frames_data):
    bad = frames_data / "frames" / "1001" / "img_00000.jpg"
    bad.write_bytes(b"not a jpeg")
    videos, _ = discover_videos(frames_data)
    dataset = FrameDataset(videos, 16, "all")
    skipped = dataset[4]
    assert isinstance(skipped, SkippedSample) and skipped.path == str(bad)
    batch = collate_skipping([dataset[3], skipped, dataset[5]])
    assert batch["image"].shape[0] == 2 and len(batch["skipped"]) == 1
    with pytest.raises(BadSampleError, match="img_00000.jpg"):
        FrameDataset(videos, 16, "all", strict=True)[4]


def test_random_flips_mirror_training_frames_repeatably_and_never_validation(frames_data):
    videos, _ = discover_videos(frames_data)
    plain = FrameDataset(videos, 16, "all", seed=5)
    flipped = FrameDataset(videos, 16, "all", seed=5, random_flips="both")
    seen = set()
    for epoch in range(3):
        plain.set_epoch(epoch)
        flipped.set_epoch(epoch)
        for index in range(len(plain)):
            dims = flipped.flips(index)
            seen.add(tuple(dims))
            expected = torch.flip(plain[index]["image"], dims) if dims else plain[index]["image"]
            assert torch.equal(flipped[index]["image"], expected)
    assert seen == {(), (2,), (1,), (2, 1)}  # each flip, both and neither occur
    flipped.set_epoch(1)
    again = [flipped.flips(i) for i in range(len(flipped))]
    flipped.set_epoch(2)
    assert [flipped.flips(i) for i in range(len(flipped))] != again  # redrawn each epoch ...
    flipped.set_epoch(1)
    assert [flipped.flips(i) for i in range(len(flipped))] == again  # ... the same after a resume
    horizontal = FrameDataset(videos, 16, "all", seed=5, random_flips="horizontal")
    assert all(horizontal.flips(i) in ([], [2]) for i in range(len(horizontal)))
    train, val, _ = build_datasets(data_params(frames_data, frames_per_video="all", random_flips="both"), 16, 0)
    assert train.flip_dims == (2, 1) and val.flip_dims == ()
    with pytest.raises(ValueError, match="random_flips"):
        FrameDataset(videos, 16, "all", random_flips="diagonal")
