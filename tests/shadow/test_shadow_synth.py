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


def test_cli_refuses_a_folder_with_a_dataset_unless_overwrite(tmp_path, capsys):
    synth_main(["--out", str(tmp_path), "--num", "3", "--image_size", "16"])
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as refused:
        synth_main(["--out", str(tmp_path), "--num", "2", "--image_size", "16"])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert f"{tmp_path} already holds a dataset (10 files" in error and "pass --overwrite to replace it" in error
    synth_main(["--out", str(tmp_path), "--num", "2", "--image_size", "16", "--overwrite"])
    assert sorted(json.loads((tmp_path / "metadata.json").read_text())) == ["000000", "000001"]
    assert sorted(p.name for p in (tmp_path / "objects").iterdir()) == ["000000.png", "000001.png"]
    assert (tmp_path / "notes.txt").read_text() == "mine" and not list(tmp_path.glob(".*.tmp"))


def test_light_samples_grow_with_the_light_size():
    from shadow.synth import light_sample_count
    assert [light_sample_count(s) for s in (2, 4, 8)] == [32, 64, 128]
    assert light_sample_count(5, at_size_2=16) == 40


def penumbra_error(size, **kwargs):
    """Mean |error| of the shadow inside its footprint against a 1024-sample reference render."""
    reference = render(30, 0, size, image_size=96, seed=SEED, light_samples_count=1024 * 2 // size)["shadow"]
    shadow = render(30, 0, size, image_size=96, seed=SEED, **kwargs)["shadow"]
    return np.abs(shadow - reference)[reference > 0.01].mean()


def test_penumbra_of_a_large_light_is_as_smooth_as_that_of_a_small_one():
    # With a fixed 32 samples the size-8 penumbra is banded (about 2.5x the error of size 2); scaled, it is not.
    small = penumbra_error(2)
    assert penumbra_error(8) < 1.5 * small
    assert penumbra_error(8, light_samples_count=8) > 2 * small  # 8 at size 2 = 32 at size 8: banded


def test_an_upright_ring_casts_a_shadow_with_a_lit_hole():
    from shadow.mesh import upright_torus
    ring = upright_torus(0.7, 0.12, np.full(3, 0.5))  # its axis along y: light from behind sees the hole
    shadow = render(40, 90, 2, image_size=96, seed=0, parts=[ring])["shadow"]
    rows, cols = np.nonzero(shadow > 0.5)
    centre = shadow[int(rows.mean()), int(cols.mean())]
    assert shadow.max() > 0.95 and centre < 0.05  # a convex hull of the ring would cover its centre


def test_random_objects_include_thin_parts_holes_and_overhangs():
    from shadow.scene import random_object
    seeds = {"table": 9, "arch": 5, "mushroom": 10, "tpost": 20, "ring": 38}
    kinds = {name: sorted(str(getattr(p, "kind", "mesh")) for p in random_object(seed))
             for name, seed in seeds.items()}
    assert kinds == {"table": ["box", "cylinder", "cylinder", "cylinder", "cylinder"],
                     "arch": ["box", "box", "box"], "mushroom": ["cone", "cylinder"], "tpost": ["box", "box"],
                     "ring": ["mesh"]}
    table = render(0, 0, 2, image_size=96, seed=seeds["table"])
    # Seen from the camera the table's legs are thin: the mask is sparse below the top.
    rows = np.nonzero(table["mask"].any(axis=1))[0]
    lower = table["mask"][rows.max() - 3]
    assert 0 < (lower > 0).sum() < 0.5 * (table["mask"][rows.min() + 2] > 0).sum()


def test_mesh_hits_match_the_analytic_sphere():
    import trimesh
    from shadow.mesh import MeshPart
    from shadow.scene import Camera, Primitive
    ico = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    mesh = MeshPart(np.asarray(ico.vertices) + [0, 0, 0.5], np.asarray(ico.faces))
    sphere = Primitive("sphere", np.zeros(2), 0.0, np.array([0.5]))
    position, dirs = Camera(9.0).rays(48)
    t_mesh, n_mesh = mesh.intersect(position, dirs)
    t_sphere, n_sphere = sphere.intersect(position, dirs)
    assert np.array_equal(np.isfinite(t_mesh), np.isfinite(t_sphere)) and np.isfinite(t_mesh).sum() > 20
    hit = np.isfinite(t_mesh)
    assert np.abs(t_mesh[hit] - t_sphere[hit]).max() < 0.01 and np.abs(n_mesh[hit] - n_sphere[hit]).max() < 0.1


def test_cli_renders_user_meshes(tmp_path):
    import trimesh
    assets = tmp_path / "assets"
    assets.mkdir()
    trimesh.creation.torus(major_radius=1.0, minor_radius=0.3).export(assets / "torus.ply")
    trimesh.creation.box(extents=(1.0, 2.0, 0.5)).export(assets / "brick.obj")
    (assets / ".DS_Store").write_bytes(b"x")
    synth_main(["--out", str(tmp_path / "data"), "--num", "4", "--image_size", "32", "--meshes", str(assets),
                "--mesh_up_axis", "y"])
    metadata = json.loads((tmp_path / "data" / "metadata.json").read_text())
    assert len(metadata) == 4
    import cv2
    for stem in metadata:
        mask = cv2.imread(str(tmp_path / "data" / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert mask.max() == 255 and (mask > 0).mean() > 0.01


def test_unusable_mesh_files_are_errors_naming_them(tmp_path):
    from shadow.mesh import MeshError, load_mesh, mesh_files
    (tmp_path / "broken.obj").write_text("this is not a mesh\n")
    with pytest.raises(MeshError, match=r"broken\.obj"):
        load_mesh(tmp_path / "broken.obj")
    with pytest.raises(MeshError, match=r"model\.stl: not a mesh file"):
        load_mesh(tmp_path / "model.stl")
    with pytest.raises(MeshError, match="No .obj or .ply files"):
        mesh_files(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None
    with pytest.raises(SystemExit):
        synth_main(["--out", str(tmp_path / "out"), "--num", "1", "--meshes", str(tmp_path / "missing")])
