"""`AdapterLayer`: the wrapper every weight-level adapter module derives from.

A layer wraps one original module (`base_layer`, kept unchanged) and holds per-adapter containers
(`nn.ModuleDict` / `nn.ParameterDict` keyed by adapter name, as PEFT does), so several named adapters can live
on one host and be switched, weighted, disabled, fused and removed without touching the original module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vadapters.errors import AdapterStateError, IncompatibleBaseError


class AdapterLayer(nn.Module):
    """Base for wrappers. Subclasses set `method`, `adapter_layer_names` and implement `forward`.

    Subclasses that change the base weights' effect additively implement `merged_parameters`, which returns
    new values for some of `base_layer`'s parameters; `merge` / `unmerge` then work exactly (the originals are
    backed up, never recomputed by subtraction).
    """

    method: str = ""
    adapter_layer_names: tuple[str, ...] = ()
    # False for a layer that adds a module instead of wrapping one: `vadapters.unwrapped` leaves it in place.
    wraps: bool = True

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.active_adapters: list[str] = []
        self.adapter_weights: dict[str, float] = {}
        self.disabled = False
        self.merged_adapters: list[str] = []
        self._merge_backup: dict[str, torch.Tensor] = {}

    # -- bookkeeping ---------------------------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        names: list[str] = []
        for container in self.adapter_layer_names:
            for key in getattr(self, container):
                if key not in names:
                    names.append(key)
        return names

    def set_adapters(self, names: list[str], weights: dict[str, float], disabled: bool) -> None:
        present = set(self.adapter_names)
        self.active_adapters = [n for n in names if n in present]
        self.adapter_weights = {n: float(weights.get(n, 1.0)) for n in present}
        self.disabled = disabled

    def effective_adapters(self) -> list[tuple[str, float]]:
        """(name, weight) pairs the forward pass should apply now (not disabled, not already merged)."""
        if self.disabled:
            return []
        return [(n, self.adapter_weights.get(n, 1.0)) for n in self.active_adapters if n not in self.merged_adapters]

    def delete_adapter(self, name: str) -> None:
        if self.merged_adapters:
            raise AdapterStateError("unfuse the adapters before deleting one")
        for container in self.adapter_layer_names:
            holder = getattr(self, container)
            if name in holder:
                del holder[name]
        self.active_adapters = [n for n in self.active_adapters if n != name]
        self.adapter_weights.pop(name, None)
        self.on_delete(name)

    def on_delete(self, name: str) -> None:
        """Hook for subclasses that keep extra per-adapter dicts."""

    # -- what the layer wraps ------------------------------------------------------------------------------
    def weight_owner(self) -> nn.Module:
        """The module whose parameters `merged_parameters` names: `base_layer`, or the original layer inside
        another library's wrapper (a PEFT LoRA layer) that `base_layer` is."""
        return innermost(self.base_layer)

    def rebase(self, new: Any) -> None:
        """Wrap `new` instead of the current `base_layer`: what another library put in the layer's place while
        `vadapters.unwrapped` had taken it off (a PEFT LoRA layer around the same original, another processor).
        Raises `IncompatibleBaseError` when `new` is not a module of the original's kind and shape."""
        old, found = innermost(self.base_layer), innermost(new)
        same = type(found) is type(old) and all(
            getattr(found, k).shape == v.shape for k, v in old.named_parameters(recurse=False)
        )
        if not same:
            raise IncompatibleBaseError(
                f"{type(self).__name__} wrapped a {type(old).__name__}, but {type(found).__name__} took its place "
                "(a wrapper around a layer of the same kind and shape, such as a PEFT LoRA layer, is accepted)"
            )
        self.base_layer = new

    # -- merging -------------------------------------------------------------------------------------------
    def merged_parameters(self, adapters: list[tuple[str, float]]) -> dict[str, torch.Tensor]:
        """New values for `base_layer` parameters with `adapters` folded in. Override to support fuse."""
        raise AdapterStateError(f"{type(self).__name__} has no weight delta to fuse")

    def merge(self, names: list[str], safe: bool = True) -> None:
        if self.merged_adapters:
            raise AdapterStateError("adapters are already fused; call unfuse() first")
        adapters = [(n, self.adapter_weights.get(n, 1.0)) for n in names if n in self.adapter_names]
        if not adapters or self.disabled:
            return
        new_values = self.merged_parameters(adapters)
        if safe:
            for key, value in new_values.items():
                if not torch.isfinite(value).all():
                    raise AdapterStateError(f"fusing {names} gives non-finite values in {key}; nothing was changed")
        params = dict(self.weight_owner().named_parameters(recurse=False))
        for key in new_values:
            self._merge_backup[key] = params[key].data.clone()
        with torch.no_grad():
            for key, value in new_values.items():
                params[key].data.copy_(value.to(params[key].dtype))
        self.merged_adapters = [n for n, _ in adapters]

    def unmerge(self) -> None:
        params = dict(self.weight_owner().named_parameters(recurse=False))
        with torch.no_grad():
            for key, value in self._merge_backup.items():
                params[key].data.copy_(value)
        self._merge_backup = {}
        self.merged_adapters = []

    def forget_merge_backup(self) -> None:
        """Keep fused values as the new base (used by `merge_and_unload`)."""
        self._merge_backup = {}
        self.merged_adapters = []

    def extra_repr(self) -> str:
        return f"adapters={self.adapter_names}, active={self.active_adapters}"


def innermost(module: Any) -> Any:
    """The original layer inside wrappers that keep it as `base_layer` (vadapters' layers, PEFT's tuner layers).

    Example:
        >>> conv = nn.Conv2d(2, 2, 1)
        >>> innermost(conv) is conv
        True
    """
    seen = set()
    while isinstance(module, nn.Module) and hasattr(module, "base_layer") and id(module) not in seen:
        seen.add(id(module))
        module = module.base_layer
    return module


def clone_linear(src: nn.Linear, copy: bool = True) -> nn.Linear:
    """A new `nn.Linear` shaped like `src` (same device / dtype), holding a copy of its weights when `copy`.

    Processor methods (MV-Adapter, I2V-Adapter) start new query / key / value projections as copies of the base
    attention's. Meta tensors are left uninitialised.

    Example:
        >>> src = nn.Linear(4, 3)
        >>> torch.equal(clone_linear(src).weight, src.weight), clone_linear(src).weight is src.weight
        (True, False)
    """
    dst = nn.Linear(
        src.in_features, src.out_features, bias=src.bias is not None, device=src.weight.device, dtype=src.weight.dtype
    )
    if copy and not src.weight.is_meta:
        with torch.no_grad():
            dst.weight.copy_(src.weight)
            if src.bias is not None:
                dst.bias.copy_(src.bias)
    return dst


def zero_linear(in_features: int, out_features: int, like: torch.Tensor) -> nn.Linear:
    """`nn.Linear(in_features, out_features)` with zero weight and bias, on `like`'s device and dtype.

    Example:
        >>> float(zero_linear(4, 3, torch.ones(1)).weight.abs().sum())
        0.0
    """
    proj = nn.Linear(in_features, out_features, device=like.device, dtype=like.dtype)
    if not like.is_meta:
        nn.init.zeros_(proj.weight)
        nn.init.zeros_(proj.bias)
    return proj
