"""MV-Adapter injector (every spatial `attn1` of a diffusers UNet) and the per-call state helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from vadapters.core import hosts
from vadapters.core.hosts import diffusers as diffusers_host
from vadapters.core.injector import BaseInjector
from vadapters.core.processors import wrap_processors
from vadapters.core.state import get_state
from vadapters.errors import AdapterStateError, BadInputError, IncompatibleBaseError
from vadapters.methods.mv_adapter.condition import (
    ENCODER_ATTRIBUTE,
    EmptySlot,
    MVConditionEncoder,
    build_condition_encoder,
)
from vadapters.methods.mv_adapter.config import MVAdapterConfig
from vadapters.methods.mv_adapter.processors import MVAttentionProcessor, MVRuntime

RUNTIME_ATTRIBUTE = "_vadapters_mv_runtime"


def mv_processors(unet: nn.Module) -> dict[str, MVAttentionProcessor]:
    """`{processor name: MVAttentionProcessor}` installed on `unet`."""
    return {n: p for n, p in unet.attn_processors.items() if isinstance(p, MVAttentionProcessor)}


class MVAdapterInjector(BaseInjector):
    """Wraps every spatial `attn1` processor with `MVAttentionProcessor`; adds the condition encoder if asked."""

    method = "mv_adapter"
    component = "unet"
    signature_keys = ("block_out_channels", "cross_attention_dim", "in_channels", "layers_per_block")

    def check_host(self, module: nn.Module, config: MVAdapterConfig) -> None:
        if not diffusers_host.is_unet(module) or not hasattr(module, "attn_processors"):
            raise IncompatibleBaseError(
                f"MV-Adapter goes on a diffusers UNet2DConditionModel (SD 1.x / 2.x / SDXL) or a pipeline that has "
                f"one; got {type(module).__name__}"
            )
        if not diffusers_host.spatial_self_attention_processors(module):
            raise IncompatibleBaseError(f"{type(module).__name__} has no spatial self-attention (attn1) to adapt")
        if config.condition_channels and not hasattr(module.config, "block_out_channels"):
            raise IncompatibleBaseError("the MV-Adapter condition encoder needs a UNet config with block_out_channels")

    def add_adapter(self, module: nn.Module, config: MVAdapterConfig, adapter_name: str) -> None:
        runtime = getattr(module, RUNTIME_ATTRIBUTE, None)
        if runtime is None:
            runtime = MVRuntime(config.num_views)
            runtime.hook_handle = module.register_forward_pre_hook(runtime.record_input, with_kwargs=True)
            object.__setattr__(module, RUNTIME_ATTRIBUTE, runtime)
        names = diffusers_host.spatial_self_attention_processors(module)
        wrappers = wrap_processors(
            module, names, lambda name, inner: MVAttentionProcessor(inner, runtime), self.method
        )
        for name, wrapper in zip(names, wrappers):
            attn = module.get_submodule(name.removesuffix(".processor"))
            wrapper.add(adapter_name, attn, config.topology, config.use_ref)
        if config.condition_channels:
            holder = getattr(module, ENCODER_ATTRIBUTE, None)
            if not isinstance(holder, MVConditionEncoder):
                holder = MVConditionEncoder()
                module.add_module(ENCODER_ATTRIBUTE, holder)
            ref = next(module.parameters())
            encoder = build_condition_encoder(
                config.condition_channels,
                module.config.block_out_channels,
                config.condition_num_res_blocks or int(module.config.layers_per_block),
                config.for_host(module).condition_downscale_factor,  # a bare UNet: SD's VAE factor
                config.condition_type,
                device=ref.device,
                dtype=ref.dtype,
            )
            holder.add(adapter_name, encoder)

    def remove_adapter(self, module: nn.Module, adapter_name: str) -> None:
        holder = getattr(module, ENCODER_ATTRIBUTE, None)
        if isinstance(holder, EmptySlot):
            delattr(module, ENCODER_ATTRIBUTE)
        if not mv_processors(module):
            runtime = getattr(module, RUNTIME_ATTRIBUTE, None)
            if runtime is not None:
                runtime.hook_handle.remove()
                object.__delattr__(module, RUNTIME_ATTRIBUTE)


def _unet_of(host: Any) -> nn.Module:
    unet = hosts.resolve_target(host, "unet")
    if getattr(unet, RUNTIME_ATTRIBUTE, None) is None:
        raise AdapterStateError("no MV-Adapter on this host; inject or load one first")
    return unet


def camera_convention(host: Any) -> str:
    """The camera-map convention of the active MV-Adapter(s) on `host` (`"vadapters"` or `"official"`).

    Official checkpoints are loaded with `"official"`; vadapters' own adapters default to `"vadapters"`.
    Active adapters that disagree raise `BadInputError` (their camera codes cannot be fed at once).

    Example:
        >>> import vadapters
        >>> from vadapters.models import tiny_unet, tiny_unet_config
        >>> unet = vadapters.inject(tiny_unet(tiny_unet_config()), MVAdapterConfig(num_views=4))
        >>> camera_convention(unet)
        'vadapters'
    """
    unet = _unet_of(host)
    state = get_state(unet)
    records = [state.adapters[n] for n in state.active if n in state.adapters] if state is not None else []
    found = {r.config.camera_convention for r in records if r.method == "mv_adapter"}
    if len(found) > 1:
        raise BadInputError(
            f"the active MV-Adapters were trained on different camera conventions {sorted(found)}; activate one "
            "(vadapters.set_adapters) or pass the camera maps yourself (control_image=...)"
        )
    return found.pop() if found else "vadapters"


@contextlib.contextmanager
def multiview_state(
    host: Any,
    num_views: int | None = None,
    mv_scale: float | None = None,
    ref_scale: float | None = None,
    reference: dict[str, torch.Tensor] | None = None,
    condition: torch.Tensor | None = None,
    condition_scale: float | None = None,
) -> Iterator[MVRuntime]:
    """Set the per-call MV-Adapter state of a pipeline or UNet for the block; restore it afterwards.

    Args:
        num_views: views per object in the batch (the batch must be a multiple of it).
        mv_scale / ref_scale: branch scales (0 turns a branch off exactly).
        reference: a reference cache from `record_reference` (tokens of the clean reference pass).
        condition: camera / geometry maps `(num_views or batch, C, H, W)` at pixel resolution; while set, every
            UNet call gets the condition encoder's features as `down_intrablock_additional_residuals` (the maps
            are tiled over the objects and guidance halves of the batch).
        condition_scale: multiplies the encoder features (official `control_conditioning_scale`).

    Example:
        >>> import vadapters
        >>> from vadapters.models import tiny_unet, tiny_unet_config
        >>> from vadapters.methods.mv_adapter import MVAdapterConfig
        >>> unet = vadapters.inject(tiny_unet(tiny_unet_config()), MVAdapterConfig(num_views=4))
        >>> with multiview_state(unet, num_views=2, mv_scale=0.5) as state:
        ...     state.num_views, state.mv_scale
        (2, 0.5)
    """
    unet = _unet_of(host)
    runtime: MVRuntime = getattr(unet, RUNTIME_ATTRIBUTE)
    procs = mv_processors(unet)
    saved = (runtime.num_views, runtime.mv_scale, runtime.ref_scale, runtime.condition, runtime.condition_scale)
    saved_refs = {n: p.reference_states for n, p in procs.items()}
    if num_views is not None:
        if int(num_views) < 1:
            raise BadInputError(f"num_views must be >= 1, got {num_views}")
        runtime.num_views = int(num_views)
    if mv_scale is not None:
        runtime.mv_scale = float(mv_scale)
    if ref_scale is not None:
        runtime.ref_scale = float(ref_scale)
    if condition is not None:
        if condition.ndim != 4:
            raise BadInputError(f"condition must be (views, channels, height, width), got {tuple(condition.shape)}")
        runtime.condition = condition
    if condition_scale is not None:
        runtime.condition_scale = float(condition_scale)
    if reference is not None:
        missing = sorted(set(procs) - set(reference))
        if missing:
            raise BadInputError(f"reference cache lacks {len(missing)} processor(s), e.g. {missing[:2]}")
        for name, proc in procs.items():
            proc.reference_states = reference[name]
    try:
        yield runtime
    finally:
        runtime.num_views, runtime.mv_scale, runtime.ref_scale, runtime.condition, runtime.condition_scale = saved
        for name, proc in procs.items():
            proc.reference_states = saved_refs[name]


@torch.no_grad()
def record_reference(
    host: Any,
    reference_latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    timestep: int | torch.Tensor = 0,
    **unet_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Run the frozen UNet once on clean reference latents (one per object) and cache each `attn1` input.

    The multi-view and reference branches are off during this pass. Pass the result to `multiview_state(...,
    reference=cache)`; for classifier-free guidance stack a zero cache for the unconditional objects
    (`{k: torch.cat([torch.zeros_like(v), v]) ...}`), as the official pipeline does.

    Example:
        >>> import vadapters
        >>> from vadapters.models import tiny_unet, tiny_unet_config
        >>> from vadapters.methods.mv_adapter import MVAdapterConfig
        >>> unet = vadapters.inject(tiny_unet(tiny_unet_config()), MVAdapterConfig(num_views=2, use_ref=True))
        >>> cache = record_reference(unet, torch.zeros(1, 4, 8, 8), torch.zeros(1, 7, 32))
        >>> len(cache), tuple(next(iter(cache.values())).shape)
        (7, (1, 64, 32))
    """
    unet = _unet_of(host)
    runtime: MVRuntime = getattr(unet, RUNTIME_ATTRIBUTE)
    procs = mv_processors(unet)
    t = torch.as_tensor(timestep, device=reference_latents.device)
    runtime.recording = True
    try:
        unet(reference_latents, t, encoder_hidden_states=encoder_hidden_states, **unet_kwargs)
    finally:
        runtime.recording = False
    cache = {n: p.reference_states for n, p in procs.items()}
    for proc in procs.values():
        proc.reference_states = None
    return cache
