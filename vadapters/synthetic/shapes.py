"""Rasterisation helpers: signed distances of simple shapes in relative coordinates, coverage and masks.

A `Shape` lives in relative coordinates: its centre `(cx, cy)` is a fraction of the canvas width and height, its
`size` (the diameter of the circle that bounds it) a fraction of the canvas's short side, its `rotation` an angle
in radians. The same shape therefore renders with the same layout at any `height` x `width`, and stays
undistorted at any aspect ratio. Distances come back in pixels (negative inside), from which we derive an
anti-aliased coverage (a linear ramp over about one pixel) and the exact boolean mask `coverage >= 0.5`, i.e.
`distance <= 0`. The file also holds the two procedural fields the scenes use as backgrounds: a linear gradient and
a smooth value noise, both evaluated in relative coordinates.

Example:
    >>> from vadapters.synthetic.shapes import Shape, coverage, mask
    >>> star = Shape("star", cx=0.5, cy=0.5, size=0.8)
    >>> m = mask(star, 24, 32)
    >>> m.shape, bool(m[12, 16]), bool(m[0, 0])
    ((24, 32), True, False)
    >>> bool(((coverage(star, 24, 32) >= 0.5) == m).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from vadapters.errors import BadInputError

__all__ = [
    "SHAPES",
    "Shape",
    "compound_distance",
    "coverage",
    "coverage_from_distance",
    "linear_gradient",
    "mask",
    "pixel_grid",
    "signed_distance",
    "union_distance",
    "unit_distance",
    "value_noise",
]

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")

# Geometry in units of the bounding radius (every shape fits in the unit circle and touches it).
_SQUARE_HALF = 1.0 / math.sqrt(2.0)
_STAR_INNER = 0.42
_RING_MID, _RING_HALF_WIDTH = 0.775, 0.225  # outer radius 1, inner radius 0.55
_CROSS_LONG = 1.0 / math.sqrt(1.0 + 0.3**2)  # arm half length; the arm corners touch the unit circle
_CROSS_SHORT = 0.3 * _CROSS_LONG  # arm half width


def _regular_vertices(radii: Sequence[float], count: int) -> np.ndarray:
    """Vertices alternating through `radii`, the first one pointing up (negative y in image coordinates)."""
    angles = -math.pi / 2 + np.arange(count) * 2.0 * math.pi / count
    r = np.resize(np.asarray(radii, dtype=np.float64), count)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


_TRIANGLE = _regular_vertices([1.0], 3)
_STAR = _regular_vertices([1.0, _STAR_INNER], 10)


def _polygon_distance(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple polygon (distance to the nearest edge, sign by the even-odd rule)."""
    best = np.full(x.shape, np.inf)
    inside = np.zeros(x.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        ex, ey = x1 - x0, y1 - y0
        wx, wy = x - x0, y - y0
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        best = np.minimum(best, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        if y0 != y1:
            crosses = (y0 <= y) != (y1 <= y)
            inside ^= crosses & (x < x0 + (y - y0) * ex / ey)
    return np.where(inside, -1.0, 1.0) * np.sqrt(best)


def _box_distance(x: np.ndarray, y: np.ndarray, half_x: float, half_y: float) -> np.ndarray:
    qx, qy = np.abs(x) - half_x, np.abs(y) - half_y
    return np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0)) + np.minimum(np.maximum(qx, qy), 0.0)


