"""Salient, camouflaged and shadow scenes with exact binary ground truth, renderable at any resolution.

Each scene is a textured background (smooth procedural noise, or a random crop of a photo that ships with
scikit-image) and one object: a shape or a blob (a smooth union of a few shapes), in relative coordinates, drawn
from `(seed, index)` only.

* `SalientScenes`: the object is a shaded flat colour chosen to stand out from the background; mask = object.
* `CamouflageScenes`: the object is filled with another crop of the same texture, its colour statistics matched to
  the background in and around it, with a small colour jitter and a feathered edge; mask = object.
* `ShadowScenes`: a soft cast shadow (darkened background with a penumbra) of the object, which is visible or
  not; mask = the shadow pixels not covered by the object (for BER evaluation).

`save_folder` writes a scene set as `images/*.png` + `masks/*.png`.

Example:
    >>> from vadapters.synthetic.segmentation import CamouflageScenes, ShadowScenes
    >>> item = CamouflageScenes(4, seed=0, textures=["noise"]).render(0, 24, 32)
    >>> tuple(item["image"].shape), tuple(item["mask"].shape), item["kind"], bool(item["mask"].any())
    ((3, 24, 32), (24, 32), 'camouflage', True)
    >>> ShadowScenes(2, textures=["noise"])[1]["mask"].dtype
    torch.bool
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vadapters.errors import BadInputError
from vadapters.synthetic.scenes import PALETTE
from vadapters.synthetic.shapes import (
    SHAPES,
    compound_distance,
    coverage_from_distance,
    linear_gradient,
    value_noise,
)

__all__ = [
    "CAMOUFLAGE_TEXTURE_CUE",
    "PHOTOS",
    "CamouflageScenes",
    "SalientScenes",
    "ShadowScenes",
    "available_photos",
    "save_folder",
]

# The learnable variant of `CamouflageScenes` (`synthetic:camouflage-texture`): a fill three times as fine-grained
# (at 2x a SAM-Adapter on the tiny SAM learns the cue only at a learning rate where training is unstable:
# benchmarks/results/sam_adapter_fair.md).
CAMOUFLAGE_TEXTURE_CUE = {"texture_scale": 3.0}

# Photos of scikit-image's own distribution (no download); the grey ones are tinted with two random colours.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "brick", "grass", "gravel")


@functools.cache
def _photo(name: str) -> torch.Tensor:
    import skimage.data

    array = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


@functools.lru_cache(maxsize=8)
def _mirrored(name: str, extra_h: int, extra_w: int) -> torch.Tensor:
    photo = _photo(name).numpy()
    return torch.from_numpy(np.pad(photo, ((0, 0), (0, extra_h), (0, extra_w)), mode="symmetric"))


@functools.lru_cache(maxsize=1)
def available_photos() -> tuple[str, ...]:
    """The names of `PHOTOS` that load here (offline); empty without scikit-image."""
    names = []
    for name in PHOTOS:
        try:
            _photo(name)
        except Exception:  # missing package, or a file that would need a download
            continue
        names.append(name)
    return tuple(names)


def _render_texture(spec: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Texture `spec` (see `_TexturedScenes._texture`) as float64 `[3, H, W]` in [0, 1]."""
    c = np.asarray(spec["colours"], dtype=np.float64)[:, :, None, None]
    if spec["source"] == "noise":
        t1 = value_noise([spec["seed"], 1], height, width, cells=spec["cells"], octaves=3, contrast=1.8)
        t2 = value_noise([spec["seed"], 2], height, width, cells=2 * spec["cells"], octaves=2, contrast=1.5)
        return (c[0] * (1.0 - t1) + c[1] * t1) * (1.0 - 0.5 * t2) + c[2] * (0.5 * t2)
    photo = _photo(spec["name"])
    ph, pw = photo.shape[1:]
    longest = spec["scale"] * min(ph, pw)  # the crop has the canvas's aspect ratio: no distortion
    bh = max(1, round(longest * height / max(height, width)))
    bw = max(1, round(longest * width / max(height, width)))
    if bh > ph or bw > pw:  # a crop larger than the photo (scale > 1): the photo mirrored at its bottom / right
        photo = _mirrored(spec["name"], max(bh - ph, 0), max(bw - pw, 0))
        ph, pw = photo.shape[1:]
    y0, x0 = round(spec["ty"] * (ph - bh)), round(spec["tx"] * (pw - bw))
    crop = photo[None, :, y0 : y0 + bh, x0 : x0 + bw]
    out = F.interpolate(crop, size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
    out = out.flip(-1) if spec["flip"] else out
    image = out.double().clamp(0.0, 1.0).numpy()
    if spec["name"] in ("brick", "grass", "gravel"):  # grey: tint between two colours
        image = c[0] * (1.0 - image[:1]) + c[1] * image[:1]
    return image


def _object_distance(obj: dict[str, Any], height: int, width: int, shift=(0.0, 0.0), scale: float = 1.0):
    """Signed distance in pixels to object `obj`; `shift` (short sides) moves and `scale` grows it."""
    centre = (obj["cx"], obj["cy"])
    return compound_distance(obj["parts"], centre, height, width, obj["smooth"], shift=shift, scale=scale)


class _TexturedScenes(Dataset):
    """Shared options, layout and bookkeeping of the segmentation scene sets.

    Args:
        num_items (`int`): number of scenes.
        seed (`int`): scene seed; scene `i` depends only on `(seed, i)` (and the class).
        textures (`Sequence[str]`, optional): texture sources: `"noise"`, `"photo"` (any available photo) or photo
            names from `PHOTOS`. Defaults to `("noise", "photo")`, or `("noise",)` without scikit-image.
        shapes (`Sequence[str]`): shape kinds of the objects and of the blobs' parts, a subset of `SHAPES`.
        min_size, max_size (`float`): object size (bounding diameter) as a fraction of the short side.
        blob_prob (`float`): probability that the object is a blob rather than a single shape.
        size (`tuple[int, int]`): `(height, width)` that `__getitem__` renders at.
    """

    kind = ""
    _tag = 0

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        textures: Sequence[str] | None = None,
        shapes: Sequence[str] = SHAPES,
        min_size: float = 0.3,
        max_size: float = 0.6,
        blob_prob: float = 0.4,
        size: tuple[int, int] = (64, 64),
    ) -> None:
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise BadInputError(f"num_items must be a positive int, got {num_items!r}")
        shapes = (shapes,) if isinstance(shapes, str) else tuple(shapes)
        if not shapes or any(s not in SHAPES for s in shapes):
            raise BadInputError(f"unknown shapes {list(shapes)}; allowed: {', '.join(SHAPES)}")
        if textures is None:
            textures = ("noise", "photo") if available_photos() else ("noise",)
        textures = (textures,) if isinstance(textures, str) else tuple(textures)
        allowed = ("noise", "photo", *PHOTOS)
        if not textures or any(t not in allowed for t in textures):
            raise BadInputError(f"unknown textures {list(textures)}; allowed: {', '.join(allowed)}")
        named = [t for t in textures if t in PHOTOS]
        missing = [t for t in named if t not in available_photos()]
        if missing or ("photo" in textures and not available_photos()):
            raise BadInputError(
                f"photo textures {missing or ['photo']} need scikit-image (pip install 'vadapters[data]'); "
                f"available here: {list(available_photos())}; use textures=['noise'] otherwise"
            )
        self.photos = available_photos() if "photo" in textures else tuple(dict.fromkeys(named))
        if not 0.0 < float(min_size) <= float(max_size) <= 1.0:
            raise BadInputError(f"need 0 < min_size <= max_size <= 1, got min_size={min_size}, max_size={max_size}")
        if not 0.0 <= float(blob_prob) <= 1.0:
            raise BadInputError(f"blob_prob must be in [0, 1], got {blob_prob!r}")
        if len(size) != 2 or min(int(s) for s in size) < 1:
            raise BadInputError(f"size must be a positive (height, width), got {size!r}")
        self.num_items, self.seed = num_items, int(seed)
        self.sources = tuple(dict.fromkeys(["noise"] * ("noise" in textures) + ["photo"] * bool(self.photos)))
        self.shapes = tuple(dict.fromkeys(shapes))
        self.min_size, self.max_size, self.blob_prob = float(min_size), float(max_size), float(blob_prob)
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict[str, Any]:
        """`render(index, *self.size)`."""
        return self.render(index, *self.size)

    def _texture(self, rng: np.random.Generator) -> dict[str, Any]:
        source = str(rng.choice(self.sources))
        spec = {"source": source, "colours": rng.uniform(0.05, 0.95, size=(3, 3)).tolist()}
        if source == "noise":
            spec.update(seed=int(rng.integers(2**31)), cells=int(rng.integers(2, 6)))
        else:
            spec.update(name=str(rng.choice(self.photos)), scale=float(rng.uniform(0.35, 0.9)))
            spec.update(ty=float(rng.random()), tx=float(rng.random()), flip=bool(rng.random() < 0.5))
        return spec

    def _object(self, rng: np.random.Generator, grow: float = 1.0) -> dict[str, Any]:
        """An object of bounding radius `r` whose `grow`-times larger copy still fits in the canvas."""
        size = float(rng.uniform(self.min_size, self.max_size))
        r = size / 2.0
        cx, cy = (float(c) for c in rng.uniform(r * grow, 1.0 - r * grow, size=2)) if r * grow < 0.5 else (0.5, 0.5)
        blob = bool(rng.random() < self.blob_prob)
        smooth, parts = 0.2 * r * blob, []
        for _ in range(int(rng.integers(3, 6)) if blob else 1):
            # A blob's parts (smooth union) stay within r of the centre; a single shape is one centred part.
            pr = float(rng.uniform(0.45, 0.75)) * (r - smooth / 4) if blob else r
            rho, phi = float(rng.uniform(0.0, r - smooth / 4 - pr)) if blob else 0.0, float(rng.uniform(0, 7))
            kind = "circle" if blob and rng.random() < 0.6 else str(rng.choice(self.shapes))
            part = {"kind": kind, "dx": rho * math.cos(phi), "dy": rho * math.sin(phi), "size": 2 * pr}
            parts.append({**part, "rotation": float(rng.uniform(0, 2 * math.pi))})
        return {"cx": cx, "cy": cy, "radius": r, "smooth": smooth, "parts": parts}

    def _layout(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"texture": self._texture(rng), "object": self._object(rng)}

    def scene(self, index: int) -> dict[str, Any]:
        """The layout of scene `index`: texture spec and object in relative coordinates, no pixels."""
        if not -self.num_items <= int(index) < self.num_items:
            raise IndexError(f"scene index {index} out of range for {self.num_items} scenes")
        index = int(index) % self.num_items
        layout = self._layout(np.random.default_rng([self.seed, index, self._tag]))
        return {"index": index, "kind": self.kind, **layout}

    def render(self, index: int, height: int, width: int) -> dict[str, Any]:
        """Draw scene `index` at `height` x `width`.

        Returns:
            `dict` with `image` (float32 `[3, H, W]` in [-1, 1]), `mask` (bool `[H, W]`), `kind` (`str`) and
            `scene` (the layout, see `scene`).
        """
        if int(height) < 1 or int(width) < 1:
            raise BadInputError(f"height and width must be positive, got {height}x{width}")
        layout = self.scene(index)
        image, mask, extra = self._draw(layout, int(height), int(width))
        image = torch.from_numpy((image * 2.0 - 1.0).clip(-1.0, 1.0).astype(np.float32))
        return {"image": image, "mask": torch.from_numpy(mask), "kind": self.kind, "scene": layout, **extra}

    def _draw(self, layout: dict[str, Any], height: int, width: int) -> tuple[np.ndarray, np.ndarray, dict]:
        raise NotImplementedError

    @staticmethod
    def _paint_object(layout, image, distance, height, width) -> np.ndarray:
        """Blend the object's shaded flat colour (the first candidate far enough from the background) on `image`."""
        mean = _render_texture(layout["texture"], 16, 16).mean(axis=(1, 2))  # fixed size: same choice at any size
        candidates = [np.asarray(PALETTE[c]) for c in layout["colours"]]
        far = [c for c in candidates if np.abs(c - mean).sum() > 0.9]
        colour = far[0] if far else max(candidates, key=lambda c: np.abs(c - mean).sum())
        shade = 0.85 + 0.3 * linear_gradient(layout["shade_angle"], height, width)
        cover = coverage_from_distance(distance)
        return image * (1.0 - cover) + np.clip(colour[:, None, None] * shade, 0.0, 1.0) * cover

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_items={self.num_items}, seed={self.seed}, sources={list(self.sources)}, "
            f"photos={list(self.photos)}, shapes={list(self.shapes)}, size_range={self.min_size}-{self.max_size})"
        )


