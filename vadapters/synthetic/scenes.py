"""Multi-shape synthetic scenes with instance masks, labels and captions, renderable at any resolution.

Scene `i` of `ShapeScenes(num_items, seed)` is drawn from `numpy.random.default_rng([seed, i])` only: one to
three shapes (circle, square, triangle, star, ring, cross) in distinct palette colours, placed without heavy
overlap, over a background (two-colour linear gradient, smooth procedural texture, or flat colour) whose colours
differ from the shapes'. Everything lives in relative coordinates (see `vadapters.synthetic.shapes`), so the same
scene renders with the same layout at any `height` x `width`: exact ground truth for resolution experiments,
open-vocabulary captions for text-to-image training, and instance masks for segmentation.

Example:
    >>> from vadapters.synthetic.scenes import ShapeScenes
    >>> scenes = ShapeScenes(4, seed=0)
    >>> item = scenes.render(0, 24, 32)
    >>> tuple(item["image"].shape), item["masks"].shape[1:], len(item["labels"]) == item["masks"].shape[0]
    ((3, 24, 32), torch.Size([24, 32]), True)
    >>> all(lab["colour"] in item["caption"] for lab in item["labels"])
    True
    >>> sorted(scenes.load(1, 16, 16))
    ['caption', 'image']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vadapters.errors import BadInputError
from vadapters.synthetic.shapes import (
    SHAPES,
    Shape,
    coverage_from_distance,
    linear_gradient,
    signed_distance,
    value_noise,
)

__all__ = ["BACKGROUNDS", "PALETTE", "SHAPES", "ShapeScenes", "position_word"]

# Named colours in [0, 1] RGB, far apart from each other.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.70, 0.20),
    "blue": (0.15, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "magenta": (0.85, 0.15, 0.80),
    "cyan": (0.10, 0.80, 0.85),
    "orange": (0.95, 0.50, 0.05),
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.05),
}
BACKGROUNDS = ("mixed", "gradient", "texture", "flat")
_ROWS = ("top", "", "bottom")
_COLS = ("left", "", "right")
_PLACEMENT_TRIES = 64
_MIN_SEPARATION = 0.8  # centres at least this times the sum of the bounding radii apart


def position_word(cx: float, cy: float) -> str:
    """Where a point in relative coordinates is, in words: "top left", "top", ..., "centre", ..., "bottom right"."""
    row = _ROWS[min(max(int(cy * 3), 0), 2)]
    col = _COLS[min(max(int(cx * 3), 0), 2)]
    return " ".join(p for p in (row, col) if p) or "centre"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _names(value: Any, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise BadInputError(f"unknown {what} {bad or names!r}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


class ShapeScenes(Dataset):
    """A deterministic set of `num_items` multi-shape scenes (a torch `Dataset`), renderable at any resolution.

    Args:
        num_items (`int`): number of scenes.
        seed (`int`): scene seed; scene `i` depends only on `(seed, i)`.
        min_shapes, max_shapes (`int`): range of the number of shapes per scene (at most 7).
        shapes (`Sequence[str]`): shape kinds to draw from, a subset of `SHAPES`.
        colours (`Sequence[str]`): shape colours to draw from, names of `PALETTE`; the shapes of a scene get
            distinct colours when there are enough. Background colours are palette colours no shape of the scene uses.
        background (`str`): `"gradient"`, `"texture"`, `"flat"`, or `"mixed"` (one of the three per scene).
        min_size, max_size (`float`): range of the shape size (bounding diameter) as a fraction of the short side.
        size (`tuple[int, int]`): `(height, width)` that `__getitem__` renders at.
        softness (`float`): width in pixels of the anti-aliased edge (0: hard edges).

    Raises:
        BadInputError: unknown shape, colour or background names, or out-of-range counts and sizes.
    """

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        min_shapes: int = 1,
        max_shapes: int = 3,
        shapes: Sequence[str] = SHAPES,
        colours: Sequence[str] = tuple(PALETTE),
        background: str = "mixed",
        min_size: float = 0.2,
        max_size: float = 0.45,
        size: tuple[int, int] = (32, 32),
        softness: float = 1.0,
    ) -> None:
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise BadInputError(f"num_items must be a positive int, got {num_items!r}")
        self.shapes = _names(shapes, SHAPES, "shape")
        self.colours = _names(colours, tuple(PALETTE), "colour")
        if background not in BACKGROUNDS:
            raise BadInputError(f"unknown background {background!r}; allowed: {', '.join(BACKGROUNDS)}")
        most = len(PALETTE) - 2  # two palette colours stay free for the background
        if not 1 <= int(min_shapes) <= int(max_shapes) <= most:
            raise BadInputError(
                f"need 1 <= min_shapes <= max_shapes <= {most}, got min_shapes={min_shapes}, max_shapes={max_shapes}"
            )
        if not 0.0 < float(min_size) <= float(max_size) <= 1.0:
            raise BadInputError(f"need 0 < min_size <= max_size <= 1, got min_size={min_size}, max_size={max_size}")
        if len(size) != 2 or min(int(s) for s in size) < 1:
            raise BadInputError(f"size must be a positive (height, width), got {size!r}")
        if softness < 0:
            raise BadInputError(f"softness must be >= 0, got {softness!r}")
        self.num_items = num_items
        self.seed = int(seed)
        self.min_shapes, self.max_shapes = int(min_shapes), int(max_shapes)
        self.background = background
        self.min_size, self.max_size = float(min_size), float(max_size)
        self.size = (int(size[0]), int(size[1]))
        self.softness = float(softness)

    def __len__(self) -> int:
        return self.num_items

    def _check(self, index: int) -> int:
        if not -self.num_items <= int(index) < self.num_items:
            raise IndexError(f"scene index {index} out of range for {self.num_items} scenes")
        return int(index) % self.num_items

    def _place(self, rng: np.random.Generator, count: int) -> list[tuple[float, float, float]]:
        """Up to `count` `(cx, cy, size)` with bounded retries; a shape that finds no room shrinks, then is dropped."""
        placed: list[tuple[float, float, float]] = []
        for _ in range(count):
            high = self.max_size
            for attempt in range(_PLACEMENT_TRIES):
                if attempt and attempt % 16 == 0:
                    high = max(self.min_size, high * 0.8)
                size = float(rng.uniform(self.min_size, high))
                r = size / 2.0
                # Sizes count in short sides, positions in width / height: the pixel distance between two centres
                # is at least their relative distance in short sides, at every aspect ratio.
                cx, cy = (float(c) for c in rng.uniform(r, 1.0 - r, size=2))
                if all(math.hypot(cx - x, cy - y) >= _MIN_SEPARATION * (r + s / 2) for x, y, s in placed):
                    placed.append((cx, cy, size))
                    break
        return placed

    def scene(self, index: int) -> dict[str, Any]:
        """The layout of scene `index`: relative coordinates and palette names, no pixels.

        Returns:
            `dict` with `index`, `background` (`kind`, `colours`, `angle`, `noise_seed`, `cells`) and `shapes`, a
            list back to front of dicts with `shape`, `colour`, `cx`, `cy`, `size`, `rotation` and `position`.
        """
        index = self._check(index)
        rng = np.random.default_rng([self.seed, index])
        count = int(rng.integers(self.min_shapes, self.max_shapes + 1))
        # Distinct colours while there are enough of them.
        picks = rng.choice(len(self.colours), size=count, replace=count > len(self.colours))
        colours = [self.colours[i] for i in picks]
        kinds = [self.shapes[i] for i in rng.integers(0, len(self.shapes), size=count)]
        rotations = rng.uniform(0.0, 2.0 * math.pi, size=count)
        rest = [c for c in PALETTE if c not in colours]
        background = {
            "kind": str(rng.choice(BACKGROUNDS[1:])) if self.background == "mixed" else self.background,
            "colours": [rest[i] for i in rng.choice(len(rest), size=2, replace=False)],
            "angle": float(rng.uniform(0.0, 2.0 * math.pi)),
            "noise_seed": int(rng.integers(2**31)),
            "cells": int(rng.integers(2, 5)),
        }
        placed = self._place(rng, count)
        items = [
            {
                "shape": kind,
                "colour": colour,
                "cx": cx,
                "cy": cy,
                "size": size,
                "rotation": float(rot),
                "position": position_word(cx, cy),
            }
            for kind, colour, rot, (cx, cy, size) in zip(kinds, colours, rotations, placed)
        ]
        return {"index": index, "background": background, "shapes": items}

    @staticmethod
    def _caption(layout: dict[str, Any]) -> str:
        bg = layout["background"]
        c0, c1 = bg["colours"]
        phrase = {
            "flat": f"{_article(c0)} {c0} background",
            "gradient": f"{_article(c0)} {c0} to {c1} gradient background",
            "texture": f"{_article(c0)} {c0} and {c1} textured background",
        }[bg["kind"]]
        things = [f"{_article(s['colour'])} {s['colour']} {s['shape']}" for s in layout["shapes"]]
        if len(things) == 1:
            return f"{things[0]} on {phrase}, {layout['shapes'][0]['position']}"
        listed = ", ".join(things[:-1]) + " and " + things[-1]
        return f"{listed} on {phrase}"

    def caption(self, index: int) -> str:
        """The caption of scene `index`, e.g. "a red star on a blue background, top left"."""
        return self._caption(self.scene(index))

    @staticmethod
    def _background(bg: dict[str, Any], height: int, width: int) -> np.ndarray:
        c0, c1 = (np.asarray(PALETTE[c], dtype=np.float64)[:, None, None] for c in bg["colours"])
        if bg["kind"] == "flat":
            return np.broadcast_to(c0, (3, height, width)).copy()
        if bg["kind"] == "gradient":
            t = linear_gradient(bg["angle"], height, width)
        else:
            t = value_noise(bg["noise_seed"], height, width, cells=bg["cells"], octaves=3, contrast=2.0)
        return c0 * (1.0 - t) + c1 * t

    def render(self, index: int, height: int, width: int) -> dict[str, Any]:
        """Draw scene `index` at `height` x `width`.

        Returns:
            `dict` with `image` (float32 `[3, H, W]` in [-1, 1]), `masks` (bool `[n, H, W]`, one per shape back to
            front, each the pixels where that shape is visible: a front shape wins where shapes overlap, so the
            masks are disjoint), `labels` (list of `n` dicts: `shape`, `colour`, `position`, `cx`, `cy`, `size`,
            `rotation`), `caption` (`str`) and `scene` (the layout, see `scene`).
        """
        if int(height) < 1 or int(width) < 1:
            raise BadInputError(f"height and width must be positive, got {height}x{width}")
        height, width = int(height), int(width)
        layout = self.scene(index)
        image = self._background(layout["background"], height, width)
        masks = np.zeros((len(layout["shapes"]), height, width), dtype=bool)
        for i, item in enumerate(layout["shapes"]):
            shape = Shape(item["shape"], item["cx"], item["cy"], item["size"], item["rotation"])
            distance = signed_distance(shape, height, width)
            cover = coverage_from_distance(distance, self.softness)
            colour = np.asarray(PALETTE[item["colour"]], dtype=np.float64)[:, None, None]
            image = image * (1.0 - cover) + colour * cover
            inside = distance <= 0.0
            masks[:i] &= ~inside  # what this shape hides is no longer visible behind it
            masks[i] = inside
        image = torch.from_numpy((image * 2.0 - 1.0).clip(-1.0, 1.0).astype(np.float32))
        return {
            "image": image,
            "masks": torch.from_numpy(masks),
            "labels": [dict(item) for item in layout["shapes"]],
            "caption": self._caption(layout),
            "scene": layout,
        }

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        """`{"image", "caption"}` of scene `index` at `height` x `width` (a `vadapters.train.data` source)."""
        item = self.render(index, height, width)
        return {"image": item["image"], "caption": item["caption"]}

    def __getitem__(self, index: int) -> dict[str, Any]:
        """`render(index, *self.size)`."""
        return self.render(index, *self.size)

    def __repr__(self) -> str:
        return (
            f"ShapeScenes(num_items={self.num_items}, seed={self.seed}, shapes={list(self.shapes)}, "
            f"colours={list(self.colours)}, background={self.background!r}, "
            f"n_shapes={self.min_shapes}-{self.max_shapes}, size_range={self.min_size}-{self.max_size})"
        )
