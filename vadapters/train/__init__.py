"""Training: one Accelerate loop (`Trainer`) plus per-method recipes (`vadapters.train.recipes`), behind
`train_adapter`.

Example:
    >>> from vadapters.train import train_adapter
    >>> summary = train_adapter(  # doctest: +SKIP
    ...     "res_adapter", output_dir="out/res", resolutions="16,24,32", steps=100, batch_size=4,
    ...     learning_rate=1e-3, config_overrides={"rank": 4, "alpha": 4.0},
    ... )
"""

from __future__ import annotations

import dataclasses
import inspect
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
from vadapters.train.recipes import DIFFUSION_HOSTS, RecipeInputs, find_recipe, list_recipes, register_recipe
from vadapters.train.trainer import Trainer, TrainingArguments

__all__ = [
    "DIFFUSION_HOSTS",
    "BucketBatchSampler",
    "RecipeInputs",
    "BucketedDataset",
    "DiffusionAdapterRecipe",
    "ImageCaptionFolder",
    "SyntheticDiscs",
    "Trainer",
    "TrainingArguments",
    "collate_image_caption",
    "find_latest_checkpoint",
    "find_recipe",
    "list_checkpoints",
    "list_recipes",
    "make_source",
    "parse_resolutions",
    "register_recipe",
    "train_adapter",
]


def train_adapter(
    method: str,
    *,
    output_dir: str | os.PathLike,
    base: Any = None,
    data: Any = None,
    steps: int = 200,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    config_overrides: dict[str, Any] | None = None,
    adapter_name: str | None = None,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Train an adapter of `method` with the one trainer and save it in `output_dir` (resumable: re-run the call).

    The method's recipe (`vadapters.train.recipes.find_recipe`) loads the base and the data and says what to train;
    UNet adapters without a recipe of their own (ResAdapter, SaRA) use the latent-diffusion recipe.

    Args:
        method (`str`): a registered method (`"res_adapter"`, `"sara"`, `"mv_adapter"`, `"i2v_adapter"`,
            `"sam_adapter"`, ...).
        output_dir: where the adapter, `checkpoints/`, `validation/` and `train_log.jsonl` go.
        base: the model to adapt: a pipeline object or folder (diffusion methods; None: the tiny offline
            pipeline), an AnimateDiff pipeline (I2V-Adapter; None: the embedded video model), a SAM or official
            `.pth` (SAM-Adapter; None: the embedded tiny SAM).
        data: the recipe's data (`"synthetic"` and friends, a folder, or a source object); None: its default.
        steps (`int`): optimizer steps in total (a resumed run continues up to it).
        batch_size, learning_rate: per-device batch and peak AdamW rate; None: the recipe's defaults.
        config_overrides (`dict`): fields of the method's config (e.g. `{"rank": 4, "alpha": 4.0}`).
        adapter_name (`str`, optional): name of the adapter (default: the method's).
        seed (`int`): seed of the adapter init, data order, noise and synthetic data.
        **options: `TrainingArguments` fields (`checkpoint_every`, `validate_every`, `lr_warmup_steps`,
            `lr_scheduler`, `resume`, `mixed_precision`, ...) and the recipe's own options (`resolutions`,
            `num_items`, `caption_dropout`, `num_views`, `num_frames`, `loss`, `mode`, ...: see its `build`).

    Returns:
        The trainer's summary (`steps`, `final_loss`, `seconds`, `sec_per_step`, `adapter_files`, ...) plus what
        the recipe reports (SAM-Adapter: `validation` metrics and parameter counts).
    """
    from vadapters.core.registry import get_method

    entry = find_recipe(method)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    training = {**entry.training, **{k: options.pop(k) for k in list(options) if k in fields}}
    if batch_size is not None:
        training["batch_size"] = batch_size
    if learning_rate is not None:
        training["learning_rate"] = learning_rate
    accepted = set(inspect.signature(entry.build).parameters) - {"inputs", "method"}
    if set(options) - accepted:
        raise BadInputError(
            f"unknown training option(s) {sorted(set(options) - accepted)} for {method!r}; recipe options: "
            f"{sorted(accepted)}; loop options: see TrainingArguments.help()"
        )
    args = TrainingArguments.from_options(output_dir, max_steps=steps, seed=seed, **training)
    get_method(method).config_cls.from_overrides(config_overrides)  # refuse typos before loading a model
    inputs = RecipeInputs(base, data, dict(config_overrides or {}), args.batch_size, seed, adapter_name or method)
    recipe = entry.build(inputs, **options)
    summary = Trainer(recipe, args).train()
    report = getattr(recipe, "report", None)
    return {**summary, **(report() if report is not None else {})}
