"""`BaseInjector`: how a method puts its adapter on a host, and how its tensors map to saved keys.

A method subclasses this and implements `check_host` and `add_adapter`. The default key mapping covers any
adapter made of `AdapterLayer`s: the saved key of a tensor is `<module path>.<container>[.<sub key>]` with the
adapter name stripped, as in PEFT.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vadapters.core.layers import AdapterLayer

Slot = tuple[nn.Module, str, bool]  # (owner module, attribute name, is_buffer)


class BaseInjector:
    """Subclass per method. Instances are stateless; per-host state lives in `HostState`."""

    method: str = ""
    # Pipeline component the adapter lives on; None means the method needs a bare module.
    component: str | None = None

    # -- to implement --------------------------------------------------------------------------------------
    def check_host(self, module: nn.Module, config: Any) -> None:
        """Raise `IncompatibleBaseError` when `module` cannot carry this adapter."""

    def add_adapter(self, module: nn.Module, config: Any, adapter_name: str) -> None:
        """Create a fresh adapter named `adapter_name` on `module` (wrapping layers as needed)."""
        raise NotImplementedError

    def remove_adapter(self, module: nn.Module, adapter_name: str) -> None:
        """Undo non-layer parts of `add_adapter` (layers are handled by the core)."""

    def apply_state(self, module: nn.Module, state: Any) -> None:
        """Push active names / weights / disabled into non-layer parts (layers are handled by the core)."""

    # -- default key mapping -------------------------------------------------------------------------------
    def layers(self, module: nn.Module) -> list[tuple[str, AdapterLayer]]:
        return [(p, m) for p, m in module.named_modules() if isinstance(m, AdapterLayer) and m.method == self.method]

    def adapter_slots(self, module: nn.Module, adapter_name: str) -> dict[str, Slot]:
        """Saved key -> where the tensor lives, for adapter `adapter_name`."""
        slots: dict[str, Slot] = {}
        for path, layer in self.layers(module):
            prefix = f"{path}." if path else ""
            for container_name in layer.adapter_layer_names:
                container = getattr(layer, container_name)
                if adapter_name not in container:
                    continue
                if isinstance(container, nn.ParameterDict):
                    slots[f"{prefix}{container_name}"] = (container, adapter_name, False)
                    continue
                sub = container[adapter_name]
                for sub_path, owner in sub.named_modules():
                    base = f"{prefix}{container_name}" + (f".{sub_path}" if sub_path else "")
                    for pname in owner._parameters:
                        if owner._parameters[pname] is not None:
                            slots[f"{base}.{pname}"] = (owner, pname, False)
                    for bname in owner._buffers:
                        if owner._buffers[bname] is not None and bname not in owner._non_persistent_buffers_set:
                            slots[f"{base}.{bname}"] = (owner, bname, True)
        return slots

    def adapter_parameters(self, module: nn.Module, adapter_name: str) -> list[nn.Parameter]:
        return [
            owner._parameters[attr]
            for owner, attr, is_buffer in self.adapter_slots(module, adapter_name).values()
            if not is_buffer
        ]

    def adapter_state_dict(self, module: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
        out = {}
        for key, (owner, attr, is_buffer) in self.adapter_slots(module, adapter_name).items():
            tensor = owner._buffers[attr] if is_buffer else owner._parameters[attr]
            out[key] = tensor.detach()
        return out

    def remove_layers(self, module: nn.Module, adapter_name: str) -> None:
        """Delete `adapter_name` from every layer; unwrap layers that are left empty."""
        for path, layer in reversed(self.layers(module)):
            if adapter_name in layer.adapter_names:
                layer.delete_adapter(adapter_name)
            if not layer.adapter_names:
                replace_module(module, path, layer.base_layer)


def replace_module(root: nn.Module, path: str, new: Any) -> None:
    """Set the submodule at dotted `path` to `new`.

    Attention processors (`....attn1.processor`) go through diffusers' `Attention.set_processor`, because the
    original processor is usually not an `nn.Module` and plain `setattr` would refuse to replace a child module.
    """
    parent_path, _, leaf = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    if leaf == "processor" and hasattr(parent, "set_processor"):
        parent.set_processor(new)
    else:
        setattr(parent, leaf, new)


def copy_into_slot(slot: Slot, value: torch.Tensor) -> None:
    """Copy a loaded tensor into a slot, casting to its dtype/device (assigning when it is on `meta`)."""
    owner, attr, is_buffer = slot
    current = owner._buffers[attr] if is_buffer else owner._parameters[attr]
    if current.is_meta:
        new = value.to(dtype=current.dtype)
        if is_buffer:
            owner._buffers[attr] = new
        else:
            owner._parameters[attr] = nn.Parameter(new, requires_grad=current.requires_grad)
        return
    with torch.no_grad():
        current.copy_(value.to(device=current.device, dtype=current.dtype))
