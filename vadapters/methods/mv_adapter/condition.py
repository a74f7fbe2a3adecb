"""MV-Adapter's condition encoder: camera raymaps or geometry maps -> a diffusers `T2IAdapter`.

The encoder's multi-scale features enter the UNet as `down_intrablock_additional_residuals` (one per down
block, at that block's resolution). It lives on the UNet as the submodule `mv_condition_encoder` (so `pipe.to()`
moves it and its tensors save with the adapter) and is removed again by `unload`.
"""

from __future__ import annotations

import torch
from torch import nn

from vadapters.core.layers import AdapterLayer
from vadapters.errors import BadInputError

ENCODER_ATTRIBUTE = "mv_condition_encoder"


class EmptySlot(nn.Identity):
    """Placeholder base of the encoder holder; `unload` deletes the attribute when only this is left."""


def encoder_channels(block_out_channels, condition_type: str) -> list[int]:
    """T2IAdapter `channels` for a UNet: its block widths (`full_adapter`), plus the last repeated for SDXL.

    Example:
        >>> encoder_channels((320, 640, 1280), "full_adapter_xl")
        [320, 640, 1280, 1280]
    """
    channels = [int(c) for c in block_out_channels]
    return channels + [channels[-1]] if condition_type == "full_adapter_xl" else channels


def build_condition_encoder(
    in_channels: int,
    block_out_channels,
    num_res_blocks: int,
    downscale_factor: int,
    condition_type: str,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
):
    """A diffusers `T2IAdapter` shaped for a UNet (the official SD 2.1 / SDXL encoders use these settings).

    Example:
        >>> enc = build_condition_encoder(6, (32, 64), 1, 1, "full_adapter")
        >>> [tuple(f.shape) for f in enc(torch.zeros(1, 6, 8, 8))]
        [(1, 32, 8, 8), (1, 64, 4, 4)]
    """
    from diffusers import T2IAdapter

    with torch.device(device or "cpu"):
        encoder = T2IAdapter(
            in_channels=in_channels,
            channels=encoder_channels(block_out_channels, condition_type),
            num_res_blocks=num_res_blocks,
            downscale_factor=downscale_factor,
            adapter_type=condition_type,
        )
    if dtype is not None and dtype != torch.float32:
        nn.Module.to(encoder, dtype=dtype)  # plain cast, without ModelMixin's fp32-module warning
    return encoder


class MVConditionEncoder(AdapterLayer):
    """Holds one condition encoder per named adapter; `forward` sums their weighted features."""

    method = "mv_adapter"
    adapter_layer_names = ("cond_encoder",)
    wraps = False  # an added module, not a wrapper: it stays on the UNet inside `vadapters.unwrapped`

    def __init__(self) -> None:
        super().__init__(EmptySlot())
        self.cond_encoder = nn.ModuleDict()

    def add(self, name: str, encoder: nn.Module) -> None:
        self.cond_encoder[name] = encoder

    def forward(self, condition: torch.Tensor, scale: float = 1.0) -> list[torch.Tensor] | None:
        """Features of the active encoders for `condition` `(B, C, H, W)` (pixel resolution), times `scale`."""
        feats: list[torch.Tensor] | None = None
        for name, weight in self.effective_adapters():
            encoder = self.cond_encoder[name]
            param = next(encoder.parameters())
            out = encoder(condition.to(device=param.device, dtype=param.dtype))
            w = float(weight) * float(scale)
            feats = [f * w for f in out] if feats is None else [a + f * w for a, f in zip(feats, out)]
        return feats


def condition_residuals(unet: nn.Module, condition: torch.Tensor, scale: float = 1.0) -> list[torch.Tensor] | None:
    """`down_intrablock_additional_residuals` for `unet` from `condition`, or None when no encoder is active.

    diffusers consumes (pops) the list during the forward pass: compute a fresh one for every UNet call, or let
    `multiview_state(..., condition=maps)` do it.

    Example:
        >>> import vadapters
        >>> from vadapters.models import tiny_unet, tiny_unet_config
        >>> from vadapters.methods.mv_adapter import MVAdapterConfig
        >>> unet = vadapters.inject(tiny_unet(tiny_unet_config()), MVAdapterConfig(condition_channels=6,
        ...                         condition_downscale_factor=2))
        >>> [tuple(f.shape) for f in condition_residuals(unet, torch.zeros(1, 6, 16, 24))]
        [(1, 32, 8, 12), (1, 64, 4, 6), (1, 64, 2, 3)]
    """
    holder = getattr(unet, ENCODER_ATTRIBUTE, None)
    if not isinstance(holder, MVConditionEncoder):
        return None
    if condition.ndim != 4:
        raise BadInputError(
            f"the MV-Adapter condition must be (batch, channels, height, width), got {tuple(condition.shape)}"
        )
    return holder(condition, scale)