def unit_distance(kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to shape `kind` of bounding radius 1 at the origin, pointing up; negative inside.

    Args:
        kind (`str`): one of `SHAPES`.
        x, y (`np.ndarray`): coordinates (y grows downwards, as in images).
    """
    if kind == "circle":
        return np.hypot(x, y) - 1.0
    if kind == "square":
        return _box_distance(x, y, _SQUARE_HALF, _SQUARE_HALF)
    if kind == "triangle":
        return _polygon_distance(x, y, _TRIANGLE)
    if kind == "star":
        return _polygon_distance(x, y, _STAR)
    if kind == "ring":
        return np.abs(np.hypot(x, y) - _RING_MID) - _RING_HALF_WIDTH
    if kind == "cross":
        return np.minimum(
            _box_distance(x, y, _CROSS_LONG, _CROSS_SHORT), _box_distance(x, y, _CROSS_SHORT, _CROSS_LONG)
        )
    raise BadInputError(f"unknown shape {kind!r}; expected one of {', '.join(SHAPES)}")


@dataclass(frozen=True)
class Shape:
    """One shape in relative coordinates.

    Args:
        kind (`str`): one of `SHAPES` (circle, square, triangle, star, ring, cross).
        cx, cy (`float`): centre as fractions of the canvas width and height.
        size (`float`): diameter of the bounding circle as a fraction of the canvas's short side.
        rotation (`float`): clockwise rotation on screen, in radians.
    """

    kind: str
    cx: float
    cy: float
    size: float
    rotation: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SHAPES:
            raise BadInputError(f"unknown shape {self.kind!r}; expected one of {', '.join(SHAPES)}")
        if not self.size > 0:
            raise BadInputError(f"shape size must be positive, got {self.size!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_canvas(height: int, width: int) -> None:
    if int(height) < 1 or int(width) < 1:
        raise BadInputError(f"height and width must be positive, got {height}x{width}")


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in relative coordinates: `(u, v)`, each `[H, W]`, `u` across the width, `v` down."""
    _check_canvas(height, width)
    v = (np.arange(height, dtype=np.float64) + 0.5) / height
    u = (np.arange(width, dtype=np.float64) + 0.5) / width
    return np.broadcast_to(u[None, :], (height, width)), np.broadcast_to(v[:, None], (height, width))


def signed_distance(shape: Shape, height: int, width: int) -> np.ndarray:
    """Signed distance in pixels from each pixel centre to `shape` (negative inside), float64 `[H, W]`."""
    u, v = pixel_grid(height, width)
    short = min(height, width)
    x = (u - shape.cx) * (width / short)
    y = (v - shape.cy) * (height / short)
    radius = shape.size / 2.0
    cos, sin = math.cos(shape.rotation), math.sin(shape.rotation)
    # Rotate the sampling points by -rotation to turn the shape by +rotation.
    xr, yr = (x * cos + y * sin) / radius, (-x * sin + y * cos) / radius
    return unit_distance(shape.kind, xr, yr) * (radius * short)


def union_distance(shapes: Sequence[Shape], height: int, width: int, smooth: float = 0.0) -> np.ndarray:
    """Signed distance in pixels to the union of `shapes`; `smooth` > 0 blends them into a blob.

    Args:
        smooth (`float`): blending radius as a fraction of the short side (polynomial smooth minimum), so the
            blob keeps its layout at any resolution.
    """
    if not shapes:
        raise BadInputError("union_distance needs at least one shape")
    k = max(float(smooth), 0.0) * min(height, width)
    out = signed_distance(shapes[0], height, width)
    for shape in shapes[1:]:
        d = signed_distance(shape, height, width)
        if k > 0:
            h = np.maximum(k - np.abs(out - d), 0.0) / k
            out = np.minimum(out, d) - h * h * k / 4.0
        else:
            out = np.minimum(out, d)
    return out


def compound_distance(
    parts: Sequence[dict],
    centre: tuple[float, float],
    height: int,
    width: int,
    smooth: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> np.ndarray:
    """Signed distance in pixels to a rigid group of shapes (e.g. a blob), the same at every aspect ratio.

    Args:
        parts (`Sequence[dict]`): `{"kind", "dx", "dy", "size", "rotation"}`, offsets and size in short sides.
        centre (`tuple[float, float]`): `(cx, cy)` of the group, fractions of the width and height.
        smooth (`float`): blending radius in short sides (see `union_distance`).
        shift (`tuple[float, float]`): extra displacement `(dx, dy)` of the whole group, in short sides.
        scale (`float`): growth factor of the group around its (shifted) centre.
    """
    short = min(height, width)
    cx, cy = centre[0] + shift[0] * short / width, centre[1] + shift[1] * short / height
    shapes = [
        Shape(
            p["kind"],
            cx + scale * p["dx"] * short / width,
            cy + scale * p["dy"] * short / height,
            scale * p["size"],
            p.get("rotation", 0.0),
        )
        for p in parts
    ]
    return union_distance(shapes, height, width, smooth=smooth * scale)


def coverage_from_distance(distance: np.ndarray, softness: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from a signed distance in pixels: a linear ramp `softness` pixels wide.

    `coverage >= 0.5` exactly where `distance <= 0`, whatever the softness.
    """
    if softness <= 0:
        return (distance <= 0).astype(np.float64)
    return np.clip(0.5 - distance / softness, 0.0, 1.0)


def coverage(shape: Shape, height: int, width: int, softness: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage of `shape`, float64 `[H, W]` in [0, 1] (see `coverage_from_distance`)."""
    return coverage_from_distance(signed_distance(shape, height, width), softness)


def mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """Boolean mask of `shape` `[H, W]`: pixel centres inside or on the boundary (coverage >= 0.5)."""
    return signed_distance(shape, height, width) <= 0.0


def linear_gradient(angle: float, height: int, width: int) -> np.ndarray:
    """A ramp `[H, W]` from 0 to 1 across the canvas along `angle` (0: left to right, pi/2: top to bottom)."""
    u, v = pixel_grid(height, width)
    cos, sin = math.cos(angle), math.sin(angle)
    return ((u - 0.5) * cos + (v - 0.5) * sin) / (abs(cos) + abs(sin)) + 0.5


def value_noise(
    seed: int | Sequence[int],
    height: int,
    width: int,
    cells: int = 4,
    octaves: int = 3,
    contrast: float = 1.0,
) -> np.ndarray:
    """Smooth value noise `[H, W]` in [0, 1], defined in relative coordinates (same pattern at any resolution).

    Octave `o` interpolates (quintic fade) a random lattice of `cells * 2**o` cells per side, weighted `2**-o`.

    Args:
        seed: seed of the lattices (anything `numpy.random.default_rng` takes).
        cells (`int`): lattice cells per side in the coarsest octave.
        octaves (`int`): number of octaves.
        contrast (`float`): stretch around 0.5 before clipping to [0, 1] (averaged noise is rather flat).
    """
    if cells < 1 or octaves < 1:
        raise BadInputError(f"value_noise needs cells >= 1 and octaves >= 1, got {cells} and {octaves}")
    rng = np.random.default_rng(seed)
    u, v = pixel_grid(height, width)
    total = np.zeros((height, width))
    weights = 0.0
    for octave in range(octaves):
        n = cells * 2**octave
        lattice = rng.random((n + 1, n + 1))
        gx, gy = u[0] * n, v[:, 0] * n
        ix, iy = np.minimum(gx.astype(np.int64), n - 1), np.minimum(gy.astype(np.int64), n - 1)
        fx, fy = gx - ix, gy - iy
        fx, fy = (f * f * f * (f * (f * 6.0 - 15.0) + 10.0) for f in (fx, fy))
        top = lattice[iy][:, ix] * (1 - fx) + lattice[iy][:, ix + 1] * fx
        bottom = lattice[iy + 1][:, ix] * (1 - fx) + lattice[iy + 1][:, ix + 1] * fx
        weight = 0.5**octave
        total += weight * (top * (1 - fy[:, None]) + bottom * fy[:, None])
        weights += weight
    return np.clip((total / weights - 0.5) * contrast + 0.5, 0.0, 1.0)
