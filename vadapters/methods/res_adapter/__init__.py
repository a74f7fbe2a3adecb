"""ResAdapter: resolution adapter (conv LoRA on samplers + resnet GroupNorm affines) for diffusers UNets."""

from vadapters.core.registry import MethodSpec, register_method
from vadapters.methods.res_adapter import conversion
from vadapters.methods.res_adapter.config import ResAdapterConfig
from vadapters.methods.res_adapter.layers import LoraConv2d, ResNormGroupNorm
from vadapters.methods.res_adapter.model import ResAdapterInjector

register_method(
    MethodSpec(
        name="res_adapter",
        config_cls=ResAdapterConfig,
        injector_cls=ResAdapterInjector,
        hosts=("diffusers.unet",),
        supports_merge=True,
        description="Resolution adapter: conv LoRA on down/upsamplers + resnet GroupNorm affines",
        detect=conversion.detect,
        convert=conversion.convert,
    )
)

__all__ = ["LoraConv2d", "ResAdapterConfig", "ResAdapterInjector", "ResNormGroupNorm", "conversion"]
