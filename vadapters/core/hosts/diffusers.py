"""Seams of diffusers models: UNet signatures, sampler convs, resnet norms, attention processors."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from vadapters.core.validation import check_memory, check_size
from vadapters.errors import BadInputError

_KNOWN_UNETS = {
    # (block_out_channels, cross_attention_dim, in_channels) -> name
    ((320, 640, 1280, 1280), 768, 4): "Stable Diffusion 1.x",
    ((320, 640, 1280, 1280), 1024, 4): "Stable Diffusion 2.x",
    ((320, 640, 1280), 2048, 4): "Stable Diffusion XL",
}


def is_unet(module: Any) -> bool:
    """A diffusers UNet (`UNet2DConditionModel`, `UNetMotionModel`, ...): has down/up blocks and a config."""
    return (
        isinstance(module, nn.Module)
        and hasattr(module, "down_blocks")
        and hasattr(module, "up_blocks")
        and hasattr(module, "config")
    )


def unet_signature(unet: nn.Module) -> dict[str, Any]:
    return unet_config_signature(type(unet).__name__, unet.config)


def unet_config_signature(class_name: str, cfg: Any) -> dict[str, Any]:
    """The signature of a UNet of class `class_name` with config `cfg` (a dict, e.g. a `unet/config.json`), equal to
    `unet_signature` of the model it builds: read without loading the model.

    Example:
        >>> unet_config_signature("UNet2DConditionModel", {"in_channels": 4})["in_channels"]
        4
    """
    cross = cfg.get("cross_attention_dim")
    return {
        "class": class_name,
        "block_out_channels": list(cfg.get("block_out_channels", [])),
        "cross_attention_dim": list(cross) if isinstance(cross, (list, tuple)) else cross,
        "in_channels": cfg.get("in_channels"),
        "layers_per_block": cfg.get("layers_per_block"),
    }


def known_unet_name(sig: dict[str, Any]) -> str | None:
    key = (tuple(sig.get("block_out_channels") or ()), sig.get("cross_attention_dim"), sig.get("in_channels", 4))
    return _KNOWN_UNETS.get(key)


def sampler_convs(unet: nn.Module) -> dict[str, nn.Module]:
    """`{path: conv}` of every down/upsampler conv (`down_blocks.i.downsamplers.0.conv`, ...), in order."""
    found: dict[str, nn.Module] = {}
    for kind, blocks in (("downsamplers", unet.down_blocks), ("upsamplers", unet.up_blocks)):
        prefix = "down_blocks" if kind == "downsamplers" else "up_blocks"
        for i, block in enumerate(blocks):
            samplers = getattr(block, kind, None)
            if samplers is None:
                continue
            for j, sampler in enumerate(samplers):
                conv = getattr(sampler, "conv", None)
                if isinstance(conv, nn.Module):
                    found[f"{prefix}.{i}.{kind}.{j}.conv"] = conv
    return found


def resnet_norms(unet: nn.Module) -> dict[str, nn.Module]:
    """`{path: norm}` of `norm1` / `norm2` of every resnet in down, mid and up blocks (diffusers naming)."""
    found: dict[str, nn.Module] = {}
    groups = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
    if getattr(unet, "mid_block", None) is not None:
        groups.append(("mid_block", unet.mid_block))
    groups += [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    for prefix, block in groups:
        for j, resnet in enumerate(getattr(block, "resnets", []) or []):
            for norm_name in ("norm1", "norm2"):
                norm = getattr(resnet, norm_name, None)
                if isinstance(norm, nn.Module):
                    found[f"{prefix}.resnets.{j}.{norm_name}"] = norm
    return found


def spatial_self_attention_processors(unet: nn.Module) -> list[str]:
    """Processor names of spatial `attn1` layers (motion modules and cross-attention excluded)."""
    return [n for n in unet.attn_processors if ".attentions." in n and n.endswith("attn1.processor")]


# ------------------------------------------------------------------------------------------- sizes and memory
MAX_SCALE = 16
"""Largest side accepted, as a multiple of the pipeline's native size (UNet `sample_size` x VAE scale factor)."""


