"""Segmentation data for SAM-Adapter: image/mask folders of any size and the synthetic scene sets, resized and
padded as SAM does (`ResizeLongestSide` + normalise + pad to the encoder size).

Example:
    >>> from vadapters.models import tiny_sam
    >>> source = make_segmentation_source("synthetic:camouflage", num_items=4, seed=0, size=(48, 64))
    >>> item = SAMSegmentationDataset(source, tiny_sam())[(0, 0, 0)]
    >>> tuple(item["pixels"].shape), tuple(item["mask"].shape), item["input_size"]
    ((3, 64, 64), (64, 64), (48, 64))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vadapters.errors import BadInputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
SYNTHETIC = ("salient", "camouflage", "camouflage-texture", "shadow")


class SegmentationFolder:
    """`root/images/<stem>.<ext>` with `root/masks/<stem>.<ext>` (mask > 127 is foreground), any sizes.

    `load(index)` returns `image` (float `[3, H, W]` in [0, 1]) and `mask` (bool `[H, W]`, the image's size).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        root = os.fspath(root)
        images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
        if not (os.path.isdir(images) and os.path.isdir(masks)):
            raise BadInputError(f"{root!r} must hold images/ and masks/ folders with matching file stems")

        def stems(folder):
            return {
                os.path.splitext(f)[0]: os.path.join(folder, f)
                for f in sorted(os.listdir(folder))
                if f.lower().endswith(IMAGE_EXTENSIONS)
            }

        self.images, self.masks = stems(images), stems(masks)
        self.keys = sorted(set(self.images) & set(self.masks))
        if not self.keys:
            raise BadInputError(f"no image/mask pairs with matching names in {images!r} and {masks!r}")
        self.root = root

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> dict[str, Any]:
        from PIL import Image

        key = self.keys[index]
        image = np.asarray(Image.open(self.images[key]).convert("RGB"), dtype=np.float32) / 255.0
        mask = np.asarray(Image.open(self.masks[key]).convert("L")) > 127
        if mask.shape != image.shape[:2]:
            resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.shape[1::-1], Image.NEAREST)
            mask = np.asarray(resized) > 127
        return {"image": torch.from_numpy(image).permute(2, 0, 1).contiguous(), "mask": torch.from_numpy(mask)}


class SyntheticSegmentation:
    """A `vadapters.synthetic.segmentation` scene set as a source (images mapped from [-1, 1] to [0, 1])."""

    def __init__(self, scenes: Any, size: Sequence[int] | None = None) -> None:
        self.scenes = scenes
        self.size = tuple(size) if size is not None else tuple(scenes.size)

    def __len__(self) -> int:
        return len(self.scenes)

    def load(self, index: int) -> dict[str, Any]:
        item = self.scenes.render(index, *self.size)
        return {"image": (item["image"] + 1.0) / 2.0, "mask": item["mask"]}


def make_segmentation_source(data: Any, num_items: int = 400, seed: int = 0, size=(64, 64), **scene_options) -> Any:
    """A source from `"synthetic:camouflage"` / `"synthetic:shadow"` / `"synthetic:salient"` (`"synthetic"` is
    camouflage), a folder (`images/` + `masks/`), or an object with `load(index)` (returned as is).

    `"synthetic:camouflage-texture"` is camouflage with a learnable cue: the object's texture is three times as fine
    as the background's (`CamouflageScenes(texture_scale=3)`, see its doc); `"synthetic:camouflage"` is the hard
    variant, where only the feathered edge and a small colour jitter differ. `scene_options` go to the scene set."""
    if callable(getattr(data, "load", None)) and hasattr(data, "__len__"):
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise BadInputError(f"data must be 'synthetic:<kind>', a folder or a source; got {type(data).__name__}")
    text = os.fspath(data).strip()
    if text.lower().startswith("synthetic"):
        kind = text.partition(":")[2].lower() or "camouflage"
        if kind not in SYNTHETIC:
            raise BadInputError(f"unknown synthetic set {text!r}; use one of {[f'synthetic:{k}' for k in SYNTHETIC]}")
        from vadapters.synthetic import segmentation

        cls = {
            "salient": segmentation.SalientScenes,
            "camouflage": segmentation.CamouflageScenes,
            "camouflage-texture": segmentation.CamouflageScenes,
            "shadow": segmentation.ShadowScenes,
        }[kind]
        if kind == "camouflage-texture":
            scene_options = {**segmentation.CAMOUFLAGE_TEXTURE_CUE, **scene_options}
        return SyntheticSegmentation(cls(num_items, seed=seed, size=tuple(size), **scene_options))
    if os.path.isdir(text):
        return SegmentationFolder(text)
    raise BadInputError(f"data {text!r} is neither 'synthetic:<kind>' nor a folder with images/ and masks/")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded (train, validation) split of `range(n)`; validation gets `max(1, round(n * val_fraction))` items
    when `val_fraction > 0`. Validation is held out from training data; test data is never used for it."""
    if n < 2 and val_fraction > 0:
        raise BadInputError(f"need at least 2 items for a validation split, got {n}")
    order = np.random.default_rng([seed, 0x5A]).permutation(n).tolist()
    n_val = 0 if val_fraction <= 0 else max(1, round(n * val_fraction))
    return sorted(order[n_val:]), sorted(order[:n_val])


class SAMSegmentationDataset(Dataset):
    """Items of `source` (restricted to `indices`) pre-processed for `sam`: `pixels` (normalised, padded),
    `mask` and `valid` (`[S, S]` float; padding is invalid), `input_size`, `original_size`, `index`.

    Indexed by `(index, height, width)` tuples (as `BucketBatchSampler` yields; the size is ignored) or ints.
    """

    def __init__(self, source: Any, sam: torch.nn.Module, indices: Sequence[int] | None = None) -> None:
        self.source = source
        self.indices = list(range(len(source))) if indices is None else list(indices)
        self.img_size = int(sam.image_encoder.img_size)
        self.pixel_mean = sam.pixel_mean.detach().float().cpu().clone()
        self.pixel_std = sam.pixel_std.detach().float().cpu().clone()

    def __len__(self) -> int:
        return len(self.indices)

    def load_raw(self, position: int) -> dict[str, Any]:
        return self.source.load(self.indices[position])

    def __getitem__(self, key) -> dict[str, Any]:
        position = key[0] if isinstance(key, tuple) else int(key)
        raw = self.load_raw(position)
        image, mask = raw["image"].float(), raw["mask"].bool()
        h, w = image.shape[1:]
        s = self.img_size
        scale = s / max(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        resized = F.interpolate(image[None], (nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
        pixels = (resized.clamp(0, 1) * 255.0 - self.pixel_mean) / self.pixel_std
        small = F.interpolate(mask[None, None].float(), (nh, nw), mode="nearest")[0, 0]
        valid = torch.ones(nh, nw)
        pad = (0, s - nw, 0, s - nh)
        return {
            "pixels": F.pad(pixels, pad),
            "mask": F.pad(small, pad),
            "valid": F.pad(valid, pad),
            "input_size": (nh, nw),
            "original_size": (int(h), int(w)),
            "index": self.indices[position],
        }


def collate_segmentation(items: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: torch.stack([it[k] for it in items]) for k in ("pixels", "mask", "valid")}
    for key in ("input_size", "original_size", "index"):
        out[key] = [it[key] for it in items]
    return out
