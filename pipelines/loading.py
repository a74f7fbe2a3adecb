"""Images out of pipelines: to uint8 arrays, side by side, a grid of rows, saved atomically as PNG.

(`load_pipeline`, re-exported by `vadapters.pipelines`, lives in `vadapters.models.loading`: loading is the models' job.)
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from vadapters.core.io import atomic_write
from vadapters.errors import BadInputError


def to_uint8(images: Any) -> list[np.ndarray]:
    """Pipeline output (PIL list, numpy [N,H,W,3] in [0,1], or tensor) -> list of uint8 HxWx3 arrays."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy()
        if images.ndim == 4 and images.shape[1] in (1, 3):
            images = images.transpose(0, 2, 3, 1)
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.dtype != np.uint8:
            images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
        return list(images)
    return [np.asarray(im.convert("RGB")) for im in images]


def side_by_side(images: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Place uint8 images left to right on a white canvas (different sizes allowed, top aligned)."""
    if not images:
        raise BadInputError("no images to place side by side")
    height = max(im.shape[0] for im in images)
    width = sum(im.shape[1] for im in images) + pad * (len(images) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for im in images:
        canvas[: im.shape[0], x : x + im.shape[1]] = im[..., :3]
        x += im.shape[1] + pad
    return canvas


def image_grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Rows of uint8 HxWx3 images (any sizes) on a grey canvas, one cell per image, top-left aligned.

    Example:
        >>> cell = np.zeros((4, 6, 3), dtype=np.uint8)
        >>> image_grid([[cell, cell], [cell]]).shape
        (14, 18, 3)
    """
    cell_h = max(im.shape[0] for row in rows for im in row)
    cell_w = max(im.shape[1] for row in rows for im in row)
    n_cols = max(len(row) for row in rows)
    canvas = np.full((pad + len(rows) * (cell_h + pad), pad + n_cols * (cell_w + pad), 3), 128, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
            canvas[y : y + im.shape[0], x : x + im.shape[1]] = im
    return canvas


def save_image(image: np.ndarray, path: str, scale: int = 1) -> str:
    """Atomically write a uint8 HxWx3 array as PNG (optionally upscaled by an integer nearest factor)."""
    from PIL import Image

    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return path
