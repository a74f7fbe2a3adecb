"""ResAdapter injector: where the adapter goes on a diffusers UNet."""

from __future__ import annotations

from torch import nn

from vadapters.core.hosts import diffusers as diffusers_host
from vadapters.core.injector import BaseInjector, replace_module
from vadapters.core.layers import innermost
from vadapters.errors import IncompatibleBaseError
from vadapters.methods.res_adapter.config import ResAdapterConfig
from vadapters.methods.res_adapter.layers import LoraConv2d, ResNormGroupNorm


class ResAdapterInjector(BaseInjector):
    """Wraps every down/upsampler conv with `LoraConv2d` and every resnet GroupNorm with `ResNormGroupNorm`."""

    method = "res_adapter"
    component = "unet"
    # The adapter's shapes depend on these; the UNet class (2D or motion) does not matter.
    signature_keys = ("block_out_channels", "cross_attention_dim", "in_channels", "layers_per_block")

    def check_host(self, module: nn.Module, config: ResAdapterConfig) -> None:
        if not diffusers_host.is_unet(module):
            raise IncompatibleBaseError(
                f"ResAdapter goes on a diffusers UNet (UNet2DConditionModel, UNetMotionModel) or a pipeline "
                f"that has one; got {type(module).__name__}"
            )
        convs = diffusers_host.sampler_convs(module)
        if config.use_lora:
            if not convs:
                raise IncompatibleBaseError(f"{type(module).__name__} has no down/upsampler convs for ResCLoRA")
            bad = [p for p, c in convs.items() if not isinstance(innermost(c), nn.Conv2d)]  # PEFT-wrapped convs too
            if bad:
                raise IncompatibleBaseError(f"sampler modules that are not Conv2d cannot take ResCLoRA: {bad}")

    def add_adapter(self, module: nn.Module, config: ResAdapterConfig, adapter_name: str) -> None:
        if config.use_lora:
            for path, conv in diffusers_host.sampler_convs(module).items():
                layer = conv if isinstance(conv, LoraConv2d) else LoraConv2d(conv)
                if layer is not conv:
                    replace_module(module, path, layer)
                layer.add(adapter_name, config.rank, config.alpha)
        if config.use_norms:
            for path, norm in diffusers_host.resnet_norms(module).items():
                if isinstance(norm, ResNormGroupNorm):
                    layer = norm
                elif isinstance(norm, nn.GroupNorm) and norm.affine:
                    layer = ResNormGroupNorm(norm)
                    replace_module(module, path, layer)
                else:
                    continue
                layer.add(adapter_name, config.norm_blend)
