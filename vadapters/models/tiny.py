"""Tiny, deterministic, offline hosts built from the real library classes (diffusers, transformers, SAM, timm).

Every builder takes a ``seed``, initialises its weights under a forked torch RNG (the caller's global RNG state is
left untouched) and returns an fp32 CPU model in the library's own class, so code written against the real hosts
runs unchanged on these in milliseconds to seconds.

Example:
    >>> from vadapters.models.tiny import tiny_sd_pipeline
    >>> pipe = tiny_sd_pipeline(seed=0)
    >>> image = pipe("a red disc", num_inference_steps=2, height=32, width=48, output_type="np").images[0]
    >>> image.shape
    (32, 48, 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from vadapters.models.tokenizer import CLIP_BOS_ID, CLIP_EOS_ID, CLIP_VOCAB_SIZE, clip_tokenizer

__all__ = [
    "make_scheduler",
    "seeded",
    "tiny_animatediff_pipeline",
    "tiny_sam",
    "tiny_sd_pipeline",
    "tiny_sdxl_pipeline",
    "tiny_sdxl_unet_config",
    "tiny_text_encoder",
    "tiny_timm_classifier",
    "tiny_unet",
    "tiny_unet_config",
    "tiny_vae",
    "tiny_vae_config",
]

SCHEDULERS = ("ddim", "ddpm", "euler")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the CPU torch RNG seeded to ``seed``, restoring the caller's RNG state afterwards.

    Args:
        seed: The seed for everything drawn inside the block.

    Example:
        >>> with seeded(0):
        ...     a = torch.randn(2)
        >>> with seeded(0):
        ...     b = torch.randn(2)
        >>> bool((a == b).all())
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _finish(module: torch.nn.Module) -> torch.nn.Module:
    """Put ``module`` in eval mode, checking it is the fp32 CPU model every builder promises."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.device.type != "cpu" or (tensor.is_floating_point() and tensor.dtype != torch.float32):
            raise RuntimeError(f"{type(module).__name__} built with a {tensor.dtype} tensor on {tensor.device}")
    return module.eval()


_LATENT_IO = {"sample_size": 16, "in_channels": 4, "out_channels": 4}


def tiny_unet_config() -> dict[str, Any]:
    """Return the config of the tiny SD-style UNet: three levels, two downsamplers and two upsamplers (like SDXL).

    Example:
        >>> tiny_unet_config()["block_out_channels"]
        (32, 64, 64)
    """
    return {
        **_LATENT_IO,
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "cross_attention_dim": 32,
        "attention_head_dim": 8,
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    }


def tiny_sdxl_unet_config() -> dict[str, Any]:
    """Return the config of the tiny SDXL-style UNet (``text_time`` added conditioning, two text encoders).

    ``projection_class_embeddings_input_dim`` is ``6 * addition_time_embed_dim`` (original size, crop, target size)
    plus the projection width of the second text encoder (32); ``cross_attention_dim`` is 32 + 32.

    Example:
        >>> tiny_sdxl_unet_config()["projection_class_embeddings_input_dim"]
        80
    """
    return {
        **_LATENT_IO,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "attention_head_dim": (2, 4),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": 1,
        "use_linear_projection": True,
        "cross_attention_dim": 64,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + 32,
    }


_ANIMATEDIFF_UNET = {
    **_LATENT_IO,
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "norm_num_groups": 2,
    "cross_attention_dim": 32,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
}


def tiny_vae_config() -> dict[str, Any]:
    """Return the config of the tiny ``AutoencoderKL`` (two blocks, so ``vae_scale_factor`` is 2).

    Example:
        >>> tiny_vae_config()["latent_channels"]
        4
    """
    return {
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (32, 64),
        "down_block_types": ("DownEncoderBlock2D",) * 2,
        "up_block_types": ("UpDecoderBlock2D",) * 2,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 32,
    }


