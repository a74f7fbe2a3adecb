"""`vadapters train-base tiny-sdxl`: a tiny SDXL-architecture model trained on the scenes tiny-sd learnt.

What: a real diffusers `StableDiffusionXLPipeline` of the tiny SDXL architecture (`tiny_sdxl_unet_config`: two
text encoders, `text_time` added conditioning) whose UNet and both text encoders are trained with the denoising
loss on `TINY_SD_SCENES`, through the same `DiffusionAdapterRecipe(pipe, None, ...)` base path as tiny-sd.

Why this start: the trained tiny-sd's VAE uses the same `tiny_vae` config, so its latent space is reused frozen
(no VAE stage), and its trained CLIP text encoder (width 32) becomes SDXL's first encoder; the second encoder
(`CLIPTextModelWithProjection`, width 32, projection 32) starts fresh. 32 + 32 is the UNet's
`cross_attention_dim` (64) and the projection feeds `text_embeds`, as checked in `_load_sd`.

Example:
    >>> from vadapters.train.base_sdxl import train_tiny_sdxl
    >>> summary = train_tiny_sdxl("outputs/train-base/tiny-sdxl", unet_steps=6000)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from typing import Any

from vadapters.errors import BadInputError

__all__ = ["train_tiny_sdxl"]


def _load_sd(sd: Any) -> tuple[Any, str]:
    """The tiny-sd pipeline at `sd` (`None`: the embedded `weights/tiny-sd`), with a clear error if unusable."""
    from vadapters.models.loading import load_pipeline
    from vadapters.models.video import sd_folder

    sd_dir = sd_folder(sd, "--sd")
    pipe = load_pipeline(sd_dir)
    if any(getattr(pipe, n, None) is None for n in ("vae", "text_encoder", "tokenizer")) or hasattr(
        pipe, "text_encoder_2"
    ):
        raise BadInputError(f"{sd_dir!r} holds a {type(pipe).__name__}; --sd needs a tiny-sd StableDiffusionPipeline")
    return pipe, sd_dir


def _check_shapes(pipe: Any) -> None:
    """The borrowed VAE and first encoder must fit the tiny SDXL UNet; raises `BadInputError` naming the mismatch."""
    unet, te1, te2 = pipe.unet.config, pipe.text_encoder.config, pipe.text_encoder_2.config
    problems = [
        f"{what}: {got} != {want}"
        for what, got, want in (
            ("VAE latent channels vs UNet in_channels", pipe.vae.config.latent_channels, unet.in_channels),
            (
                "text encoder widths (tiny-sd + fresh) vs UNet cross_attention_dim",
                te1.hidden_size + te2.hidden_size,
                unet.cross_attention_dim,
            ),
            (
                "6 x addition_time_embed_dim + projection_dim vs UNet projection input",
                6 * unet.addition_time_embed_dim + te2.projection_dim,
                unet.projection_class_embeddings_input_dim,
            ),
            ("tiny-sd text encoder vocabulary vs tokenizer", te1.vocab_size, len(pipe.tokenizer)),
        )
        if got != want
    ]
    if problems:
        raise BadInputError("the --sd pipeline does not fit the tiny SDXL architecture: " + "; ".join(problems))


def train_tiny_sdxl(
    output_dir: str,
    *,
    sd: Any = None,
    unet_steps: int = 6000,
    batch_size: int = 32,
    resolution: int = 32,
    learning_rate: float = 6e-4,
    num_items: int = 50000,
    seed: int = 0,
    checkpoint_every: int = 250,
    validate_every: int = 0,
    scene_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train tiny-sdxl's UNet and both text encoders on top of tiny-sd's frozen VAE; resumable (re-run the call).

    Args:
        output_dir: run folder: `checkpoints/`, `train_log.jsonl`, and the final `pipeline/` (DDIM sampling).
        sd: trained tiny-sd pipeline folder giving the VAE, tokenizer and first text encoder (default
            `weights/tiny-sd`).
        scene_options: `ShapeScenes` options of the training data (default `TINY_SD_SCENES`).

    Returns:
        A summary: `pipeline` path, `sd` folder, `resumed_from`, the Trainer's summary under `unet`, `seconds`.
    """
    from vadapters.models import tiny_sdxl_pipeline
    from vadapters.train.base import TINY_SD_SCENES, scene_source, train_denoiser

    sizes = {"unet_steps": unet_steps, "batch_size": batch_size, "resolution": resolution, "num_items": num_items}
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise BadInputError(f"{name} must be a positive int, got {value!r}")
    start = time.time()
    output_dir = os.fspath(output_dir)
    sd_pipe, sd_dir = _load_sd(sd)
    scene_options = dict(TINY_SD_SCENES if scene_options is None else scene_options)
    source = scene_source(num_items, seed, **scene_options)

    pipe = tiny_sdxl_pipeline(seed=seed, scheduler="ddpm")
    pipe.vae, pipe.text_encoder = sd_pipe.vae, sd_pipe.text_encoder
    pipe.tokenizer = pipe.tokenizer_2 = sd_pipe.tokenizer
    _check_shapes(pipe)
    # Training drops captions to "": classifier-free guidance must encode "" too, not use zero embeddings.
    pipe.register_to_config(force_zeros_for_empty_prompt=False)
    summary, recipe = train_denoiser(
        pipe, source, output_dir, steps=unet_steps, batch_size=batch_size, resolution=resolution,
        learning_rate=learning_rate, seed=seed, checkpoint_every=checkpoint_every, validate_every=validate_every,
        sample_scheduler="ddim",
    )  # fmt: skip  # ends with the recipe's `save_pipeline_atomically` to pipeline/
    return {
        "pipeline": os.path.join(output_dir, "pipeline"),
        "sd": os.path.abspath(sd_dir),
        "resumed_from": summary["resumed_from"],
        "scene_options": scene_options,
        "trainable_parameters": sum(p.numel() for p in recipe.trainable_parameters()),
        "unet": summary,
        "seconds": round(time.time() - start, 1),
    }
