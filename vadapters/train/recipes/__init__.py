"""The recipes of methods that train their own way, found by method name.

A recipe module here (`mv_adapter.py`, `i2v_adapter.py`, `sam_adapter.py`) calls `register_recipe(method, build,
**training_defaults)` when imported, as a method package calls `vadapters.core.register_method`; `find_recipe`
imports every module of this package once and returns the entry. A method with no entry of its own that lives on
a UNet (ResAdapter, SaRA, ...) trains with the shared latent-diffusion recipe (`vadapters.train.diffusion`).

`build(inputs, **options) -> recipe` loads the base named in `inputs` (a `RecipeInputs`; `base=None`: the method's
default), builds the adapter config, the data source and the recipe object (see the protocol in
`vadapters.train.trainer`); `options` are the recipe's own keywords. Methods never import the trainer: the trainer
imports them.

Example:
    >>> sorted(name for name in list_recipes() if name in ("i2v_adapter", "mv_adapter", "sam_adapter"))
    ['i2v_adapter', 'mv_adapter', 'sam_adapter']
    >>> find_recipe("res_adapter").training["learning_rate"]
    0.0001
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vadapters.core.registry import get_method, import_submodules
from vadapters.errors import BadInputError

DIFFUSION_HOSTS = ("diffusers.unet",)


@dataclass(frozen=True)
class RecipeInputs:
    """What every recipe is built from (`vadapters.train.train_adapter` fills it in).

    Args:
        base: the model to adapt (a pipeline, a SAM, a folder or checkpoint path), or None for the recipe's default.
        data: the training data (`"synthetic"`-like names, a folder, or a source object), or None for the default.
        config_overrides (`dict`): fields of the method's config.
        batch_size (`int`): per-device batch size.
        seed (`int`): seed of the adapter initialisation, the data and the recipe's generator.
        adapter_name (`str`): the adapter's name.
    """

    base: Any = None
    data: Any = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 4
    seed: int = 0
    adapter_name: str = "default"


@dataclass(frozen=True)
class RecipeEntry:
    """A method's way of training.

    Args:
        method (`str`): the registered method name.
        build (`callable`): `build(inputs: RecipeInputs, **options) -> recipe`.
        training (`dict`): `TrainingArguments` defaults for this method (a caller's values win).
    """

    method: str
    build: Callable[..., Any]
    training: dict[str, Any] = field(default_factory=dict)


_DEFAULTS = {"learning_rate": 1e-4, "batch_size": 4}
_RECIPES: dict[str, RecipeEntry] = {}
_DISCOVERED = False


def register_recipe(method: str, build: Callable[..., Any], **training: Any) -> RecipeEntry:
    """Register how `method` trains; called once from its recipe module."""
    entry = RecipeEntry(method, build, {**_DEFAULTS, **training})
    _RECIPES[method] = entry
    return entry


def _discover() -> None:
    global _DISCOVERED
    if not _DISCOVERED:
        import_submodules(__name__)
        _DISCOVERED = True


def list_recipes() -> list[str]:
    """Methods with a recipe of their own, sorted."""
    _discover()
    return sorted(_RECIPES)


def find_recipe(method: str) -> RecipeEntry:
    """The method's registered recipe, else the latent-diffusion recipe for UNet adapters; `BadInputError` for a
    method that has no way to train."""
    _discover()
    if method in _RECIPES:
        return _RECIPES[method]
    spec = get_method(method)
    if not set(spec.hosts) & set(DIFFUSION_HOSTS):
        raise BadInputError(
            f"method {spec.name!r} targets {spec.hosts} and has no training recipe: the shared recipe trains diffusion "
            f"adapters (hosts {DIFFUSION_HOSTS}), and the methods with their own are {', '.join(sorted(_RECIPES))} "
            "(a recipe module in vadapters/train/recipes/ registers one)"
        )
    from vadapters.train.diffusion import build_diffusion_recipe

    return RecipeEntry(method, functools.partial(build_diffusion_recipe, method=method), _DEFAULTS)
