"""Core mechanics shared by every method: registry, config IO, injection, strict loading, lifecycle."""

from vadapters.core.api import (
    from_pretrained,
    inject,
    load,
    load_adapter_state_dict,
    save_pretrained,
)
from vadapters.core.config import AdapterConfig
from vadapters.core.injector import BaseInjector
from vadapters.core.layers import AdapterLayer
from vadapters.core.lifecycle import (
    active_adapters,
    delete_adapter,
    disabled,
    fuse,
    get_adapter_config,
    list_adapters,
    merge_and_unload,
    print_trainable_parameters,
    scaled,
    set_adapters,
    unfuse,
    unload,
    unwrapped,
    using,
)
from vadapters.core.registry import MethodSpec, get_method, list_methods, register_method

__all__ = [
    "AdapterConfig",
    "AdapterLayer",
    "BaseInjector",
    "MethodSpec",
    "active_adapters",
    "delete_adapter",
    "disabled",
    "from_pretrained",
    "fuse",
    "get_adapter_config",
    "get_method",
    "inject",
    "list_adapters",
    "list_methods",
    "load",
    "load_adapter_state_dict",
    "merge_and_unload",
    "print_trainable_parameters",
    "register_method",
    "save_pretrained",
    "scaled",
    "set_adapters",
    "unfuse",
    "unload",
    "unwrapped",
    "using",
]
