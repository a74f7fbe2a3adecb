"""Attention-processor adapters that *wrap* the processor already installed (never replace it).

A `ProcessorAdapter` is an `AdapterLayer` whose `base_layer` is the original diffusers processor (SDPA,
xformers, IP-Adapter, a LoRA-aware one, ...). It calls it for the base attention and adds its own branch, so it
composes with whatever kernel or adapter the user had; `unload` puts the original processor object back through
`Attention.set_processor`, which restores the exact original processor map. Per-call state (number of views,
frames, scales) belongs on the processors as attributes, not in `cross_attention_kwargs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from vadapters.core.layers import AdapterLayer


class ProcessorAdapter(AdapterLayer):
    """Base for processor wrappers. Subclasses implement `__call__`-style `forward(attn, hidden_states, ...)`."""

    def __init__(self, base_layer: Any) -> None:
        super().__init__(nn.Identity())  # placeholder: processors are usually not modules
        del self.base_layer
        object.__setattr__(self, "_inner", base_layer)
        if isinstance(base_layer, nn.Module):
            self.add_module("inner_processor", base_layer)

    @property
    def base_layer(self) -> Any:  # the original processor object, whatever its type
        return self._inner

    def rebase(self, new: Any) -> None:
        """Wrap the processor now installed in this one's place (e.g. diffusers' IP-Adapter processor, put there
        by `load_ip_adapter` inside `vadapters.unwrapped`): any processor is accepted."""
        if not callable(new):
            raise TypeError(f"an attention processor must be callable, got {type(new).__name__}")
        if "inner_processor" in self._modules:
            del self._modules["inner_processor"]
        object.__setattr__(self, "_inner", new)
        if isinstance(new, nn.Module):
            self.add_module("inner_processor", new)

    def weight_owner(self) -> nn.Module:
        raise TypeError(f"{type(self).__name__} wraps a processor; it has no base weights to fuse into")

    def base_attention(self, attn: nn.Module, hidden_states, *args: Any, **kwargs: Any):
        return self._inner(attn, hidden_states, *args, **kwargs)


def wrap_processors(
    unet: nn.Module, names: list[str], factory: Callable[[str, Any], ProcessorAdapter], method: str
) -> list[ProcessorAdapter]:
    """Wrap the processors `names` (keys of `unet.attn_processors`) with `factory(name, original)`.

    An existing wrapper of the same `method` is reused (several named adapters share one wrapper).
    """
    current = unet.attn_processors
    wrappers = []
    for name in names:
        proc = current[name]
        if isinstance(proc, ProcessorAdapter) and proc.method == method:
            wrappers.append(proc)
            continue
        wrapper = factory(name, proc)
        attn = unet.get_submodule(name.removesuffix(".processor"))
        attn.set_processor(wrapper)
        wrappers.append(wrapper)
    return wrappers
