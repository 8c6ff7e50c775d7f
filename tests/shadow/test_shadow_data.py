"""Datasets: documented batch keys/shapes/ranges, the 90/10 split, validation errors naming the file, the
shared skip policy, and the benchmark tar read from a local path."""
import io
import json
import tarfile

import cv2
import numpy as np
import pytest
import torch

from common.data import BadSampleError, SkippedSample
from shadow.data import (DatasetError, ShadowFolderDataset, check_shadow_range, create_dataloaders,
                         BenchmarkTarDataset)
import shadow.train as train
from shadow.evaluate import main as evaluate_main
from shadow.synth import write_dataset


@pytest.fixture
def folder(tmp_path):
    return write_dataset(tmp_path / "data", 10, image_size=32)


def test_batches_have_the_documented_keys_shapes_and_ranges(folder):
    train, val = create_dataloaders("custom", folder, batch_size=4, num_workers=0, image_size=24)
    assert len(train.dataset) == 9 and len(val.dataset) == 1  # deterministic 90/10 split of sorted stems
    assert val.dataset.stems == ["000009"]
    batch = next(iter(train))
    assert batch["object_image"].shape == (4, 3, 24, 24) and batch["object_image"].dtype == torch.float32
    assert -1.0 <= batch["object_image"].min() and batch["object_image"].max() <= 1.0
    assert batch["mask"].shape == (4, 1, 24, 24) and set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert (batch["object_image"] * (1 - batch["mask"])).abs().max() == 0  # background removed
    assert batch["shadow_map"].shape == (4, 1, 24, 24) and 0 <= batch["shadow_map"].min() <= batch["shadow_map"].max() <= 1
    for key in ("theta", "phi", "size"):
        assert batch[key].shape == (4,) and batch[key].dtype == torch.float32
    metadata = json.loads((folder / "metadata.json").read_text())
    assert batch["theta"][0].item() == metadata[batch["key"][0]]["theta"]


def test_missing_shadow_file_is_an_error_naming_it(folder):
    (folder / "shadows" / "000004.png").unlink()
    with pytest.raises(DatasetError, match=r"shadows/000004\.png"):
        create_dataloaders("custom", folder, 2, 0, 32)


def test_stem_missing_from_metadata_is_an_error_naming_it(folder):
    metadata = json.loads((folder / "metadata.json").read_text())
    del metadata["000002"]
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(DatasetError, match=r"metadata\.json.*000002"):
        create_dataloaders("custom", folder, 2, 0, 32)


@pytest.mark.parametrize("key,value", [("theta", 60), ("phi", -5), ("size", 1), ("size", "big")])
def test_out_of_range_parameter_is_an_error_naming_the_entry(folder, key, value):
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["000007"][key] = value
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(DatasetError, match=rf"metadata\.json \['000007'\].*{key}"):
        create_dataloaders("custom", folder, 2, 0, 32)


def test_hidden_files_of_macos_are_ignored(folder):
    for part in ("objects", "masks", "shadows"):
        (folder / part / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "objects" / "._000003.png").write_bytes(b"\0\5\26\7")  # AppleDouble resource fork
    train_loader, val_loader = create_dataloaders("custom", folder, 2, 0, 32)
    assert len(train_loader.dataset) + len(val_loader.dataset) == 10
    assert not any(stem.startswith(".") for stem in train_loader.dataset.stems + val_loader.dataset.stems)


def test_metadata_entries_without_an_image_are_counted_in_a_warning_or_refused_when_strict(folder, caplog):
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata.update({"lost_1": metadata["000000"], "lost_2": metadata["000001"]})
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with caplog.at_level("WARNING", logger="shadow.data"):
        train_loader, _ = create_dataloaders("custom", folder, 2, 0, 32)
    assert len(train_loader.dataset) == 9
    assert "metadata.json has 2 entries without an image" in caplog.text and "'lost_1'" in caplog.text
    with pytest.raises(DatasetError, match=r"metadata\.json has 2 entries without an image.*'lost_1', 'lost_2'"):
        create_dataloaders("custom", folder, 2, 0, 32, strict=True)


