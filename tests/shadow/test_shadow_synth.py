"""Renderer conventions: φ = 0 shadow left, 180° right, 90° toward the camera; θ = 0 underneath; longer with θ;
softer with size; output types; the CLI writes the custom layout."""
import json

import numpy as np
import pytest

from shadow.synth import main as synth_main
from shadow.synth import render

SIZE = 128
SEED = 3  # a cylinder: tall enough for clear shadows


def shadow_centroid(theta, phi, size=2.0, seed=SEED):
    out = render(theta, phi, size, image_size=SIZE, seed=seed)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    weight = out["shadow"]
    return (cols * weight).sum() / weight.sum(), (rows * weight).sum() / weight.sum(), out


def object_centre(out):
    rows, cols = np.nonzero(out["mask"])
    return cols.mean(), rows.max()  # horizontal centre and the contact row (bottom of the object)


def test_render_returns_documented_types():
    out = render(30, 0, 2, image_size=64, seed=0)
    assert out["object_image"].shape == (64, 64, 3) and out["object_image"].dtype == np.uint8
    assert out["mask"].shape == (64, 64) and out["mask"].dtype == np.uint8
    assert set(np.unique(out["mask"])) == {0, 255}
    assert out["shadow"].dtype == np.float32 and 0.0 <= out["shadow"].min() and out["shadow"].max() <= 1.0
    assert out["shadow"].max() > 0.9  # a full umbra exists
    assert out["shadow"][0].max() == 0.0 and out["shadow"][:, 0].max() < 0.05  # borders are lit ground


def test_render_is_deterministic_per_seed():
    a, b = render(20, 45, 4, image_size=64, seed=5), render(20, 45, 4, image_size=64, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["mask"], render(20, 45, 4, image_size=64, seed=6)["mask"])


@pytest.mark.parametrize("seed", [SEED, 0])
def test_phi_0_casts_left_and_phi_180_casts_right(seed):
    x0, _, out = shadow_centroid(30, 0, seed=seed)
    x180, _, _ = shadow_centroid(30, 180, seed=seed)
    centre_x, _ = object_centre(out)
    assert x0 < centre_x - 3
    assert x180 > centre_x + 3


def test_phi_90_casts_toward_the_camera_down_in_the_image():
    # The ground recedes from the camera, so depth moves are foreshortened: compare rows, not a pixel distance.
    _, y90, out = shadow_centroid(40, 90)
    _, y270, _ = shadow_centroid(40, 270)
    _, y0, _ = shadow_centroid(40, 0)
    _, contact_row = object_centre(out)
    assert y90 > y0 + 1.5 and y90 > y270 + 3
    assert y90 > contact_row - 1  # the bulk of the shadow lies in front of the object's base


def test_theta_0_puts_the_shadow_under_the_object():
    x, y, out = shadow_centroid(0, 0)
    centre_x, contact_row = object_centre(out)
    assert abs(x - centre_x) < 2 and abs(y - contact_row) < 6


def test_larger_theta_gives_a_longer_shadow():
    lengths = []
    for theta in (10, 25, 40):
        out = render(theta, 0, 2, image_size=SIZE, seed=SEED)
        cols = np.nonzero((out["shadow"] > 0.5).any(axis=0))[0]
        lengths.append(cols.max() - cols.min())
    assert lengths[0] < lengths[1] < lengths[2]


def test_larger_size_gives_a_wider_penumbra():
    def penumbra(size):
        shadow = render(30, 0, size, image_size=SIZE, seed=SEED)["shadow"]
        return ((shadow > 0.05) & (shadow < 0.95)).sum()
    assert penumbra(2) < penumbra(4) < penumbra(8)


def test_cli_writes_the_custom_layout(tmp_path):
    synth_main(["--out", str(tmp_path), "--num", "3", "--image_size", "32", "--theta_range", "30", "45"])
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert sorted(metadata) == ["000000", "000001", "000002"]
    assert all(30 <= m["theta"] <= 45 and 2 <= m["size"] <= 8 and 0 <= m["phi"] < 360 for m in metadata.values())
    for part in ("objects", "masks", "shadows"):
        assert sorted(p.name for p in (tmp_path / part).iterdir()) == ["000000.png", "000001.png", "000002.png"]
