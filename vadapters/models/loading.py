"""Load a diffusers pipeline: the embedded trained default (`weights/tiny-sd`), a local folder, or a Hugging Face
Hub id resolved by diffusers / huggingface_hub (offline: from the Hugging Face cache)."""

from __future__ import annotations

import os
from typing import Any

import torch

from vadapters.core.bases import EMBEDDED_PREFIX
from vadapters.core.hub import not_cached_message, resolve, split_hub_id
from vadapters.errors import CheckpointError

RANDOM_TINY = "tiny"
"""The name of the seeded random-weights tiny architecture (`vadapters.models.tiny_sd_pipeline`)."""


def load_pipeline(
    path: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
) -> Any:
    """A diffusers pipeline from what a user names.

    Args:
        path: `None` (the embedded trained default, `weights/tiny-sd`, hash-verified), `"vadapters:NAME"` (another
            embedded default), a local pipeline folder (with `model_index.json`), a Hugging Face Hub id
            (`"ORG/NAME"`, fetched by `DiffusionPipeline.from_pretrained` into the Hugging Face cache, or read from
            it with `HF_HUB_OFFLINE=1`), or `"tiny"` (the tiny architecture with seeded random weights, only when
            asked for by name).
        device, dtype: where and in which dtype to put the pipeline.
        revision (`str`, optional): branch, tag or commit of a Hub repository.

    The pipeline's `name_or_path` names its base (`vadapters.core.bases`): adapters record it and compare it on load.

    Example:
        >>> pipe = load_pipeline()  # the trained tiny SD pipeline of the real diffusers classes
        >>> type(pipe).__name__, pipe.name_or_path.endswith("tiny-sd")
        ('StableDiffusionPipeline', True)
    """
    if path is None:
        path = EMBEDDED_PREFIX + "tiny-sd"
    path = os.fspath(path)
    if path in (RANDOM_TINY, EMBEDDED_PREFIX + RANDOM_TINY):
        from vadapters.models import tiny_sd_pipeline

        pipe = tiny_sd_pipeline()
        pipe.register_to_config(_name_or_path=EMBEDDED_PREFIX + RANDOM_TINY)
    else:
        pipe = _from_pretrained(path, dtype, revision)
    if device is not None:
        pipe = pipe.to(device)
    if os.environ.get("VADAPTERS_NO_PROGRESS") == "1":
        pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_pretrained(path: str, dtype: torch.dtype | None, revision: str | None) -> Any:
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {} if dtype is None else {"torch_dtype": dtype}
    if path.startswith(EMBEDDED_PREFIX):
        from vadapters.models.weights import default_path

        path = str(default_path(path.removeprefix(EMBEDDED_PREFIX)))  # hash-verified; names the fix if edited
    hub = split_hub_id(path)
    if hub is not None and hub[1] is None:  # ORG/NAME: diffusers picks and fetches the files a pipeline needs
        try:
            return DiffusionPipeline.from_pretrained(path, revision=revision, **kwargs)
        except OSError as err:
            raise CheckpointError(not_cached_message("pipeline", path) + f" ({err})") from err
    if hub is not None:  # ORG/NAME/FOLDER: a pipeline kept in a folder of a repository
        path = resolve(path, revision=revision, what="pipeline")
    if not os.path.isdir(path):
        raise CheckpointError(f"pipeline folder not found: {path!r} (expected a folder, a Hub id ORG/NAME, or None)")
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise CheckpointError(f"{path!r} is not a diffusers pipeline folder (no model_index.json)")
    return DiffusionPipeline.from_pretrained(path, **kwargs)  # a local folder: diffusers reads it, fetches nothing
