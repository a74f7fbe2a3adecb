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
from types import ModuleType
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
        supports_merge (`bool`): whether `fuse` / `unfuse` / `merge_and_unload` apply.
        description (`str`): one line for `vadapters list`.
        detect (`callable`, optional): `detect(path) -> bool`, recognises an official checkpoint layout.
        convert (`callable`, optional): `convert(path) -> (config, state_dict)` for that layout.
        training_hooks (`callable`, optional): `training_hooks(module, adapter_name, seed=...)` -> per-step extras
            of the method's training (`before_loss`, `extra_loss`, `on_train_begin`, `state_dict`), which the
            latent-diffusion recipe calls (SaRA's nuclear norm and progressive re-selection).
    """

    name: str
    config_cls: type
    injector_cls: type
    hosts: tuple[str, ...]
    supports_merge: bool = False
    description: str = ""
    detect: Any = field(default=None, compare=False)
    convert: Any = field(default=None, compare=False)
    training_hooks: Any = field(default=None, compare=False)


_REGISTRY: dict[str, MethodSpec] = {}
_DISCOVERED = False


def register_method(spec: MethodSpec) -> MethodSpec:
    """Register a method; called once from the method package's `__init__.py`."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing.config_cls.__qualname__ != spec.config_cls.__qualname__:
        raise ValueError(f"method name {spec.name!r} is already registered by {existing.config_cls.__module__}")
    _REGISTRY[spec.name] = spec
    return spec


METHODS_PACKAGE = "vadapters.methods"
"""Where methods are discovered: every subpackage is imported once, by name, and registers itself. The core names
the folder, never a method (the import contract in `pyproject.toml` keeps the core from importing methods)."""


def import_submodules(package_name: str, packages_only: bool = False) -> list[ModuleType]:
    """Import every direct submodule (or subpackage) of `package_name`, by name, in name order: the plug-in seam
    through which methods (and the trainer's recipes) register themselves without anyone importing them by hand.

    Example:
        >>> [m.__name__ for m in import_submodules("vadapters.methods", packages_only=True)][:1]
        ['vadapters.methods.i2v_adapter']
    """
    package = importlib.import_module(package_name)
    infos = sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name)
    return [
        importlib.import_module(f"{package_name}.{info.name}") for info in infos if info.ispkg or not packages_only
    ]


def _discover() -> None:
    """Import every subpackage of `METHODS_PACKAGE` so that each registers itself."""
    global _DISCOVERED
    if not _DISCOVERED:
        import_submodules(METHODS_PACKAGE, packages_only=True)
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