def test_non_png_file_is_an_error_naming_it(folder):
    cv2.imwrite(str(folder / "masks" / "extra.jpg"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"masks/extra\.jpg is not a PNG"):
        create_dataloaders("custom", folder, 2, 0, 32)


def test_shadow_outside_unit_range_is_rejected_with_the_file_name():
    with pytest.raises(BadSampleError, match=r"shadows/x\.png.*outside \[0, 1\]"):
        check_shadow_range(np.array([[0.2, 1.5]], np.float32), "shadows/x.png")
    with pytest.raises(BadSampleError, match="outside"):
        check_shadow_range(np.array([[np.nan]], np.float32), "shadows/y.png")


def test_corrupt_png_is_skipped_by_default_and_raises_in_strict_mode(folder):
    (folder / "shadows" / "000001.png").write_bytes(b"not a png")
    skipped = ShadowFolderDataset(folder, 32)[1]
    assert isinstance(skipped, SkippedSample) and "000001" in skipped.path
    with pytest.raises(BadSampleError, match=r"shadows/000001\.png"):
        ShadowFolderDataset(folder, 32, strict=True)[1]
    train, _ = create_dataloaders("custom", folder, batch_size=9, num_workers=0, image_size=32)
    batch = next(iter(train))
    assert batch["mask"].shape[0] == 8 and len(batch["skipped"]) == 1


def _png(array):
    ok, data = cv2.imencode(".png", array)
    assert ok
    return data.tobytes()


def write_benchmark_tar(path, tracks=(("softness_control", 30, 0, 4), ("vertical_direction_control", 5, 0, 2))):
    with tarfile.open(path, "w") as tar:
        for i, (track, theta, phi, size) in enumerate(tracks):
            key = f"{track}_{i:03d}"
            image = np.full((64, 64, 3), 200, np.uint8)
            image[20:40, 20:40] = (10, 20, 30)
            mask = np.zeros((64, 64), np.uint8)
            mask[20:40, 20:40] = 255
            shadow = np.zeros((64, 64), np.uint8)
            shadow[35:45, 5:25] = 255
            meta = {"track": track, "theta": theta, "phi": phi, "size": size, "r": 8, "light_energy": 1000}
            for part, data in (("image.png", _png(image)), ("mask.png", _png(mask)), ("shadow.png", _png(shadow)),
                               ("metadata.json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{part}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_benchmark_tar_is_read_from_a_local_path_with_track_names(tmp_path):
    tar = write_benchmark_tar(tmp_path / "bench.tar")
    dataset = BenchmarkTarDataset(tar, image_size=32)
    assert len(dataset) == 2
    first = dataset[0]
    assert first["track"] == "softness_control" and first["key"] == "softness_control_000"
    assert first["size"].item() == 4.0  # metadata["size"], not the light radius "r"
    assert first["mask"].sum() == 100 and abs(first["shadow_map"].max().item() - 1.0) < 1e-6
    assert (first["object_image"] * (1 - first["mask"])).abs().max() == 0
    train, val = create_dataloaders("benchmark", tar, batch_size=1, num_workers=0, image_size=32)
    assert len(train.dataset) + len(val.dataset) == 2


def test_benchmark_tar_missing_or_incomplete_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere\.tar"):
        BenchmarkTarDataset(tmp_path / "nowhere.tar", 32)
    path = tmp_path / "broken.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("softness_control_000.image.png")
        data = _png(np.zeros((8, 8, 3), np.uint8))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match="softness_control_000.*mask.png"):
        BenchmarkTarDataset(path, 32)


def test_evaluate_reads_the_benchmark_tar_by_track(tmp_path):
    data = write_dataset(tmp_path / "data", 10, image_size=32)
    train.main(["--data_dir", str(data), "--image_size", "32", "--batch_size", "4", "--mixed_precision", "no",
                "--num_workers", "0", "--max_iterations", "1", "--output_dir", str(tmp_path / "run")])
    tar = write_benchmark_tar(tmp_path / "bench.tar", tracks=[
        ("softness_control", 30, 0, 2), ("softness_control", 30, 0, 4), ("softness_control", 30, 0, 8),
        ("horizontal_direction_control", 35, 20, 2)])
    metrics = evaluate_main(["--checkpoint", str(tmp_path / "run" / "latest_model.pt"), "--benchmark", str(tar),
                             "--output", str(tmp_path / "eval"), "--seeds", "3"])
    assert {"softness_control/iou", "horizontal_direction_control/srmse_std", "all/zncc",
            "baseline/softness_control/rmse"} <= set(metrics)
    assert "vertical_direction_control/iou" not in metrics  # only the tracks present in the tar
    assert metrics["softness_control/iou_std"] >= 0.0
    assert (tmp_path / "eval" / "softness_control.png").is_file()
