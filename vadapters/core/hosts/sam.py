"""Seams of segment-anything's `Sam`: the ViT encoder's NHWC blocks, SAM's pre-processing and prompt-free decoding.

Loading a SAM is not the host's job: `vadapters.models.load_sam` builds one; this module only reads seams of the
model it is handed.

Trap: `Sam.forward` and `SamPredictor` run under `torch.no_grad()`; training code must call
`image_encoder`, `prompt_encoder` and `mask_decoder` directly (as `encode_images` / `decode_masks` do).

Example:
    >>> import torch
    >>> from vadapters.models import tiny_sam
    >>> sam = tiny_sam()
    >>> batch = preprocess_images(sam, [torch.rand(3, 40, 64), torch.rand(3, 64, 30)])
    >>> tuple(batch["pixels"].shape), batch["input_sizes"]
    ((2, 3, 64, 64), [(40, 64), (64, 30)])
    >>> logits = decode_masks(sam, sam.image_encoder(batch["pixels"]))
    >>> tuple(logits.shape)
    (2, 1, 32, 32)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.errors import BadInputError


def is_sam(module: Any) -> bool:
    return (
        isinstance(module, nn.Module)
        and hasattr(module, "image_encoder")
        and hasattr(module, "prompt_encoder")
        and hasattr(module, "mask_decoder")
    )


def unwrapped(module: nn.Module) -> nn.Module:
    """The original module under any adapter wrappers (which keep it as `base_layer`)."""
    while isinstance(getattr(module, "base_layer", None), nn.Module):
        module = module.base_layer
    return module


def sam_signature(sam: nn.Module) -> dict[str, Any]:
    enc = sam.image_encoder
    patch = unwrapped(enc.patch_embed) if hasattr(enc, "patch_embed") else None
    return {
        "class": type(sam).__name__,
        "img_size": getattr(enc, "img_size", None),
        "embed_dim": patch.proj.out_channels if patch is not None else None,
        "depth": len(enc.blocks) if hasattr(enc, "blocks") else None,
    }


def encoder_blocks(sam: nn.Module) -> nn.ModuleList:
    """The encoder's blocks; each takes and returns NHWC tokens `(B, H, W, C)`."""
    return sam.image_encoder.blocks


# ---------------------------------------------------------------------------------------------- pre-processing
def preprocess_images(sam: nn.Module, images: Any) -> dict[str, Any]:
    """Resize (longest side to the encoder size, as `ResizeLongestSide`), normalise and pad a list of images.

    Args:
        images: a list of `[3, H, W]` float tensors in [0, 1] (any sizes), or a `[B, 3, H, W]` tensor.

    Returns:
        `dict` with `pixels` (`[B, 3, S, S]`, normalised and zero-padded, S = `image_encoder.img_size`),
        `input_sizes` (size after resizing, before padding) and `original_sizes`.
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)) or not images:
        raise BadInputError("images must be a non-empty list of [3, H, W] tensors or a [B, 3, H, W] tensor")
    size = sam.image_encoder.img_size
    mean, std = sam.pixel_mean.float(), sam.pixel_std.float()
    out, input_sizes, original_sizes = [], [], []
    for image in images:
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            found = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise BadInputError(f"each image must be a [3, H, W] tensor in [0, 1], got {found}")
        h, w = image.shape[1:]
        scale = size / max(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        resized = F.interpolate(image[None].float(), (nh, nw), mode="bilinear", align_corners=False, antialias=True)
        x = (resized[0].clamp(0, 1) * 255.0 - mean.to(resized.device)) / std.to(resized.device)
        out.append(F.pad(x, (0, size - nw, 0, size - nh)))
        input_sizes.append((nh, nw))
        original_sizes.append((int(h), int(w)))
    return {"pixels": torch.stack(out), "input_sizes": input_sizes, "original_sizes": original_sizes}


def decode_masks(
    sam: nn.Module,
    image_embeddings: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None = None,
    boxes: torch.Tensor | None = None,
    multimask_output: bool = False,
    return_iou: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution mask logits `[B, M, 4h, 4w]` from image embeddings (differentiable: no `no_grad`).

    Without points and boxes this is SAM-Adapter's prompt-free decoding: no sparse prompts, `no_mask_embed` as the
    dense prompt, both with batch 1 so that SAM's decoder broadcasts them over the `B` image embeddings (expanding
    them to `B` would fail inside `MaskDecoder.predict_masks`, which repeats the image embeddings per prompt). With
    points (`(coords [B, N, 2], labels [B, N])`, in input-frame pixels) or boxes (`[B, 4]`), each image is decoded
    with its own prompts through the real prompt encoder. `return_iou=True` also returns SAM's predicted IoUs.
    """
    if points is None and boxes is None:
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        logits, iou = sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        return (logits, iou) if return_iou else logits
    outs, ious = [], []
    for i in range(image_embeddings.shape[0]):
        pts = None if points is None else (points[0][i : i + 1], points[1][i : i + 1])
        box = None if boxes is None else boxes[i : i + 1]
        sparse, dense = sam.prompt_encoder(points=pts, boxes=box, masks=None)
        logits, iou = sam.mask_decoder(
            image_embeddings=image_embeddings[i : i + 1],
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        outs.append(logits)
        ious.append(iou)
    return (torch.cat(outs), torch.cat(ious)) if return_iou else torch.cat(outs)


def upscale_logits(sam: nn.Module, low_res: torch.Tensor, input_size=None, original_size=None) -> torch.Tensor:
    """SAM's `postprocess_masks` without `no_grad`: to the padded encoder size, crop the padding, then resize."""
    size = sam.image_encoder.img_size
    x = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    if input_size is not None:
        x = x[..., : input_size[0], : input_size[1]]
    if original_size is not None:
        x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x
