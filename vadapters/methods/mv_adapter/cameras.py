"""Camera rigs and camera maps for MV-Adapter's condition encoder.

Conventions are those of `vadapters.synthetic.multiview` (y-up world, azimuth 0 = front view on +z, 90 = right,
positive elevation looks down, OpenGL camera axes). Two kinds of map, both 6 channels and rescaled to [0, 1]:
- perspective cameras: per-pixel Pluecker coordinates `[d, o x d]` of the pixel's ray (origin `o`, unit
  direction `d`);
- orthographic cameras: the official released models' **spatially constant** map `[view_dir, normalize(position)]`.

Camera conventions (`convention=`): a map holds world-frame vectors, so the world frame is part of the code a
model was trained on.
- `"vadapters"` (default; what vadapters' own adapters are trained on): the y-up world above.
- `"official"` (what the released MV-Adapter checkpoints were trained on): the official scripts' z-up world, where
  a user's azimuth `a` is passed to the official `get_c2w` as `a - 90`. That is the same rig with world vectors
  turned by `(x, y, z) -> (x, -z, y)`: azimuths 90 and 270 give the same code in both, 0 and 180 differ by 0.5,
  45 and 315 by 0.354. An official checkpoint's `MVAdapterConfig.camera_convention` is `"official"`, and the
  multi-view pipelines use the loaded adapter's convention.

Example:
    >>> cams = orbit_cameras([0, 90, 180, 270], elevations=10.0, kind="perspective")
    >>> tuple(camera_maps(cams, 8, 12).shape)
    (4, 6, 8, 12)
    >>> camera_maps(orbit_cameras([0.0]), 1, 1, convention="official")[0, :, 0, 0].tolist()
    [0.5, 1.0, 0.5, 0.5, 0.0, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vadapters.errors import BadInputError
from vadapters.synthetic.multiview import DEFAULT_AZIMUTHS, OrthoCamera, ortho_cameras, raymap

__all__ = [
    "CONVENTIONS",
    "DEFAULT_AZIMUTHS",
    "SIX_VIEW_RIG",
    "OrthoCamera",
    "PerspectiveCamera",
    "camera_maps",
    "orbit_cameras",
    "ortho_raymap",
    "plucker_raymap",
    "to_convention",
]

# The geometry-guided models' fixed 6-view order (front, right, back, left, top, bottom): (azimuth, elevation).
SIX_VIEW_RIG = ((0.0, 0.0), (90.0, 0.0), (180.0, 0.0), (270.0, 0.0), (0.0, 89.99), (0.0, -89.99))
CONVENTIONS = ("vadapters", "official")
# vadapters' y-up world -> the official z-up world (a proper rotation, so cross products turn along with it).
_TO_OFFICIAL_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise BadInputError(f"camera convention must be one of {CONVENTIONS}, got {convention!r}")


def to_convention(maps: torch.Tensor, convention: str = "vadapters") -> torch.Tensor:
    """Re-express camera maps `[..., 6, H, W]` in [0, 1] (vadapters' y-up world) in `convention`'s world.

    Both 3-vectors of each map (direction and position or moment) are turned by the same rotation, then mapped
    back to [0, 1] and clamped, as the official scripts do.

    Example:
        >>> front = camera_maps(orbit_cameras([0.0]), 1, 1)  # y-up: looks along -z
        >>> front[0, :, 0, 0].tolist(), to_convention(front, "official")[0, :, 0, 0].tolist()
        ([0.5, 0.5, 0.0, 0.5, 0.5, 1.0], [0.5, 1.0, 0.5, 0.5, 0.0, 0.5])
    """
    _check_convention(convention)
    if convention == "vadapters":
        return maps
    if maps.shape[-3] != 6:
        raise BadInputError(f"camera maps have 6 channels, got shape {tuple(maps.shape)}")
    vectors = maps.double() * 2.0 - 1.0
    turned = torch.from_numpy(_TO_OFFICIAL_WORLD).to(vectors)
    parts = [torch.einsum("ij,...jhw->...ihw", turned, v) for v in vectors.split(3, dim=-3)]
    return ((torch.cat(parts, dim=-3) + 1.0) / 2.0).clamp(0.0, 1.0).to(maps.dtype)


@dataclass(frozen=True)
class PerspectiveCamera:
    """A pinhole camera on an orbit, looking at the origin.

    Args:
        azimuth_deg, elevation_deg, distance: as `OrthoCamera`.
        fov_deg (`float`): field of view across the image's short side.

    Example:
        >>> cam = PerspectiveCamera(0.0, 0.0, 2.0, 40.0)
        >>> [round(v, 6) + 0.0 for v in cam.position.tolist()]
        [0.0, 0.0, 2.0]
    """

    azimuth_deg: float
    elevation_deg: float = 0.0
    distance: float = 2.0
    fov_deg: float = 40.0

    def __post_init__(self) -> None:
        if not 0.0 < self.fov_deg < 180.0:
            raise BadInputError(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        OrthoCamera(self.azimuth_deg, self.elevation_deg, self.distance)  # validates the orbit

    def _frame(self) -> np.ndarray:
        return OrthoCamera(self.azimuth_deg, self.elevation_deg, self.distance)._frame()

    @property
    def position(self) -> torch.Tensor:
        return torch.from_numpy(self._frame()[:, 2] * self.distance)

    @property
    def c2w(self) -> torch.Tensor:
        return OrthoCamera(self.azimuth_deg, self.elevation_deg, self.distance).c2w


def orbit_cameras(
    azimuths: Sequence[float] = DEFAULT_AZIMUTHS,
    elevations: float | Sequence[float] = 0.0,
    kind: str = "ortho",
    **kwargs,
) -> list[OrthoCamera] | list[PerspectiveCamera]:
    """Cameras on an orbit at any azimuth / elevation list (`kind` `"ortho"` or `"perspective"`).

    Example:
        >>> [c.azimuth_deg for c in orbit_cameras([0, 120, 240])]
        [0.0, 120.0, 240.0]
    """
    if kind == "ortho":
        return ortho_cameras(azimuths, elevations, **kwargs)
    if kind != "perspective":
        raise BadInputError(f"kind must be 'ortho' or 'perspective', got {kind!r}")
    azimuths = [float(a) for a in azimuths]
    elev = [float(elevations)] * len(azimuths) if np.isscalar(elevations) else [float(e) for e in elevations]
    if not azimuths or len(elev) != len(azimuths):
        raise BadInputError(f"need >= 1 azimuth and as many elevations, got {len(azimuths)} and {len(elev)}")
    return [PerspectiveCamera(a, e, **kwargs) for a, e in zip(azimuths, elev)]


def ortho_raymap(camera: OrthoCamera, height: int, width: int) -> torch.Tensor:
    """The official orthographic map: `[view_dir, normalize(position)]` in [0, 1], constant over `[6, H, W]`."""
    return raymap(camera, height, width)


def plucker_raymap(camera: PerspectiveCamera, height: int, width: int, unit_range: bool = True) -> torch.Tensor:
    """Pluecker coordinates `[d, o x d]` of each pixel's ray, float32 `[6, H, W]`; `unit_range` maps to [0, 1].

    Example:
        >>> rm = plucker_raymap(PerspectiveCamera(0.0), 5, 5, unit_range=False)
        >>> [round(v, 6) + 0.0 for v in rm[:, 2, 2].tolist()]  # centre ray: straight at the origin
        [0.0, 0.0, -1.0, 0.0, 0.0, 0.0]
    """
    frame = camera._frame()
    focal = (min(height, width) / 2.0) / math.tan(math.radians(camera.fov_deg) / 2.0)
    u = (np.arange(width) + 0.5 - width / 2.0) / focal
    v = (height / 2.0 - np.arange(height) - 0.5) / focal
    dirs = u[None, :, None] * frame[:, 0] + v[:, None, None] * frame[:, 1] - frame[:, 2]
    dirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = np.broadcast_to(frame[:, 2] * camera.distance, dirs.shape)
    moment = np.cross(origin, dirs)
    out = torch.from_numpy(np.concatenate([dirs, moment], axis=-1)).permute(2, 0, 1).float()
    return (out + 1.0) / 2.0 if unit_range else out


def camera_maps(
    cameras: Sequence[OrthoCamera | PerspectiveCamera], height: int, width: int, convention: str = "vadapters"
) -> torch.Tensor:
    """Stack the camera map of each view: `[num_views, 6, H, W]` in [0, 1], the condition-encoder input.

    Args:
        cameras: `OrthoCamera` / `PerspectiveCamera` objects (vadapters' azimuth and elevation conventions).
        convention (`str`): the world frame of the code: `"vadapters"` (y-up, vadapters' own adapters) or
            `"official"` (the released MV-Adapter checkpoints: z-up, azimuth - 90). See the module docstring.

    Example:
        >>> maps = camera_maps(orbit_cameras([90.0, 270.0]), 2, 2)
        >>> torch.equal(maps, camera_maps(orbit_cameras([90.0, 270.0]), 2, 2, convention="official"))
        True
    """
    _check_convention(convention)
    maps = []
    for cam in cameras:
        if isinstance(cam, OrthoCamera):
            maps.append(ortho_raymap(cam, height, width))
        elif isinstance(cam, PerspectiveCamera):
            maps.append(plucker_raymap(cam, height, width))
        else:
            raise BadInputError(f"expected OrthoCamera or PerspectiveCamera, got {type(cam).__name__}")
    return to_convention(torch.stack(maps), convention)
