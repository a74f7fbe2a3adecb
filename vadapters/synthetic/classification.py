"""Small 10-class image sets for test-time adaptation experiments (32x32 RGB by default, CIFAR-10-like).

* `ShapeClasses`: procedurally drawn shapes whose class is (shape x appearance): 5 shapes x {solid, striped}.
  Colour, size, position, rotation and background are random per image, so colour carries no class signal.
* `ColourDigits`: scikit-learn's 1,797 real 8x8 handwritten digits, bilinearly upsampled and colourised
  (background tint U(0, 0.5)^3, foreground U(0.5, 1)^3 per image), split 1,200 train / 597 test.

Both are torch `Dataset`s of `(image float32 [3, H, W] in [0, 1], label int)` that also expose
`images_uint8()` (`[N, H, W, 3]` uint8, the format `vadapters.synthetic.streams.corrupt` takes), `labels`
(int64 `[N]`) and `class_names`.

Example:
    >>> from vadapters.synthetic.classification import ShapeClasses
    >>> data = ShapeClasses(20, seed=0)
    >>> image, label = data[3]
    >>> tuple(image.shape), label, data.class_names[label]
    ((3, 32, 32), 3, 'striped square')
    >>> data.images_uint8().shape, data.images_uint8().dtype.name
    ((20, 32, 32, 3), 'uint8')
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from vadapters.errors import BadInputError

__all__ = ["APPEARANCES", "SHAPES", "ColourDigits", "ShapeClasses"]

SHAPES = ("circle", "square", "triangle", "cross", "ring")
APPEARANCES = ("solid", "striped")
_MIN_CONTRAST = 0.45  # least RGB distance between the shape colour and the mean background (and the stripe colour)
_CHUNK = 512  # images rendered at once


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BadInputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class _ImageSet(Dataset):
    """Shared storage: uint8 images `[N, H, W, 3]`, int64 labels `[N]`, class names."""

    class_names: tuple[str, ...]

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self._images = np.ascontiguousarray(images, dtype=np.uint8)
        self._images.setflags(write=False)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.labels.setflags(write=False)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self._images[index].copy()).permute(2, 0, 1)
        return image.float().div_(255.0), int(self.labels[index])

    def images_uint8(self) -> np.ndarray:
        """All images as a read-only uint8 array `[N, H, W, 3]`."""
        return self._images

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _distinct_colour(rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    """A uniform RGB colour at least `_MIN_CONTRAST` away from `other` (rejection sampling, bounded)."""
    colour = rng.uniform(0.0, 1.0, 3)
    for _ in range(64):
        if np.linalg.norm(colour - other) >= _MIN_CONTRAST:
            break
        colour = rng.uniform(0.0, 1.0, 3)
    return colour


def _box_sdf(u: np.ndarray, v: np.ndarray, half_u: np.ndarray, half_v: np.ndarray) -> np.ndarray:
    qu, qv = np.abs(u) - half_u, np.abs(v) - half_v
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    return outside + np.minimum(np.maximum(qu, qv), 0.0)


def _shape_sdf(shape: np.ndarray, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance in pixels (negative inside) of each image's shape, in its rotated frame `(u, v)`."""
    dist = np.hypot(u, v)
    sdf = np.where(shape == 0, dist - r, 0.0)  # circle
    sdf = np.where(shape == 1, _box_sdf(u, v, 0.8 * r, 0.8 * r), sdf)  # square
    # Equilateral triangle, circumradius 1.15 r: the largest of the three edge half-plane distances.
    tri = np.max([u * math.cos(a) + v * math.sin(a) for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)], 0)
    sdf = np.where(shape == 2, tri - 0.575 * r, sdf)
    cross = np.minimum(_box_sdf(u, v, 0.95 * r, 0.3 * r), _box_sdf(u, v, 0.3 * r, 0.95 * r))
    sdf = np.where(shape == 3, cross, sdf)
    return np.where(shape == 4, np.abs(dist - 0.75 * r) - 0.25 * r, sdf)  # ring


