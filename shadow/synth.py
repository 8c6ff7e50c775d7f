"""The procedural renderer and the synthetic data generator (writes the `custom` layout of `shadow.data`).

    python -m shadow.synth --out DIR --num N --image_size S [--workers W] [--light_samples K] [--seed 0]
    python -m shadow.synth --out DIR --num N --meshes ASSETS/ [--mesh_up_axis y]       # your .obj / .ply files

Shadows are computed by shadow mapping rather than per-pixel ray casting: for each of the K stratified points of
the area light (K grows with the light's side), every part of the object is projected onto the ground plane from
that point and filled into a ground texture: a convex part as the convex hull of its projected points, a mesh
triangle by triangle (so holes stay open). The K masks are averaged with the area-light weights
w_k = max(0, d_z) max(0, -d.n) / |L_k - G|^2, and the ground texture is warped into the image through each pixel's
ground point. The camera does not occlude the ground (as a Blender shadow catcher with the object hidden from the
camera). The object itself is ray cast (analytic primitives, Möller-Trumbore for meshes; Lambertian, white
background).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from shadow.mesh import MeshError, MeshPart, load_mesh, mesh_files
from shadow.scene import Camera, light_samples, place, random_object

GROUND_HALF_EXTENT = 8.0  # the ground texture covers [-8, 8]^2 world units around the object
_SUBPIXEL_BITS = 4  # fillConvexPoly fixed-point precision (1/16 texel)
THETA_RANGE, PHI_RANGE, SIZE_RANGE = (0.0, 45.0), (0.0, 360.0), (2.0, 8.0)
LIGHT_SAMPLES = 32  # stratified points on a light of side 2 (scaled with the side, see light_sample_count)
LAYOUT = ("objects", "masks", "shadows")


@lru_cache(maxsize=8)
def _ground_lookup(camera: Camera, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Camera rays and, per pixel, the ground point in ground-texture coordinates (float32 maps for cv2.remap;
    pixels looking above the horizon point far outside the texture so they read 0)."""
    position, dirs = camera.rays(image_size)
    down = dirs[:, 2] < -1e-6
    t = np.where(down, -position[2] / np.where(down, dirs[:, 2], -1.0), 0.0)
    ground = position[:2] + t[:, None] * dirs[:, :2]
    texel = 2 * GROUND_HALF_EXTENT / (2 * image_size)
    col = np.where(down, (ground[:, 0] + GROUND_HALF_EXTENT) / texel - 0.5, -1e5)
    row = np.where(down, (GROUND_HALF_EXTENT - ground[:, 1]) / texel - 0.5, -1e5)
    shape = (image_size, image_size)
    return position, dirs, col.reshape(shape).astype(np.float32), row.reshape(shape).astype(np.float32)


def _shadow_texture(parts, lights: np.ndarray, light_normal: np.ndarray, texture_size: int):
    """Shadow strength on the part of the ground texture that any shadow reaches: (crop (h, w) float32, (row0,
    col0) offset of the crop), or (None, None) when no shadow falls on the texture."""
    texel = 2 * GROUND_HALF_EXTENT / texture_size
    projected = []
    for part in parts:
        points = part.surface_points()
        # G = L + (P - L) * L_z / (L_z - P_z): the ray from the light sample through P meets the ground.
        height_gap = np.maximum(lights[:, None, 2] - points[None, :, 2], 0.05)
        ground = lights[:, None, :2] + (points[None, :, :2] - lights[:, None, :2]) * (lights[:, None, 2:] / height_gap[..., None])
        projected.append(np.stack([(ground[..., 0] + GROUND_HALF_EXTENT) / texel,
                                   (GROUND_HALF_EXTENT - ground[..., 1]) / texel], -1))  # (K, N, 2) col, row
    everything = np.concatenate(projected, 1)
    col0, row0 = np.floor(everything.reshape(-1, 2).min(0)).astype(int) - 2
    col1, row1 = np.ceil(everything.reshape(-1, 2).max(0)).astype(int) + 2
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, texture_size), min(row1, texture_size)
    if col1 <= col0 or row1 <= row0:
        return None, None
    height, width = row1 - row0, col1 - col0

    # Area-light weight of every light sample at every texel of the crop: (K, h, w).
    cols = -GROUND_HALF_EXTENT + (np.arange(col0, col1) + 0.5) * texel
    rows = GROUND_HALF_EXTENT - (np.arange(row0, row1) + 0.5) * texel
    dx = lights[:, 0, None, None] - cols[None, None, :]
    dy = lights[:, 1, None, None] - rows[None, :, None]
    dz = lights[:, 2, None, None]
    dist2 = dx * dx + dy * dy + dz * dz
    facing = np.maximum(0.0, -(dx * light_normal[0] + dy * light_normal[1] + dz * light_normal[2]))
    weights = (np.maximum(0.0, dz) * facing / (dist2 * dist2)).astype(np.float32)

    blocked = np.zeros((len(lights), height, width), np.uint8)
    offset = np.array([col0, row0], np.float32)
    scale = float(1 << _SUBPIXEL_BITS)
    for k in range(len(lights)):
        for part, points in zip(parts, projected):
            if hasattr(part, "triangles"):  # a mesh: the union of its projected triangles (holes stay open)
                for triangle in np.round((points[k] - offset) * scale).astype(np.int32)[part.triangles]:
                    cv2.fillConvexPoly(blocked[k], triangle, 255, cv2.LINE_AA, _SUBPIXEL_BITS)
                continue
            hull = cv2.convexHull((points[k] - offset).astype(np.float32))  # a convex part: one hull
            cv2.fillConvexPoly(blocked[k], np.round(hull * scale).astype(np.int32), 255, cv2.LINE_AA,
                               _SUBPIXEL_BITS)
    strength = np.einsum("khw,khw->hw", weights, blocked.astype(np.float32)) / (255.0 * weights.sum(0) + 1e-30)
    return strength.astype(np.float32), (row0, col0)


