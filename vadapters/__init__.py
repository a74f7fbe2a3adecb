"""vadapters: vision and diffusion adapters for diffusers, timm and segment-anything.

Example:
    >>> import vadapters
    >>> vadapters.list_methods()  # doctest: +ELLIPSIS
    [...'res_adapter'...]
"""

from vadapters._version import __version__
from vadapters.core import (
    AdapterConfig,
    active_adapters,
    delete_adapter,
    disabled,
    from_pretrained,
    fuse,
    get_adapter_config,
    get_method,
    inject,
    list_adapters,
    list_methods,
    load,
    merge_and_unload,
    print_trainable_parameters,
    register_method,
    save_pretrained,
    scaled,
    set_adapters,
    unfuse,
    unload,
    unwrapped,
    using,
)
from vadapters.errors import (
    AdapterStateError,
    BadInputError,
    CheckpointError,
    IncompatibleBaseError,
    UnknownMethodError,
    VAdaptersError,
)

__all__ = [
    "AdapterConfig",
    "AdapterStateError",
    "BadInputError",
    "CheckpointError",
    "IncompatibleBaseError",
    "UnknownMethodError",
    "VAdaptersError",
    "__version__",
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
