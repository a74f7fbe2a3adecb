"""Loaders of the embedded perception defaults in `weights/` (hash-verified against `weights/manifest.json`).

- `load_default_classifier("cnn" | "vit")`: timm `test_resnet` (BatchNorm) / `test_vit` (LayerNorm) trained on clean
  `ShapeClasses` 32x32; inputs are images in [0, 1] normalised by `model.pretrained_cfg["mean"/"std"]`, and
  `model.pretrained_cfg["class_names"]` names the 10 classes.
- `load_default_sam()`: a real `segment_anything` `Sam` (tiny ViT, 64 px input) trained on salient scenes.
- `load_sam(checkpoint)`: the default (`None`), a folder like `weights/tiny-sam`, an official SAM
  `sam_vit_{b,l,h}_*.pth` (variant read from the tensor shapes, built with segment_anything's own classes), a model
  type (`"vit_b"`: Meta's official file, fetched by torch.hub into its cache), a Hugging Face Hub file id, or a
  `Sam` object (returned as is). The one SAM loader: pipelines, training, the CLI and the app all call it.

Example:
    >>> from vadapters.models.defaults import CLASSIFIER_KINDS
    >>> CLASSIFIER_KINDS
    ('cnn', 'vit')
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import torch
from torch import nn

from vadapters.core.bases import canonical_base_name
from vadapters.core.io import load_tensors, read_checkpoint
from vadapters.errors import BadInputError, CheckpointError

CLASSIFIER_KINDS = ("cnn", "vit")
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_CHECKPOINTS = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}
"""Meta's official segment-anything checkpoints by model type (as `segment_anything.sam_model_registry` names them)."""


def _folder(name_or_path: str | os.PathLike, verify: bool) -> pathlib.Path:
    from vadapters.models.weights import default_path

    if isinstance(name_or_path, (str, os.PathLike)) and os.path.isdir(name_or_path):
        return pathlib.Path(name_or_path)
    return default_path(str(name_or_path), verify_hashes=verify)


