"""SaRA injector: puts a sparse adapter on any `nn.Module` (diffusers UNets, timm models, SAM, plain torch).

Saved keys are `<parameter name>.values` (the selected entries, 1-D) and `<parameter name>.indices` (int32 flat
positions), with parameter names as in the plain base model (e.g. `down_blocks.0.resnets.0.conv1.weight`).
"""

from __future__ import annotations

import torch
from torch import nn

from vadapters.core.injector import BaseInjector, Slot
from vadapters.core.state import get_state
from vadapters.errors import IncompatibleBaseError
from vadapters.methods.sara.config import SaRAConfig
from vadapters.methods.sara.sparse import (
    METHOD,
    SparseDelta,
    attach,
    check_fingerprint,
    detach,
    find_targets,
    fingerprint,
    sara_tensors,
    select,
)

DDP_IGNORE_ATTR = "_ddp_params_and_buffers_to_ignore"


class SaRAInjector(BaseInjector):
    """Selects small-magnitude entries of the host's tensors and parametrises those tensors."""

    method = METHOD
    component = "unet"  # on a pipeline; any module passed directly is used as is

    def check_host(self, module: nn.Module, config: SaRAConfig) -> None:
        targets = find_targets(module, config)
        if not targets:
            raise IncompatibleBaseError(
                f"no parameter of {type(module).__name__} matches this SaRA config (kinds={list(config.kinds)}, "
                f"include={list(config.include)}, exclude={list(config.exclude)})"
            )
        if config.base_fingerprint and config.check_base:
            check_fingerprint(targets, config.base_fingerprint)

    def add_adapter(self, module: nn.Module, config: SaRAConfig, adapter_name: str) -> None:
        targets = find_targets(module, config)
        tau, indices = select(targets, config)
        if config.selection is None:  # first injection: record what was measured on this base (see SaRAConfig)
            config.realised_threshold = tau
            config.selection = {name: int(idx.numel()) for name, idx in indices.items()}
            config.base_fingerprint = fingerprint(targets)
        for target in targets:
            idx = indices.get(target.name)
            if idx is None:
                continue
            base = target.base
            layer = attach(target.owner, target.attr, target.name, is_root=target.owner is module)
            values = base.detach().reshape(-1)[idx.long()].clone()
            layer.sara_deltas[adapter_name] = SparseDelta(idx, values)
        update_ddp_ignore(module)

    def remove_layers(self, module: nn.Module, adapter_name: str) -> None:
        for _, owner, attr, layer in reversed(sara_tensors(module)):
            if adapter_name in layer.sara_deltas:
                layer.delete_adapter(adapter_name)
            if not layer.adapter_names:
                detach(owner, attr)
        update_ddp_ignore(module)

    # -- keys ------------------------------------------------------------------------------------------------
    def deltas(self, module: nn.Module, adapter_name: str) -> dict[str, SparseDelta]:
        """`{parameter name: SparseDelta}` of adapter `adapter_name`."""
        return {
            name: layer.sara_deltas[adapter_name]
            for name, _, _, layer in sara_tensors(module)
            if adapter_name in layer.sara_deltas
        }

    def adapter_slots(self, module: nn.Module, adapter_name: str) -> dict[str, Slot]:
        slots: dict[str, Slot] = {}
        for name, delta in self.deltas(module, adapter_name).items():
            slots[f"{name}.values"] = (delta, "values", False)
            slots[f"{name}.indices"] = (delta, "indices", True)
        return slots

    def adapter_state_dict(self, module: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, delta in self.deltas(module, adapter_name).items():
            out[f"{name}.values"] = delta.effective_values().detach()
            out[f"{name}.indices"] = delta.indices.detach().to(torch.int32)
        return out


def adapter_config(module: nn.Module, adapter_name: str) -> SaRAConfig:
    state = get_state(module)
    if state is None or adapter_name not in state.adapters or state.adapters[adapter_name].method != METHOD:
        names = [n for n, r in (state.adapters.items() if state else []) if r.method == METHOD]
        raise IncompatibleBaseError(f"no SaRA adapter named {adapter_name!r} on this module (SaRA adapters: {names})")
    return state.adapters[adapter_name].config


def update_ddp_ignore(module: nn.Module) -> None:
    """Keep SaRA's index buffers out of DDP's per-forward buffer broadcast (every rank derives the same ones).

    DDP reads `module._ddp_params_and_buffers_to_ignore` when it wraps `module`; other entries are kept.
    """
    previous = [n for n in getattr(module, DDP_IGNORE_ATTR, []) if ".sara_deltas." not in n]
    ours = [
        f"{path}.{buffer}" if path else buffer
        for path, sub in module.named_modules()
        if isinstance(sub, SparseDelta)
        for buffer in ("indices", "frozen_pos", "frozen_values")
    ]
    if previous or ours:
        object.__setattr__(module, DDP_IGNORE_ATTR, previous + ours)
    elif hasattr(module, DDP_IGNORE_ATTR):
        object.__delattr__(module, DDP_IGNORE_ATTR)
