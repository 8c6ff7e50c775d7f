"""The procedural scene: analytic primitives resting on the ground, a random object from a seed, the camera,
and the square area light. World units are arbitrary (objects are about 1.3-2 units large); angles in degrees.

Coordinates (as the paper's metadata): z is up, the ground is z = 0, the object stands at the origin, the camera
sits on the -y axis looking toward +y, so image right = +x and image up ~ +z.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LIGHT_RADIUS = 8.0  # the paper's light sphere radius r
_NO_HIT = np.inf


def _rotation_z(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _solve_quadratic(a, b, c):
    """Both roots of a t^2 + b t + c = 0 per ray (inf where there is no real root)."""
    disc = b * b - 4 * a * c
    ok = (disc >= 0) & (np.abs(a) > 1e-12)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    safe_a = np.where(ok, a, 1.0)
    t0 = np.where(ok, (-b - sq) / (2 * safe_a), _NO_HIT)
    t1 = np.where(ok, (-b + sq) / (2 * safe_a), _NO_HIT)
    return np.minimum(t0, t1), np.maximum(t0, t1)


@dataclass
class Primitive:
    """A convex solid: kind in sphere | box | cylinder | cone, its centre on the ground plane (x, y), the height of
    its lowest point `base_z`, its dimensions, a rotation about z, and an RGB albedo in [0, 1]."""
    kind: str
    center_xy: np.ndarray
    base_z: float
    dims: np.ndarray  # sphere (radius,), box (half_x, half_y, height), cylinder/cone (radius, height)
    angle: float = 0.0  # radians about z
    albedo: np.ndarray = field(default_factory=lambda: np.full(3, 0.7))

    def height(self) -> float:
        return 2 * self.dims[0] if self.kind == "sphere" else float(self.dims[-1])

    def surface_points(self, n_ring: int = 48) -> np.ndarray:
        """(N, 3) world points whose convex hull is the solid (used to project its shadow)."""
        ring = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
        if self.kind == "sphere":
            count = 4 * n_ring
            k = np.arange(count) + 0.5
            polar = np.arccos(1 - 2 * k / count)
            azim = np.pi * (1 + 5 ** 0.5) * k
            unit = np.stack([np.sin(polar) * np.cos(azim), np.sin(polar) * np.sin(azim), np.cos(polar)], 1)
            local = unit * self.dims[0] + np.array([0, 0, self.dims[0]])
        elif self.kind == "box":
            hx, hy, h = self.dims
            corners = np.array([[sx * hx, sy * hy, z] for sx in (-1, 1) for sy in (-1, 1) for z in (0, h)])
            local = corners
        else:
            radius, h = self.dims
            base = np.stack([radius * np.cos(ring), radius * np.sin(ring), np.zeros_like(ring)], 1)
            top = base + np.array([0, 0, h]) if self.kind == "cylinder" else np.array([[0.0, 0.0, h]])
            local = np.concatenate([base, top])
        return self._to_world(local)

    def _to_world(self, local: np.ndarray) -> np.ndarray:
        world = local @ _rotation_z(self.angle).T
        return world + np.array([self.center_xy[0], self.center_xy[1], self.base_z])

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit distance (R,) (inf for a miss) and unit world normal (R, 3) of rays origin + t * dirs."""
        rot = _rotation_z(self.angle)
        o = (origin - np.array([self.center_xy[0], self.center_xy[1], self.base_z])) @ rot  # into the local frame
        d = dirs @ rot
        if self.kind == "sphere":
            t, n_local = self._hit_sphere(o, d)
        elif self.kind == "box":
            t, n_local = self._hit_box(o, d)
        else:
            t, n_local = self._hit_round(o, d)
        return t, n_local @ rot.T

    def _hit_sphere(self, o, d):
        radius = self.dims[0]
        oc = o - np.array([0, 0, radius])
        t0, t1 = _solve_quadratic((d * d).sum(1), 2 * (oc * d).sum(1), (oc * oc).sum() - radius ** 2)
        t = np.where(t0 > 1e-6, t0, np.where(t1 > 1e-6, t1, _NO_HIT))
        normal = (oc + np.where(np.isfinite(t), t, 0)[:, None] * d) / radius
        return t, normal

    def _hit_box(self, o, d):
        half = np.array([self.dims[0], self.dims[1], self.dims[2] / 2])
        oc = o - np.array([0, 0, half[2]])
        safe_d = np.where(np.abs(d) < 1e-12, 1e-12, d)
        t_a, t_b = (-half - oc) / safe_d, (half - oc) / safe_d
        t_near, t_far = np.minimum(t_a, t_b), np.maximum(t_a, t_b)
        entry, exit_ = t_near.max(1), t_far.min(1)
        hit = (entry <= exit_) & (entry > 1e-6)
        axis = t_near.argmax(1)
        normal = np.zeros_like(d)
        normal[np.arange(len(d)), axis] = -np.sign(safe_d[np.arange(len(d)), axis])
        return np.where(hit, entry, _NO_HIT), normal

    def _hit_round(self, o, d):
        """Capped cylinder or cone (apex up) with a vertical axis through the local origin."""
        radius, h = self.dims
        if self.kind == "cylinder":
            a = d[:, 0] ** 2 + d[:, 1] ** 2
            b = 2 * (o[0] * d[:, 0] + o[1] * d[:, 1])
            c = np.full(len(d), o[0] ** 2 + o[1] ** 2 - radius ** 2)
        else:  # x^2 + y^2 = k^2 (h - z)^2
            k2 = (radius / h) ** 2
            w = h - o[2]
            a = d[:, 0] ** 2 + d[:, 1] ** 2 - k2 * d[:, 2] ** 2
            b = 2 * (o[0] * d[:, 0] + o[1] * d[:, 1] + k2 * w * d[:, 2])
            c = np.full(len(d), o[0] ** 2 + o[1] ** 2 - k2 * w ** 2)
        t0, t1 = _solve_quadratic(a, b, c)
        best = np.full(len(d), _NO_HIT)
        for t_side in (t0, t1):
            z = o[2] + t_side * d[:, 2]
            valid = np.isfinite(t_side) & (t_side > 1e-6) & (z >= 0) & (z <= h)
            best = np.where(valid & (t_side < best), t_side, best)
        side_t = best.copy()
        caps = [(0.0, radius, -1.0)] + ([(h, radius, 1.0)] if self.kind == "cylinder" else [])
        cap_normal_z = np.zeros(len(d))
        for cap_z, cap_r, nz in caps:
            t_cap = (cap_z - o[2]) / np.where(np.abs(d[:, 2]) < 1e-12, 1e-12, d[:, 2])
            px, py = o[0] + t_cap * d[:, 0], o[1] + t_cap * d[:, 1]
            valid = (t_cap > 1e-6) & (px ** 2 + py ** 2 <= cap_r ** 2) & (t_cap < best)
            best = np.where(valid, t_cap, best)
            cap_normal_z = np.where(valid, nz, cap_normal_z)
        point = o + np.where(np.isfinite(best), best, 0)[:, None] * d
        side_normal = np.stack([point[:, 0], point[:, 1],
                                np.full(len(d), radius * radius / h if self.kind == "cone" else 0.0)], 1)
        side_normal /= np.linalg.norm(side_normal, axis=1, keepdims=True) + 1e-12
        on_cap = (best != side_t)
        normal = np.where(on_cap[:, None], np.stack([0 * cap_normal_z, 0 * cap_normal_z, cap_normal_z], 1), side_normal)
        return best, normal