def _read_config(folder: pathlib.Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json; expected a folder written by `vadapters train-base`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from err


def load_default_classifier(kind_or_path: str | os.PathLike = "cnn", verify: bool = True) -> nn.Module:
    """The embedded classifier `kind` ("cnn" or "vit") or one saved in the same layout at a folder path, in eval
    mode; `pretrained_cfg` carries `mean`, `std`, `class_names`, `input_size`."""
    from vadapters.models.tiny import tiny_timm_classifier

    if str(kind_or_path) in CLASSIFIER_KINDS:
        folder = _folder(f"tiny-classifier-{kind_or_path}", verify)
    elif os.path.isdir(kind_or_path):
        folder = pathlib.Path(kind_or_path)
    else:
        raise BadInputError(
            f"expected a classifier kind {CLASSIFIER_KINDS} or a folder with config.json + model.safetensors, "
            f"got {kind_or_path!r}"
        )
    config = _read_config(folder)
    model = tiny_timm_classifier(
        config["architecture"],
        num_classes=config["num_classes"],
        img_size=config["img_size"],
        **config.get("model_kwargs", {}),
    )
    state, _ = load_tensors(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder / 'model.safetensors'} does not fit timm {config['architecture']}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.pretrained_cfg = {
        **dict(getattr(model, "pretrained_cfg", {}) or {}),
        "mean": tuple(config["mean"]),
        "std": tuple(config["std"]),
        "class_names": tuple(config["class_names"]),
        "input_size": (3, config["img_size"], config["img_size"]),
        "num_classes": config["num_classes"],
    }
    return model.eval().requires_grad_(False)


def load_pretrained_classifier(name: str) -> nn.Module:
    """A timm classifier with its published pretrained weights, in eval mode and frozen: a timm model name
    (`"resnet18.a1_in1k"`), `"hf-hub:ORG/NAME"` or a Hub id `ORG/NAME`. timm resolves the weights through
    huggingface_hub (with `HF_HUB_OFFLINE=1`, from the Hugging Face cache only); missing ones raise a
    `CheckpointError` naming the `hf download` command.

    Example:
        >>> model = load_pretrained_classifier("resnet18.a1_in1k")  # doctest: +SKIP
        >>> model.pretrained_cfg["mean"]  # doctest: +SKIP
        (0.485, 0.456, 0.406)
    """
    import timm
    from huggingface_hub.errors import EntryNotFoundError

    from vadapters.core.hub import not_cached_message, split_hub_id

    timm_name = f"hf-hub:{name}" if split_hub_id(name) is not None else name
    if not timm_name.startswith("hf-hub:") and not timm.is_model(timm_name):
        raise BadInputError(
            f"{name!r} is not a timm model name (e.g. 'resnet18.a1_in1k'; see timm.list_pretrained()), a Hub id "
            f"ORG/NAME, a classifier kind {CLASSIFIER_KINDS} or a folder with config.json + model.safetensors"
        )
    try:
        model = timm.create_model(timm_name, pretrained=True)
    except (OSError, EntryNotFoundError) as err:  # huggingface_hub's cache / HTTP errors are OSErrors
        repo_id = timm_name.removeprefix("hf-hub:")
        if not timm_name.startswith("hf-hub:"):
            from timm.models import get_pretrained_cfg

            repo_id = getattr(get_pretrained_cfg(timm_name), "hf_hub_id", None) or timm_name
        raise CheckpointError(not_cached_message("timm weights", repo_id) + f" ({err})") from err
    except RuntimeError as err:  # timm: "No pretrained weights exist for ..."
        raise BadInputError(
            f"timm has no pretrained weights for {name!r} ({err}); see timm.list_pretrained()"
        ) from err
    model.name_or_path = timm_name.removeprefix("hf-hub:")
    return model.eval().requires_grad_(False)


def _load_into(sam: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    own = sam.state_dict()
    bad = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if bad or missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit this SAM: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} "
            f"unexpected (e.g. {unexpected[:3]}), {len(bad)} with other shapes (e.g. {bad[:3]})"
        )
    sam.load_state_dict(state)
    return sam.eval()


def load_default_sam(path: str | os.PathLike | None = None, verify: bool = True) -> nn.Module:
    """The embedded tiny SAM (`weights/tiny-sam`), or one saved in the same layout at `path`."""
    from vadapters.models.tiny import tiny_sam

    folder = _folder(path or "tiny-sam", verify)
    config = _read_config(folder)
    kwargs = dict(config["builder_kwargs"])
    kwargs["global_attn_indexes"] = tuple(kwargs.get("global_attn_indexes", ()))
    sam = tiny_sam(**kwargs)
    sam = _load_into(sam, read_checkpoint(folder / "sam_tiny.pth", "SAM state dict"), str(folder))
    sam.name_or_path = canonical_base_name(folder)  # the base an adapter records (vadapters.core.bases)
    return sam


def official_sam_checkpoint(model_type: str) -> str:
    """The local path of Meta's official checkpoint for `model_type` ("vit_b", "vit_l", "vit_h"): in torch.hub's
    cache (`torch.hub.get_dir()/checkpoints`, `$TORCH_HOME`), downloaded there by `torch.hub.download_url_to_file`
    when missing, unless `HF_HUB_OFFLINE=1` (then a `CheckpointError` names the URL and the place to put it).

    Example:
        >>> official_sam_checkpoint("vit_b")  # doctest: +SKIP
        '/root/.cache/torch/hub/checkpoints/sam_vit_b_01ec64.pth'
    """
    from huggingface_hub import is_offline_mode

    if model_type not in SAM_CHECKPOINTS:
        raise BadInputError(f"SAM model type must be one of {sorted(SAM_CHECKPOINTS)}, got {model_type!r}")
    url = SAM_URL + SAM_CHECKPOINTS[model_type]
    path = os.path.join(torch.hub.get_dir(), "checkpoints", SAM_CHECKPOINTS[model_type])
    if os.path.isfile(path):
        return path
    fetch = f"fetch it with `curl -L --create-dirs -o {path} {url}` (or pass the .pth path)"
    if is_offline_mode():
        raise CheckpointError(f"SAM {model_type} ({url}) is not in torch.hub's cache and HF_HUB_OFFLINE=1; {fetch}")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, progress=os.environ.get("VADAPTERS_NO_PROGRESS") != "1")
    except OSError as err:  # urllib's URLError / HTTPError are OSErrors
        raise CheckpointError(f"downloading SAM {model_type} from {url} failed ({err}); {fetch}") from err
    return path


