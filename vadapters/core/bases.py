"""Which base model an adapter was made on: one name per base, recorded on inject, compared on load.

Every method follows the same rule (`vadapters.load` applies it):

- **Architecture** (`base_signature`: block widths, layer counts): another architecture raises
  `IncompatibleBaseError`; the weights could not fit.
- **Base name** (`base_model_name_or_path`, recorded by `inject` from the host and written by `save_pretrained`):
  another base of the same architecture loads, with a `BaseModelWarning` naming both (an adapter trained on one
  checkpoint runs on a fine-tune of it, but its outputs are only checked on its own base).
- **SaRA** additionally refuses another base by weight fingerprint (`IncompatibleBaseError`): its update replaces
  chosen entries of the base's own weights, so it means nothing on other weights (`check_base=False` overrides).

`base_verdict` says which of the three a load will meet, from an adapter's config alone (no model loaded): the
studio offers an adapter on the base a tab has selected when it loads (silently, or marked when it will warn) and
leaves out those it would refuse.

Names are canonical so the same base gets the same name on every machine: `ORG/NAME` for a Hub repository (also when
loaded from its cache snapshot), `vadapters:NAME` for an embedded default under `weights/`, the real path of any
other local folder (a pipeline component's folder counts as its pipeline's), and `vadapters:tiny` for the seeded
random-weights tiny architecture when asked for by name.

Example:
    >>> canonical_base_name("/c/hub/models--ORG--NAME/snapshots/0123/unet"), canonical_base_name(None)
    ('ORG/NAME', None)
    >>> canonical_base_name(str(weights_dir() / "tiny-sd"))
    'vadapters:tiny-sd'
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import warnings
from typing import Any

from vadapters.core.hub import hub_id_of_cache_path

EMBEDDED_PREFIX = "vadapters:"
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "transformer", "motion_adapter", "controlnet")


class BaseModelWarning(UserWarning):
    """An adapter is loaded onto another base model (same architecture) than the one it was made on."""


def weights_dir() -> pathlib.Path:
    """Folder of the embedded defaults: `$VADAPTERS_WEIGHTS`, else the installed `vadapters.weights` package (the
    repository's `weights/`).

    Example:
        >>> (weights_dir() / "manifest.json").name
        'manifest.json'
    """
    override = os.environ.get("VADAPTERS_WEIGHTS")
    if override:
        return pathlib.Path(override)
    spec = importlib.util.find_spec("vadapters.weights")
    if spec is not None and spec.submodule_search_locations:
        return pathlib.Path(next(iter(spec.submodule_search_locations)))
    return pathlib.Path(__file__).resolve().parents[2] / "weights"


def canonical_base_name(name_or_path: Any) -> str | None:
    """The machine-independent name of a base given as a Hub id, a local path, or a name (see the module doc).

    Example:
        >>> canonical_base_name("runwayml/stable-diffusion-v1-5")
        'runwayml/stable-diffusion-v1-5'
    """
    if name_or_path is None or str(name_or_path) == "":
        return None
    text = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else str(name_or_path)
    hub = hub_id_of_cache_path(text)
    if hub is not None:
        return _pipeline_of(hub, lambda parent: True)
    if not os.path.exists(text):
        return text
    path = os.path.realpath(text)
    path = _pipeline_of(path, lambda parent: os.path.isfile(os.path.join(parent, "model_index.json")))
    root = os.path.realpath(weights_dir())
    if os.path.commonpath([root, path]) == root and path != root:
        return EMBEDDED_PREFIX + pathlib.PurePath(os.path.relpath(path, root)).as_posix()
    return path


def _pipeline_of(path: str, is_pipeline: Any) -> str:
    head, _, tail = path.replace("\\", "/").rstrip("/").rpartition("/")
    return head if tail in COMPONENTS and head and is_pipeline(head) else path


def host_base_name(host: Any) -> str | None:
    """The canonical name of the base a host was loaded from, where it says: a diffusers pipeline's
    `name_or_path`, a model's `config._name_or_path` (diffusers) or `name_or_path` attribute (transformers; set by
    `vadapters.models.load_sam`). None for a model built in memory.

    Example:
        >>> import torch
        >>> host_base_name(torch.nn.Linear(2, 2)) is None
        True
    """
    name = getattr(host, "name_or_path", None)
    if not name:
        config = getattr(host, "config", None)
        getter = getattr(config, "get", None)
        name = getter("_name_or_path", None) if callable(getter) else getattr(config, "_name_or_path", None)
    return canonical_base_name(name) if isinstance(name, (str, os.PathLike)) else None


def describe_bases(recorded: str | None, host: Any) -> str:
    """`"(made on 'A'; loading onto 'B')"` for messages, each side `unknown` when not known.

    Example:
        >>> import torch
        >>> describe_bases("ORG/NAME", torch.nn.Linear(2, 2))
        "(adapter made on 'ORG/NAME'; loading onto an unnamed model)"
    """
    expected, found = canonical_base_name(recorded), host_base_name(host)
    made = f"made on {expected!r}" if expected else "made on an unrecorded base"
    return f"(adapter {made}; loading onto {repr(found) if found else 'an unnamed model'})"


def check_base_name(recorded: str | None, host: Any, what: str) -> None:
    """Warn (`BaseModelWarning`) when `recorded` (an adapter's `base_model_name_or_path`) names another base than
    `host` was loaded from; silent when either is unknown.

    Example:
        >>> import torch
        >>> check_base_name("ORG/NAME", torch.nn.Linear(2, 2), "res_adapter adapter")  # host unknown: silent
    """
    found = host_base_name(host)
    expected = canonical_base_name(recorded)
    if expected is None or found is None or expected == found:
        return
    warnings.warn(
        BaseModelWarning(
            f"this {what} was made on base {expected!r} but is being loaded onto {found!r} (same architecture). "
            "It loads and runs, but its outputs were only trained and checked on its own base: load it onto that "
            "base for the results it was made for (vadapters.models.load_pipeline / load_sam accept the name)."
        ),
        stacklevel=3,
    )


def base_verdict(config: Any, base_name: str | None, signature: dict[str, Any] | None = None) -> tuple[str, str]:
    """What loading an adapter (its `AdapterConfig`) onto a base named `base_name` (with architecture `signature`,
    when known) will do, by the rule above, without loading either: `("same", "")` loads silently (same base, or
    either unknown), `("other", why)` loads with a `BaseModelWarning`, `("refused", why)` raises
    `IncompatibleBaseError`.

    Example:
        >>> from vadapters.core.config import AdapterConfig
        >>> base_verdict(AdapterConfig(base_model_name_or_path="ORG/A"), "ORG/B")
        ('other', "made on 'ORG/A'")
        >>> base_verdict(AdapterConfig(base_signature={"depth": 4}), None, {"depth": 12})[0]
        'refused'
    """
    from vadapters.core.hosts import describe_signature, signature_mismatch

    mismatch = signature_mismatch(getattr(config, "base_signature", None), signature or {})
    if mismatch:
        return "refused", f"made for {describe_signature(config.base_signature)} (differs in {', '.join(mismatch)})"
    expected, found = canonical_base_name(config.base_model_name_or_path), canonical_base_name(base_name)
    if expected is None or found is None or expected == found:
        return "same", ""
    if config.refuses_other_bases():
        return "refused", f"made on {expected!r}; {config.method} refuses other bases"
    return "other", f"made on {expected!r}"
