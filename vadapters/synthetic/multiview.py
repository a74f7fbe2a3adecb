"""Orthographic multi-view renders of small 3D objects, following MV-Adapter's camera conventions.

World frame: right-handed, **+y up**; objects fit in the cylinder `x^2 + z^2 <= 0.25`, `|y| <= 0.5`, so they stay
inside the `+-0.55` orthographic box at elevation 0. A camera at azimuth `a`, elevation `e` sits at
`distance * (cos e sin a, sin e, cos e cos a)` looking at the origin: azimuth 0 is the front view (camera on +z), 90
the right (+x), 180 the back, 270 the left; positive elevations look down. This is MV-Adapter's
`get_orthogonal_camera(azimuth=deg - 90)` with its z-up world turned y-up by `(x, y, z) -> (x, z, -y)`. Camera axes
follow OpenGL (x image right, y up, looking along -z); at elevation 0 camera up is world +y, so a 3D point lands on
the same image row in every view (the "epipolar line = row" fact behind row-wise multi-view attention). Pixels:
`(u, v)` from the top-left corner, pixel `(row i, col j)` covers `[j, j + 1) x [i, i + 1)`, square pixels, and the
`+-ortho_half_size` box spans the short side.

Example:
    >>> from vadapters.synthetic.multiview import MultiViewObjects
    >>> data = MultiViewObjects(4, seed=0)
    >>> item = data.render(0, 16, 16)
    >>> tuple(item["images"].shape), tuple(item["raymaps"].shape), item["azimuths"].tolist()
    ((6, 3, 16, 16), (6, 6, 16, 16), [0.0, 45.0, 90.0, 180.0, 270.0, 315.0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vadapters.errors import BadInputError

__all__ = ["DEFAULT_AZIMUTHS", "KINDS", "PALETTE", "MultiViewObjects", "OrthoCamera", "Primitive", "SyntheticObject"]
__all__ += ["make_object", "ortho_cameras", "raymap", "render_view", "render_views"]

DEFAULT_AZIMUTHS = (0.0, 45.0, 90.0, 180.0, 270.0, 315.0)
KINDS = ("sphere", "box", "cylinder", "cone")
# Saturated colours only: no shaded object pixel can equal the grey background.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.10),
    "green": (0.12, 0.72, 0.20),
    "blue": (0.15, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.98, 0.50, 0.05),
    "purple": (0.55, 0.15, 0.75),
    "cyan": (0.10, 0.80, 0.85),
    "pink": (0.95, 0.45, 0.70),
}
# Box faces (+x, -x, +y, -y, +z, -z) mix the box colour toward white (> 0) or black (< 0) by this fraction.
BOX_FACE_TINTS = (0.35, -0.35, 0.55, -0.55, 0.0, -0.5)
LIGHT_DIR = (0.35, 0.8, 0.5)  # world-fixed directional light (normalised when used)
AMBIENT = 0.4
BACKGROUND = (0.5, 0.5, 0.5)  # image background in [0, 1]; 0 in the returned [-1, 1] images
POSITION_OFFSET = 0.5  # position maps hold xyz + 0.5; 0 outside the mask
NORMAL_BACKGROUND = 0.5  # normal maps hold (n + 1) / 2; 0.5 (the zero vector) outside the mask


def _mm(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """`x @ m` for `[N, 3] x [3, 3]` without BLAS threads (the maths here is numpy, never multi-threaded)."""
    return np.einsum("nk,kj->nj", x, m)


@dataclass(frozen=True)
class OrthoCamera:
    """An orthographic camera looking at the origin (conventions in the module docstring).

    Args:
        azimuth_deg (`float`): rotation about world +y; 0 is the front view (camera on +z), 90 the right view.
        elevation_deg (`float`): in [-90, 90]; positive looks down from above.
        distance (`float`): distance from the origin to the camera.
        ortho_half_size (`float`): half the side of the orthographic box, spanning the image's short side.

    Example:
        >>> cam = OrthoCamera(90.0)
        >>> [round(v, 6) + 0.0 for v in cam.position.tolist()], [round(v, 6) + 0.0 for v in cam.view_dir.tolist()]
        ([1.8, 0.0, 0.0], [-1.0, 0.0, 0.0])
    """

    azimuth_deg: float
    elevation_deg: float = 0.0
    distance: float = 1.8
    ortho_half_size: float = 0.55

    def __post_init__(self) -> None:
        if not (-90.0 <= float(self.elevation_deg) <= 90.0 and self.distance > 0 and self.ortho_half_size > 0):
            raise BadInputError(f"need elevation_deg in [-90, 90], distance > 0 and ortho_half_size > 0, got {self!r}")

    def _frame(self) -> np.ndarray:
        """`[3, 3]` rotation whose columns are the camera's right, up and back axes in world coordinates."""
        a, e = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        back = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
        right = np.array([math.cos(a), 0.0, -math.sin(a)])  # horizontal at every elevation, so +-90 is well defined
        return np.stack([right, np.cross(back, right), back], axis=1)

    @property
    def position(self) -> torch.Tensor:
        """Camera centre in world coordinates, float64 `[3]`."""
        return torch.from_numpy(self._frame()[:, 2] * self.distance)

    @property
    def view_dir(self) -> torch.Tensor:
        """Unit viewing direction (from the camera toward the origin), float64 `[3]`."""
        return torch.from_numpy(-self._frame()[:, 2])

    @property
    def c2w(self) -> torch.Tensor:
        """Camera-to-world float64 `[4, 4]`: columns are right, up, back (= -view_dir) and the position."""
        rot = self._frame()
        return torch.from_numpy(np.vstack([np.hstack([rot, rot[:, 2:] * self.distance]), [[0.0, 0.0, 0.0, 1.0]]]))

    @property
    def w2c(self) -> torch.Tensor:
        """World-to-camera float64 `[4, 4]`, the inverse of `c2w`."""
        shift = [[0.0], [0.0], [-self.distance]]  # -R^T position: the camera sits on its own +z axis
        return torch.from_numpy(np.vstack([np.hstack([self._frame().T, shift]), [[0.0, 0.0, 0.0, 1.0]]]))

    def project(self, points, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project world points `[N, 3]` to continuous pixel coordinates `(u, v)` and depth along `view_dir`."""
        rot = self._frame()
        cam = _mm(np.asarray(points, dtype=np.float64).reshape(-1, 3) - rot[:, 2] * self.distance, rot)
        s = min(height, width) / (2.0 * self.ortho_half_size)  # pixels per world unit
        return tuple(torch.from_numpy(x) for x in (width / 2 + cam[:, 0] * s, height / 2 - cam[:, 1] * s, -cam[:, 2]))

    def _rays(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Ray origins on the camera plane through each pixel centre, `[H, W, 3]`, and the shared direction `[3]`."""
        s, rot = min(height, width) / (2.0 * self.ortho_half_size), self._frame()
        x = (np.arange(width) + 0.5 - width / 2) / s
        y = (height / 2 - np.arange(height) - 0.5) / s
        return rot[:, 2] * self.distance + y[:, None, None] * rot[:, 1] + x[None, :, None] * rot[:, 0], -rot[:, 2]


def ortho_cameras(azimuths: Sequence[float] = DEFAULT_AZIMUTHS, elevation=0.0, **kwargs) -> list[OrthoCamera]:
    """One `OrthoCamera` per azimuth; `elevation` is a float or one value per azimuth; `kwargs` go to each camera.

    Example:
        >>> [c.azimuth_deg for c in ortho_cameras()]
        [0.0, 45.0, 90.0, 180.0, 270.0, 315.0]
    """
    azimuths = [float(a) for a in azimuths]
    elevations = [float(elevation)] * len(azimuths) if np.isscalar(elevation) else [float(e) for e in elevation]
    if not azimuths or len(elevations) != len(azimuths):
        raise BadInputError(f"need >= 1 azimuth and as many elevations, got {len(azimuths)} and {len(elevations)}")
    return [OrthoCamera(a, e, **kwargs) for a, e in zip(azimuths, elevations)]


def raymap(camera: OrthoCamera, height: int, width: int) -> torch.Tensor:
    """MV-Adapter's orthographic camera map: `[view_dir, normalize(position)]` as (p + 1) / 2, float32 `[6, H, W]`.

    Example:
        >>> rm = raymap(OrthoCamera(0.0), 4, 4)
        >>> rm[:, 0, 0].tolist()
        [0.5, 0.5, 0.0, 0.5, 0.5, 1.0]
    """
    back = camera._frame()[:, 2]  # normalize(position) = back, view_dir = -back
    vec = torch.from_numpy((np.concatenate([-back, back]) + 1.0) / 2.0).float()
    return vec[:, None, None].expand(6, height, width).contiguous()


@dataclass(frozen=True)
class Primitive:
    """One solid: a unit shape scaled by `half_extents`, turned by `yaw_deg` about +y and moved to `center`.

    The unit shapes: sphere (radius 1), box ([-1, 1]^3), cylinder (radius 1, y in [-1, 1]) and cone (base radius 1 at
    y = -1, apex at y = 1). `color` is a `PALETTE` name; box faces are tinted by `BOX_FACE_TINTS`.
    """

    kind: str
    center: tuple[float, float, float]
    half_extents: tuple[float, float, float]
    color: str
    yaw_deg: float = 0.0

    def __post_init__(self) -> None:
        for name, value, allowed in (("primitive kind", self.kind, KINDS), ("colour", self.color, tuple(PALETTE))):
            if value not in allowed:
                raise BadInputError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")
        if len(self.half_extents) != 3 or min(self.half_extents) <= 0:
            raise BadInputError(f"half_extents must be 3 positive floats, got {self.half_extents!r}")

    def part_colors(self) -> np.ndarray:
        """`[parts, 3]` RGB in [0, 1]: six faces for a box, one colour otherwise."""
        base, tints = (
            np.array(PALETTE[self.color]),
            np.array(BOX_FACE_TINTS if self.kind == "box" else (0.0,))[:, None],
        )
        return np.where(tints >= 0, base + (1 - base) * tints, base * (1 + tints))


@dataclass(frozen=True)
class SyntheticObject:
    """A union of primitives and its caption, e.g. "a red sphere on a blue box"."""

    primitives: tuple[Primitive, ...]
    caption: str


def _roots(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real roots of a t^2 + b t + c, ascending, inf where there is none (numerically stable; a ~ 0 is fine)."""
    a = np.where(np.abs(a) > 1e-12, a, 1e-12)
    disc = b * b - 4 * a * c
    q = -0.5 * (b + np.copysign(np.sqrt(np.maximum(disc, 0)), b))
    q = np.where(np.abs(q) > 1e-300, q, 1e-300)
    r0, r1, miss = q / a, c / q, np.where(disc >= 0, 0.0, np.inf)
    return np.minimum(r0, r1) + miss, np.maximum(r0, r1) + miss


def _nearest(candidates: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]) -> tuple[np.ndarray, ...]:
    """Pick, per ray, the nearest valid candidate `(t, valid, normal [N, 3], part)`; t is inf on a miss."""
    ts = np.stack([np.where(ok & (t > 1e-9), t, np.inf) for t, ok, _, _ in candidates])
    idx, rays = ts.argmin(0), np.arange(ts.shape[1])
    normals = np.stack([n for _, _, n, _ in candidates])[idx, rays]
    return ts[idx, rays], normals, np.array([c[3] for c in candidates])[idx]


def _intersect_unit(kind: str, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Nearest hit of rays `o + t d` (`[N, 3]`) with a unit shape: `(t, local normal, part)`."""
    at = lambda t: o + np.where(np.isfinite(t), t, 0.0)[:, None] * d  # noqa: E731
    if kind == "sphere":
        roots = _roots((d * d).sum(1), 2 * (o * d).sum(1), (o * o).sum(1) - 1)
        return _nearest([(t, np.isfinite(t), at(t), 0) for t in roots])
    if kind == "box":  # slabs; parts are the faces +x, -x, +y, -y, +z, -z
        safe = np.where(np.abs(d) > 1e-12, d, 1e-12)
        t1, t2 = (-1 - o) / safe, (1 - o) / safe
        axis, rays = np.minimum(t1, t2).argmax(1), np.arange(len(o))
        near = np.minimum(t1, t2)[rays, axis]
        normal = np.eye(3)[axis] * -np.sign(safe[rays, axis])[:, None]
        hit = (near <= np.maximum(t1, t2).min(1)) & (near > 1e-9)
        return np.where(hit, near, np.inf), normal, axis * 2 + (normal.sum(1) < 0)

    def cap(level: float, part: int) -> tuple[np.ndarray, ...]:
        p = at(t := (level - o[:, 1]) / np.where(np.abs(d[:, 1]) > 1e-12, d[:, 1], 1e-12))
        return t, p[:, 0] ** 2 + p[:, 2] ** 2 <= 1, np.broadcast_to([0.0, level, 0.0], o.shape), part

    # side: x^2 + z^2 = 1 (cylinder) or ((1 - y) / 2)^2 (cone), for y in [-1, 1]
    cone, flat, oxz, h = kind == "cone", d[:, [0, 2]], o[:, [0, 2]], 1 - o[:, 1]
    k = 0.25 if cone else 0.0
    qa = (flat * flat).sum(1) - k * d[:, 1] ** 2
    roots = _roots(qa, 2 * ((oxz * flat).sum(1) + k * h * d[:, 1]), (oxz * oxz).sum(1) - (k * h * h if cone else 1.0))
    cands = [cap(-1.0, 2)] if cone else [cap(-1.0, 2), cap(1.0, 1)]
    for t in roots:
        p = at(t)
        normal = np.stack([p[:, 0], k * (1 - p[:, 1]), p[:, 2]], 1)
        cands.append((t, np.isfinite(t) & (np.abs(p[:, 1]) <= 1), normal, 0))
    return _nearest(cands)


def render_views(primitives: Sequence[Primitive], cameras: Sequence[OrthoCamera], height: int, width: int) -> dict:
    """Ray-trace every camera's view at once (analytic intersections, nearest hit wins, Lambert shading).

    Returns:
        `dict` of stacked float32 tensors: `images` `[V, 3, H, W]` in [-1, 1] on a flat grey background, `masks`
        bool `[V, H, W]`, `positions` `[V, 3, H, W]` (world xyz + 0.5, 0 outside the mask), `normals`
        `[V, 3, H, W]` (world normal as (n + 1) / 2, 0.5 outside), `depths` `[V, H, W]` (distance along `view_dir`
        from the camera, 0 outside) and `raymaps` `[V, 6, H, W]`.
    """
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0 and cameras):
        raise BadInputError(f"need positive int height, width and >= 1 camera, got {height!r}x{width!r}, {cameras!r}")
    views = len(cameras)
    rays = [cam._rays(height, width) for cam in cameras]
    origins = np.stack([o for o, _ in rays]).reshape(-1, 3)
    dirs = np.repeat(np.stack([d for _, d in rays]), height * width, axis=0)
    t = np.full(len(origins), np.inf)  # z-buffer: the nearest hit wins
    normal = rgb = np.zeros((len(origins), 3))
    for prim in primitives:
        c, s = math.cos(math.radians(prim.yaw_deg)), math.sin(math.radians(prim.yaw_deg))
        rot, ext = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]), np.array(prim.half_extents)  # yaw about +y
        t_p, n_loc, part = _intersect_unit(prim.kind, _mm(origins - prim.center, rot) / ext, _mm(dirs, rot) / ext)
        closer, colors, n_world = (t_p < t)[:, None], prim.part_colors(), _mm(n_loc / ext, rot.T)
        t = np.where(closer[:, 0], t_p, t)
        normal = np.where(closer, n_world / np.linalg.norm(n_world, axis=1, keepdims=True).clip(1e-12), normal)
        rgb = np.where(closer, colors[np.minimum(part, len(colors) - 1)], rgb)
    mask = np.isfinite(t)
    tz = np.where(mask, t, 0.0)
    shade = AMBIENT + (1 - AMBIENT) * np.maximum((normal * LIGHT_DIR).sum(1) / np.linalg.norm(LIGHT_DIR), 0)
    image = np.where(mask[:, None], rgb * shade[:, None], BACKGROUND)
    position = np.where(mask[:, None], origins + tz[:, None] * dirs + POSITION_OFFSET, 0.0)
    normal_map = np.where(mask[:, None], (normal + 1) / 2, NORMAL_BACKGROUND)

    def chw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.reshape(views, height, width, 3).transpose(0, 3, 1, 2), "f4"))

    return {
        "images": chw(np.clip(image * 2 - 1, -1, 1)),
        "masks": torch.from_numpy(mask.reshape(views, height, width)),
        "positions": chw(position),
        "normals": chw(normal_map),
        "depths": torch.from_numpy(tz.reshape(views, height, width).astype(np.float32)),
        "raymaps": torch.stack([raymap(cam, height, width) for cam in cameras]),
    }


