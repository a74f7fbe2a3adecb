"""I2V-Adapter injector (every spatial `attn1` of a diffusers `UNetMotionModel`) and the per-call state helper."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

from vadapters.core import hosts
from vadapters.core.hosts import diffusers as diffusers_host
from vadapters.core.injector import BaseInjector
from vadapters.core.processors import wrap_processors
from vadapters.errors import AdapterStateError, BadInputError, IncompatibleBaseError
from vadapters.methods.i2v_adapter.config import I2VAdapterConfig
from vadapters.methods.i2v_adapter.processors import I2VAttentionProcessor, I2VRuntime

RUNTIME_ATTRIBUTE = "_vadapters_i2v_runtime"


def i2v_processors(unet: nn.Module) -> dict[str, I2VAttentionProcessor]:
    """`{processor name: I2VAttentionProcessor}` installed on `unet`."""
    return {n: p for n, p in unet.attn_processors.items() if isinstance(p, I2VAttentionProcessor)}


def spatial_self_attention_names(unet: nn.Module) -> list[str]:
    """Processor names of the spatial `attn1` layers of a `UNetMotionModel` (motion modules excluded).

    Example:
        >>> from vadapters.models import tiny_animatediff_pipeline
        >>> names = spatial_self_attention_names(tiny_animatediff_pipeline().unet)
        >>> len(names), names[0]
        (6, 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor')
    """
    return [n for n in diffusers_host.spatial_self_attention_processors(unet) if "motion_modules" not in n]


def has_motion_modules(module: nn.Module) -> bool:
    """True for a diffusers UNet with temporal (motion) attention, e.g. `UNetMotionModel`."""
    return hasattr(module, "attn_processors") and any(".motion_modules." in n for n in module.attn_processors)


class I2VAdapterInjector(BaseInjector):
    """Wraps every spatial `attn1` processor of a `UNetMotionModel` with `I2VAttentionProcessor`."""

    method = "i2v_adapter"
    component = "unet"
    signature_keys = ("block_out_channels", "cross_attention_dim", "in_channels", "layers_per_block")

    def check_host(self, module: nn.Module, config: I2VAdapterConfig) -> None:
        if not diffusers_host.is_unet(module) or not has_motion_modules(module):
            raise IncompatibleBaseError(
                "I2V-Adapter goes on a video UNet with motion modules (diffusers UNetMotionModel, the `unet` of an "
                f"AnimateDiffPipeline, or UNetMotionModel.from_unet2d(unet, MotionAdapter(...))); got "
                f"{type(module).__name__} without motion modules"
            )
        if not spatial_self_attention_names(module):
            raise IncompatibleBaseError(f"{type(module).__name__} has no spatial self-attention (attn1) to adapt")

    def add_adapter(self, module: nn.Module, config: I2VAdapterConfig, adapter_name: str) -> None:
        runtime = getattr(module, RUNTIME_ATTRIBUTE, None)
        if runtime is None:
            runtime = I2VRuntime()
            runtime.hook_handle = module.register_forward_pre_hook(runtime.record_input, with_kwargs=True)
            object.__setattr__(module, RUNTIME_ATTRIBUTE, runtime)
        names = spatial_self_attention_names(module)
        wrappers = wrap_processors(
            module, names, lambda name, inner: I2VAttentionProcessor(inner, runtime), self.method
        )
        for name, wrapper in zip(names, wrappers):
            attn = module.get_submodule(name.removesuffix(".processor"))
            wrapper.add(adapter_name, attn, config.scale, config.copy_query)

    def remove_adapter(self, module: nn.Module, adapter_name: str) -> None:
        if not i2v_processors(module):
            runtime = getattr(module, RUNTIME_ATTRIBUTE, None)
            if runtime is not None:
                runtime.hook_handle.remove()
                object.__delattr__(module, RUNTIME_ATTRIBUTE)


def runtime_of(host: Any) -> I2VRuntime:
    """The `I2VRuntime` of a pipeline's or UNet's I2V-Adapter; raises `AdapterStateError` when there is none."""
    unet = hosts.resolve_target(host, "unet")
    runtime = getattr(unet, RUNTIME_ATTRIBUTE, None)
    if runtime is None:
        raise AdapterStateError(
            "no I2V-Adapter on this host; vadapters.inject(pipe, I2VAdapterConfig()) or vadapters.load(pipe, path)"
        )
    return runtime


@contextlib.contextmanager
def i2v_state(host: Any, scale: float | None = None, num_frames: int | None = None) -> Iterator[I2VRuntime]:
    """Set the per-call I2V-Adapter state of a pipeline or UNet for the block; restore it afterwards.

    Args:
        scale: multiplier of every adapter's first-frame branch (0 turns it off exactly).
        num_frames: frames per clip, for callers that run the attention layers on `(batch * frames, ...)` without
            a 5-D UNet call (normally the frame count is read from each UNet call).

    Example:
        >>> import vadapters
        >>> from vadapters.models import tiny_animatediff_pipeline
        >>> from vadapters.methods.i2v_adapter import I2VAdapterConfig
        >>> pipe = vadapters.inject(tiny_animatediff_pipeline(), I2VAdapterConfig())
        >>> with i2v_state(pipe, scale=0.5) as state:
        ...     state.scale
        0.5
    """
    runtime = runtime_of(host)
    saved = (runtime.scale, runtime.num_frames, runtime.fixed_frames)
    if scale is not None:
        runtime.scale = float(scale)
    if num_frames is not None:
        if int(num_frames) < 1:
            raise BadInputError(f"num_frames must be >= 1, got {num_frames}")
        runtime.num_frames, runtime.fixed_frames = int(num_frames), True
    try:
        yield runtime
    finally:
        runtime.scale, runtime.num_frames, runtime.fixed_frames = saved
