"""Text-to-multiview generation with MV-Adapter on a Stable Diffusion pipeline.

`MultiViewPipeline` subclasses `diffusers.StableDiffusionPipeline`: it sets MV-Adapter's per-call state (number
of views, scales, camera condition) on the UNet's processors and calls the parent `__call__`, so every diffusers
convention holds (`generator`, `output_type`, callbacks, `num_images_per_prompt`, schedulers, LoRA, IP-Adapter).
Each prompt gives `num_images_per_prompt` objects of `num_views` views; `images` is flat and view-major per
object: `[obj0 view0, obj0 view1, ..., obj1 view0, ...]`. The condition encoder lives on the UNet, so `pipe.to()`
moves it.

Example:
    >>> import vadapters
    >>> from vadapters.models import tiny_sd_pipeline
    >>> from vadapters.methods.mv_adapter import MVAdapterConfig
    >>> from vadapters.pipelines.multiview import MultiViewPipeline
    >>> pipe = MultiViewPipeline.from_pipe(tiny_sd_pipeline())
    >>> _ = vadapters.inject(pipe, MVAdapterConfig(num_views=4, condition_channels=6, condition_downscale_factor=2))
    >>> out = pipe("a red box", azimuths=[0, 90, 180, 270], height=16, width=16, num_inference_steps=2,
    ...            output_type="np")
    >>> out.images.shape
    (4, 16, 16, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from vadapters.errors import AdapterStateError, BadInputError, IncompatibleBaseError
from vadapters.methods.mv_adapter.cameras import camera_maps, orbit_cameras
from vadapters.methods.mv_adapter.condition import ENCODER_ATTRIBUTE, MVConditionEncoder
from vadapters.methods.mv_adapter.config import fitting_downscale_factor
from vadapters.methods.mv_adapter.model import (
    RUNTIME_ATTRIBUTE,
    camera_convention,
    multiview_state,
    mv_processors,
    record_reference,
)

__all__ = ["MultiViewPipeline", "MultiViewXLPipeline"]


class _MultiViewMixin:
    """The multi-view call shared by the SD and SDXL pipelines (put before the diffusers class in the bases)."""

    def _runtime(self):
        runtime = getattr(self.unet, RUNTIME_ATTRIBUTE, None)
        if runtime is None:
            raise AdapterStateError(
                "MultiViewPipeline needs an MV-Adapter on its UNet: vadapters.load(pipe, path) or "
                "vadapters.inject(pipe, MVAdapterConfig(...)) first"
            )
        return runtime

    def enable_xformers_memory_efficient_attention(self, attention_op: Any = None) -> None:
        """Refused while an MV-Adapter is loaded: diffusers would replace (drop) its attention processors."""
        if mv_processors(self.unet):
            raise AdapterStateError(
                "enable_xformers_memory_efficient_attention() would replace MV-Adapter's attention processors and "
                "silently drop the adapter. MV-Adapter already wraps the processor you had (set xformers before "
                "loading the adapter, or unload it first)."
            )
        super().enable_xformers_memory_efficient_attention(attention_op)

    def camera_condition(
        self,
        height: int,
        width: int,
        azimuths: Sequence[float] | None = None,
        elevations: float | Sequence[float] = 0.0,
        cameras: Sequence[Any] | None = None,
        convention: str | None = None,
    ) -> torch.Tensor:
        """Camera maps `[num_views, 6, height, width]` for an orbit rig (orthographic) or explicit cameras.

        `convention` (default: the loaded adapter's `camera_convention`) is the world frame of the code:
        `"official"` for the released MV-Adapter checkpoints (z-up, azimuth - 90), `"vadapters"` (y-up) for
        adapters trained with vadapters. Azimuths and elevations mean the same views in both.
        """
        if cameras is None:
            if azimuths is None:
                raise BadInputError("pass azimuths=[...] (with elevations) or cameras=[...] for the camera condition")
            cameras = orbit_cameras(azimuths, elevations)
        return camera_maps(cameras, height, width, convention or camera_convention(self))

    @torch.no_grad()
    def _reference_cache(self, prompt: Any, image: torch.Tensor, objects: int, guidance_scale: float) -> dict:
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != 3:
            raise BadInputError(f"reference_image must be [1, 3, H, W] in [0, 1], got {tuple(image.shape)}")
        device = self._execution_device
        vae = self.vae
        pixels = (image.to(device, vae.dtype) * 2.0 - 1.0).clamp(-1, 1)
        latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        text = prompt[0] if isinstance(prompt, list) else (prompt or "")
        cache = record_reference(self, latents, **self._reference_text(text, device, latents.dtype, image.shape[-2:]))
        cache = {k: v.expand(objects, -1, -1) for k, v in cache.items()}
        if guidance_scale > 1.0 and self.unet.config.time_cond_proj_dim is None:
            cache = {k: torch.cat([torch.zeros_like(v), v]) for k, v in cache.items()}
        return cache

    def _check_condition_encoders(self) -> None:
        """Refuse an active condition encoder whose downscale does not fit this pipeline's VAE (its features would
        not have the UNet's sizes)."""
        holder = getattr(self.unet, ENCODER_ATTRIBUTE)
        for name, _ in holder.effective_adapters():
            config = holder.cond_encoder[name].config
            fits = fitting_downscale_factor(config.adapter_type, self.vae_scale_factor)
            if config.downscale_factor != fits:
                raise IncompatibleBaseError(
                    f"MV-Adapter {name!r}: its condition encoder downscales images by {config.downscale_factor} "
                    f"(condition_downscale_factor), but this pipeline's VAE downscales by {self.vae_scale_factor}, "
                    f"so its features cannot fit the UNet: it needs condition_downscale_factor={fits}. Inject it "
                    "into the pipeline (the default follows its VAE) or train it on a base with this VAE."
                )

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        *,
        num_views: int | None = None,
        azimuths: Sequence[float] | None = None,
        elevations: float | Sequence[float] = 0.0,
        cameras: Sequence[Any] | None = None,
        control_image: torch.Tensor | None = None,
        control_conditioning_scale: float = 1.0,
        mv_scale: float = 1.0,
        reference_image: torch.Tensor | None = None,
        reference_conditioning_scale: float = 1.0,
        num_images_per_prompt: int = 1,
        height: int | None = None,
        width: int | None = None,
        **kwargs: Any,
    ):
        """Generate `num_images_per_prompt` view sets per prompt; other keyword arguments go to diffusers.

        Args:
            num_views: views per object (default: the number of cameras / azimuths, else the adapter's default).
            azimuths, elevations, cameras: the camera rig for the condition encoder (orbit rig of orthographic
                cameras, or explicit `OrthoCamera` / `PerspectiveCamera` objects).
            control_image: precomputed condition maps `[num_views, C, height, width]` (replaces the cameras).
            control_conditioning_scale: scale of the condition encoder's features.
            mv_scale: scale of the multi-view attention branch (0 = views generated independently).
            reference_image: image-to-multiview (adapters with `use_ref`): one image `[1, 3, H, W]` in [0, 1];
                its clean features (frozen UNet at t=0) are attended to by every view; the unconditional half
                of classifier-free guidance gets zeros, as upstream.
            reference_conditioning_scale: scale of the reference branch.
        """
        runtime = self._runtime()
        default = (getattr(self, "default_sample_size", None) or self.unet.config.sample_size) * self.vae_scale_factor
        height, width = height or default, width or default
        rig = cameras if cameras is not None else azimuths
        views = num_views or (len(rig) if rig is not None else runtime.num_views)
        condition = control_image
        has_encoder = isinstance(getattr(self.unet, ENCODER_ATTRIBUTE, None), MVConditionEncoder)
        if has_encoder:
            self._check_condition_encoders()
        if condition is None and has_encoder and rig is not None:
            condition = self.camera_condition(height, width, azimuths, elevations, cameras)
        if condition is not None and condition.shape[0] != views:
            raise BadInputError(f"got {condition.shape[0]} condition maps for {views} views; pass one per view")
        if has_encoder and condition is None:
            raise BadInputError(
                "this MV-Adapter has a camera encoder: pass azimuths=..., cameras=... or control_image"
            )
        reference = None
        if reference_image is not None:
            objects = (len(prompt) if isinstance(prompt, list) else 1) * num_images_per_prompt
            reference = self._reference_cache(prompt, reference_image, objects, kwargs.get("guidance_scale", 7.5))
        with multiview_state(
            self, num_views=views, mv_scale=mv_scale, condition=condition, condition_scale=control_conditioning_scale,
            reference=reference, ref_scale=reference_conditioning_scale,
        ):  # fmt: skip
            return super().__call__(
                prompt, num_images_per_prompt=num_images_per_prompt * views, height=height, width=width, **kwargs
            )


