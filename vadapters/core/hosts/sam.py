"""Seams of segment-anything's `Sam`: the ViT encoder's NHWC blocks.

Trap: `Sam.forward` and `SamPredictor` run under `torch.no_grad()`; training code must call
`image_encoder`, `prompt_encoder` and `mask_decoder` directly.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def is_sam(module: Any) -> bool:
    return (
        isinstance(module, nn.Module)
        and hasattr(module, "image_encoder")
        and hasattr(module, "prompt_encoder")
        and hasattr(module, "mask_decoder")
    )


def sam_signature(sam: nn.Module) -> dict[str, Any]:
    enc = sam.image_encoder
    return {
        "class": type(sam).__name__,
        "img_size": getattr(enc, "img_size", None),
        "embed_dim": enc.patch_embed.proj.out_channels if hasattr(enc, "patch_embed") else None,
        "depth": len(enc.blocks) if hasattr(enc, "blocks") else None,
    }


def encoder_blocks(sam: nn.Module) -> nn.ModuleList:
    """The encoder's blocks; each takes and returns NHWC tokens `(B, H, W, C)`."""
    return sam.image_encoder.blocks
