"""Load a diffusers pipeline offline: a local folder, or the embedded trained default (`weights/tiny-sd`)."""

from __future__ import annotations

import os
from typing import Any

import torch

from vadapters.errors import CheckpointError


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
