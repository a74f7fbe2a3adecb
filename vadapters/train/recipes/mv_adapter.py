"""MV-Adapter training: a view-set recipe for the one trainer (`train_adapter("mv_adapter", ...)`).

Differences from the single-image `DiffusionAdapterRecipe` it extends, as in the official training:
- a batch holds whole objects: `batch_size` objects x `num_views` views, view-major per object;
- all views of one object share one random timestep (`timesteps.repeat_interleave(num_views)`);
- prompt dropout and condition dropout per object (a dropped condition also drops the prompt);
- only `_mv` / `_ref` layers and the condition encoder are trainable (the injector freezes the UNet);
- the camera maps of each view feed the condition encoder through `multiview_state(condition=...)`;
- with `use_ref`, each object's first view is the reference image (clean pass at t=0, then cached tokens).

Example (run in `tests/test_mv_adapter.py`; skipped here because building a pipeline takes seconds):
    >>> from vadapters.models import tiny_sd_pipeline
    >>> from vadapters.methods.mv_adapter import MVAdapterConfig
    >>> from vadapters.train.recipes.mv_adapter import MVAdapterRecipe, MultiViewSource
    >>> cfg = MVAdapterConfig(num_views=4, condition_channels=6, condition_downscale_factor=2)
    >>> recipe = MVAdapterRecipe(tiny_sd_pipeline(), cfg, MultiViewSource(4, num_views=4), "16", 2)  # doctest: +SKIP
    >>> batch = recipe.collate([recipe.dataset[(i, 16, 16)] for i in range(2)])  # doctest: +SKIP
    >>> tuple(batch["pixel_values"].shape), bool(recipe.loss(batch, 0).isfinite())  # doctest: +SKIP
    ((8, 3, 16, 16), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vadapters.errors import BadInputError
from vadapters.methods.mv_adapter.cameras import camera_maps
from vadapters.methods.mv_adapter.config import MVAdapterConfig
from vadapters.methods.mv_adapter.model import multiview_state, record_reference
from vadapters.synthetic.multiview import MultiViewObjects
from vadapters.train.data import collate_sequences
from vadapters.train.diffusion import DiffusionAdapterRecipe, load_training_pipeline, write_validation_grid
from vadapters.train.recipes import RecipeInputs, register_recipe

__all__ = ["MVAdapterRecipe", "MultiViewSource", "build", "collate_view_sets"]


class MultiViewSource:
    """View sets of the synthetic 3D objects: `load(index, h, w)` -> `images [V, 3, h, w]` in [-1, 1],
    `raymaps [V, 6, h, w]` (camera maps in [0, 1]) and the object's `caption`.

    Example:
        >>> item = MultiViewSource(2, num_views=3).load(0, 8, 8)
        >>> tuple(item["images"].shape), tuple(item["raymaps"].shape)
        ((3, 3, 8, 8), (3, 6, 8, 8))
    """

    def __init__(self, num_items: int, seed: int = 0, num_views: int = 6, elevation: float = 0.0) -> None:
        self.objects = MultiViewObjects(num_items, seed=seed, num_views=num_views, elevation=elevation)
        self.num_views = self.objects.num_views

    def __len__(self) -> int:
        return len(self.objects)

    def caption(self, index: int) -> str:
        return self.objects.object(index).caption

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        item = self.objects.render(index, height, width)
        return {
            "images": item["images"].float(),
            "raymaps": camera_maps(self.objects.cameras, height, width),
            "caption": item["caption"],
        }


def collate_view_sets(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack view sets view-major: `pixel_values [B*V, 3, H, W]`, `raymaps [B*V, 6, H, W]`, one caption per object."""
    return collate_sequences(items, "images", "num_views", extras=("raymaps",))


