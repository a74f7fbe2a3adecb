"""Which base a studio tab has selected, named as adapters record it, and which adapter folders it can run there.

Every tab's adapter list follows the library's one base rule (`vadapters.core.bases`, `base_verdict`), read from
the adapters' config files and the base's config files (no model is loaded to fill a list):

- an adapter made on the selected base (or whose base is not recorded) is offered as it is;
- one made on another base of the same architecture is offered, marked with the base it was made on (it loads
  with a `BaseModelWarning`);
- one the load would refuse (another architecture; a SaRA adapter on another base, whose weights its fingerprint
  refuses) is left out, and the list's note says how many were. A SaRA adapter is offered only on the base it
  names: a copy of that base under another name counts as another base (type the folder to load it anyway; the
  fingerprint decides).

Example:
    >>> import tempfile
    >>> pipeline_base(StudioContext([tempfile.mkdtemp()]), "")[0]
    'vadapters:tiny-sd'
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

from vadapters.core.bases import base_verdict, canonical_base_name, weights_dir
from vadapters.core.hub import split_hub_id
from vadapters.core.io import CONFIG_NAME

from .context import StudioContext

Base = tuple[str | None, dict[str, Any] | None]  # (canonical base name, architecture signature or None)
DEFAULT_SD, DEFAULT_MOTION, DEFAULT_SAM = "tiny-sd", "tiny-animatediff", "tiny-sam"


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _unet_signature(folder: str | None, class_name: str | None = None) -> dict[str, Any] | None:
    """The UNet signature of a local pipeline folder, from `unet/config.json` (`class_name` overrides its class)."""
    from vadapters.core.hosts.diffusers import unet_config_signature

    config = _read_json(os.path.join(folder, "unet", "config.json")) if folder else None
    if config is None:
        return None
    return unet_config_signature(class_name or config.get("_class_name", "UNet2DConditionModel"), config)


def _cached_folder(text: str) -> str | None:
    """The Hugging Face cache snapshot folder holding the pipeline `ORG/NAME[/FOLDER]`, when its UNet config is
    there (offline and cheap: nothing is fetched to fill a list)."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, inner = split_hub_id(text) or (None, None)
    if repo_id is None:
        return None
    found = try_to_load_from_cache(repo_id, f"{inner}/unet/config.json" if inner else "unet/config.json")
    return os.path.dirname(os.path.dirname(found)) if isinstance(found, str) else None


def _pipeline_folder(ctx: StudioContext, text: str | None) -> tuple[str | None, str]:
    """`(local folder or None, name as typed)` of a pipeline field; None = the embedded default."""
    path = ctx.optional_path(text, "pipeline folder", kind="dir")
    if path is None:
        return str(weights_dir() / DEFAULT_SD), str(weights_dir() / DEFAULT_SD)
    return (path if os.path.isdir(path) else _cached_folder(path)), path


def pipeline_base(ctx: StudioContext, text: str | None) -> Base:
    """The base Generate (and its multi-view mode) loads for its pipeline field: `load_pipeline`'s name."""
    folder, name = _pipeline_folder(ctx, text)
    return canonical_base_name(name), _unet_signature(folder)


def video_base(ctx: StudioContext, text: str | None) -> Base:
    """The base the Video tab loads (`load_video_pipeline`): an AnimateDiff pipeline folder, or a motion adapter
    (folder or Hub id) on the embedded tiny-sd, by default the embedded tiny-animatediff; named by its motion
    model, as `load_animatediff_pipeline` names it."""
    path = ctx.optional_path(text, "pipeline folder", kind="dir")
    if path is not None and os.path.isfile(os.path.join(path, "model_index.json")):
        return canonical_base_name(path), _unet_signature(path)
    motion = path if path is not None else str(weights_dir() / DEFAULT_MOTION)
    return canonical_base_name(motion), _unet_signature(str(weights_dir() / DEFAULT_SD), "UNetMotionModel")


@functools.lru_cache(maxsize=8)
def _official_sam_signature(model_type: str) -> dict[str, Any]:
    from vadapters.core.hosts import signature
    from vadapters.models.real import sam_vit

    return signature(sam_vit(model_type, device="meta"))  # the architecture only: no weights, no memory


def sam_base(ctx: StudioContext, text: str | None) -> Base:
    """The SAM the Segment tab loads (`load_sam`): the embedded tiny SAM, a model type `vit_b` / `vit_l` /
    `vit_h`, a folder in the tiny layout, an official `.pth` or a Hub file id (architecture unknown until read)."""
    from vadapters.models.defaults import SAM_CHECKPOINTS, SAM_URL

    typed = (text or "").strip()
    if typed in SAM_CHECKPOINTS:
        return SAM_URL + SAM_CHECKPOINTS[typed], _official_sam_signature(typed)
    path = ctx.optional_path(typed, "SAM checkpoint")
    if path is not None and os.path.basename(path) == "sam_tiny.pth":
        path = os.path.dirname(path)
    folder = str(weights_dir() / DEFAULT_SAM) if path is None else path
    config = _read_json(os.path.join(folder, "config.json")) if os.path.isdir(folder) else None
    if config is None or not isinstance(config.get("builder_kwargs"), dict):
        return canonical_base_name(path), None
    kwargs = config["builder_kwargs"]
    keys = ("img_size", "embed_dim", "depth")
    return canonical_base_name(folder), {"class": "Sam", **{k: kwargs[k] for k in keys if k in kwargs}}


def _config_of(folder: str) -> Any:
    """The adapter's `AdapterConfig` (None when it cannot be read: the load will say why)."""
    from vadapters.core.registry import get_method

    data = _read_json(os.path.join(folder, CONFIG_NAME))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_method(data["method"]).config_cls.from_dict(data)
    except Exception:  # noqa: BLE001 - any unreadable config is offered as it is; loading reports the problem
        return None


def adapter_choices(
    ctx: StudioContext, methods: Sequence[str], base: Base | None
) -> tuple[list[tuple[str, str]], str]:
    """`([(label, folder)], note)`: adapter folders of `methods` under the allowed roots that run on `base`
    (None: not known, every one offered), by the rule in the module docstring."""
    choices, left_out = [], []
    for shown, folder in ctx.adapter_folders(methods):
        config = _config_of(folder) if base is not None else None
        verdict, why = base_verdict(config, *base) if config is not None else ("same", "")
        if verdict == "refused":
            left_out.append(f"{shown} ({why})")
        elif verdict == "other":
            choices.append((f"{shown}  [{why}: loads with a warning]", shown))
        else:
            choices.append((shown, shown))
    note = f"base: {base[0]}" if base is not None and base[0] else "base not known: every adapter of the method"
    if left_out:
        note += f"; {len(left_out)} left out, made for another base: " + "; ".join(left_out[:3])
    return choices, note


def list_update(ctx: StudioContext, methods: Sequence[str], selected: Any, text: str | None) -> Any:
    """The `gr.Dropdown` update of a tab's adapter list for its base field `text` (`selected`: how the tab names
    its base, e.g. `pipeline_base`). A base field that does not resolve lists every adapter of the methods, with
    the reason in the note (the tab's main action reports the error)."""
    import gradio as gr

    from vadapters.errors import VAdaptersError

    try:
        base = selected(ctx, text)
        choices, note = adapter_choices(ctx, methods, base)
    except VAdaptersError as err:
        choices, note = adapter_choices(ctx, methods, None)
        note = f"{note} ({err})"
    return gr.Dropdown(choices=choices, value=None, info=note)