def light_sample_count(size: float, at_size_2: int = LIGHT_SAMPLES) -> int:
    """Points on a light of side `size`: `at_size_2` scaled with the side, so the penumbra (as wide as the light
    is large) gets as many samples across it per pixel at every size (32 at size 2, 128 at size 8; fewer show
    as bands in the penumbra of large lights)."""
    return max(1, int(round(at_size_2 * size / 2)))


def render(theta: float, phi: float, size: float, image_size: int = 256, seed: int = 0,
           light_samples_count: int = LIGHT_SAMPLES, camera_distance: float | None = None,
           parts: list | None = None) -> dict:
    """Render one object (chosen by `seed`, or the given `parts`) lit by the square area light (θ polar and φ
    azimuth in degrees, side `size` in world units) sampled at `light_sample_count(size, light_samples_count)`
    points.

    Returns {"object_image": (H, W, 3) uint8 object over white, "mask": (H, W) uint8 with 255 = object,
             "shadow": (H, W) float32 shadow strength in [0, 1] (0 = lit ground, 1 = full umbra)}.
    φ = 0 puts the light on +x, so the shadow falls to the left of the object in the image; φ = 90 puts it
    behind the object, so the shadow comes toward the camera (down in the image).
    """
    rng = np.random.default_rng([seed, 3])
    distance = rng.uniform(8.0, 10.0) if camera_distance is None else camera_distance
    camera = Camera(distance=float(distance))
    parts = random_object(seed) if parts is None else parts
    position, dirs, map_col, map_row = _ground_lookup(camera, image_size)
    centre, light_normal, lights = light_samples(theta, phi, size, light_sample_count(size, light_samples_count),
                                                 seed)

    texture_size = 2 * image_size
    texture, origin = _shadow_texture(parts, lights, light_normal, texture_size)
    if texture is None:
        shadow = np.zeros((image_size, image_size), np.float32)
    else:
        shadow = cv2.remap(texture, map_col - np.float32(origin[1]), map_row - np.float32(origin[0]), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    object_image, mask = _render_object(parts, camera, position, dirs, centre, image_size)
    return {"object_image": object_image, "mask": mask, "shadow": np.clip(shadow, 0.0, 1.0)}


def _render_object(parts, camera, position, dirs, light_centre, image_size):
    """Ray cast the parts inside their projected bounding box: Lambertian colour and a binary mask."""
    corners = camera.project(np.concatenate([p.surface_points(16) for p in parts]), image_size)
    c0, r0 = np.clip(np.floor(corners.min(0)).astype(int) - 1, 0, image_size)
    c1, r1 = np.clip(np.ceil(corners.max(0)).astype(int) + 2, 0, image_size)
    image = np.full((image_size, image_size, 3), 255, np.uint8)
    mask = np.zeros((image_size, image_size), np.uint8)
    if c1 <= c0 or r1 <= r0:
        return image, mask
    index = (np.arange(r0, r1)[:, None] * image_size + np.arange(c0, c1)[None, :]).reshape(-1)
    box_dirs = dirs[index]
    nearest = np.full(len(index), np.inf)
    colour = np.zeros((len(index), 3))
    to_light = light_centre / np.linalg.norm(light_centre)
    for part in parts:
        t, normal = part.intersect(position, box_dirs)
        closer = t < nearest
        lambert = np.clip(normal @ to_light, 0.0, 1.0)
        shade = part.albedo[None, :] * (0.35 + 0.65 * lambert[:, None])
        colour = np.where(closer[:, None], shade, colour)
        nearest = np.where(closer, t, nearest)
    hit = np.isfinite(nearest)
    crop_image = image[r0:r1, c0:c1].reshape(-1, 3)
    crop_image[hit] = np.clip(colour[hit] * 255 + 0.5, 0, 255).astype(np.uint8)
    image[r0:r1, c0:c1] = crop_image.reshape(r1 - r0, c1 - c0, 3)
    mask[r0:r1, c0:c1] = (hit * 255).astype(np.uint8).reshape(r1 - r0, c1 - c0)
    return image, mask


def sample_light(index: int, seed: int = 0, theta_range: tuple[int, int] = (0, 45),
                 size_range: tuple[int, int] = (2, 8)) -> tuple[int, int, int]:
    """Light parameters of generated sample `index`, as the paper draws them: integers θ in 0..45, φ in 0..359,
    size in 2..8 (θ and size limits can be narrowed)."""
    rng = np.random.default_rng([seed, index, 5])
    return (int(rng.integers(theta_range[0], theta_range[1] + 1)), int(rng.integers(0, 360)),
            int(rng.integers(size_range[0], size_range[1] + 1)))


@lru_cache(maxsize=64)
def _read_mesh(path: str, up_axis: str) -> MeshPart:
    return load_mesh(path, up_axis)


def mesh_object(files: list[str], seed: int, up_axis: str = "z") -> list:
    """One of the user's mesh files, chosen by `seed`, placed as the procedural objects are (turned at random
    about z, largest dimension 1.5-2.2 units, height at most 2) with a random colour."""
    rng = np.random.default_rng([seed, 17])
    mesh = _read_mesh(str(files[int(rng.integers(len(files)))]), up_axis)
    coloured = MeshPart(mesh.vertices, mesh.triangles, rng.uniform(0.15, 0.95, 3))
    return place([coloured], rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 2.2))


