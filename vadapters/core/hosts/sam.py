"""Seams of segment-anything's `Sam`: the ViT encoder's NHWC blocks, SAM's pre-processing and prompt-free decoding.

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

import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.errors import BadInputError, CheckpointError


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


# ------------------------------------------------------------------------------------------------------ loading
def _default_sam() -> nn.Module:
    import vadapters.models as models

    loader = getattr(models, "load_default_sam", None)
    if loader is not None:
        try:
            return loader()
        except CheckpointError as exc:
            if "no embedded default named" not in str(exc):
                raise  # present but edited or truncated: never fall back silently
            warnings.warn(f"{exc}; using the random-init tiny SAM instead", stacklevel=3)
    return models.tiny_sam()


def _variant_from_state_dict(state: dict[str, torch.Tensor]) -> str:
    width = state["image_encoder.patch_embed.proj.weight"].shape[0]
    variants = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
    if width not in variants:
        raise CheckpointError(f"SAM checkpoint has encoder width {width}; expected 768 (ViT-B), 1024 (L) or 1280 (H)")
    return variants[width]


def load_sam(sam: Any = None, device: str | torch.device | None = None) -> nn.Module:
    """A segment-anything `Sam` from what a user has: `None` (the embedded tiny default), an official
    `sam_vit_{b,l,h}_*.pth` checkpoint (built with segment-anything's own builders, read with
    `torch.load(weights_only=True)`), a `.safetensors` file of the same keys, or a `Sam` object (returned as is).

    Args:
        sam: see above.
        device: where to put the model (default: leave it where it is / CPU).

    Example:
        >>> type(load_sam()).__name__
        'Sam'
    """
    if sam is None:
        model = _default_sam()
    elif is_sam(sam):
        model = sam
    elif isinstance(sam, (str, os.PathLike)):
        path = os.fspath(sam)
        if not os.path.isfile(path):
            raise CheckpointError(f"SAM checkpoint not found: {path!r} (hub downloads are not possible here)")
        if path.endswith(".safetensors"):
            from vadapters.core.io import load_tensors

            state, _ = load_tensors(path)
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - report any unpickling refusal clearly
                raise CheckpointError(
                    f"{path!r} is not a plain SAM state dict (weights_only load failed: {exc})"
                ) from exc
        if not isinstance(state, dict) or "image_encoder.patch_embed.proj.weight" not in state:
            raise CheckpointError(
                f"{path!r} is not a segment-anything checkpoint (no 'image_encoder.patch_embed.proj.weight' key); "
                "expected sam_vit_b/l/h .pth files as released by Meta"
            )
        from vadapters.models import sam_vit

        model = sam_vit(_variant_from_state_dict(state), device="meta")
        try:
            model.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path!r} does not match segment-anything's SAM architecture: {exc}") from exc
        # pixel_mean / pixel_std are non-persistent buffers (not in checkpoints): SAM's fixed ImageNet values.
        model.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), False)
        model.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), False)
        model.eval()
    else:
        raise BadInputError(
            f"expected None, a SAM checkpoint path or a segment_anything Sam, got {type(sam).__name__}"
        )
    return model.to(device) if device is not None else model


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
