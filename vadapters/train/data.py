"""Training data: image folders with captions, synthetic discs, and a dataset that loads at the bucket's size.

A *source* is anything with `__len__` and `load(index, height, width) -> {"image": [3, H, W] in [-1, 1],
"caption": str}` (and optionally `caption(index)`); `BucketedDataset` turns one into a map-style dataset indexed
by the `(index, height, width)` items that `BucketBatchSampler` yields.

Example:
    >>> from torch.utils.data import DataLoader
    >>> from vadapters.train.buckets import BucketBatchSampler
    >>> from vadapters.train.data import BucketedDataset, collate_image_caption, make_source
    >>> source = make_source("synthetic", num_items=4)
    >>> loader = DataLoader(
    ...     BucketedDataset(source),
    ...     batch_sampler=BucketBatchSampler(4, 2, [(16, 16)]),
    ...     collate_fn=collate_image_caption,
    ... )
    >>> batch = next(iter(loader))
    >>> tuple(batch["pixel_values"].shape), len(batch["captions"])
    ((2, 3, 16, 16), 2)
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vadapters.errors import BadInputError
from vadapters.synthetic.discs import DiscScenes

__all__ = [
    "IMAGE_EXTENSIONS",
    "BucketedDataset",
    "ImageCaptionFolder",
    "SyntheticDiscs",
    "collate_image_caption",
    "make_source",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
METADATA_NAME = "metadata.jsonl"


def _read_metadata(path: str) -> dict[str, str]:
    captions: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{path}, line {lineno}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
                raise BadInputError(f'{path}, line {lineno}: expected {{"file_name": ..., "text": ...}}, got {line!r}')
            text = row.get("text", row.get("caption", ""))
            captions[os.path.normpath(row["file_name"])] = "" if text is None else str(text)
    return captions


class ImageCaptionFolder:
    """Images under `root` (png, jpg, jpeg, webp; searched recursively) with their captions.

    A caption comes from `metadata.jsonl` at the root (lines `{"file_name": "relative/path.png", "text": ...}`,
    the Hugging Face image-folder layout) or, failing that, from a `.txt` file with the image's stem next to it;
    images with neither get the empty caption (unconditional training).

    Args:
        root (`str`): the folder.

    Raises:
        BadInputError: if `root` is not a folder, holds no images, or `metadata.jsonl` is malformed.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise BadInputError(f"image folder not found: {root!r}")
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not files:
            raise BadInputError(
                f"no images in {root!r}: expected files ending in {', '.join(IMAGE_EXTENSIONS)} "
                f"with captions in same-stem .txt files or {METADATA_NAME}"
            )
        self.root = root
        self.files = sorted(files)
        meta_path = os.path.join(root, METADATA_NAME)
        metadata = _read_metadata(meta_path) if os.path.isfile(meta_path) else {}
        self.captions = []
        for path in self.files:
            rel = os.path.normpath(os.path.relpath(path, root))
            if rel in metadata:
                self.captions.append(metadata[rel])
                continue
            txt = os.path.splitext(path)[0] + ".txt"
            if os.path.isfile(txt):
                with open(txt, encoding="utf-8") as fh:
                    self.captions.append(fh.read().strip())
            else:
                self.captions.append("")

    def __len__(self) -> int:
        return len(self.files)

    def caption(self, index: int) -> str:
        return self.captions[index]

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        """Image `index` resized (shorter side) and centre-cropped to `height` x `width`, RGB in [-1, 1].

        Raises:
            BadInputError: naming the file, if it cannot be decoded.
        """
        from PIL import Image, ImageOps, UnidentifiedImageError

        path = self.files[index]
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                im.load()
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise BadInputError(f"cannot read image {path!r}: {exc}") from exc
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        else:
            im = im.convert("RGB")
        w0, h0 = im.size
        scale = max(height / h0, width / w0)
        nw, nh = max(width, math.ceil(w0 * scale - 1e-6)), max(height, math.ceil(h0 * scale - 1e-6))
        if (nw, nh) != (w0, h0):
            im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (nw - width) // 2, (nh - height) // 2
        im = im.crop((left, top, left + width, top + height))
        array = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        image = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
        return {"image": image, "caption": self.captions[index]}

    def __repr__(self) -> str:
        return f"ImageCaptionFolder({self.root!r}, {len(self)} images)"