COMPLEX_FRACTION = 0.35  # share of objects with thin parts, holes or overhangs (see _random_complex)


def random_object(seed: int) -> list:
    """A random object resting on the ground at the origin: a primitive, a union of two, or (COMPLEX_FRACTION of
    the seeds) a shape with thin parts, holes or overhangs; rotated at random about z, its largest dimension
    rescaled to 1.5-2.2 units (height at most 2), each part with its own random colour."""
    rng = np.random.default_rng([seed, 7])
    kind = rng.choice(["sphere", "box", "cylinder", "cone", "union"], p=[0.15, 0.2, 0.2, 0.15, 0.3])
    colour = lambda: rng.uniform(0.15, 0.95, 3)  # noqa: E731 - a one-line helper reads better here
    zero = np.zeros(2)
    if kind == "sphere":
        parts = [Primitive("sphere", zero, 0.0, np.array([rng.uniform(0.4, 0.6)]), albedo=colour())]
    elif kind == "box":
        parts = [Primitive("box", zero, 0.0, rng.uniform([0.2, 0.2, 0.4], [0.6, 0.6, 1.4]), albedo=colour())]
    elif kind in ("cylinder", "cone"):
        parts = [Primitive(kind, zero, 0.0, rng.uniform([0.2, 0.5], [0.55, 1.6]), albedo=colour())]
    else:
        parts = _random_union(rng, colour)
    # A separate stream decides the complex shapes, so the objects of the other seeds stay as they were.
    complex_rng = np.random.default_rng([seed, 13])
    if complex_rng.random() < COMPLEX_FRACTION:
        parts = _random_complex(complex_rng)
    return place(parts, rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 2.2))


