"""Method registry: each method registers itself from its own package; the core knows no method.

Example:
    >>> import vadapters
    >>> "res_adapter" in vadapters.list_methods()
    True
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any

from vadapters.errors import UnknownMethodError


@dataclass(frozen=True)
class MethodSpec:
    """What the core needs to know about a method.

    Args:
        name (`str`): registry name, also written as `method` in every saved config.
        config_cls (`type`): the method's `AdapterConfig` subclass.
        injector_cls (`type`): the method's `BaseInjector` subclass (puts the adapter on a host).
        hosts (`tuple[str, ...]`): host kinds it supports (`"diffusers.unet"`, `"timm"`, `"sam"`, `"any"`).
        prefix (`str`): prefix of the adapter's containers in a host's `state_dict`.
        supports_merge (`bool`): whether `fuse` / `unfuse` / `merge_and_unload` apply.
        description (`str`): one line for `vadapters list`.
        detect (`callable`, optional): `detect(path) -> bool`, recognises an official checkpoint layout.
        convert (`callable`, optional): `convert(path) -> (config, state_dict)` for that layout.
    """

    name: str
    config_cls: type
    injector_cls: type
    hosts: tuple[str, ...]
    prefix: str
    supports_merge: bool = False
    description: str = ""
    detect: Any = field(default=None, compare=False)
    convert: Any = field(default=None, compare=False)


_REGISTRY: dict[str, MethodSpec] = {}
_DISCOVERED = False


def register_method(spec: MethodSpec) -> MethodSpec:
    """Register a method; called once from the method package's `__init__.py`."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing.config_cls.__qualname__ != spec.config_cls.__qualname__:
        raise ValueError(f"method name {spec.name!r} is already registered by {existing.config_cls.__module__}")
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every subpackage of `vadapters.methods` so that each registers itself."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import vadapters.methods as methods_pkg

    for info in pkgutil.iter_modules(methods_pkg.__path__):
        if info.ispkg:
            importlib.import_module(f"vadapters.methods.{info.name}")
    _DISCOVERED = True


def list_methods() -> list[str]:
    """Names of every registered method, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The `MethodSpec` registered under `name`; raises `UnknownMethodError` naming the known ones."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown adapter method {name!r}; installed methods: {', '.join(sorted(_REGISTRY)) or 'none'}"
        ) from None


def all_specs() -> list[MethodSpec]:
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