def _colour_layout(rng: np.random.Generator) -> dict[str, Any]:
    return {"colours": [str(c) for c in rng.permutation(list(PALETTE))], "shade_angle": float(rng.uniform(0, 7))}


class SalientScenes(_TexturedScenes):
    """One object in a shaded flat colour that stands out from a textured background; mask = the object.

    Args:
        num_items, seed, textures, shapes, min_size, max_size, blob_prob, size: see `_TexturedScenes`.
    """

    kind = "salient"
    _tag = 0x5A1

    def _layout(self, rng: np.random.Generator) -> dict[str, Any]:
        return {**super()._layout(rng), **_colour_layout(rng)}

    def _draw(self, layout, height, width):
        distance = _object_distance(layout["object"], height, width)
        image = _render_texture(layout["texture"], height, width)
        return self._paint_object(layout, image, distance, height, width), distance <= 0.0, {}


class CamouflageScenes(_TexturedScenes):
    """One object filled with another crop of the background's texture, hard to tell apart; mask = the object.

    The fill's per-channel mean and spread are matched to the background in and around the object, then jittered
    by up to `jitter` per channel; the edge is feathered over `feather` pixels.

    With the defaults (`texture_scale=1`) the fill is the background's own texture: only the feathered edge and the
    small jitter tell the object apart (the hard variant). Real camouflage sets are not that hard: in COD10K and
    CAMO the animal matches its surroundings in colour but rarely in texture grain (scales, fur, feathers against
    leaves, sand or bark), which is the cue frequency-domain COD methods and SAM-Adapter's high-frequency-component
    prompt are built to read. `texture_scale` gives the scenes that cue: the fill's texture features are
    `texture_scale` times finer (> 1) or coarser (< 1) than the background's, at the same colour mean and spread
    (noise: `cells` x `texture_scale`, rounded; photo: a crop `texture_scale` times larger, the photo mirrored where
    the crop runs off it). `CAMOUFLAGE_TEXTURE_CUE` is the preset of `synthetic:camouflage-texture`.

    Args:
        jitter (`float`): largest relative colour change of the fill, per channel.
        feather (`float`): width in pixels of the blended edge.
        texture_scale (`float`): grain of the fill relative to the background's, in [0.25, 4]; 1 draws exactly the
            scenes of earlier versions.
        **kwargs: see `_TexturedScenes` (seed, textures, shapes, min_size, max_size, blob_prob, size).
    """

    kind = "camouflage"
    _tag = 0xCA3

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        jitter: float = 0.04,
        feather: float = 2.0,
        texture_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(num_items, seed, **kwargs)
        if not 0.0 <= float(jitter) < 1.0 or float(feather) < 0.0:
            raise BadInputError(f"need 0 <= jitter < 1 and feather >= 0, got jitter={jitter}, feather={feather}")
        if not 0.25 <= float(texture_scale) <= 4.0:
            raise BadInputError(f"texture_scale must be in [0.25, 4], got {texture_scale!r}")
        self.jitter, self.feather, self.texture_scale = float(jitter), float(feather), float(texture_scale)

    def _layout(self, rng: np.random.Generator) -> dict[str, Any]:
        layout = super()._layout(rng)
        fill = dict(layout["texture"])
        if fill["source"] == "noise":
            fill["seed"] = int(rng.integers(2**31))
            fill["cells"] = max(1, round(fill["cells"] * self.texture_scale))
        else:
            fill.update(ty=float(rng.random()), tx=float(rng.random()), flip=bool(rng.random() < 0.5))
            fill["scale"] = fill["scale"] * self.texture_scale
        return {**layout, "fill": fill, "gain": rng.uniform(-1.0, 1.0, size=3).tolist()}

    def _draw(self, layout, height, width):
        distance = _object_distance(layout["object"], height, width)
        background = _render_texture(layout["texture"], height, width)
        fill = _render_texture(layout["fill"], height, width)
        cover = coverage_from_distance(distance, self.feather)
        # Match the fill's per-channel mean and spread to those of the background in and around the object.
        around = (distance <= 0.5 * layout["object"]["radius"] * min(height, width)).astype(np.float64)
        stats = []
        for x, w in ((background, around), (fill, cover)):
            mu = (x * w).sum(axis=(1, 2)) / max(w.sum(), 1e-9)
            sd = np.sqrt((((x - mu[:, None, None]) ** 2) * w).sum(axis=(1, 2)) / max(w.sum(), 1e-9))
            stats.append((mu[:, None, None], sd[:, None, None]))
        (mu_b, sd_b), (mu_f, sd_f) = stats
        fill = (fill - mu_f) * (sd_b / np.maximum(sd_f, 1e-3)) + mu_b
        fill = np.clip(fill * (1.0 + self.jitter * np.asarray(layout["gain"]))[:, None, None], 0.0, 1.0)
        return background * (1.0 - cover) + fill * cover, distance <= 0.0, {}