def place(parts: list, angle: float, largest: float, max_height: float = 2.0) -> list:
    """Turn the object by `angle` radians about z and scale it about the origin so that its largest dimension is
    `largest` units and its height at most `max_height`. Primitives are changed in place; meshes are replaced."""
    rot = _rotation_z(angle)[:2, :2]
    turned = []
    for part in parts:
        if hasattr(part, "triangles"):
            part = part.transformed(angle, 1.0)
        else:
            part.center_xy = rot @ part.center_xy
            part.angle += angle
        turned.append(part)
    points = np.concatenate([p.surface_points(16) for p in turned])
    extent = max(np.ptp(points[:, 0]), np.ptp(points[:, 1]), points[:, 2].max())
    scale = min(largest / extent, max_height / points[:, 2].max())
    placed = []
    for part in turned:
        if hasattr(part, "triangles"):
            part = part.transformed(0.0, scale)
        else:
            part.center_xy = part.center_xy * scale
            part.base_z *= scale
            part.dims = part.dims * scale
        placed.append(part)
    return placed


def _random_complex(rng: np.random.Generator) -> list:
    """Shapes whose shadows a convex blob cannot imitate: a table (thin legs, an overhanging top, light passing
    under it), an arch (a hole), a mushroom (a thin stem under a wide cap), a T-post (an overhanging arm) and an
    upright ring (a hole in a single mesh part)."""
    from shadow.mesh import upright_torus  # trimesh is imported only for the ring

    colour = lambda: rng.uniform(0.15, 0.95, 3)  # noqa: E731
    zero = np.zeros(2)
    style = rng.choice(["table", "arch", "mushroom", "tpost", "ring"])
    if style == "table":
        half_x, half_y = rng.uniform(0.45, 0.7), rng.uniform(0.3, 0.5)
        leg_height, top, leg_radius = rng.uniform(0.6, 1.0), rng.uniform(0.05, 0.1), rng.uniform(0.035, 0.06)
        inset = rng.uniform(0.05, 0.15)
        albedo = colour()
        legs = [Primitive("cylinder", np.array([sx * (half_x - inset), sy * (half_y - inset)]), 0.0,
                          np.array([leg_radius, leg_height]), albedo=albedo) for sx in (-1, 1) for sy in (-1, 1)]
        return legs + [Primitive("box", zero, leg_height, np.array([half_x, half_y, top]), albedo=colour())]
    if style == "arch":
        half_gap, pillar, depth = rng.uniform(0.2, 0.4), rng.uniform(0.1, 0.18), rng.uniform(0.12, 0.25)
        height, lintel = rng.uniform(0.7, 1.2), rng.uniform(0.12, 0.25)
        albedo = colour()
        pillars = [Primitive("box", np.array([side * (half_gap + pillar), 0.0]), 0.0,
                             np.array([pillar, depth, height]), albedo=albedo) for side in (-1, 1)]
        return pillars + [Primitive("box", zero, height, np.array([half_gap + 2 * pillar, depth, lintel]),
                                    albedo=colour())]
    if style == "mushroom":
        stem = Primitive("cylinder", zero, 0.0, rng.uniform([0.05, 0.6], [0.1, 1.1]), albedo=colour())
        return [stem, Primitive("cone", zero, stem.dims[1], rng.uniform([0.45, 0.15], [0.7, 0.4]), albedo=colour())]
    if style == "tpost":
        post = Primitive("box", zero, 0.0, rng.uniform([0.05, 0.05, 0.8], [0.1, 0.1, 1.3]), albedo=colour())
        arm_length = rng.uniform(0.3, 0.6)
        arm = Primitive("box", np.array([arm_length - post.dims[0], 0.0]), post.dims[2] - 0.1,
                        np.array([arm_length, rng.uniform(0.04, 0.08), rng.uniform(0.06, 0.12)]), albedo=colour())
        return [post, arm]
    major = rng.uniform(0.5, 0.7)
    return [upright_torus(major, major * rng.uniform(0.15, 0.3), colour())]


