"""Scale-invariant synthetic scenes: one filled disc over a two-colour linear gradient.

Each scene is a handful of numbers in relative coordinates (drawn from `(seed, index)` only), so the same scene
renders at any `(height, width)` with the same layout. This gives exact, cheap ground truth for resolution
experiments: the disc mask, its radius as a fraction of the short side, its colour, and a caption.

Example:
    >>> from vadapters.synthetic.discs import DiscScenes
    >>> scenes = DiscScenes(8, seed=0)
    >>> item = scenes.render(0, 16, 24)
    >>> tuple(item["image"].shape), tuple(item["mask"].shape)
    ((3, 16, 24), (16, 24))
    >>> item["caption"].startswith("a ")
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DEFAULT_PALETTE", "DiscScene", "DiscScenes"]

# Named colours in [0, 1] RGB, chosen to be far apart from each other.
DEFAULT_PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.70, 0.20),
    "blue": (0.15, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.05),
}

_ROWS = ("top", "", "bottom")
_COLS = ("left", "", "right")

RADIUS_RANGE = (0.15, 0.30)


@dataclass(frozen=True)
class DiscScene:
    """One scene in relative coordinates.

    Args:
        radius (`float`): disc radius as a fraction of the short side of the canvas.
        center (`tuple[float, float]`): disc centre `(y, x)` as fractions of height and width.
        disc_color (`str`): palette name of the disc.
        background (`tuple[str, str]`): palette names of the gradient's start and end colours.
        angle (`float`): gradient direction in radians (0: left to right, pi/2: top to bottom).
    """

    radius: float
    center: tuple[float, float]
    disc_color: str
    background: tuple[str, str]
    angle: float

    @property
    def position(self) -> str:
        """Where the disc is, in words: "top left", "centre", "bottom", ..."""
        row = _ROWS[min(int(self.center[0] * 3), 2)]
        col = _COLS[min(int(self.center[1] * 3), 2)]
        return " ".join(p for p in (row, col) if p) or "centre"

    @property
    def caption(self) -> str:
        return (
            f"a {self.disc_color} disc on a {self.background[0]} to {self.background[1]} background, {self.position}"
        )


class DiscScenes:
    """A deterministic set of `num_items` disc scenes, renderable at any resolution.

    Scene `i` depends only on `(seed, i)` (not on `num_items`): a disc of radius 0.15-0.3 of the short side,
    centred so that it lies fully inside the canvas at every aspect ratio, in one palette colour, over a linear
    gradient between two other palette colours.

    Args:
        num_items (`int`): number of scenes.
        seed (`int`): seed of the scene parameters.
        palette (`Mapping[str, tuple[float, float, float]]`, optional): colour name -> RGB in [0, 1]; at least
            three colours. Defaults to `DEFAULT_PALETTE` (red, green, blue, yellow, white, black).
        antialias (`bool`): soften the disc edge by its pixel coverage (the mask stays binary).
    """

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        palette: Mapping[str, tuple[float, float, float]] | None = None,
        antialias: bool = True,
    ) -> None:
        if not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        palette = dict(DEFAULT_PALETTE if palette is None else palette)
        if len(palette) < 3:
            raise ValueError(f"the palette needs at least 3 colours (disc + two background), got {len(palette)}")
        for name, rgb in palette.items():
            if len(rgb) != 3 or not all(0.0 <= float(c) <= 1.0 for c in rgb):
                raise ValueError(f"palette colour {name!r} must be 3 floats in [0, 1], got {rgb!r}")
        self.num_items = num_items
        self.seed = int(seed)
        self.palette = {k: tuple(float(c) for c in v) for k, v in palette.items()}
        self.antialias = antialias

    def __len__(self) -> int:
        return self.num_items

    def _check(self, index: int) -> int:
        if not -self.num_items <= index < self.num_items:
            raise IndexError(f"scene index {index} out of range for {self.num_items} scenes")
        return index % self.num_items

    def scene(self, index: int) -> DiscScene:
        """The parameters of scene `index` (relative coordinates, palette names)."""
        index = self._check(index)
        rng = np.random.default_rng([self.seed, index, 0x5D15C])
        names = list(self.palette)
        disc, bg0, bg1 = (names[i] for i in rng.choice(len(names), size=3, replace=False))
        radius = float(rng.uniform(*RADIUS_RANGE))
        # The radius in pixels is radius * min(H, W), at most radius * H and radius * W: a centre in
        # [radius, 1 - radius] on both axes keeps the disc inside the canvas at any aspect ratio.
        cy, cx = (float(v) for v in rng.uniform(radius, 1.0 - radius, size=2))
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        return DiscScene(radius=radius, center=(cy, cx), disc_color=disc, background=(bg0, bg1), angle=angle)

    def caption(self, index: int) -> str:
        """The caption of scene `index`, e.g. "a red disc on a blue to green background, top left"."""
        return self.scene(index).caption

    def render(self, index: int, height: int, width: int) -> dict:
        """Draw scene `index` at `height` x `width`.

        Returns:
            `dict` with `image` (float32 `[3, H, W]` in [-1, 1]), `mask` (bool `[H, W]`, pixel centres inside the
            disc), `caption` (`str`), `scene` (`DiscScene`) and `radius_px` (`float`).
        """
        if height < 1 or width < 1:
            raise ValueError(f"height and width must be positive, got {height}x{width}")
        scene = self.scene(index)
        ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width
        v, u = torch.meshgrid(ys, xs, indexing="ij")

        # Background: project relative coordinates on the gradient direction, normalised to [0, 1].
        cos, sin = math.cos(scene.angle), math.sin(scene.angle)
        t = ((u - 0.5) * cos + (v - 0.5) * sin) / (abs(cos) + abs(sin)) + 0.5
        c0, c1 = (torch.tensor(self.palette[n], dtype=torch.float64) for n in scene.background)
        image = c0[:, None, None] * (1.0 - t) + c1[:, None, None] * t

        # Disc: distances in pixels so that it stays round at every aspect ratio.
        radius_px = scene.radius * min(height, width)
        dist = torch.hypot((v - scene.center[0]) * height, (u - scene.center[1]) * width)
        mask = dist <= radius_px
        coverage = (radius_px - dist + 0.5).clamp(0.0, 1.0) if self.antialias else mask.double()
        disc = torch.tensor(self.palette[scene.disc_color], dtype=torch.float64)
        image = image * (1.0 - coverage) + disc[:, None, None] * coverage
        image = (image * 2.0 - 1.0).clamp(-1.0, 1.0).float()
        return {"image": image, "mask": mask, "caption": scene.caption, "scene": scene, "radius_px": radius_px}

    def __repr__(self) -> str:
        return f"DiscScenes(num_items={self.num_items}, seed={self.seed}, colours={list(self.palette)})"
