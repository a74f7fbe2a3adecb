"""SAM-Adapter: explicit visual prompts (embedding + high-frequency features) in a frozen segment-anything encoder,
with a trainable mask decoder copy and `no_mask_embed`; prompt-free and promptable decoding."""

from vadapters.core.registry import MethodSpec, register_method
from vadapters.methods.sam_adapter import conversion
from vadapters.methods.sam_adapter.config import SAMAdapterConfig
from vadapters.methods.sam_adapter.layers import AdaptedMaskDecoder, AdaptedNoMaskEmbed, PositionalEncodingOverride
from vadapters.methods.sam_adapter.model import SAMAdapterInjector
from vadapters.methods.sam_adapter.prompts import (
    PromptedPatchEmbed,
    PromptGenerator,
    high_frequency_components,
    patch_tokens,
)

register_method(
    MethodSpec(
        name="sam_adapter",
        config_cls=SAMAdapterConfig,
        injector_cls=SAMAdapterInjector,
        hosts=("sam",),
        supports_merge=False,
        description="SAM-Adapter: embedding + high-frequency prompts at every SAM ViT block, tuned mask decoder",
        detect=conversion.detect,
        convert=conversion.convert,
    )
)

__all__ = [
    "AdaptedMaskDecoder",
    "AdaptedNoMaskEmbed",
    "PositionalEncodingOverride",
    "PromptGenerator",
    "PromptedPatchEmbed",
    "SAMAdapterConfig",
    "SAMAdapterInjector",
    "conversion",
    "high_frequency_components",
    "patch_tokens",
]