def _random_union(rng: np.random.Generator, colour) -> list[Primitive]:
    """Two stacked or side-by-side parts: a house (box + cone roof), a snowman-ish tower, a rocket, or an L-block."""
    style = rng.integers(4)
    zero = np.zeros(2)
    if style == 0:
        box = Primitive("box", zero, 0.0, rng.uniform([0.3, 0.3, 0.4], [0.5, 0.5, 0.8]), albedo=colour())
        roof = Primitive("cone", zero, box.dims[2], np.array([1.1 * max(box.dims[:2]), rng.uniform(0.3, 0.7)]),
                         albedo=colour())
        return [box, roof]
    if style == 1:
        low = Primitive("sphere", zero, 0.0, np.array([rng.uniform(0.35, 0.5)]), albedo=colour())
        high = Primitive("sphere", zero, 1.7 * low.dims[0], np.array([0.6 * low.dims[0]]), albedo=colour())
        return [low, high]
    if style == 2:
        body = Primitive("cylinder", zero, 0.0, rng.uniform([0.2, 0.6], [0.35, 1.2]), albedo=colour())
        tip = Primitive("cone", zero, body.dims[1], np.array([body.dims[0], rng.uniform(0.3, 0.6)]), albedo=colour())
        return [body, tip]
    first = Primitive("box", np.array([-0.35, 0.0]), 0.0, rng.uniform([0.25, 0.2, 0.3], [0.4, 0.35, 1.0]),
                      albedo=colour())
    second = Primitive("box", np.array([0.35, 0.0]), 0.0, rng.uniform([0.25, 0.2, 0.3], [0.4, 0.35, 1.0]),
                       albedo=colour())
    return [first, second]


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at (0, -distance, height) looking at (0, 0, target_z); square image, vertical fov in deg."""
    distance: float = 10.0
    height: float = 3.0
    target_z: float = 0.6
    fov_deg: float = 40.0

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(position, forward, right, up) as unit vectors; right is +x."""
        position = np.array([0.0, -self.distance, self.height])
        forward = np.array([0.0, 0.0, self.target_z]) - position
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        return position, forward, right, np.cross(right, forward)

    def rays(self, image_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera position (3,) and unit ray directions (H*W, 3), row-major from the top-left pixel."""
        position, forward, right, up = self.basis()
        half = np.tan(np.radians(self.fov_deg) / 2)
        coords = (np.arange(image_size) + 0.5) / image_size * 2 - 1
        x, y = np.meshgrid(coords * half, -coords * half)
        dirs = forward + x.reshape(-1, 1) * right + y.reshape(-1, 1) * up
        return position, dirs / np.linalg.norm(dirs, axis=1, keepdims=True)

    def project(self, points: np.ndarray, image_size: int) -> np.ndarray:
        """World points (N, 3) -> pixel coordinates (N, 2) as (column, row)."""
        position, forward, right, up = self.basis()
        rel = points - position
        depth = rel @ forward
        half = np.tan(np.radians(self.fov_deg) / 2)
        x, y = (rel @ right) / depth / half, (rel @ up) / depth / half
        return np.stack([(x + 1) / 2 * image_size, (1 - y) / 2 * image_size], 1)


def light_samples(theta_deg: float, phi_deg: float, size: float, count: int = 32,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified points on the square area light of side `size` centred at r(sinθcosφ, sinθsinφ, cosθ), facing
    the origin. Returns the centre (3,), the unit normal n = -L/|L| (3,), and the sample points (K, 3); K is
    `count` (stratified on the most square grid with exactly `count` cells, e.g. 4 x 8 for 32)."""
    theta, phi = np.radians(theta_deg), np.radians(phi_deg)
    centre = LIGHT_RADIUS * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    normal = -centre / np.linalg.norm(centre)
    axis_a = np.cross([0.0, 0.0, 1.0], normal)
    axis_a = np.array([1.0, 0.0, 0.0]) if np.linalg.norm(axis_a) < 1e-8 else axis_a / np.linalg.norm(axis_a)
    axis_b = np.cross(normal, axis_a)
    side = max(d for d in range(1, int(np.sqrt(count)) + 1) if count % d == 0)
    rows = count // side
    rng = np.random.default_rng([seed, 11])
    u = (np.arange(side)[None, :] + rng.random((rows, side))) / side
    v = (np.arange(rows)[:, None] + rng.random((rows, side))) / rows
    points = centre + size * (u.reshape(-1, 1) - 0.5) * axis_a + size * (v.reshape(-1, 1) - 0.5) * axis_b
    return centre, normal, points