class MultiViewPipeline(_MultiViewMixin, StableDiffusionPipeline):
    """Stable Diffusion (1.x / 2.x) text- and image-to-multiview with an MV-Adapter on `unet` (inject it or
    `vadapters.load` it first). Build it from any SD pipeline with `MultiViewPipeline.from_pipe(pipe)` or
    `MultiViewPipeline(**pipe.components)`."""

    def _reference_text(self, text: str, device: Any, dtype: torch.dtype, size: Any) -> dict[str, Any]:
        embeds, _ = self.encode_prompt(text, device, 1, False)
        return {"encoder_hidden_states": embeds.to(dtype)}


class MultiViewXLPipeline(_MultiViewMixin, StableDiffusionXLPipeline):
    """SDXL text- and image-to-multiview with an MV-Adapter on `unet` (the official models are SDXL at 768 px).

    Example:
        >>> import vadapters
        >>> from vadapters.models import tiny_sdxl_pipeline
        >>> from vadapters.methods.mv_adapter import MVAdapterConfig
        >>> pipe = MultiViewXLPipeline(**tiny_sdxl_pipeline().components)
        >>> _ = vadapters.inject(pipe, MVAdapterConfig(num_views=2, use_ref=True))
        >>> out = pipe("a cat", num_views=2, height=32, width=32, num_inference_steps=2, output_type="np",
        ...            reference_image=torch.rand(1, 3, 32, 32))
        >>> out.images.shape
        (2, 32, 32, 3)
    """

    def _reference_text(self, text: str, device: Any, dtype: torch.dtype, size: Any) -> dict[str, Any]:
        embeds, _, pooled, _ = self.encode_prompt(text, device=device, do_classifier_free_guidance=False)
        projection = self.text_encoder_2.config.projection_dim if self.text_encoder_2 is not None else None
        size = tuple(int(v) for v in size)
        time_ids = self._get_add_time_ids(size, (0, 0), size, dtype=dtype, text_encoder_projection_dim=projection)
        return {
            "encoder_hidden_states": embeds.to(dtype),
            "added_cond_kwargs": {"text_embeds": pooled.to(device, dtype), "time_ids": time_ids.to(device)},
        }
