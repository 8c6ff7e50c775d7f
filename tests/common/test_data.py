import logging

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from common.data import (BadSampleCounter, BadSampleError, BadSamplePolicy, SkippedSample, collate_skipping,
                         empty_on_any_rank, frame_number, image_to_tensor, read_image, resolve_inside, sorted_frames,
                         truncation)


def write_jpg(path, value=128, size=(8, 12)):
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def test_read_image_returns_rgb_and_resizes(tmp_path):
    bgr = np.zeros((10, 20, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_image(tmp_path / "red.png")
    assert image.shape == (10, 20, 3) and image[0, 0].tolist() == [255, 0, 0]
    assert read_image(tmp_path / "red.png", size=16).shape == (16, 16, 3)
    assert read_image(tmp_path / "red.png", size=(4, 6)).shape == (4, 6, 3)
    tensor = image_to_tensor(image)
    assert tensor.shape == (3, 10, 20) and tensor.dtype == torch.float32 and tensor.max() == 1.0


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(BadSampleError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(BadSampleError, match="corrupt.jpg"):
        read_image(tmp_path / "corrupt.jpg")


def noise_image(path, params=()):
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), image, list(params))
    return path.read_bytes()


def with_exif_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """A JPEG whose APP1 segment holds a whole JPEG (as EXIF thumbnails do), end-of-image marker included."""
    payload = b"Exif\x00\x00" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


@pytest.mark.parametrize("name, params", [("base.jpg", ()), ("progressive.jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
                                          ("image.png", ())])
def test_truncated_jpeg_and_png_are_bad_samples(tmp_path, name, params):
    data = noise_image(tmp_path / name, params)
    assert truncation(tmp_path / name) is None
    cut = tmp_path / f"cut_{name}"
    for fraction in (0.3, 0.9, 0.99):
        cut.write_bytes(data[: int(len(data) * fraction)])
        if name.endswith(".jpg"):  # OpenCV itself decodes the part that is there (and prints a libjpeg warning)
            assert cv2.imread(str(cut)) is not None
        with pytest.raises(BadSampleError, match=rf"Truncated image .*cut_{name}"):
            read_image(cut)
    padded = tmp_path / f"padded_{name}"  # zero padding or other data after the end marker is allowed
    padded.write_bytes(data + b"\x00" * 64 + (b"" if name.endswith(".png") else b"\xff\xda trailer"))
    assert read_image(padded).shape == (48, 64, 3)


def test_truncation_is_found_past_an_exif_thumbnails_end_marker(tmp_path):
    thumbnail = noise_image(tmp_path / "thumb.jpg")
    data = with_exif_thumbnail(noise_image(tmp_path / "full.jpg"), thumbnail)
    (tmp_path / "exif.jpg").write_bytes(data + b"appended")
    assert read_image(tmp_path / "exif.jpg").shape == (48, 64, 3)
    (tmp_path / "exif_cut.jpg").write_bytes(data[: len(data) - 500])
    assert b"\xff\xd9" in (tmp_path / "exif_cut.jpg").read_bytes()  # the thumbnail's marker is still there
    with pytest.raises(BadSampleError, match="exif_cut.jpg"):
        read_image(tmp_path / "exif_cut.jpg")


def test_resolve_inside_keeps_reads_in_the_data_root(tmp_path):
    root = tmp_path / "data"
    assert resolve_inside(root, "videos/a/frame_1.jpg") == root / "videos/a/frame_1.jpg"
    assert resolve_inside(root, "videos/../videos/b") == root / "videos/b"
    for escape in ("../secrets.txt", "videos/../../x", str(tmp_path / "elsewhere.jpg"), "/etc/passwd"):
        with pytest.raises(BadSampleError, match=r"scenes\.csv row 3 .*outside the data folder"):
            resolve_inside(root, escape, what="scenes.csv row 3")
    assert resolve_inside(root, "../shared/x.jpg", allow_outside=True) == tmp_path / "shared/x.jpg"
    (root / "linked").parent.mkdir(parents=True)
    (tmp_path / "other_disk").mkdir()
    (root / "linked").symlink_to(tmp_path / "other_disk")  # a symlinked folder inside the root is fine
    assert resolve_inside(root, "linked/f.jpg") == root / "linked/f.jpg"


def test_sorted_frames_orders_by_frame_number_not_text(tmp_path):
    for n in (10, 2, 1, 100):
        write_jpg(tmp_path / f"img_{n}.jpg")
    (tmp_path / "notes.txt").write_text("x")
    assert [frame_number(p) for p in sorted_frames(tmp_path)] == [1, 2, 10, 100]
    assert frame_number("frame_0012.jpg") == 12
    with pytest.raises(BadSampleError, match="nowhere"):
        sorted_frames(tmp_path / "nowhere")


class FrameDataset(Dataset):
    def __init__(self, paths, strict):
        self.paths, self.policy = paths, BadSamplePolicy(strict)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            return {"image": image_to_tensor(read_image(self.paths[index], size=8))}
        except BadSampleError as exc:
            return self.policy.handle(self.paths[index], exc)


def test_skip_policy_drops_bad_samples_and_summarises_them(tmp_path, caplog):
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"f{i}.jpg")
        write_jpg(paths[-1])
    paths[2].write_bytes(b"garbage")
    loader = DataLoader(FrameDataset(paths, strict=False), batch_size=3, collate_fn=collate_skipping)
    counter, sizes = BadSampleCounter(), []
    for batch in loader:
        counter.update(batch)
        assert "skipped" not in batch
        sizes.append(batch["image"].shape[0])
    assert sizes == [2, 3]
    logger = logging.getLogger("test_data")
    with caplog.at_level(logging.WARNING, logger="test_data"):
        assert counter.end_epoch(logger, epoch=0) == 1
    assert "f2.jpg" in caplog.text and "skipped 1 bad samples" in caplog.text
    assert counter.total == 1 and counter.end_epoch(logger, epoch=1) == 0


def test_strict_policy_raises_naming_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(BadSampleError, match="bad.jpg"):
        FrameDataset([tmp_path / "bad.jpg"], strict=True)[0]


def test_all_bad_batch_collates_to_an_empty_marker():
    batch = collate_skipping([SkippedSample("a", "x"), SkippedSample("b", "y")])
    assert batch["empty"] is True and len(batch["skipped"]) == 2
    assert collate_skipping([]) is None


def test_empty_batch_detection_single_process():
    assert empty_on_any_rank(None) and empty_on_any_rank({"empty": True, "skipped": []})
    assert not empty_on_any_rank({"image": torch.zeros(1)})
