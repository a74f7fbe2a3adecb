"""Public adapter lifecycle: inject, load, save, switch, weight, disable, fuse, unload.

The vocabulary follows PEFT and diffusers. Every function accepts a diffusers pipeline or a model (UNet,
timm classifier, SAM); adapters live on the module the method targets (for a pipeline, e.g. `pipe.unet`).

Example:
    >>> import vadapters
    >>> from vadapters.models import tiny_sd_pipeline
    >>> from vadapters.methods.res_adapter import ResAdapterConfig
    >>> pipe = tiny_sd_pipeline()
    >>> _ = vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=2.0), adapter_name="res")
    >>> vadapters.list_adapters(pipe)
    {'res': 'res_adapter'}
    >>> _ = vadapters.unload(pipe)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vadapters._version import __version__
from vadapters.core import hosts, hub
from vadapters.core.bases import check_base_name, describe_bases, host_base_name
from vadapters.core.config import AdapterConfig, config_from_file, read_config_dict
from vadapters.core.injector import BaseInjector, copy_into_slot
from vadapters.core.io import (
    CONFIG_METADATA_KEY,
    CONFIG_NAME,
    WEIGHTS_NAME,
    config_from_metadata,
    load_tensors,
    read_metadata,
    sniff_format,
)
from vadapters.core.io import save_tensors as _save_tensors
from vadapters.core.layers import AdapterLayer
from vadapters.core.manifest import embedded_path
from vadapters.core.registry import all_specs, get_method
from vadapters.core.state import AdapterRecord, HostState, drop_state, get_state
from vadapters.errors import AdapterStateError, BadInputError, CheckpointError, IncompatibleBaseError


# --------------------------------------------------------------------------------------------------- internals
def _injector(method: str) -> BaseInjector:
    return get_method(method).injector_cls()


def _states(host: Any) -> list[tuple[str | None, nn.Module, HostState]]:
    out = []
    for component, module in hosts.adapted_modules(host):
        state = get_state(module)
        if state is not None and state.adapters:
            out.append((component, module, state))
    return out


def _push(module: nn.Module, state: HostState) -> None:
    """Propagate active names / weights / disabled from the host state to every layer and injector."""
    for layer in module.modules():
        if isinstance(layer, AdapterLayer):
            layer.set_adapters(state.active, state.weights, state.disabled)
    for method in state.methods():
        _injector(method).apply_state(module, state)


def _restore_host(module: nn.Module, state: HostState) -> None:
    for param, flag in state.requires_grad_backup:
        param.requires_grad_(flag)
    drop_state(module)


def _remove(module: nn.Module, state: HostState, name: str) -> None:
    record = state.adapters[name]
    injector = _injector(record.method)
    injector.remove_layers(module, name)
    injector.remove_adapter(module, name)
    del state.adapters[name]
    state.active = [n for n in state.active if n != name]
    state.weights.pop(name, None)
    if not state.adapters:
        _restore_host(module, state)
    else:
        _push(module, state)


def _frozen_with(host: Any, module: nn.Module) -> list[nn.Module]:
    """The other modules of a pipeline host (text encoders, VAE, ...): frozen with the adapted one, as PEFT freezes
    the whole base model, so only the adapter trains and `print_trainable_parameters` counts what trains."""
    return [m for _, m in hosts.adapted_modules(host) if m is not module] if hosts.is_pipeline(host) else []


def check_adapter_name(name: Any) -> None:
    """Refuse names the per-adapter `nn.ModuleDict` / `nn.ParameterDict` containers cannot hold: empty, with a
    dot, or an attribute of those containers (`"train"`, `"training"`, `"eval"`, `"to"`, `"keys"`, ...).

    Example:
        >>> check_adapter_name("train")
        Traceback (most recent call last):
        ...
        vadapters.errors.BadInputError: adapter_name 'train' is an attribute of torch modules (train, eval, to, keys, ...); pick another name
    """
    if not isinstance(name, str) or not name or "." in name:
        raise BadInputError(f"adapter_name must be a non-empty string without '.', got {name!r}")
    if hasattr(nn.ModuleDict(), name) or hasattr(nn.ParameterDict(), name):
        raise BadInputError(
            f"adapter_name {name!r} is an attribute of torch modules (train, eval, to, keys, ...); pick another name"
        )


def _inject_into(
    module: nn.Module, config: AdapterConfig, name: str, trainable: bool, others: Sequence[nn.Module] = ()
) -> AdapterConfig:
    spec = get_method(config.method)
    injector = spec.injector_cls()
    state = get_state(module, create=True)
    created = not state.adapters
    try:
        check_adapter_name(name)
        if name in state.adapters:
            raise BadInputError(f"an adapter named {name!r} already exists; delete_adapter() it or pick another name")
        if state.fused:
            raise AdapterStateError("adapters are fused; call unfuse() before adding another")
        found = hosts.signature(module)
        mismatch = hosts.signature_mismatch(config.base_signature, found)
        if mismatch:
            raise IncompatibleBaseError(
                f"this {spec.name} adapter was made for {hosts.describe_signature(config.base_signature)}, "
                f"but the model is {hosts.describe_signature(found)} (differs in: {', '.join(mismatch)}). "
                "Load it into the base it was trained on"
                + (f": {config.base_model_name_or_path!r}." if config.base_model_name_or_path else ".")
            )
        injector.check_host(module, config)
        if config.base_signature is None:
            keys = getattr(injector, "signature_keys", None)
            config = config.replace(base_signature={k: v for k, v in found.items() if keys is None or k in keys})
        if config.target_component is None and injector.component is not None:
            config = config.replace(target_component=injector.component)
    except BaseException:
        if created:
            drop_state(module)
        raise
    frozen = [p for m in (module, *others) for p in m.parameters()]
    if created:  # unload restores every flag once the module's last adapter goes
        state.requires_grad_backup = [(p, p.requires_grad) for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    try:
        injector.add_adapter(module, config, name)
    except BaseException:
        injector.remove_layers(module, name)
        injector.remove_adapter(module, name)
        if created:
            _restore_host(module, state)
        raise
    state.adapters[name] = AdapterRecord(name=name, method=spec.name, config=config)
    state.active.append(name)
    state.weights[name] = 1.0
    for p in injector.adapter_parameters(module, name):
        p.requires_grad_(trainable)
    _push(module, state)
    return config


def _default_name(host: Any, method: str) -> str:
    taken = {n for _, _, s in _states(host) for n in s.adapters}
    if method not in taken:
        return method
    i = 1
    while f"{method}_{i}" in taken:
        i += 1
    return f"{method}_{i}"


def write_adapter(
    tensors: dict[str, torch.Tensor],
    config: AdapterConfig,
    path: str,
    *,
    single_file: bool = False,
    adapter_name: str | None = None,
) -> list[str]:
    """Write one adapter atomically: a folder (`adapter_config.json` + `adapter_model.safetensors`) or, with
    `single_file=True`, one `.safetensors` whose metadata embeds the config. Returns the written paths."""
    metadata = {"format": "pt", "method": config.method, "vadapters_version": __version__}
    if adapter_name is not None:
        metadata["adapter_name"] = adapter_name
    if single_file:
        metadata[CONFIG_METADATA_KEY] = config.to_json_string()
        _save_tensors(tensors, path, metadata)
        return [path]
    os.makedirs(path, exist_ok=True)
    _save_tensors(tensors, os.path.join(path, WEIGHTS_NAME), metadata)
    return [os.path.join(path, WEIGHTS_NAME), config.save_pretrained(path)]


# ------------------------------------------------------------------------------------------------ inject / load
def inject(host: Any, config: AdapterConfig, adapter_name: str = "default") -> Any:
    """Freeze the host (every module of a pipeline, as PEFT freezes the whole base model) and add a fresh, trainable
    adapter. Returns `host` (mutated in place); `unload` restores the `requires_grad` flags.

    Args:
        host: a diffusers pipeline or a model (UNet, timm model, SAM, any `nn.Module` the method supports).
        config (`AdapterConfig`): the method's config; its class decides the method.
        adapter_name (`str`): name to refer to this adapter by.

    Example:
        >>> import vadapters
        >>> from vadapters.methods.res_adapter import ResAdapterConfig
        >>> from vadapters.models import tiny_sd_pipeline
        >>> pipe = vadapters.inject(tiny_sd_pipeline(), ResAdapterConfig(rank=4))
        >>> trainable, total = vadapters.print_trainable_parameters(pipe)  # doctest: +ELLIPSIS
        trainable params: ... || all params: ... || trainable%: ...
        >>> trainable == sum(p.numel() for p in pipe.unet.parameters() if p.requires_grad) < total
        True
    """
    if not isinstance(config, AdapterConfig):
        raise BadInputError(f"config must be an AdapterConfig subclass instance, got {type(config).__name__}")
    config = config.for_host(host)  # host-dependent defaults (e.g. MV-Adapter's VAE downscale), saved with it
    if config.base_model_name_or_path is None and host_base_name(host) is not None:
        config = config.replace(base_model_name_or_path=host_base_name(host))  # saved, compared on load
    component = config.target_component or get_method(config.method).injector_cls.component
    module = hosts.resolve_target(host, component)
    _inject_into(module, config, adapter_name, trainable=True, others=_frozen_with(host, module))
    return host


def read_adapter(
    path: str | os.PathLike,
    method: str | None = None,
    *,
    subfolder: str | None = None,
    weight_name: str | None = None,
    revision: str | None = None,
) -> list[tuple[str | None, AdapterConfig, dict[str, torch.Tensor]]]:
    """(name hint, config, state dict) for each adapter at `path`: a vadapters folder or single file, an official
    checkpoint a method recognises (or `method` forces), or a folder of named adapter subfolders; local, embedded
    (`vadapters:NAME`, see `core.manifest`), or on the Hugging Face Hub (`ORG/NAME[/FOLDER]`, with `subfolder` /
    `weight_name` / `revision`: see `core.hub.resolve`)."""
    path = embedded_path(path) or path  # "vadapters:NAME": a trained adapter shipped in weights/, hash-verified
    path = hub.resolve(path, subfolder=subfolder, weight_name=weight_name, revision=revision, what="adapter")
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME)) and method in (None, "vadapters"):
        data = read_config_dict(path)
        config = config_from_file(get_method(data["method"]).config_cls, data, os.path.join(path, CONFIG_NAME))
        weights = os.path.join(path, WEIGHTS_NAME)
        if not os.path.isfile(weights):
            raise CheckpointError(f"{path!r} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
        tensors, meta = load_tensors(weights)
        if meta.get("method", config.method) != config.method:
            raise CheckpointError(
                f"{weights} says method {meta.get('method')!r} but the config says {config.method!r}"
            )
        return [(None, config, tensors)]
    if os.path.isfile(path) and sniff_format(path) != "safetensors":
        load_tensors(path)  # raises a precise error for pickles, truncated and foreign files
    if os.path.isfile(path) and method is None:
        meta_config = None
        with contextlib.suppress(CheckpointError):
            meta_config = config_from_metadata(read_metadata(path))
        if meta_config is not None:
            tensors, _ = load_tensors(path)
            config = config_from_file(get_method(meta_config["method"]).config_cls, meta_config, path)
            return [(None, config, tensors)]
    specs = [get_method(method)] if method else [s for s in all_specs() if s.detect is not None and s.detect(path)]
    if specs:
        spec = specs[0]
        if spec.convert is None:
            raise CheckpointError(f"method {spec.name!r} has no converter for official checkpoints")
        config, tensors = spec.convert(path)
        return [(None, config, tensors)]
    if os.path.isdir(path):
        subs = sorted(d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, CONFIG_NAME)))
        if subs:
            return [(d, *read_adapter(os.path.join(path, d), None)[0][1:]) for d in subs]
        raise CheckpointError(
            f"{path!r} holds no {CONFIG_NAME} and no official checkpoint layout vadapters recognises; "
            "pass method=... to force a converter"
        )
    load_tensors(path)  # a truncated or corrupt file is reported as such, not as a foreign one
    raise CheckpointError(f"{path!r} is a safetensors file without a vadapters config; pass method=... to convert")


def load_adapter_state_dict(
    module: nn.Module, adapter_name: str, state_dict: dict[str, torch.Tensor], strict: bool = True
) -> None:
    """Copy `state_dict` into adapter `adapter_name` on `module`, with exact key and shape accounting."""
    state = get_state(module)
    if state is None or adapter_name not in state.adapters:
        raise BadInputError(f"no adapter named {adapter_name!r} on this module")
    record = state.adapters[adapter_name]
    slots = _injector(record.method).adapter_slots(module, adapter_name)
    missing = sorted(set(slots) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(slots))
    bad_shapes = []
    for key in sorted(set(slots) & set(state_dict)):
        owner, attr, is_buffer = slots[key]
        want = (owner._buffers if is_buffer else owner._parameters)[attr].shape
        if tuple(state_dict[key].shape) != tuple(want):
            bad_shapes.append(f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(want)}")
    if bad_shapes:
        raise IncompatibleBaseError(
            f"{len(bad_shapes)} tensor shape(s) do not match this model: "
            + "; ".join(bad_shapes[:6])
            + (" ..." if len(bad_shapes) > 6 else "")
            + f". The adapter was made for {hosts.describe_signature(record.config.base_signature)}; "
            f"this model is {hosts.describe_signature(hosts.signature(module))}."
        )
    if missing or unexpected:
        message = (
            f"adapter {adapter_name!r} ({record.method}): {len(missing)} missing key(s) {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}, {len(unexpected)} unexpected key(s) {unexpected[:6]}"
            f"{' ...' if len(unexpected) > 6 else ''}"
        )
        if strict:
            raise CheckpointError(message + "; pass strict=False to load what matches")
        warnings.warn(message, stacklevel=3)
    for key in sorted(set(slots) & set(state_dict)):
        copy_into_slot(slots[key], state_dict[key])


def load(
    host: Any,
    path: str | os.PathLike,
    adapter_name: str | None = None,
    *,
    strict: bool = True,
    is_trainable: bool = False,
    method: str | None = None,
    weight: float | None = None,
    subfolder: str | None = None,
    weight_name: str | None = None,
    revision: str | None = None,
    **config_overrides: Any,
) -> Any:
    """Load an adapter folder, single file, or official checkpoint into `host`. Returns `host`.

    The adapter's recorded base is compared with the host's (`vadapters.core.bases`, the one rule for every
    method): another architecture raises `IncompatibleBaseError`, another base of the same architecture loads with
    a `BaseModelWarning` naming both (SaRA refuses it: its update is tied to the base's exact weights).

    Args:
        host: a diffusers pipeline or model.
        path: a vadapters folder (`adapter_config.json` + `adapter_model.safetensors`), a single-file
            `.safetensors` written by vadapters, or an official checkpoint a method recognises (e.g. the
            ResAdapter two-file folder); local, a trained adapter shipped in `weights/` by name (`"vadapters:NAME"`,
            e.g. `"vadapters:sam-adapter-shadow"`; hash-verified against `weights/manifest.json`), or a Hugging
            Face Hub id `ORG/NAME[/FOLDER]` (downloaded into, or read offline from, the Hugging Face cache by
            huggingface_hub).
        adapter_name (`str`, optional): defaults to the method name (then `<method>_1`, ...).
        strict (`bool`): raise on missing or unexpected keys (shape mismatches always raise).
        is_trainable (`bool`): leave the adapter's parameters trainable (frozen by default, as PEFT).
        method (`str`, optional): force a method's converter for an official checkpoint.
        weight (`float`, optional): adapter weight to set after loading.
        subfolder (`str`, optional): folder inside `path` (as diffusers' loaders), e.g. `"resadapter_v2_sd1.5"`.
        weight_name (`str`, optional): one file inside `path` / `subfolder` (only that file is fetched).
        revision (`str`, optional): branch, tag or commit of a Hub repository.
        **config_overrides: config fields to change at load time (e.g. `norm_blend=0.5` for ResAdapter).
    """
    sources = read_adapter(path, method, subfolder=subfolder, weight_name=weight_name, revision=revision)
    loaded = []
    try:
        for hint, config, tensors in sources:
            if config_overrides:
                config = config.replace(**config_overrides)
            name = adapter_name if adapter_name is not None and len(sources) == 1 else None
            name = name or hint or _default_name(host, config.method)
            component = config.target_component or get_method(config.method).injector_cls.component
            if not hosts.is_pipeline(host):
                component = None
            module = hosts.resolve_target(host, component)
            try:
                _inject_into(module, config, name, trainable=is_trainable, others=_frozen_with(host, module))
            except IncompatibleBaseError as err:
                raise IncompatibleBaseError(f"{err} {describe_bases(config.base_model_name_or_path, host)}") from err
            loaded.append((module, name))
            load_adapter_state_dict(module, name, tensors, strict=strict)
            check_base_name(config.base_model_name_or_path, host, f"{config.method} adapter {name!r}")
            if weight is not None:
                state = get_state(module)
                state.weights[name] = float(weight)
                _push(module, state)
    except BaseException:
        for module, name in reversed(loaded):
            state = get_state(module)
            if state is not None and name in state.adapters:
                _remove(module, state, name)
        raise
    return host


from_pretrained = load


def save_pretrained(
    host: Any,
    directory: str | os.PathLike,
    adapter_names: Sequence[str] | None = None,
    *,
    single_file: bool = False,
    dtype: torch.dtype | None = None,
) -> list[str]:
    """Save adapters as `adapter_config.json` + `adapter_model.safetensors` (atomic writes).

    One adapter goes in `directory` itself; several go in `directory/<name>/`. With `single_file=True`,
    `directory` is a `.safetensors` path and the config is embedded in its metadata. Returns written paths.
    """
    directory = os.fspath(directory)
    items = [
        (component, module, state, name)
        for component, module, state in _states(host)
        for name in state.adapters
        if adapter_names is None or name in adapter_names
    ]
    if not items:
        raise AdapterStateError(
            "there are no adapters to save on this host" + (f" named {adapter_names}" if adapter_names else "")
        )
    if single_file and len(items) != 1:
        raise BadInputError("single_file=True saves exactly one adapter; pass adapter_names=[...]")
    written = []
    for component, module, state, name in items:
        record = state.adapters[name]
        config = record.config
        if component is not None and config.target_component != component:
            config = config.replace(target_component=component)
        tensors = _injector(record.method).adapter_state_dict(module, name)
        if dtype is not None:
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        if single_file:
            return write_adapter(tensors, config, directory, single_file=True, adapter_name=name)
        target = directory if len(items) == 1 else os.path.join(directory, name)
        written += write_adapter(tensors, config, target, adapter_name=name)
    return written
