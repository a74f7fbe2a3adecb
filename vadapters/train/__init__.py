"""Training: one Accelerate loop (`Trainer`) plus per-method recipes, behind `train_adapter`.

Example:
    >>> from vadapters.train import train_adapter
    >>> summary = train_adapter(  # doctest: +SKIP
    ...     "res_adapter", output_dir="out/res", resolutions="16,24,32", steps=100, batch_size=4,
    ...     learning_rate=1e-3, config_overrides={"rank": 4, "alpha": 4.0},
    ... )
"""

from __future__ import annotations

import os
from typing import Any

from vadapters.errors import BadInputError
from vadapters.train.buckets import BucketBatchSampler, parse_resolutions
from vadapters.train.checkpoints import find_latest_checkpoint, list_checkpoints
from vadapters.train.data import (
    BucketedDataset,
    ImageCaptionFolder,
    SyntheticDiscs,
    collate_image_caption,
    make_source,
)
from vadapters.train.trainer import Trainer, TrainingArguments

__all__ = [
    "BucketBatchSampler",
    "BucketedDataset",
    "DiffusionAdapterRecipe",
    "ImageCaptionFolder",
    "SyntheticDiscs",
    "Trainer",
    "TrainingArguments",
    "collate_image_caption",
    "find_latest_checkpoint",
    "list_checkpoints",
    "make_source",
    "parse_resolutions",
    "train_adapter",
]

DIFFUSION_HOSTS = ("diffusers.unet",)


def __getattr__(name: str) -> Any:  # the diffusion recipe imports diffusers; load it on first use
    if name == "DiffusionAdapterRecipe":
        from vadapters.train.diffusion import DiffusionAdapterRecipe

        return DiffusionAdapterRecipe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load_pipeline(pipeline: Any) -> tuple[Any, str | None]:
    if pipeline is None:
        from vadapters.models import tiny_sd_pipeline

        return tiny_sd_pipeline(), None
    if isinstance(pipeline, (str, os.PathLike)):
        from vadapters.pipelines import load_pipeline

        return load_pipeline(os.fspath(pipeline)), os.path.abspath(os.fspath(pipeline))
    return pipeline, getattr(pipeline, "name_or_path", None) or None


def train_adapter(
    method: str,
    *,
    pipeline: Any = None,
    data: Any = "synthetic",
    output_dir: str | os.PathLike,
    resolutions: Any = "16,24,32",
    steps: int = 200,
    batch_size: int = 4,
    learning_rate: float = 1e-4,
    config_overrides: dict[str, Any] | None = None,
    seed: int = 0,
    checkpoint_every: int = 50,
    validate_every: int = 0,
    adapter_name: str | None = None,
    num_items: int = 1000,
    caption_dropout: float = 0.0,
    validation_prompts: list[str] | None = None,
    validation_resolutions: Any = None,
    validation_kwargs: dict[str, Any] | None = None,
    **training_kwargs: Any,
) -> dict[str, Any]:
    """Train an adapter of `method` on a diffusers pipeline and save it in `output_dir` (resumable).

    Args:
        method (`str`): a registered method whose adapter lives on a UNet (e.g. `"res_adapter"`).
        pipeline: a pipeline object, a local diffusers pipeline folder, or None for the tiny offline pipeline.
        data: `"synthetic"` (disc scenes), a folder of images with captions, or a source object.
        output_dir: where the adapter, `checkpoints/`, `validation/` and `train_log.jsonl` go.
        resolutions: bucket sizes, e.g. `"16,24x32,32"`; each a multiple of the pipeline's
            `resolution_multiple` (8 for the tiny pipeline).
        steps (`int`): optimizer steps in total (a resumed run continues up to it).
        batch_size (`int`): per-device batch size.
        learning_rate (`float`): peak AdamW learning rate.
        config_overrides (`dict`): fields of the method's config (e.g. `{"rank": 4, "alpha": 4.0}`).
        seed (`int`): seed of the adapter init, data order, noise and synthetic scenes.
        checkpoint_every (`int`): steps between checkpoints (0: only at the end).
        validate_every (`int`): steps between validation grids (0: never).
        adapter_name (`str`, optional): name of the adapter (default: the method name).
        num_items (`int`): number of synthetic scenes.
        caption_dropout, validation_prompts, validation_resolutions, validation_kwargs: see
            `DiffusionAdapterRecipe`.
        **training_kwargs: further `TrainingArguments` fields (`gradient_accumulation_steps`, `lr_warmup_steps`,
            `lr_scheduler`, `mixed_precision`, `resume`, `keep_checkpoints`, `log_every`, ...).

    Returns:
        The trainer's summary: `steps`, `final_loss`, `seconds`, `sec_per_step`, `adapter_files`, ...
    """
    from vadapters.core.registry import get_method

    spec = get_method(method)
    if not set(spec.hosts) & set(DIFFUSION_HOSTS):
        raise BadInputError(
            f"training is implemented for diffusion adapters (hosts {DIFFUSION_HOSTS}); method {spec.name!r} "
            f"targets {spec.hosts}, which has no training recipe yet"
        )
    args = TrainingArguments.from_options(
        output_dir,
        max_steps=steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        checkpoint_every=checkpoint_every,
        validate_every=validate_every,
        seed=seed,
        **training_kwargs,
    )
    config = spec.config_cls.from_overrides(config_overrides)
    pipe, base_path = _load_pipeline(pipeline)
    if base_path and config.base_model_name_or_path is None:
        config = config.replace(base_model_name_or_path=base_path)
    source = make_source(data, num_items=num_items, seed=seed)

    from vadapters.train.diffusion import DiffusionAdapterRecipe

    recipe = DiffusionAdapterRecipe(
        pipe,
        config,
        source,
        resolutions,
        batch_size,
        adapter_name=adapter_name or spec.name,
        caption_dropout=caption_dropout,
        validation_prompts=validation_prompts,
        validation_resolutions=validation_resolutions,
        validation_kwargs=validation_kwargs,
        seed=seed,
    )
    return Trainer(recipe, args).train()