def vae_scale_factor(pipe: Any) -> int:
    """Pixels per latent cell: `2 ** (number of VAE levels - 1)` (8 for Stable Diffusion, 2 for tiny-sd)."""
    factor = getattr(pipe, "vae_scale_factor", None)
    return int(factor) if factor else 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def size_rules(pipe: Any, training: bool = False) -> dict[str, int | None]:
    """`{"multiple", "native", "max_side"}` of a Stable Diffusion (XL) style pipeline.

    Generation needs multiples of 8 and of the VAE scale factor (diffusers' own check); training needs multiples
    of `VAE scale factor x 2 ** (UNet downsamplers)`, so that every UNet level has whole latent cells. Sides
    above `MAX_SCALE` times the native size are refused: no adapter is trained that far out, and attention time
    grows with the square of the pixel count.
    """
    factor = vae_scale_factor(pipe)
    if training:
        downsamplers = sum(1 for block in pipe.unet.down_blocks if getattr(block, "downsamplers", None))
        multiple = factor * 2**downsamplers
    else:
        multiple = math.lcm(8, factor)
    sample = pipe.unet.config.get("sample_size")
    sample = max(sample) if isinstance(sample, (list, tuple)) else sample
    native = int(sample) * factor if sample else None
    return {"multiple": multiple, "native": native, "max_side": MAX_SCALE * native if native else None}


def estimate_denoising_bytes(pipe: Any, height: int, width: int, batch_size: int = 1, training: bool = False) -> int:
    """A rough count of the activation bytes of one denoising pass (plus the VAE) at `height` x `width`.

    The VAE works at full resolution on `block_out_channels[0]` channels (float32: it is upcast) and holds about
    eight such maps at once; the UNet holds about 16 maps per level at inference and about 64 when the
    activations are kept for the backward pass. Measured peaks of the tiny pipelines are within 2x of it; it
    exists to refuse sizes that cannot fit, before anything is allocated.
    """
    unet, vae = pipe.unet, pipe.vae
    param = next(unet.parameters(), None)
    element = param.element_size() if param is not None else 4
    pixels = float(batch_size) * height * width
    cells = pixels / vae_scale_factor(pipe) ** 2
    vae_bytes = pixels * (3 + 8 * vae.config.block_out_channels[0]) * 4
    per_level = 64 if training else 16
    levels = sum(cells / 4**level * width_ for level, width_ in enumerate(unet.config.block_out_channels))
    return int(vae_bytes + levels * per_level * element)


def check_pipeline_sizes(
    pipe: Any, sizes: list[tuple[Any, Any]], *, batch_size: int = 1, training: bool = False
) -> list[tuple[int, int]]:
    """Check `[(height, width)]` against the pipeline's `size_rules` and the memory estimate of the largest one
    (`estimate_denoising_bytes` against the free memory of the UNet's device), before anything is allocated;
    returns the sizes as ints or raises `BadInputError`.

    Example:
        >>> from vadapters.models import tiny_sd_pipeline
        >>> check_pipeline_sizes(tiny_sd_pipeline(), [(16, 24)])
        [(16, 24)]
    """
    rules = size_rules(pipe, training)
    why = " (the model's size rule)" if training else " (diffusers' size rule for this pipeline)"
    out = [check_size(h, w, multiple=rules["multiple"], what="size", hint=why) for h, w in sizes]
    for h, w in out:
        if rules["max_side"] is not None and max(h, w) > rules["max_side"]:
            raise BadInputError(
                f"size {h}x{w} is larger than {rules['max_side']} px per side ({MAX_SCALE}x this model's native "
                f"{rules['native']} px): no adapter is trained that far out and attention time grows with the square "
                "of the pixel count; use a smaller size"
            )
    if out:
        h, w = max(out, key=lambda hw: hw[0] * hw[1])
        task = "training" if training else "generating"
        check_memory(
            estimate_denoising_bytes(pipe, h, w, batch_size, training),
            device=getattr(pipe.unet, "device", None),
            what=f"{task} at {h}x{w} with batch {batch_size}",
            fix="use a smaller size or batch",
        )
    return out