class SyntheticDiscs:
    """`DiscScenes` as a training source: `load(index, h, w)` renders scene `index` at that size.

    Args:
        num_items (`int`): number of scenes.
        seed (`int`): scene seed.
        **kwargs: passed to `DiscScenes` (`palette`, `antialias`).
    """

    def __init__(self, num_items: int, seed: int = 0, **kwargs: Any) -> None:
        self.scenes = DiscScenes(num_items, seed=seed, **kwargs)

    def __len__(self) -> int:
        return len(self.scenes)

    def caption(self, index: int) -> str:
        return self.scenes.caption(index)

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        item = self.scenes.render(index, height, width)
        return {"image": item["image"], "caption": item["caption"]}

    def __repr__(self) -> str:
        return f"SyntheticDiscs({self.scenes!r})"


class BucketedDataset(Dataset):
    """Map-style dataset over a source, indexed by `(index, height, width)` (what `BucketBatchSampler` yields).

    Args:
        source: an object with `__len__` and `load(index, height, width)`.
        transform (`callable`, optional): applied to each loaded item dict (e.g. augmentation).
    """

    def __init__(self, source: Any, transform: Any = None) -> None:
        if not callable(getattr(source, "load", None)):
            raise BadInputError(f"a data source needs a load(index, height, width) method; got {type(source)!r}")
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int, int]) -> dict[str, Any]:
        try:
            index, height, width = item
        except (TypeError, ValueError):
            raise BadInputError(
                f"BucketedDataset items are (index, height, width) tuples, got {item!r}; "
                "use a BucketBatchSampler as the DataLoader's batch_sampler"
            ) from None
        out = dict(self.source.load(int(index), int(height), int(width)))
        out["index"] = int(index)
        return self.transform(out) if self.transform is not None else out


def collate_image_caption(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack `image`s into `pixel_values` `[B, 3, H, W]` and list `captions` and `indices`."""
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) != 1:
        raise BadInputError(f"a batch mixes image shapes {sorted(shapes)}; every batch must have one resolution")
    return {
        "pixel_values": torch.stack([it["image"] for it in items]),
        "captions": [it["caption"] for it in items],
        "indices": [it.get("index", -1) for it in items],
    }


def collate_sequences(
    items: list[dict[str, Any]], key: str, count: str, extras: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Stack items that each hold a sequence of images `item[key]` (`[N, 3, H, W]`: a clip's frames, an object's
    views) item-major into `pixel_values [B*N, 3, H, W]`, the `extras` likewise, one caption per item, and `N` as
    `count`.

    Example:
        >>> clip = {"frames": torch.zeros(4, 3, 8, 8), "caption": "a disc"}
        >>> batch = collate_sequences([clip, clip], "frames", "num_frames")
        >>> tuple(batch["pixel_values"].shape), batch["num_frames"]
        ((8, 3, 8, 8), 4)
    """
    shapes = {tuple(it[key].shape) for it in items}
    if len(shapes) != 1:
        raise BadInputError(f"a batch mixes {key} shapes {sorted(shapes)}; every batch must have one size and length")
    return {
        "pixel_values": torch.cat([it[key] for it in items]),
        **{extra: torch.cat([it[extra] for it in items]) for extra in extras},
        "captions": [it["caption"] for it in items],
        "indices": [it.get("index", -1) for it in items],
        count: int(items[0][key].shape[0]),
    }


def make_source(spec: Any, num_items: int = 1000, seed: int = 0) -> Any:
    """A data source from a spec.

    Args:
        spec: `"synthetic"` or `"synthetic:discs"` (the disc scenes), `"synthetic:shapes"` (captioned 1-3 shape
            scenes), a folder of images with captions, or an
            object that already has `load(index, height, width)` (returned as is).
        num_items (`int`): number of synthetic scenes (ignored for folders).
        seed (`int`): synthetic scene seed.
    """
    if callable(getattr(spec, "load", None)) and hasattr(spec, "__len__"):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise BadInputError(f"data must be 'synthetic', a folder, or a source object; got {type(spec).__name__}")
    text = os.fspath(spec)
    if text.strip().lower() in ("synthetic", "synthetic:discs"):
        return SyntheticDiscs(num_items, seed=seed)
    if text.strip().lower() == "synthetic:shapes":
        from vadapters.synthetic.scenes import ShapeScenes

        return ShapeScenes(num_items, seed=seed)
    if text.lower().startswith("synthetic:"):
        raise BadInputError(f"unknown synthetic data set {text!r}; available: 'synthetic:discs', 'synthetic:shapes'")
    if os.path.isdir(text):
        return ImageCaptionFolder(text)
    raise BadInputError(f"data {text!r} is neither 'synthetic' nor an existing folder of images")
