"""Seams of diffusers models: UNet signatures, sampler convs, resnet norms, attention processors."""

from __future__ import annotations

from typing import Any

from torch import nn

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
    cfg = unet.config
    cross = cfg.get("cross_attention_dim")
    return {
        "class": type(unet).__name__,
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
