import numpy as np
import pytest
import torch
import cv2

from common.data import BadSampleError, SkippedSample
from common.sampler import ResumableSampler
from stereo.train.dataloader import (EvalDataset, SizedBatchSampler, TrainingDataset, depth_uint8_decoding,
                                     depth_uint8_encoding, list_pairs, read_disparity, read_pfm, write_pfm)
from stereo.train.augment import AUGMENTATION_DEFAULTS


def test_depth_uint8_known_values():
    image = np.array([[[0, 0, 1], [0, 1, 0], [0, 0, 255], [1, 0, 0], [255, 255, 255]]], np.uint8)
    decoded = depth_uint8_decoding(image)
    np.testing.assert_allclose(decoded[0], [0.001, 0.255, 0.255, 65.025, 16646.655], rtol=1e-6)
    encoded = depth_uint8_encoding(np.array([[0.001, 0.255, 65.025, 12.345]]))
    np.testing.assert_array_equal(encoded[0], [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 48, 105]])


def test_depth_uint8_round_trip_to_a_thousandth_of_a_pixel():
    disp = np.random.default_rng(0).uniform(0, 500, size=(17, 23))
    decoded = depth_uint8_decoding(depth_uint8_encoding(disp))
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, disp, atol=0.0005 + 1e-4)


def test_depth_uint8_rejects_negative_and_nonfinite():
    with pytest.raises(ValueError):
        depth_uint8_encoding(np.array([[-1.0]]))
    with pytest.raises(ValueError):
        depth_uint8_encoding(np.array([[np.inf]]))


def test_png_disparity_is_read_in_rgb_order(tmp_path):
    code = depth_uint8_encoding(np.array([[70.5, 1.25]]))
    cv2.imwrite(str(tmp_path / "d.png"), cv2.cvtColor(code, cv2.COLOR_RGB2BGR))
    np.testing.assert_allclose(read_disparity(tmp_path / "d.png"), [[70.5, 1.25]], atol=1e-4)


def test_pfm_round_trip_keeps_rows_and_inf(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    array[0, 0] = np.inf
    write_pfm(tmp_path / "a.pfm", array)
    np.testing.assert_array_equal(read_pfm(tmp_path / "a.pfm"), array)
    assert np.isnan(read_disparity(tmp_path / "a.pfm")[0, 0])  # inf = invalid


def _image(path, height=40, width=64, seed=0):
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_middlebury_layout_and_valid_mask(tmp_path):
    scene = tmp_path / "Piano"
    scene.mkdir()
    _image(scene / "im0.png"), _image(scene / "im1.png", seed=1)
    disp = np.full((40, 64), 10.0, np.float32)
    disp[0, :5] = np.inf
    disp[1, :3] = 500.0  # beyond max_disparity
    write_pfm(scene / "disp0GT.pfm", disp)
    sample = EvalDataset(tmp_path, "middlebury", max_disparity=192)[0]
    assert sample["left"].shape == (3, 40, 64) and sample["left"].dtype == torch.float32
    assert not sample["valid"][0, 0, :5].any() and not sample["valid"][0, 1, :3].any()
    assert sample["valid"].sum() == 40 * 64 - 8
    assert float(sample["disparity"][0, 5, 5]) == 10.0 and float(sample["disparity"][0, 0, 0]) == 0.0


def test_kitti_layout_uint16_over_256_and_zero_invalid(tmp_path):
    for sub in ("image_2", "image_3", "disp_occ_0"):
        (tmp_path / sub).mkdir()
    _image(tmp_path / "image_2" / "000000_10.png"), _image(tmp_path / "image_3" / "000000_10.png", seed=1)
    raw = np.zeros((40, 64), np.uint16)
    raw[10:20] = 256 * 12 + 128  # 12.5 px
    cv2.imwrite(str(tmp_path / "disp_occ_0" / "000000_10.png"), raw)
    sample = EvalDataset(tmp_path, "kitti", max_disparity=192)[0]
    assert sample["valid"].sum() == 10 * 64
    assert torch.allclose(sample["disparity"][0, 15], torch.full((64,), 12.5))


def test_bad_file_is_skipped_by_default_and_raises_in_strict_mode(tmp_path, synth_dirs):
    train, _ = synth_dirs
    (tmp_path / "left" / "rgb").mkdir(parents=True)
    (tmp_path / "right" / "rgb").mkdir(parents=True)
    (tmp_path / "left" / "disparity").mkdir(parents=True)
    _image(tmp_path / "left" / "rgb" / "a.png")
    (tmp_path / "right" / "rgb" / "a.png").write_bytes(b"not a png")
    cv2.imwrite(str(tmp_path / "left" / "disparity" / "a.png"), np.zeros((40, 64, 3), np.uint8))
    assert isinstance(EvalDataset(tmp_path, "folder", 64)[0], SkippedSample)
    with pytest.raises(BadSampleError, match="a.png"):
        EvalDataset(tmp_path, "folder", 64, strict=True)[0]


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_pairs(tmp_path / "nowhere", "folder")


def _entry(path, weight=1.0):
    return {"name": "", "path": str(path), "weight": weight, "label_type": "stereo",
            "image_augmentation": ["jittering", "erasing"], "format": "folder"}


def test_mixing_follows_weights_and_samples_repeat_per_seed_epoch_index(synth_dirs, tmp_path):
    train, val = synth_dirs
    dataset = TrainingDataset([_entry(train, 1.0), _entry(val, 0.0)], [[48, 32]], AUGMENTATION_DEFAULTS, 32, seed=3)  # [W, H]
    names = {dataset[(i, 0)]["name"] for i in range(12)}
    assert all(str(train) in name for name in names)  # weight 0 is never drawn
    first, again = dataset[(5, 0)], dataset[(5, 0)]
    assert torch.equal(first["left"], again["left"]) and torch.equal(first["disparity"], again["disparity"])
    assert first["left"].shape == (3, 32, 48) and first["valid"].dtype == torch.bool
    dataset.epoch = 1
    assert not torch.equal(dataset[(5, 0)]["left"], first["left"])


def test_sized_batch_sampler_gives_one_size_per_batch(synth_dirs):
    train, _ = synth_dirs
    sampler = ResumableSampler(range(12), seed=0)
    sampler.set_epoch(0)
    batches = list(SizedBatchSampler(sampler, 4, num_sizes=3, seed=0))
    assert len(batches) == 3
    for batch in batches:
        assert len({size for _, size in batch}) == 1
    sizes = {batch[0][1] for epoch in range(6) for batch in _epoch_batches(sampler, epoch)}
    assert len(sizes) > 1


def _epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(SizedBatchSampler(sampler, 4, num_sizes=3, seed=0))