def render_view(primitives: Sequence[Primitive], camera: OrthoCamera, height: int, width: int) -> dict:
    """One view: `dict(image, mask, position, normal, depth, raymap, camera)`, unbatched (see `render_views`).

    Example:
        >>> ball = Primitive("sphere", (0.0, 0.0, 0.0), (0.3, 0.3, 0.3), "red")
        >>> view = render_view([ball], OrthoCamera(0.0), 8, 8)
        >>> bool(view["mask"][4, 4]), bool(view["mask"][0, 0])
        (True, False)
    """
    out = {k[:-1]: v[0] for k, v in render_views(primitives, [camera], height, width).items()}
    return {**out, "camera": camera}


def _half_extents(kind: str, radius: float, half_height: float, rng: np.random.Generator) -> tuple[float, ...]:
    """Half extents for a primitive whose horizontal radius (about its own axis) is `radius`."""
    if kind != "box":
        return (min(radius, half_height),) * 3 if kind == "sphere" else (radius, half_height, radius)
    phi = rng.uniform(0.55, 1.02)  # the box's footprint half-diagonal is `radius`
    return (radius * math.cos(phi), half_height, radius * math.sin(phi))


def make_object(rng: np.random.Generator) -> SyntheticObject:
    """A random object: one primitive, or one primitive stacked on a base with 0-2 more standing beside it."""
    count = int(rng.integers(1, 5))
    kinds = [KINDS[i] for i in rng.integers(0, len(KINDS), size=count)]
    colors = [str(c) for c in rng.choice(list(PALETTE), size=count, replace=False)]
    yaws = [float(rng.uniform(0, 90)) if k == "box" else 0.0 for k in kinds]
    specs: list[tuple[tuple[float, float, float], tuple[float, ...]]] = []  # (center, half extents)
    if count == 1:
        specs.append(((0.0, 0.0, 0.0), _half_extents(kinds[0], rng.uniform(0.25, 0.4), rng.uniform(0.25, 0.4), rng)))
    else:
        radius_b = rng.uniform(0.2, 0.3) if count == 2 else rng.uniform(0.15, 0.2)
        base = _half_extents(kinds[0], radius_b, rng.uniform(0.12, 0.22), rng)
        specs.append(((0.0, -0.5 + base[1], 0.0), base))
        top = _half_extents(kinds[1], rng.uniform(0.1, min(radius_b, 0.2)), rng.uniform(0.1, 0.2), rng)
        specs.append(((0.0, -0.5 + 2 * base[1] + top[1], 0.0), top))
        angle = rng.uniform(0, 2 * math.pi)
        for kind in kinds[2:]:
            radius = rng.uniform(0.08, 0.13)
            ext = _half_extents(kind, radius, rng.uniform(0.08, 0.18), rng)
            specs.append((((0.5 - radius) * math.sin(angle), -0.5 + ext[1], (0.5 - radius) * math.cos(angle)), ext))
            angle += rng.uniform(2 * math.pi / 3, 4 * math.pi / 3)
    shift = -(min(c[1] - e[1] for c, e in specs) + max(c[1] + e[1] for c, e in specs)) / 2  # centre it vertically
    prims = tuple(
        Primitive(k, (c[0], c[1] + shift, c[2]), tuple(float(v) for v in e), col, yaw)
        for k, (c, e), col, yaw in zip(kinds, specs, colors, yaws)
    )
    words = [f"{'an' if c[0] in 'aeiou' else 'a'} {c} {k}" for c, k in zip(colors, kinds)]
    extras = f", next to {' and '.join(words[2:])}" if count > 2 else ""
    return SyntheticObject(prims, words[0] if count == 1 else f"{words[1]} on {words[0]}{extras}")


