"""Adapter lifecycle after loading: list, switch, weight, disable, fuse, unfuse, unload, delete.

Example:
    >>> import vadapters
    >>> from vadapters.models import tiny_sd_pipeline
    >>> from vadapters.methods.res_adapter import ResAdapterConfig
    >>> pipe = vadapters.inject(tiny_sd_pipeline(), ResAdapterConfig(rank=4, alpha=2.0), adapter_name="res")
    >>> with vadapters.scaled(pipe, {"res": 0.5}):
    ...     vadapters.active_adapters(pipe)
    ['res']
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from torch import nn

from vadapters.core import hosts
from vadapters.core.api import _push, _remove, _states
from vadapters.core.config import AdapterConfig
from vadapters.core.injector import replace_module
from vadapters.core.layers import AdapterLayer
from vadapters.core.registry import get_method
from vadapters.errors import AdapterStateError, BadInputError, IncompatibleBaseError


# ------------------------------------------------------------------------------------------- adapter management
def list_adapters(host: Any) -> dict[str, str]:
    """`{adapter name: method}` of every adapter on `host`."""
    return {n: r.method for _, _, s in _states(host) for n, r in s.adapters.items()}


def active_adapters(host: Any) -> list[str]:
    return [n for _, _, s in _states(host) for n in s.active]


def get_adapter_config(host: Any, adapter_name: str) -> AdapterConfig:
    for _, _, state in _states(host):
        if adapter_name in state.adapters:
            return state.adapters[adapter_name].config
    raise BadInputError(f"no adapter named {adapter_name!r}; adapters: {sorted(list_adapters(host))}")


def _normalise_weights(names: list[str], weights: Any) -> dict[str, float]:
    if weights is None:
        return dict.fromkeys(names, 1.0)
    if isinstance(weights, (int, float)):
        return {n: float(weights) for n in names}
    if isinstance(weights, dict):
        return {n: float(weights.get(n, 1.0)) for n in names}
    weights = list(weights)
    if len(weights) != len(names):
        raise BadInputError(f"got {len(weights)} weights for {len(names)} adapters")
    return {n: float(w) for n, w in zip(names, weights)}


def set_adapters(host: Any, names: str | Sequence[str], weights: float | Sequence[float] | dict | None = None) -> None:
    """Choose which adapters run and with which weights (others stay loaded but inactive)."""
    names = [names] if isinstance(names, str) else list(names)
    known = list_adapters(host)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadInputError(f"unknown adapter(s) {unknown}; loaded: {sorted(known)}")
    values = _normalise_weights(names, weights)
    for _, module, state in _states(host):
        if state.fused:
            raise AdapterStateError("adapters are fused; call unfuse() before changing them")
        state.active = [n for n in names if n in state.adapters]
        state.weights.update({n: w for n, w in values.items() if n in state.adapters})
        _push(module, state)


def delete_adapter(host: Any, adapter_name: str) -> None:
    """Remove one adapter; the host returns to its original modules when the last one goes."""
    for _, module, state in _states(host):
        if adapter_name in state.adapters:
            if state.fused:
                raise AdapterStateError("adapters are fused; call unfuse() first")
            _remove(module, state, adapter_name)
            return
    raise BadInputError(f"no adapter named {adapter_name!r}; adapters: {sorted(list_adapters(host))}")


def unload(host: Any) -> Any:
    """Remove every adapter and restore every original module, processor, value and `requires_grad` flag."""
    for _, module, state in _states(host):
        if state.fused:
            unfuse(module)
        for name in list(state.adapters):
            _remove(module, state, name)
    return host


@contextlib.contextmanager
def disabled(host: Any) -> Iterator[Any]:
    """Run the base model: `with vadapters.disabled(pipe): pipe(...)`. Restores the previous state."""
    saved = [(module, state, state.disabled) for _, module, state in _states(host)]
    for module, state, _ in saved:
        if state.fused:
            raise AdapterStateError("adapters are fused into the weights; call unfuse() to disable them")
        state.disabled = True
        _push(module, state)
    try:
        yield host
    finally:
        for module, state, old in saved:
            state.disabled = old
            _push(module, state)


@contextlib.contextmanager
def scaled(host: Any, weights: dict[str, float]) -> Iterator[Any]:
    """Temporarily change adapter weights: `with vadapters.scaled(pipe, {"res": 0.5}): ...`."""
    known = list_adapters(host)
    unknown = [n for n in weights if n not in known]
    if unknown:
        raise BadInputError(f"unknown adapter(s) {unknown}; loaded: {sorted(known)}")
    saved = [(module, state, dict(state.weights)) for _, module, state in _states(host)]
    for module, state, _ in saved:
        if state.fused:
            raise AdapterStateError("adapters are fused; call unfuse() before rescaling")
        state.weights.update({n: float(w) for n, w in weights.items() if n in state.adapters})
        _push(module, state)
    try:
        yield host
    finally:
        for module, state, old in saved:
            state.weights = old
            _push(module, state)


@contextlib.contextmanager
def using(host: Any, names: str | Sequence[str], weights: Any = None) -> Iterator[Any]:
    """Temporarily run only `names`: `with vadapters.using(pipe, "res", 0.7): ...`."""
    saved = [(module, state, list(state.active), dict(state.weights)) for _, module, state in _states(host)]
    set_adapters(host, names, weights)
    try:
        yield host
    finally:
        for module, state, active, old in saved:
            state.active, state.weights = active, old
            _push(module, state)


@contextlib.contextmanager
def unwrapped(host: Any) -> Iterator[Any]:
    """Take vadapters' wrappers off the host while another library changes it, then put them back around what is
    there: `with vadapters.unwrapped(pipe): pipe.load_lora_weights(...)`.

    Inside, every module and attention processor an adapter wraps is the original again (adapters stay loaded,
    with their state), so diffusers' loaders (`load_lora_weights`, `load_ip_adapter`, `set_attn_processor`),
    PEFT and `ControlNetModel.from_unet` see the plain model. On exit each wrapper wraps what took the original's
    place: a PEFT LoRA layer around the same conv, diffusers' IP-Adapter processor, or the original itself. Needed
    where another library would otherwise meet a vadapters layer (PEFT refuses to wrap one; `load_ip_adapter`
    rebuilds self-attention processors by class); loading those first, then vadapters' adapters, needs nothing.

    Raises:
        AdapterStateError: adapters are fused (unfuse first), or something that is not a layer of the original's
            kind and shape took a wrapped module's place (the wrapper goes back around the original there).
    """
    taken: list[tuple[nn.Module, str, AdapterLayer, AdapterLayer]] = []
    for _, module, state in _states(host):
        if state.fused:
            raise AdapterStateError("adapters are fused; call unfuse() before unwrapping them")
        for path, layer in _adapter_layers(module):
            if not layer.wraps or any(m is module and path.startswith(p + ".") for m, p, _, _ in taken):
                continue
            inner = layer
            while isinstance(inner.base_layer, AdapterLayer):
                inner = inner.base_layer
            taken.append((module, path, layer, inner))
    for module, path, _, inner in taken:
        replace_module(module, path, inner.base_layer)
    try:
        yield host
    finally:
        failed = []
        for module, path, layer, inner in taken:
            parent_path, _, leaf = path.rpartition(".")
            now = getattr(module.get_submodule(parent_path) if parent_path else module, leaf, None)
            old = inner.base_layer
            try:
                inner.rebase(now)
            except (IncompatibleBaseError, TypeError) as err:
                failed.append(f"{path}: {err}")
                inner.rebase(old)
            replace_module(module, path, layer)
        for _, module, state in _states(host):
            _push(module, state)
        if failed:
            raise AdapterStateError(
                "vadapters put its wrappers back around the originals where something else took their place: "
                + "; ".join(failed)
            )


# ------------------------------------------------------------------------------------------------------ fusing
def _adapter_layers(module: nn.Module) -> list[tuple[str, AdapterLayer]]:
    return [(p, m) for p, m in module.named_modules() if isinstance(m, AdapterLayer)]


def fuse(host: Any, adapter_names: Sequence[str] | None = None, safe: bool = True) -> Any:
    """Fold active adapters (at their current weights) into the base weights, in fp32, exactly reversibly."""
    for _, module, state in _states(host):
        if state.fused:
            raise AdapterStateError("adapters are already fused; call unfuse() first")
        names = [n for n in (adapter_names or state.active) if n in state.adapters and n in state.active]
        for n in names:
            if not get_method(state.adapters[n].method).supports_merge:
                raise AdapterStateError(f"method {state.adapters[n].method!r} has no weight delta to fuse")
        done = []
        try:
            for _, layer in _adapter_layers(module):
                layer.merge(names, safe=safe)
                done.append(layer)
        except BaseException:
            for layer in done:
                layer.unmerge()
            raise
        state.fused = True
    return host


def unfuse(host: Any) -> Any:
    """Restore the exact pre-fuse base weights (from a backup, not by subtraction)."""
    for _, module, state in _states(host):
        for _, layer in _adapter_layers(module):
            layer.unmerge()
        state.fused = False
    return host


def merge_and_unload(host: Any) -> Any:
    """Fuse the active adapters and remove every wrapper: a plain model with the adapter baked in."""
    fuse(host)
    for _, module, state in _states(host):
        for _, layer in _adapter_layers(module):
            layer.forget_merge_backup()
        state.fused = False
        # Methods without layers (e.g. processors) are not mergeable, so fuse() already refused them.
        for name in list(state.adapters):
            _remove(module, state, name)
    return host


def print_trainable_parameters(host: Any) -> tuple[int, int]:
    """Print and return `(trainable, total)` parameter counts, PEFT style."""
    trainable = total = 0
    for _, module in hosts.adapted_modules(host):
        for p in module.parameters():
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
    pct = 100.0 * trainable / max(total, 1)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {pct:.4f}")
    return trainable, total