class ShapeClasses(_ImageSet):
    """A deterministic 10-class set of `size` x `size` RGB shapes; the class is (shape x appearance).

    Classes (label: name): 0 solid circle, 1 striped circle, 2 solid square, 3 striped square, 4 solid triangle,
    5 striped triangle, 6 solid cross, 7 striped cross, 8 solid ring, 9 striped ring. "Striped" shapes are filled
    with parallel stripes (period 3-4.5 px at 32 px, random direction) of a second random colour; "solid" shapes
    with one colour.

    Image `i` has label `i % 10` (so classes are balanced) and depends only on `(seed, i)`, not on `num_items`:
    shape scale 0.22-0.36 of `size`, fully inside the canvas at a random position, random rotation, a random
    shape colour, and a linear gradient between two random colours at a random angle as background. Every colour
    is uniform in RGB whatever the class (the shape colour is resampled only to keep it visible against the
    background), so colour does not predict the class. Edges are antialiased from signed distances.

    Args:
        num_items (`int`): number of images.
        seed (`int`): seed of the per-image parameters.
        size (`int`): image height and width in pixels (>= 8; `corrupt` needs >= 32).

    Example:
        >>> data = ShapeClasses(10, seed=1, size=32)
        >>> data.class_names[:3]
        ('solid circle', 'striped circle', 'solid square')
        >>> data.labels.tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> bool((ShapeClasses(10, seed=1).images_uint8() == data.images_uint8()).all())
        True
    """

    class_names = tuple(f"{appearance} {shape}" for shape in SHAPES for appearance in APPEARANCES)

    def __init__(self, num_items: int, seed: int = 0, size: int = 32) -> None:
        self.num_items = _check_positive_int(num_items, "num_items")
        self.seed = _check_positive_int(seed, "seed", minimum=0)
        self.size = _check_positive_int(size, "size", minimum=8)
        labels = np.arange(self.num_items, dtype=np.int64) % len(self.class_names)
        params = [self._params(i, int(label)) for i, label in enumerate(labels)]
        images = np.empty((self.num_items, self.size, self.size, 3), dtype=np.uint8)
        for start in range(0, self.num_items, _CHUNK):
            chunk = params[start : start + _CHUNK]
            stacked = {key: np.stack([p[key] for p in chunk]) for key in chunk[0]}
            images[start : start + len(chunk)] = self._render(stacked)
        super().__init__(images, labels)

    def _params(self, index: int, label: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index, 0x5A9E5])
        s = self.size
        scale = rng.uniform(0.22, 0.36) * s
        margin = 1.1 * scale  # the largest extent of any shape is 1.15 * 0.95 r ~ 1.1 r from its centre
        centre = rng.uniform(margin, s - margin, 2)
        bg0, bg1 = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
        fill = _distinct_colour(rng, (bg0 + bg1) / 2)
        stripe = _distinct_colour(rng, fill)
        return {
            "shape": np.array(label // len(APPEARANCES)),
            "striped": np.array(label % len(APPEARANCES) == 1),
            "scale": np.array(scale),
            "centre": centre,
            "rotation": np.array(rng.uniform(0.0, 2 * math.pi)),
            "bg0": bg0,
            "bg1": bg1,
            "bg_angle": np.array(rng.uniform(0.0, 2 * math.pi)),
            "fill": fill,
            "stripe": stripe,
            "stripe_period": np.array(rng.uniform(3.0, 4.5) * s / 32),
            "stripe_angle": np.array(rng.uniform(0.0, math.pi)),
        }

    def _render(self, p: dict[str, np.ndarray]) -> np.ndarray:
        def per_image(key: str) -> np.ndarray:  # [n] -> [n, 1, 1] for broadcasting over pixels
            return p[key][:, None, None]

        s = self.size
        grid = np.arange(s, dtype=np.float64) + 0.5
        y, x = grid[None, :, None], grid[None, None, :]
        dx, dy = x - p["centre"][:, 1, None, None], y - p["centre"][:, 0, None, None]
        cos, sin = np.cos(per_image("rotation")), np.sin(per_image("rotation"))
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        coverage = np.clip(0.5 - _shape_sdf(per_image("shape"), u, v, per_image("scale")), 0.0, 1.0)

        phase = (dx * np.cos(per_image("stripe_angle")) + dy * np.sin(per_image("stripe_angle"))) / per_image(
            "stripe_period"
        )
        stripes = 0.5 + 0.5 * np.clip(3.0 * np.sin(2 * math.pi * phase), -1.0, 1.0)
        stripes = np.where(per_image("striped"), stripes, 0.0)[..., None]
        fill = p["fill"][:, None, None] * (1.0 - stripes) + p["stripe"][:, None, None] * stripes

        g_cos, g_sin = np.cos(per_image("bg_angle")), np.sin(per_image("bg_angle"))
        t = np.clip(((x - s / 2) * g_cos + (y - s / 2) * g_sin) / s + 0.5, 0.0, 1.0)[..., None]
        background = p["bg0"][:, None, None] * (1.0 - t) + p["bg1"][:, None, None] * t
        image = background * (1.0 - coverage[..., None]) + fill * coverage[..., None]
        return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)

    def __repr__(self) -> str:
        return f"ShapeClasses(num_items={self.num_items}, seed={self.seed}, size={self.size})"


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (`[1797, 8, 8]` grey levels 0-16, labels 0-9); they ship with the package."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "ColourDigits needs scikit-learn, whose load_digits ships the 1,797 8x8 digits offline: "
            "pip install scikit-learn (or pass source=(images, labels))"
        ) from err
    digits = load_digits()
    return np.asarray(digits.images), np.asarray(digits.target)