class ShadowScenes(_TexturedScenes):
    """A soft cast shadow of an object on a textured background; mask = shadow pixels the object does not cover.

    The shadow is the object grown by 1-1.3x, the caster moved away from it by 0.5-1 of its size; in the shadow the
    background is darkened by 35-65 %, with a penumbra of 1-4 % of the short side (the mask: mid-penumbra).
    `render` also returns `object_mask` (bool `[H, W]`, the visible object; all false when it is not drawn).

    Args:
        object_visible (`bool`, optional): draw the object (`True`), not (`False`), or decide per scene (`None`).
        **kwargs: see `_TexturedScenes` (seed, textures, shapes, min_size, max_size, blob_prob, size).
    """

    kind = "shadow"
    _tag = 0x5AD

    def __init__(self, num_items: int, seed: int = 0, object_visible: bool | None = None, **kwargs) -> None:
        super().__init__(num_items, seed, **kwargs)
        self.object_visible = object_visible

    def _layout(self, rng: np.random.Generator) -> dict[str, Any]:
        texture = self._texture(rng)
        grow = float(rng.uniform(1.0, 1.3))
        obj = self._object(rng, grow=grow)  # placed where the shadow (not the caster) fits in the canvas
        length, angle = float(rng.uniform(0.5, 1.0)) * 2 * obj["radius"], float(rng.uniform(0, 2 * math.pi))
        visible = bool(rng.random() < 0.5) if self.object_visible is None else bool(self.object_visible)
        return {
            "texture": texture,
            "object": obj,
            "grow": grow,
            "offset": [length * math.cos(angle), length * math.sin(angle)],
            "darkness": float(rng.uniform(0.35, 0.65)),
            "penumbra": float(rng.uniform(0.01, 0.04)),
            "object_visible": visible,
            **_colour_layout(rng),
        }

    def _draw(self, layout, height, width):
        image = _render_texture(layout["texture"], height, width)
        shadow = _object_distance(layout["object"], height, width, scale=layout["grow"])
        alpha = coverage_from_distance(shadow, max(1.0, layout["penumbra"] * min(height, width)))
        tint = layout["darkness"] * np.array([1.0, 1.0, 0.9])[:, None, None]  # shade light is slightly bluish
        image = image * (1.0 - tint * alpha)
        mask = shadow <= 0.0
        obj_mask = np.zeros_like(mask)
        if layout["object_visible"]:
            back = [-v for v in layout["offset"]]
            distance = _object_distance(layout["object"], height, width, shift=back)
            image = self._paint_object(layout, image, distance, height, width)
            obj_mask = distance <= 0.0
            mask &= ~obj_mask
        return image, mask, {"object_mask": torch.from_numpy(obj_mask)}


def save_folder(dataset: Any, root: str | os.PathLike, n: int | None = None, size: tuple[int, int] | None = None):
    """Write the first `n` scenes of `dataset` as `root/images/00000.png` and `root/masks/00000.png` (0 / 255).

    Args:
        dataset: a scene set with `render(index, height, width)` returning `image` and `mask`.
        n (`int`, optional): number of scenes; all by default.
        size (`tuple[int, int]`, optional): `(height, width)`; `dataset.size` by default.

    Returns:
        `list[str]`: the image paths written.
    """
    from PIL import Image

    n = len(dataset) if n is None else int(n)
    height, width = dataset.size if size is None else size
    if not 0 < n <= len(dataset):
        raise BadInputError(f"n must be in [1, {len(dataset)}], got {n}")
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    paths = []
    for i in range(n):
        item = dataset.render(i, height, width)
        pixels = ((item["image"].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
        path = os.path.join(root, "images", f"{i:05d}.png")
        Image.fromarray(pixels).save(path)
        Image.fromarray(item["mask"].numpy().astype(np.uint8) * 255).save(os.path.join(root, "masks", f"{i:05d}.png"))
        paths.append(path)
    return paths