class MultiViewObjects:
    """A deterministic set of `num_items` 3D objects, each rendered from `num_views` orthographic cameras.

    Object `i` depends only on `(seed, i)` (see `make_object`): "a red sphere on a blue box, next to a green cone".

    Args:
        num_items (`int`): number of objects.
        seed (`int`): seed of the object parameters.
        num_views (`int`, optional): number of views; defaults to `len(azimuths)`, or 6.
        azimuths (`Sequence[float]`, optional): degrees; default `DEFAULT_AZIMUTHS` for 6 views, else evenly spaced.
        elevation (`float` or `Sequence[float]`): camera elevation(s) in degrees.

    Example:
        >>> data = MultiViewObjects(2, seed=1)
        >>> len(data), tuple(data[0]["masks"].shape)
        (2, (6, 32, 32))
    """

    def __init__(
        self, num_items: int, seed: int = 0, num_views: int | None = None, azimuths=None, elevation=0.0
    ) -> None:
        for name, value in (("num_items", num_items), ("num_views", 1 if num_views is None else num_views)):
            if not isinstance(value, int) or value < 1:
                raise BadInputError(f"{name} must be a positive int, got {value!r}")
        if azimuths is None:
            num_views = 6 if num_views is None else num_views
            azimuths = DEFAULT_AZIMUTHS if num_views == 6 else [360.0 * i / num_views for i in range(num_views)]
        elif num_views is not None and num_views != len(azimuths):
            raise BadInputError(f"num_views={num_views} but {len(azimuths)} azimuths; pass num_views=len(azimuths)")
        self.cameras = ortho_cameras(azimuths, elevation)
        self.num_items, self.seed, self.num_views = num_items, int(seed), len(self.cameras)

    def __len__(self) -> int:
        return self.num_items

    def object(self, index: int) -> SyntheticObject:
        """The primitives and caption of object `index`."""
        if not -self.num_items <= index < self.num_items:
            raise IndexError(f"object index {index} out of range for {self.num_items} objects")
        return make_object(np.random.default_rng([self.seed, index % self.num_items, 0x3D0B]))

    def render(self, index: int, height: int, width: int) -> dict:
        """`render_views` of object `index` plus `azimuths`, `elevations` (degrees), `caption`, `cameras`, `object`."""
        obj = self.object(index)
        out = render_views(obj.primitives, self.cameras, height, width)
        out["azimuths"] = torch.tensor([c.azimuth_deg for c in self.cameras])
        out["elevations"] = torch.tensor([c.elevation_deg for c in self.cameras])
        return {**out, "caption": obj.caption, "cameras": list(self.cameras), "object": obj}

    def __getitem__(self, index: int) -> dict:
        return self.render(index, 32, 32)

    def __repr__(self) -> str:
        return f"MultiViewObjects({self.num_items}, seed={self.seed}, views={self.num_views})"