class DatasetExists(FileExistsError):
    """The output folder already holds a dataset; the message names it."""


@dataclass(frozen=True)
class DatasetOptions:
    """What `write_dataset` renders (see its docstring); one copy goes to every worker."""
    out: Path
    image_size: int
    light_samples: int = LIGHT_SAMPLES
    seed: int = 0
    theta_range: tuple[int, int] = (0, 45)
    size_range: tuple[int, int] = (2, 8)
    lights_per_object: int = 1
    meshes: tuple[str, ...] = ()
    mesh_up_axis: str = "z"


def _write_sample(job: tuple[DatasetOptions, int]) -> tuple[str, dict]:
    options, index = job
    theta, phi, size = sample_light(index, options.seed, options.theta_range, options.size_range)
    object_seed = options.seed * 1_000_003 + index // options.lights_per_object
    parts = mesh_object(options.meshes, object_seed, options.mesh_up_axis) if options.meshes else None
    sample = render(theta, phi, size, image_size=options.image_size, seed=object_seed,
                    light_samples_count=options.light_samples, parts=parts)
    stem, out = f"{index:06d}", options.out
    cv2.imwrite(str(out / "objects" / f"{stem}.png"), cv2.cvtColor(sample["object_image"], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "masks" / f"{stem}.png"), sample["mask"])
    cv2.imwrite(str(out / "shadows" / f"{stem}.png"), np.round(sample["shadow"] * 255).astype(np.uint8))
    return stem, {"theta": theta, "phi": phi, "size": size}