class MVAdapterRecipe(DiffusionAdapterRecipe):
    """View-set denoising recipe (see the module docstring). `batch_size` counts objects.

    Args:
        pipe, config, data_source, resolutions, batch_size, adapter_name, seed: as `DiffusionAdapterRecipe`
            (the source's `load` returns view sets, e.g. `MultiViewSource`).
        caption_dropout (`float`): probability of training an object on the empty prompt (official: 0.1).
        condition_dropout (`float`): probability of zeroing an object's camera maps and prompt (official: 0.1).
        reference_dropout (`float`): with `use_ref`, probability of a zero reference for an object (official: 0.1).
            The reference is each object's first view, cached by a clean pass of the frozen UNet at t=0.
    """

    config_cls = MVAdapterConfig

    def __init__(
        self,
        *args: Any,
        adapter_name: str = "mv_adapter",
        caption_dropout: float = 0.1,
        condition_dropout: float = 0.1,
        reference_dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= condition_dropout <= 1.0:
            raise BadInputError(f"condition_dropout must be in [0, 1], got {condition_dropout!r}")
        super().__init__(*args, adapter_name=adapter_name, caption_dropout=caption_dropout, **kwargs)
        self.collate = collate_view_sets
        self.condition_dropout = float(condition_dropout)
        self.has_encoder = self.config.condition_channels > 0
        self.use_ref = bool(self.config.use_ref)
        self.reference_dropout = float(reference_dropout)

    def loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        views = int(batch["num_views"])
        pixels, raymaps = batch["pixel_values"], batch["raymaps"]
        captions = list(batch["captions"])
        objects = len(captions)
        drop_cond = self.shard.rand(objects, self.generator) < self.condition_dropout
        drop_text = (self.shard.rand(objects, self.generator) < self.caption_dropout) | drop_cond
        captions = ["" if d else c for c, d in zip(captions, drop_text.tolist())]
        latents, cond = self.encode(pixels, captions)
        cond = {k: _repeat_views(v, views) for k, v in cond.items()}
        noise, timesteps = self.sample_noise(latents, objects)
        timesteps = timesteps.repeat_interleave(views).to(latents.device)  # one timestep per object
        noisy, target = self.noisy_and_target(latents, noise, timesteps)
        condition = None
        if self.has_encoder:
            keep = (~drop_cond).repeat_interleave(views).to(raymaps.dtype)[:, None, None, None]
            condition = (raymaps * keep).to(self.device)
        reference = self._reference_cache(latents, cond, views) if self.use_ref else None
        with multiview_state(self.pipe, num_views=views, condition=condition, reference=reference):
            prediction = self._unet(noisy, timesteps, **cond, return_dict=False)[0]
        return F.mse_loss(prediction.float(), target.float())

    def _reference_cache(self, latents: torch.Tensor, cond: dict[str, Any], views: int) -> dict[str, torch.Tensor]:
        """Clean pass (t=0, frozen UNet) on each object's first view; dropped references become zeros."""
        objects = latents.shape[0] // views
        first = torch.arange(objects, device=latents.device) * views
        ref_cond = {k: _select(v, first) for k, v in cond.items()}
        cache = record_reference(self.pipe, latents[first], **ref_cond)
        drop = self.shard.rand(objects, self.generator) < self.reference_dropout
        keep = (~drop).to(latents.dtype).to(latents.device)[:, None, None]
        return {k: v * keep.to(v.dtype) for k, v in cache.items()}

    def validate(self, step: int, output_dir: str) -> list[str]:
        """One view set per validation prompt at the first resolution (fixed seed) into `validation/step-N.png`."""
        from vadapters.pipelines.multiview import MultiViewPipeline

        pipe = MultiViewPipeline(
            **{k: v for k, v in self.pipe.components.items() if k != "image_encoder"}, requires_safety_checker=False
        )
        pipe.set_progress_bar_config(disable=True)
        height, width = self.resolutions[0]
        cameras = self.source.objects.cameras if hasattr(self.source, "objects") else None
        rows = []
        with torch.no_grad():
            for prompt in self.validation_prompts:
                generator = torch.Generator("cpu").manual_seed(self.seed)
                kwargs = {"cameras": cameras} if cameras is not None and self.has_encoder else {}
                out = pipe(
                    prompt,
                    num_views=len(cameras) if cameras else None,
                    height=height,
                    width=width,
                    generator=generator,
                    output_type="np",
                    **kwargs,
                    **self.validation_kwargs,
                )
                rows.append([(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in out.images])
        return [write_validation_grid(rows, output_dir, step)]


def _select(value: Any, index: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, dict):
        return {k: _select(v, index) for k, v in value.items()}
    return value


def _repeat_views(value: Any, views: int) -> Any:
    if isinstance(value, torch.Tensor):
        return value.repeat_interleave(views, dim=0)
    if isinstance(value, dict):
        return {k: _repeat_views(v, views) for k, v in value.items()}
    return value


def build(
    inputs: RecipeInputs,
    *,
    num_items: int = 200,
    num_views: int = 6,
    elevation: float = 0.0,
    resolutions: Any = "16",
    caption_dropout: float = 0.1,
    condition_dropout: float = 0.1,
    reference_dropout: float = 0.1,
) -> MVAdapterRecipe:
    """An MV-Adapter recipe on view sets of the synthetic 3D objects (`inputs.data`: None or a `MultiViewSource`-like
    object). `config_overrides` go to `MVAdapterConfig` (`num_views` is set from `num_views`; camera maps feed a
    condition encoder unless `condition_channels=0`). The official recipe is AdamW 5e-5 with a linear warm-up
    (`lr_warmup_steps`) and gradient clipping."""
    overrides = {"condition_channels": 6, **inputs.config_overrides, "num_views": int(num_views)}
    MVAdapterConfig.from_overrides(overrides)  # refuse typos before loading a model
    pipe, _ = load_training_pipeline(inputs.base)  # inject records its base name and fits the encoder to its VAE
    config = MVAdapterConfig.from_overrides(overrides)
    source = inputs.data if inputs.data is not None else MultiViewSource(num_items, inputs.seed, num_views, elevation)
    dropout = {"caption": caption_dropout, "condition": condition_dropout, "reference": reference_dropout}
    options = {f"{k}_dropout": v for k, v in dropout.items()}
    return MVAdapterRecipe.from_inputs(pipe, config, source, resolutions, inputs, **options)


register_recipe("mv_adapter", build, learning_rate=5e-5, batch_size=2)
