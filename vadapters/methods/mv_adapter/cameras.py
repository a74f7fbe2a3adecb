"""Camera rigs and camera maps for MV-Adapter's condition encoder.

Conventions are those of `vadapters.synthetic.multiview` (y-up world, azimuth 0 = front view on +z, 90 = right,
positive elevation looks down, OpenGL camera axes). Two kinds of map, both 6 channels and rescaled to [0, 1]:
- perspective cameras: per-pixel Pluecker coordinates `[d, o x d]` of the pixel's ray (origin `o`, unit
  direction `d`);
- orthographic cameras: the official released models' **spatially constant** map `[view_dir, normalize(position)]`.

Example:
    >>> cams = orbit_cameras([0, 90, 180, 270], elevations=10.0, kind="perspective")
    >>> tuple(camera_maps(cams, 8, 12).shape)
    (4, 6, 8, 12)
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
    "DEFAULT_AZIMUTHS",
    "SIX_VIEW_RIG",
    "OrthoCamera",
    "PerspectiveCamera",
    "camera_maps",
    "orbit_cameras",
    "ortho_raymap",
    "plucker_raymap",
]

# The geometry-guided models' fixed 6-view order (front, right, back, left, top, bottom): (azimuth, elevation).
SIX_VIEW_RIG = ((0.0, 0.0), (90.0, 0.0), (180.0, 0.0), (270.0, 0.0), (0.0, 89.99), (0.0, -89.99))


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


def camera_maps(cameras: Sequence[OrthoCamera | PerspectiveCamera], height: int, width: int) -> torch.Tensor:
    """Stack the camera map of each view: `[num_views, 6, H, W]` in [0, 1], the condition-encoder input."""
    maps = []
    for cam in cameras:
        if isinstance(cam, OrthoCamera):
            maps.append(ortho_raymap(cam, height, width))
        elif isinstance(cam, PerspectiveCamera):
            maps.append(plucker_raymap(cam, height, width))
        else:
            raise BadInputError(f"expected OrthoCamera or PerspectiveCamera, got {type(cam).__name__}")
    return torch.stack(maps)