class ColourDigits(_ImageSet):
    """Real handwritten digits (scikit-learn `load_digits`), upsampled to `size` and colourised: CIFAR-10-like.

    The 8x8 grey images are scaled to [0, 1] by their maximum, upsampled bilinearly to `size` x `size`, then
    coloured per image as `background + (foreground - background) * grey`, with a background tint drawn from
    U(0, 0.5)^3 and a foreground from U(0.5, 1)^3 (from `seed` and the digit's index in the full set, so a digit
    has the same colours in every split). The split is a fixed permutation from `split_seed`: the first
    `num_train` (1,200) digits are "train", the other 597 "test"; both keep the original order.

    Args:
        split (`str`): "train", "test" or "all".
        seed (`int`): seed of the colours.
        size (`int`): output height and width (>= 8).
        split_seed (`int`): seed of the train/test permutation.
        num_train (`int`): size of the train split.
        source (`tuple[np.ndarray, np.ndarray]`, optional): grey images `[N, h, w]` and labels `[N]` to use instead
            of scikit-learn's digits (which need scikit-learn installed).

    Example:
        >>> import numpy as np
        >>> fake = (np.random.default_rng(0).integers(0, 17, (30, 8, 8)), np.arange(30) % 10)
        >>> test = ColourDigits("test", source=fake, num_train=20)
        >>> len(test), test.images_uint8().shape, test.class_names[:2]
        (10, (10, 32, 32, 3), ('0', '1'))

        With scikit-learn installed, `ColourDigits("test")` has the 597 test digits.
    """

    class_names = tuple(str(d) for d in range(10))

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        size: int = 32,
        split_seed: int = 0,
        num_train: int = 1200,
        source: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if split not in ("train", "test", "all"):
            raise BadInputError(f"split must be one of 'train', 'test', 'all'; got {split!r}")
        self.split = split
        self.seed = _check_positive_int(seed, "seed", minimum=0)
        self.size = _check_positive_int(size, "size", minimum=8)
        self.split_seed = _check_positive_int(split_seed, "split_seed", minimum=0)
        grey, labels = _load_digits() if source is None else source
        grey, labels = np.asarray(grey, dtype=np.float64), np.asarray(labels, dtype=np.int64)
        if grey.ndim != 3 or labels.shape != (len(grey),):
            raise BadInputError(
                f"source must be grey images [N, h, w] and labels [N], got shapes {grey.shape} and {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise BadInputError(f"digit labels must be in 0-9, got {labels.min()}..{labels.max()}")
        self.num_train = _check_positive_int(num_train, "num_train", minimum=0)
        if self.num_train > len(grey):
            raise BadInputError(f"num_train={num_train} exceeds the {len(grey)} available digits")

        order = np.random.default_rng([self.split_seed, 0xD1617]).permutation(len(grey))
        index = {
            "train": np.sort(order[: self.num_train]),
            "test": np.sort(order[self.num_train :]),
            "all": np.arange(len(grey)),
        }[split]
        self.indices = index

        rng = np.random.default_rng([self.seed, 0xC0104])
        background = rng.uniform(0.0, 0.5, (len(grey), 3))[index]
        foreground = rng.uniform(0.5, 1.0, (len(grey), 3))[index]
        peak = grey.max() if grey.size else 0.0
        levels = torch.from_numpy(grey[index] / peak if peak > 0 else grey[index])[:, None]
        if levels.shape[0]:
            levels = torch.nn.functional.interpolate(levels, size=(self.size, self.size), mode="bilinear")
        levels = levels.clamp_(0.0, 1.0)[:, 0, :, :, None].numpy()
        colour = background[:, None, None] + (foreground - background)[:, None, None] * levels
        images = np.round(colour * 255.0).astype(np.uint8).reshape(len(index), self.size, self.size, 3)
        super().__init__(images, labels[index])

    def __repr__(self) -> str:
        return f"ColourDigits(split={self.split!r}, seed={self.seed}, size={self.size}, n={len(self)})"