def write_dataset(out: str | Path, num: int, image_size: int, workers: int = 1,
                  light_samples_count: int = LIGHT_SAMPLES, seed: int = 0, theta_range: tuple[int, int] = (0, 45),
                  size_range: tuple[int, int] = (2, 8), meshes: str | Path | None = None,
                  mesh_up_axis: str = "z", lights_per_object: int = 1, overwrite: bool = False) -> Path:
    """Write `num` rendered samples in the `custom` layout (objects/, masks/, shadows/ PNGs and metadata.json):
    procedural objects, or with `meshes` (a folder of .obj/.ply files, or one file) the user's meshes. Each object
    is rendered under `lights_per_object` lights drawn independently (samples i*n .. i*n + n - 1 share one object,
    as the paper renders each of its meshes about 26 times).

    A folder that already holds a dataset is refused (DatasetExists), because new files over an old set would mix
    two datasets; `overwrite` deletes the old layout first. metadata.json is written last and atomically, so an
    interrupted run leaves images without entries, which `shadow.data` reports by name."""
    if not (0 <= theta_range[0] <= theta_range[1] <= 45 and 2 <= size_range[0] <= size_range[1] <= 8):
        raise ValueError(f"theta_range {theta_range} must lie in [0, 45] and size_range {size_range} in [2, 8].")
    if lights_per_object < 1:
        raise ValueError(f"lights_per_object must be >= 1, got {lights_per_object}.")
    files = tuple(str(p) for p in mesh_files(meshes)) if meshes is not None else ()
    for path in files:  # read each once here, so a bad file fails before any rendering
        _read_mesh(path, mesh_up_axis)
    out = Path(out)
    clear_layout(out, overwrite)
    for sub in LAYOUT:
        (out / sub).mkdir(parents=True, exist_ok=True)
    options = DatasetOptions(out, image_size, light_samples_count, seed, tuple(theta_range), tuple(size_range),
                             lights_per_object, files, mesh_up_axis)
    jobs = [(options, i) for i in range(num)]
    if workers > 1:
        with Pool(workers) as pool:
            results = pool.map(_write_sample, jobs, chunksize=max(1, num // (4 * workers)))
    else:
        results = [_write_sample(job) for job in jobs]
    partial = out / ".metadata.json.tmp"
    partial.write_text(json.dumps(dict(results), indent=1, sort_keys=True) + "\n")
    os.replace(partial, out / "metadata.json")
    return out


def clear_layout(out: Path, overwrite: bool) -> None:
    """Make `out` ready for a new dataset: refuse (DatasetExists, naming the folder) when it holds metadata.json
    or PNGs of the custom layout, unless `overwrite`, which deletes exactly those (nothing else in `out`)."""
    old = [p for p in [out / "metadata.json"] if p.is_file()]
    old += [p for sub in LAYOUT for p in sorted((out / sub).glob("*.png"))]
    if not old:
        return
    if not overwrite:
        raise DatasetExists(f"{out} already holds a dataset ({len(old)} files, e.g. {old[0]}); writing into it "
                            f"would mix two datasets. Choose another --out, or pass --overwrite to replace it.")
    for path in old:
        path.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render synthetic shadow data in the `custom` layout.")
    parser.add_argument("--out", required=True, help="output folder (objects/, masks/, shadows/, metadata.json)")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel")
    parser.add_argument("--light_samples", type=int, default=LIGHT_SAMPLES,
                        help="stratified points on a light of side 2, scaled with the side (128 at size 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of objects and light parameters")
    parser.add_argument("--theta_range", type=int, nargs=2, default=(0, 45), metavar=("MIN", "MAX"),
                        help="integer θ range in degrees (within 0..45)")
    parser.add_argument("--size_range", type=int, nargs=2, default=(2, 8), metavar=("MIN", "MAX"),
                        help="integer light size range (within 2..8)")
    parser.add_argument("--lights_per_object", type=int, default=1,
                        help="render each object under this many lights (the paper: about 26 per mesh)")
    parser.add_argument("--meshes", default=None, help="a folder of .obj/.ply files (or one file) to render "
                        "instead of the procedural objects")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the dataset already in --out (otherwise such a folder is refused)")
    parser.add_argument("--mesh_up_axis", choices=["x", "y", "z"], default="z",
                        help="the meshes' up axis (y for Blender's default OBJ export)")
    args = parser.parse_args(argv)
    if min(args.num, args.workers, args.light_samples, args.lights_per_object) < 1 or args.image_size < 8:
        parser.error("--num, --workers, --light_samples and --lights_per_object must be >= 1, --image_size >= 8.")
    if not 0 <= args.theta_range[0] <= args.theta_range[1] <= 45:
        parser.error(f"--theta_range {args.theta_range} must be MIN <= MAX within 0..45.")
    if not 2 <= args.size_range[0] <= args.size_range[1] <= 8:
        parser.error(f"--size_range {args.size_range} must be MIN <= MAX within 2..8.")
    try:
        write_dataset(args.out, args.num, args.image_size, args.workers, args.light_samples, args.seed,
                      tuple(args.theta_range), tuple(args.size_range), args.meshes, args.mesh_up_axis,
                      args.lights_per_object, args.overwrite)
    except (MeshError, DatasetExists) as exc:
        parser.error(str(exc))
    print(f"Wrote {args.num} samples of {args.image_size}x{args.image_size} to {args.out}")


if __name__ == "__main__":
    main()
