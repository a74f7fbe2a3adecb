"""MV-Adapter: multi-view consistent generation on SD / SDXL UNets (decoupled multi-view attention).

Example:
    >>> import torch, vadapters
    >>> from vadapters.models import tiny_unet, tiny_unet_config
    >>> from vadapters.methods.mv_adapter import MVAdapterConfig, multiview_state
    >>> unet = tiny_unet(tiny_unet_config())
    >>> x, t, emb = torch.randn(4, 4, 8, 12), torch.tensor(500), torch.randn(4, 7, 32)
    >>> base = unet(x, t, encoder_hidden_states=emb).sample
    >>> _ = vadapters.inject(unet, MVAdapterConfig(num_views=4, topology="full"))
    >>> torch.equal(unet(x, t, encoder_hidden_states=emb).sample, base)  # fresh adapter: bit-identical
    True
"""

from vadapters.core.registry import MethodSpec, register_method
from vadapters.methods.mv_adapter import conversion
from vadapters.methods.mv_adapter.condition import MVConditionEncoder, build_condition_encoder, condition_residuals
from vadapters.methods.mv_adapter.config import MVAdapterConfig
from vadapters.methods.mv_adapter.model import MVAdapterInjector, multiview_state, mv_processors, record_reference
from vadapters.methods.mv_adapter.processors import MVAttentionProcessor, MVRuntime, multiview_attention
from vadapters.methods.mv_adapter.scheduler import ShiftSNRScheduler, shift_snr_betas

register_method(
    MethodSpec(
        name="mv_adapter",
        config_cls=MVAdapterConfig,
        injector_cls=MVAdapterInjector,
        hosts=("diffusers.unet",),
        description="Multi-view attention (row / rowcol6 / full) + optional reference branch and camera encoder",
        detect=conversion.detect,
        convert=conversion.convert,
    )
)

__all__ = [
    "MVAdapterConfig",
    "MVAdapterInjector",
    "MVAttentionProcessor",
    "MVConditionEncoder",
    "MVRuntime",
    "ShiftSNRScheduler",
    "build_condition_encoder",
    "condition_residuals",
    "conversion",
    "multiview_attention",
    "multiview_state",
    "mv_processors",
    "record_reference",
    "shift_snr_betas",
]
