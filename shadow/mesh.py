"""Triangle-mesh parts for the renderer: shapes the convex primitives cannot make (a ring's hole), and user assets
read from `.obj` / `.ply` files with trimesh.

A `MeshPart` has the interface of `shadow.scene.Primitive` that the renderer uses: `surface_points()` (its
vertices), `intersect(origin, dirs)` (camera rays, Möller-Trumbore), `albedo`, and `triangles` (F, 3) vertex
indices, which makes the shadow pass fill every projected triangle instead of one convex hull.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MESH_SUFFIXES = (".obj", ".ply")
_RAY_CHUNK = 1 << 22  # rays x triangles per intersection chunk (bounds the memory of one numpy pass)
_UP_AXES = {"z": np.eye(3), "y": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
            "x": np.array([[0, 0, -1.0], [0, 1, 0], [1, 0, 0]])}  # rows: maps the named axis onto +z


class MeshError(ValueError):
    """A mesh file cannot be used; the message names it."""


@dataclass
class MeshPart:
    """A triangle mesh in world units: vertices (V, 3), triangles (F, 3) int indices, RGB albedo in [0, 1]."""
    vertices: np.ndarray
    triangles: np.ndarray
    albedo: np.ndarray = field(default_factory=lambda: np.full(3, 0.7))

    def surface_points(self, n_ring: int | None = None) -> np.ndarray:
        """(V, 3) world points: the shadow of every triangle is filled, their hull is never taken."""
        return self.vertices

    def transformed(self, angle: float, scale: float) -> "MeshPart":
        """Rotated by `angle` radians about z, then scaled about the origin."""
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return MeshPart(self.vertices @ rotation.T * scale, self.triangles, self.albedo)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit distance t along each unit ray from `origin` (inf when missed) and the unit normal there,
        facing the camera (so open meshes shade from both sides): ((R,), (R, 3)).

        Möller-Trumbore with every ray starting at the camera: the three scalar triple products become matrix
        products of the ray directions with per-triangle vectors."""
        v0, v1, v2 = (self.vertices[self.triangles[:, i]] for i in range(3))
        e1, e2 = v1 - v0, v2 - v0
        offset = origin[None, :] - v0  # (F, 3)
        normals = np.cross(e1, e2)
        u_axis, v_axis = np.cross(e2, offset), np.cross(offset, e1)
        t_numerator = (e2 * v_axis).sum(1)
        nearest, which = np.full(len(dirs), np.inf), np.full(len(dirs), -1)
        chunk = max(1, _RAY_CHUNK // max(len(self.triangles), 1))
        for start in range(0, len(dirs), chunk):
            d = dirs[start:start + chunk]
            det = -(d @ normals.T)  # (R, F)
            ok = np.abs(det) > 1e-12
            inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
            u, v = (d @ u_axis.T) * inv, (d @ v_axis.T) * inv
            t = np.where(ok & (u >= 0) & (v >= 0) & (u + v <= 1), t_numerator[None, :] * inv, np.inf)
            t = np.where(t > 1e-6, t, np.inf)
            best = t.argmin(1)
            hit_t = t[np.arange(len(d)), best]
            nearest[start:start + chunk] = hit_t
            which[start:start + chunk] = np.where(np.isfinite(hit_t), best, -1)
        unit = normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12)
        normal = np.where(which[:, None] >= 0, unit[np.maximum(which, 0)], 0.0)
        facing_away = (normal * dirs).sum(1) > 0
        return nearest, np.where(facing_away[:, None], -normal, normal)


def upright_torus(major_radius: float, minor_radius: float, albedo: np.ndarray, sections: int = 32) -> MeshPart:
    """A ring standing on its edge (its axis along y, so the hole faces the camera before the object's random
    turn about z), resting on the ground, centred over the origin."""
    import trimesh

    ring = trimesh.creation.torus(major_radius=major_radius, minor_radius=minor_radius,
                                  major_sections=sections, minor_sections=max(8, sections // 2))
    vertices = np.asarray(ring.vertices) @ _UP_AXES["y"].T  # a quarter turn about x: the ring's axis z -> -y
    vertices[:, 2] -= vertices[:, 2].min()
    return MeshPart(vertices, np.asarray(ring.faces), albedo)


def load_mesh(path: str | Path, up_axis: str = "z") -> MeshPart:
    """Read a `.obj` / `.ply` file (every geometry of a scene merged), turn `up_axis` into +z, and centre it over
    the origin resting on the ground (z = 0). Its size is set by the object placement, not here."""
    import trimesh

    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"{path}: not a mesh file (expected one of {', '.join(MESH_SUFFIXES)}).")
    if up_axis not in _UP_AXES:
        raise MeshError(f"up_axis must be one of {sorted(_UP_AXES)}, got {up_axis!r}.")
    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise MeshError(f"{path}: cannot be read as a mesh ({exc}).") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise MeshError(f"{path}: holds no triangles.")
    vertices = np.asarray(mesh.vertices, np.float64) @ _UP_AXES[up_axis].T
    if not np.isfinite(vertices).all() or np.ptp(vertices, axis=0).max() <= 0:
        raise MeshError(f"{path}: its vertices are not finite or all coincide.")
    low, high = vertices.min(0), vertices.max(0)
    vertices -= np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
    return MeshPart(vertices, np.asarray(mesh.faces, np.int64))


def mesh_files(source: str | Path) -> list[Path]:
    """The sorted `.obj` / `.ply` files of a folder (not recursive), or the one file given."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise MeshError(f"Mesh source {source} is neither a mesh file nor a folder.")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in MESH_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise MeshError(f"No .obj or .ply files in {source}.")
    return files