def _variant_from_state_dict(state: dict[str, torch.Tensor]) -> str:
    width = state["image_encoder.patch_embed.proj.weight"].shape[0]
    variants = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
    if width not in variants:
        raise CheckpointError(f"SAM checkpoint has encoder width {width}; expected 768 (ViT-B), 1024 (L) or 1280 (H)")
    return variants[width]


def load_official_sam(path: str | os.PathLike) -> nn.Module:
    """An official `sam_vit_{b,l,h}_*.pth` (or `.safetensors` of the same keys) in segment-anything's own classes,
    the variant read from the tensor shapes, in eval mode."""
    from vadapters.models.real import sam_vit

    path = os.fspath(path)
    state = read_checkpoint(path, "SAM checkpoint")
    if "image_encoder.patch_embed.proj.weight" not in state:
        raise CheckpointError(
            f"{path!r} is not a segment-anything checkpoint (no 'image_encoder.patch_embed.proj.weight' key); "
            "expected sam_vit_b/l/h .pth files as released by Meta"
        )
    model = sam_vit(_variant_from_state_dict(state), device="meta")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path!r} does not match segment-anything's SAM architecture: {exc}") from exc
    # pixel_mean / pixel_std are non-persistent buffers (not in checkpoints): SAM's fixed ImageNet values.
    model.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), False)
    model.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), False)
    return model.eval()


def load_sam(checkpoint: Any = None, device: str | torch.device | None = None, verify: bool = True) -> nn.Module:
    """A segment-anything `Sam` from what a user has.

    Args:
        checkpoint: `None` (the embedded trained tiny SAM, `weights/tiny-sam`), a folder in that layout (or its
            `sam_tiny.pth`), an official `sam_vit_{b,l,h}_*.pth` / `.safetensors` (segment-anything's own classes,
            variant read from the tensor shapes, `torch.load(weights_only=True)`), a model type `"vit_b"` /
            `"vit_l"` / `"vit_h"` (Meta's official file through torch.hub's cache: `official_sam_checkpoint`), a
            Hugging Face Hub file id `ORG/NAME/FILE.pth` (through the Hugging Face cache), or a `Sam` (as is).
        device: where to put the model (default: leave it where it is / CPU).
        verify: check the embedded default's hash against `weights/manifest.json`.

    Example:
        >>> type(load_sam()).__name__
        'Sam'
    """
    from vadapters.core.hosts.sam import is_sam
    from vadapters.core.hub import resolve, split_hub_id

    if checkpoint is None or (isinstance(checkpoint, (str, os.PathLike)) and os.path.isdir(checkpoint)):
        model = load_default_sam(checkpoint, verify=verify)
    elif is_sam(checkpoint):
        model = checkpoint
    elif isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        if source in SAM_CHECKPOINTS:
            path, name = pathlib.Path(official_sam_checkpoint(source)), SAM_URL + SAM_CHECKPOINTS[source]
        elif split_hub_id(source) is not None:
            path, name = pathlib.Path(resolve(source, what="SAM checkpoint")), source
        else:
            path, name = pathlib.Path(source), canonical_base_name(source)
        if path.name == "sam_tiny.pth" and (path.parent / "config.json").is_file():
            model = load_default_sam(path.parent, verify=False)
        else:
            model = load_official_sam(path)
            model.name_or_path = name
    else:
        raise BadInputError(
            f"expected None, a SAM checkpoint path or a segment_anything Sam, got {type(checkpoint).__name__}"
        )
    return model.to(device) if device is not None else model