def tiny_unet(config: dict[str, Any] | None = None, seed: int = 0):
    """Build a ``diffusers.UNet2DConditionModel`` from ``config`` (default :func:`tiny_unet_config`).

    Args:
        config: UNet config; any of the ``tiny_*_config`` dicts.
        seed: Weight-initialisation seed.

    Example:
        >>> tiny_unet().config.cross_attention_dim
        32
    """
    from diffusers import UNet2DConditionModel

    with seeded(seed):
        return _finish(UNet2DConditionModel(**(config or tiny_unet_config())))


def tiny_vae(seed: int = 0):
    """Build the tiny ``diffusers.AutoencoderKL`` of :func:`tiny_vae_config`.

    Args:
        seed: Weight-initialisation seed.

    Example:
        >>> tiny_vae().config.latent_channels
        4
    """
    from diffusers import AutoencoderKL

    with seeded(seed):
        return _finish(AutoencoderKL(**tiny_vae_config()))


def tiny_text_encoder(seed: int = 0, with_projection: bool = False):
    """Build a 2-layer, width-32 CLIP text encoder with the full CLIP vocabulary (49408 tokens).

    Args:
        seed: Weight-initialisation seed.
        with_projection: Return ``CLIPTextModelWithProjection`` (SDXL's second encoder) instead of ``CLIPTextModel``.

    Example:
        >>> tiny_text_encoder().config.hidden_size
        32
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=CLIP_BOS_ID,
        eos_token_id=CLIP_EOS_ID,
        pad_token_id=CLIP_EOS_ID,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    with seeded(seed):
        return _finish(cls(config))


def make_scheduler(name: str = "ddim"):
    """Return a fresh Stable-Diffusion-style scheduler (scaled-linear betas 0.00085..0.012, 1000 steps).

    Args:
        name: ``"ddim"``, ``"ddpm"`` or ``"euler"``.

    Example:
        >>> type(make_scheduler("euler")).__name__
        'EulerDiscreteScheduler'
    """
    from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler

    common = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, steps_offset=1)
    if name == "euler":
        return EulerDiscreteScheduler(**common, steps_offset=1)
    raise ValueError(f"unknown scheduler {name!r}; expected one of {SCHEDULERS}")


def tiny_sd_pipeline(seed: int = 0, scheduler: str = "ddim"):
    """Build a tiny, real ``diffusers.StableDiffusionPipeline`` (UNet of :func:`tiny_unet_config`).

    ``vae_scale_factor`` is 2 and the UNet downsamples twice, so height and width must be multiples of 8.

    Args:
        seed: Weight-initialisation seed (the UNet, VAE and text encoder get ``seed``, ``seed + 1``, ``seed + 2``).
        scheduler: ``"ddim"``, ``"ddpm"`` or ``"euler"``.

    Example:
        >>> pipe = tiny_sd_pipeline()
        >>> pipe("a red disc", num_inference_steps=2, height=24, width=40, output_type="np").images.shape
        (1, 24, 40, 3)
    """
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=tiny_vae(seed + 1),
        text_encoder=tiny_text_encoder(seed + 2),
        tokenizer=clip_tokenizer(),
        unet=tiny_unet(tiny_unet_config(), seed),
        scheduler=make_scheduler(scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(seed: int = 0, scheduler: str = "ddim"):
    """Build a tiny, real ``diffusers.StableDiffusionXLPipeline`` with two text encoders and two tokenizers.

    Args:
        seed: Weight-initialisation seed.
        scheduler: ``"ddim"``, ``"ddpm"`` or ``"euler"``.

    Example:
        >>> pipe = tiny_sdxl_pipeline()
        >>> pipe("a cat", num_inference_steps=2, height=32, width=32, output_type="np").images.shape
        (1, 32, 32, 3)
    """
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=tiny_vae(seed + 1),
        text_encoder=tiny_text_encoder(seed + 2),
        text_encoder_2=tiny_text_encoder(seed + 3, with_projection=True),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=tiny_unet(tiny_sdxl_unet_config(), seed),
        scheduler=make_scheduler(scheduler),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_animatediff_pipeline(seed: int = 0):
    """Build a tiny, real ``diffusers.AnimateDiffPipeline`` (UNet + ``MotionAdapter``, DDIM with linear betas).

    Args:
        seed: Weight-initialisation seed.

    Example:
        >>> pipe = tiny_animatediff_pipeline()
        >>> out = pipe("a cat", num_frames=4, num_inference_steps=2, height=32, width=32, output_type="np")
        >>> out.frames.shape
        (1, 4, 32, 32, 3)
    """
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    with seeded(seed + 3):
        adapter = MotionAdapter(
            block_out_channels=(32, 64),
            motion_layers_per_block=2,
            motion_norm_num_groups=2,
            motion_num_attention_heads=4,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, steps_offset=1
    )
    with seeded(seed + 4):  # the motion modules are created inside the pipeline's constructor
        pipe = AnimateDiffPipeline(
            vae=tiny_vae(seed + 1),
            text_encoder=tiny_text_encoder(seed + 2),
            tokenizer=clip_tokenizer(),
            unet=tiny_unet(dict(_ANIMATEDIFF_UNET), seed),
            motion_adapter=_finish(adapter),
            scheduler=scheduler,
            feature_extractor=None,
            image_encoder=None,
        )
    _finish(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sam(
    seed: int = 0,
    img_size: int = 64,
    patch_size: int = 8,
    embed_dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    window_size: int = 4,
    global_attn_indexes: tuple[int, ...] = (1,),
    prompt_dim: int = 32,
):
    """Build a tiny, real ``segment_anything.modeling.Sam`` (by default a 2-block ViT encoder, width 32).

    Args:
        seed: Weight-initialisation seed.
        img_size: Side of the square encoder input; images are resized so their long side equals it.
        patch_size: ViT patch size; ``img_size`` must be a multiple of it.
        embed_dim, depth, num_heads, window_size, global_attn_indexes: the ViT encoder's shape.
        prompt_dim: width of the neck output, prompt encoder and mask decoder (SAM: 256).

    Example:
        >>> sam = tiny_sam()
        >>> sam.image_encoder.img_size, len(sam.image_encoder.blocks)
        (64, 2)
    """
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if img_size % patch_size:
        raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
    grid = img_size // patch_size
    with seeded(seed):
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=img_size,
                patch_size=patch_size,
                embed_dim=embed_dim,
                depth=depth,
                num_heads=num_heads,
                mlp_ratio=4,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                qkv_bias=True,
                use_rel_pos=True,
                window_size=window_size,
                global_attn_indexes=tuple(global_attn_indexes),
                out_chans=prompt_dim,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=prompt_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(img_size, img_size),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoder(
                transformer_dim=prompt_dim,
                transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2 * prompt_dim, num_heads=2),
                num_multimask_outputs=3,
                iou_head_depth=2,
                iou_head_hidden_dim=prompt_dim,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
        # SAM zero-initialises its absolute and relative position tables; give them values so they matter.
        for name, param in sam.image_encoder.named_parameters():
            if name == "pos_embed" or name.endswith(("rel_pos_h", "rel_pos_w")):
                torch.nn.init.normal_(param, std=0.02)
    return _finish(sam)


def tiny_timm_classifier(name: str = "test_vit", num_classes: int = 10, img_size: int = 32, seed: int = 0, **kwargs):
    """Build one of timm's ``test_*`` models (random init, never pretrained).

    Args:
        name: A timm model name; ``test_vit`` gets ``patch_size=4`` unless given.
        num_classes: Classifier width.
        img_size: Input side for models that take one; dropped for those that do not (``test_resnet``).
        seed: Weight-initialisation seed.
        **kwargs: Passed on to ``timm.create_model``.

    Example:
        >>> model = tiny_timm_classifier("test_vit")
        >>> model(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    import timm

    if name == "test_vit":
        kwargs.setdefault("patch_size", 4)
    with seeded(seed):
        try:
            model = timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=img_size, **kwargs)
        except TypeError as err:  # convolutional nets (test_resnet, ...) take no img_size
            if "img_size" not in str(err):
                raise
            torch.manual_seed(seed)
            model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    return _finish(model)
