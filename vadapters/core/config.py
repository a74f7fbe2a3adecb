"""Config base class: a dataclass with help metadata, validation and a JSON round trip.

Follows PEFT's `PeftConfig`: every field carries `metadata={"help": ...}`, `__post_init__` validates, the
saved JSON is stamped with `method` and `vadapters_version`, and keys written by a newer version are dropped
with a warning instead of crashing.

Example:
    >>> from vadapters.methods.res_adapter import ResAdapterConfig
    >>> cfg = ResAdapterConfig(rank=4, alpha=2.0)
    >>> ResAdapterConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from vadapters._version import __version__
from vadapters.core.io import CONFIG_NAME, atomic_write_text
from vadapters.core.validation import check_field_types
from vadapters.errors import BadInputError, CheckpointError


@dataclass
class AdapterConfig:
    """Fields shared by every method's config.

    Args:
        base_model_name_or_path (`str`, optional): where the base model came from; recorded, checked on load
            with a warning when it differs.
        base_signature (`dict`, optional): architecture summary of the host the adapter was made on (set by
            `inject`); loading onto a host with another signature raises `IncompatibleBaseError`.
        target_component (`str`, optional): pipeline component that carries the adapter (e.g. `"unet"`).
    """

    method: ClassVar[str] = ""

    base_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Where the base model came from (recorded, compared on load)."}
    )
    base_signature: dict | None = field(
        default=None,
        metadata={"help": "Architecture summary of the base the adapter was made for; set by inject()."},
    )
    target_component: str | None = field(
        default=None, metadata={"help": "Pipeline component carrying the adapter, e.g. 'unet'."}
    )

    def __post_init__(self) -> None:
        check_field_types(self)  # declared types, never coerced ("no" is not a bool)
        self.validate()

    def validate(self) -> None:
        """Raise `BadInputError` for out-of-range values; subclasses extend this."""

    def refuses_other_bases(self) -> bool:
        """Whether loading onto another base of the same architecture raises instead of warning
        (`vadapters.core.bases`); False for every method whose update means something on a fine-tune too."""
        return False

    # -- helpers for subclasses -------------------------------------------------------------------------------
    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise BadInputError(f"{type(self).__name__}: {message}")

    # -- serialisation -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with `method` and `vadapters_version` stamped."""
        out: dict[str, Any] = {"method": self.method, "vadapters_version": __version__}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        """Build from a dict; a different `method` raises, unknown keys are dropped with a warning."""
        data = dict(data)
        method = data.pop("method", cls.method)
        data.pop("vadapters_version", None)
        if cls.method and method != cls.method:
            raise CheckpointError(f"config is for method {method!r}, not {cls.method!r}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            warnings.warn(
                f"{cls.__name__}: ignoring unknown keys {unknown} (written by a newer vadapters or another tool)",
                stacklevel=2,
            )
        kwargs = {}
        for name, value in data.items():
            if name not in known:
                continue
            default = known[name].default
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    def save_pretrained(self, directory: str | os.PathLike) -> str:
        """Write `adapter_config.json` atomically; returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, CONFIG_NAME)
        atomic_write_text(path, self.to_json_string())
        return path

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> AdapterConfig:
        return config_from_file(cls, read_config_dict(directory), os.path.join(directory, CONFIG_NAME))

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None = None) -> AdapterConfig:
        """The default config with `overrides` applied; unknown field names raise `BadInputError` (a training
        option typed by a user, unlike `from_dict`, which only warns about keys in files written by other
        versions)."""
        overrides = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        if set(overrides) - known:
            raise BadInputError(
                f"{cls.__name__} has no field(s) {sorted(set(overrides) - known)}; fields: {sorted(known)}"
            )
        return cls(**overrides)

    def replace(self, **changes: Any) -> AdapterConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def for_host(self, host: Any) -> AdapterConfig:
        """This config with the defaults that depend on the host filled in (`inject` calls it with the pipeline or
        model; the filled values are saved). The base class has none: it returns `self`; a method overrides it
        (MV-Adapter: the condition encoder's downscale factor follows the pipeline's VAE).

        Example:
            >>> from vadapters.methods.res_adapter import ResAdapterConfig
            >>> config = ResAdapterConfig()
            >>> config.for_host(None) is config
            True
        """
        return self

    @classmethod
    def help(cls) -> str:
        """One line per field: name, default, help text."""
        lines = []
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            lines.append(f"{f.name} = {default!r}: {f.metadata.get('help', '')}")
        return "\n".join(lines)


def read_config_dict(directory: str | os.PathLike) -> dict[str, Any]:
    """Read `adapter_config.json` from a folder, with clear errors for missing or broken files."""
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isfile(path):
        raise CheckpointError(f"no {CONFIG_NAME} in {os.fspath(directory)!r}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "method" not in data:
        raise CheckpointError(f"{path} has no 'method' key; it was not written by vadapters")
    return data


def config_from_file(cls: type[AdapterConfig], data: dict[str, Any], source: str | os.PathLike) -> AdapterConfig:
    """`cls.from_dict(data)` for a config read from `source`: a value of the wrong type or range is a broken
    file, reported as a `CheckpointError` that names the file.

    Example:
        >>> from vadapters.methods.res_adapter import ResAdapterConfig
        >>> config_from_file(ResAdapterConfig, {"method": "res_adapter", "alpha": [1, 2]}, "a/adapter_config.json")
        Traceback (most recent call last):
        ...
        vadapters.errors.CheckpointError: a/adapter_config.json: ResAdapterConfig.alpha must be a number (an int or a float), got list [1, 2]; fix that value in the file or save the adapter again
    """
    try:
        return cls.from_dict(data)
    except BadInputError as exc:
        raise CheckpointError(
            f"{os.fspath(source)}: {exc}; fix that value in the file or save the adapter again"
        ) from None
