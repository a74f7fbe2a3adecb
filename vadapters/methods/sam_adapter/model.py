"""SAM-Adapter injector: where the adapter goes on a segment-anything `Sam` (any size), without forking its encoder.

- `image_encoder.patch_embed` is wrapped by `PromptedPatchEmbed` (holds each adapter's `prompt_generator`);
- every `image_encoder.blocks[i]` gets a forward pre-hook adding `P_i` to its input (removed on unload);
- `mask_decoder` and `prompt_encoder.no_mask_embed` are wrapped by layers holding the adapter's trainable copies;
- `prompt_encoder.pe_layer` is wrapped only for adapters converted from official checkpoints.

Example:
    >>> import torch, vadapters
    >>> from vadapters.models import tiny_sam
    >>> from vadapters.methods.sam_adapter import SAMAdapterConfig
    >>> sam = tiny_sam()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> with torch.no_grad():
    ...     before = sam.image_encoder(x)
    ...     _ = vadapters.inject(sam, SAMAdapterConfig(scale_factor=8))
    ...     torch.equal(sam.image_encoder(x), before)  # zero-init: bit-identical to SAM
    True
"""

from __future__ import annotations

from torch import nn

from vadapters.core.hosts import sam as sam_host
from vadapters.core.injector import BaseInjector, replace_module
from vadapters.errors import IncompatibleBaseError
from vadapters.methods.sam_adapter.config import SAMAdapterConfig
from vadapters.methods.sam_adapter.layers import AdaptedMaskDecoder, AdaptedNoMaskEmbed, PositionalEncodingOverride
from vadapters.methods.sam_adapter.prompts import PromptedPatchEmbed, install_block_hooks

HOOKS_ATTR = "_sam_adapter_hooks"


class SAMAdapterInjector(BaseInjector):
    """Puts a SAM-Adapter on a `segment_anything` `Sam` (tiny, ViT-B/L/H)."""

    method = "sam_adapter"
    component = None
    signature_keys = ("img_size", "embed_dim", "depth")

    def check_host(self, module: nn.Module, config: SAMAdapterConfig) -> None:
        if not sam_host.is_sam(module):
            raise IncompatibleBaseError(
                f"SAM-Adapter goes on a segment_anything Sam (image_encoder, prompt_encoder, mask_decoder); "
                f"got {type(module).__name__}. Load one with vadapters.models.load_sam(...)"
            )
        encoder = module.image_encoder
        patch = getattr(encoder, "patch_embed", None)
        proj = getattr(patch, "base_layer", patch)
        proj = getattr(proj, "proj", None)
        if not isinstance(proj, nn.Conv2d) or not hasattr(encoder, "blocks"):
            raise IncompatibleBaseError(
                "SAM-Adapter needs SAM's ViT image encoder (patch_embed.proj conv + blocks); "
                f"found {type(encoder).__name__}"
            )
        if config.uses_prompts and proj.out_channels // config.scale_factor < 1:
            raise IncompatibleBaseError(
                f"scale_factor {config.scale_factor} leaves no adapter width for embed_dim {proj.out_channels}; "
                f"use a scale_factor <= {proj.out_channels}"
            )

    def add_adapter(self, module: nn.Module, config: SAMAdapterConfig, adapter_name: str) -> None:
        encoder, prompts = module.image_encoder, module.prompt_encoder
        if config.uses_prompts:
            layer = encoder.patch_embed
            if not isinstance(layer, PromptedPatchEmbed):
                layer = PromptedPatchEmbed(layer)
                replace_module(encoder, "patch_embed", layer)
            layer.add(adapter_name, config, len(encoder.blocks))
            if getattr(encoder, HOOKS_ATTR, None) is None:
                object.__setattr__(encoder, HOOKS_ATTR, install_block_hooks(encoder))
        for wanted, parent, name, wrapper in (
            (config.train_decoder, module, "mask_decoder", AdaptedMaskDecoder),
            (config.train_no_mask_embed, prompts, "no_mask_embed", AdaptedNoMaskEmbed),
            (config.official_positional_encoding, prompts, "pe_layer", PositionalEncodingOverride),
        ):
            if wanted:
                layer = getattr(parent, name)
                if not isinstance(layer, wrapper):
                    layer = wrapper(layer)
                    replace_module(parent, name, layer)
                layer.add(adapter_name)

    def remove_adapter(self, module: nn.Module, adapter_name: str) -> None:
        encoder = getattr(module, "image_encoder", None)
        if encoder is None or isinstance(getattr(encoder, "patch_embed", None), PromptedPatchEmbed):
            return
        handles = getattr(encoder, HOOKS_ATTR, None)
        if handles is not None:
            for handle in handles:
                handle.remove()
            object.__delattr__(encoder, HOOKS_ATTR)
