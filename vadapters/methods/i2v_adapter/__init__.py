"""I2V-Adapter: image-to-video on AnimateDiff-style `UNetMotionModel`s (a first-frame attention branch).

Example:
    >>> import torch, vadapters
    >>> from vadapters.models import tiny_animatediff_pipeline
    >>> from vadapters.methods.i2v_adapter import I2VAdapterConfig
    >>> unet = tiny_animatediff_pipeline().unet.requires_grad_(False)  # frozen, as inject leaves it (see below)
    >>> x, t, emb = torch.randn(1, 4, 3, 8, 8), torch.tensor(500), torch.randn(3, 7, 32)  # emb: one per frame
    >>> base = unet(x, t, encoder_hidden_states=emb).sample
    >>> _ = vadapters.inject(unet, I2VAdapterConfig())
    >>> torch.equal(unet(x, t, encoder_hidden_states=emb).sample, base)  # fresh adapter: bit-identical
    True

On CPU, a `UNetMotionModel` whose weights require grad computes its motion modules' `proj_in` through another
matmul path than a frozen one (outputs differ by ~1e-6 even under `torch.no_grad()`), so compare a fresh adapter
with the *frozen* base; `vadapters.inject` freezes the host anyway.
"""

from vadapters.core.registry import MethodSpec, register_method
from vadapters.methods.i2v_adapter import conversion
from vadapters.methods.i2v_adapter.config import I2VAdapterConfig
from vadapters.methods.i2v_adapter.model import (
    I2VAdapterInjector,
    i2v_processors,
    i2v_state,
    runtime_of,
    spatial_self_attention_names,
)
from vadapters.methods.i2v_adapter.processors import (
    I2VAttentionProcessor,
    I2VRuntime,
    first_frame_kv,
    first_frame_states,
)

register_method(
    MethodSpec(
        name="i2v_adapter",
        config_cls=I2VAdapterConfig,
        injector_cls=I2VAdapterInjector,
        hosts=("diffusers.unet",),
        description="First-frame attention branch on a UNetMotionModel's spatial attn1 (image-to-video)",
        detect=conversion.detect,
        convert=conversion.convert,
    )
)

__all__ = [
    "I2VAdapterConfig",
    "I2VAdapterInjector",
    "I2VAttentionProcessor",
    "I2VRuntime",
    "conversion",
    "first_frame_kv",
    "first_frame_states",
    "i2v_processors",
    "i2v_state",
    "runtime_of",
    "spatial_self_attention_names",
]
