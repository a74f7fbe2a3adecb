"""Load a diffusers pipeline offline (a local folder, or the embedded tiny default) and save images."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import torch

from vadapters.core.io import atomic_write
from vadapters.errors import BadInputError, CheckpointError


def load_pipeline(path: str | None = None, *, device: str | None = None, dtype: torch.dtype | None = None) -> Any:
    """A diffusers pipeline from a local folder; `None` is the embedded default (`weights/tiny-sd`,
    hash-verified; the tiny architecture with seeded random weights if its manifest entry is absent, which `"tiny"`
    always gives).

    Example:
        >>> pipe = load_pipeline()  # tiny SD pipeline of the real diffusers classes
        >>> type(pipe).__name__
        'StableDiffusionPipeline'
    """
    if path is None:
        from vadapters.models.weights import default_path, read_manifest

        if "tiny-sd" in read_manifest()["entries"]:
            path = str(default_path("tiny-sd"))  # the trained embedded default, hash-verified
        else:
            path = "tiny"
    if path == "tiny":
        from vadapters.models import tiny_sd_pipeline

        pipe = tiny_sd_pipeline()
    else:
        from diffusers import DiffusionPipeline

        if not os.path.isdir(path):
            raise CheckpointError(f"pipeline folder not found: {path!r} (hub ids cannot be downloaded here)")
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise CheckpointError(f"{path!r} is not a diffusers pipeline folder (no model_index.json)")
        kwargs = {"local_files_only": True}
        if dtype is not None:
            kwargs["torch_dtype"] = dtype
        pipe = DiffusionPipeline.from_pretrained(path, **kwargs)
    if device is not None:
        pipe = pipe.to(device)
    if os.environ.get("VADAPTERS_NO_PROGRESS") == "1":
        pipe.set_progress_bar_config(disable=True)
    return pipe


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


def save_image(image: np.ndarray, path: str, scale: int = 1) -> str:
    """Atomically write a uint8 HxWx3 array as PNG (optionally upscaled by an integer nearest factor)."""
    from PIL import Image

    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return path
