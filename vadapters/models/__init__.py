"""Offline model builders: tiny hosts of the real library classes and real-size architectures.

Nothing here touches the network. ``tiny`` builds seeded, fp32 CPU hosts (Stable Diffusion, SDXL, AnimateDiff,
SAM, timm) small enough for unit tests; ``real`` builds the published Stable Diffusion 1.5 / SDXL UNets and SAM
on the ``meta`` device (or filled with fast deterministic values) for compatibility tests; ``tokenizer`` makes the
OpenAI CLIP tokenizer from the BPE file bundled with ``open_clip``.

Example:
    >>> from vadapters.models import tiny_sd_pipeline
    >>> pipe = tiny_sd_pipeline(seed=0)
    >>> pipe("a red disc", num_inference_steps=2, height=32, width=32, output_type="np").images.shape
    (1, 32, 32, 3)
"""

from __future__ import annotations

from vadapters.models.defaults import load_default_classifier, load_default_sam, load_sam
from vadapters.models.loading import load_pipeline
from vadapters.models.real import (
    SAM_VARIANTS,
    build_unet,
    fill_deterministic_,
    sam_state_dict_keys,
    sam_vit,
    sam_vit_b,
    sd15_unet_config,
    sdxl_unet_config,
)
from vadapters.models.tiny import (
    make_scheduler,
    seeded,
    tiny_animatediff_pipeline,
    tiny_sam,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
    tiny_sdxl_unet_config,
    tiny_text_encoder,
    tiny_timm_classifier,
    tiny_unet,
    tiny_unet_config,
    tiny_vae,
    tiny_vae_config,
)
from vadapters.models.tokenizer import clip_bpe_files, clip_tokenizer
from vadapters.models.video import animatediff_from_sd, load_animatediff_pipeline, tiny_motion_adapter

__all__ = [
    "SAM_VARIANTS",
    "animatediff_from_sd",
    "build_unet",
    "clip_bpe_files",
    "clip_tokenizer",
    "fill_deterministic_",
    "load_animatediff_pipeline",
    "load_default_classifier",
    "load_default_sam",
    "load_pipeline",
    "load_sam",
    "make_scheduler",
    "sam_state_dict_keys",
    "sam_vit",
    "sam_vit_b",
    "sd15_unet_config",
    "sdxl_unet_config",
    "seeded",
    "tiny_animatediff_pipeline",
    "tiny_motion_adapter",
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
