"""Loaders of the embedded perception defaults in `weights/` (hash-verified against `weights/manifest.json`).

- `load_default_classifier("cnn" | "vit")`: timm `test_resnet` (BatchNorm) / `test_vit` (LayerNorm) trained on clean
  `ShapeClasses` 32x32; inputs are images in [0, 1] normalised by `model.pretrained_cfg["mean"/"std"]`, and
  `model.pretrained_cfg["class_names"]` names the 10 classes.
- `load_default_sam()`: a real `segment_anything` `Sam` (tiny ViT, 64 px input) trained on salient scenes.
- `load_sam(checkpoint)`: the default (`None`), a folder like `weights/tiny-sam`, an official SAM
  `sam_vit_{b,l,h}_*.pth` (variant read from the tensor shapes, built with segment_anything's own classes), or a
  `Sam` object (returned as is).

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

from vadapters.errors import BadInputError, CheckpointError

CLASSIFIER_KINDS = ("cnn", "vit")


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
    from vadapters.core.io import load_tensors
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


def _load_pth(path: str) -> dict[str, torch.Tensor]:
    from vadapters.core.io import sniff_format

    fmt = sniff_format(path)
    if fmt == "safetensors":
        from vadapters.core.io import load_tensors

        return load_tensors(path)[0]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or truncated files
        raise CheckpointError(f"cannot read {path} as a SAM state dict ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


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
    return _load_into(sam, _load_pth(str(folder / "sam_tiny.pth")), str(folder))


def load_sam(checkpoint: Any = None, verify: bool = True) -> nn.Module:
    """A segment-anything `Sam` from None (embedded default), a folder in the `weights/tiny-sam` layout (or its
    `sam_tiny.pth`), an official `sam_vit_{b,l,h}_*.pth` / `.safetensors`, or a `Sam` (returned as is).

    Official checkpoints go through `vadapters.core.hosts.sam.load_sam` (segment-anything's own classes, variant
    read from the tensor shapes, `torch.load(weights_only=True)`).
    """
    if checkpoint is None or (isinstance(checkpoint, (str, os.PathLike)) and os.path.isdir(checkpoint)):
        return load_default_sam(checkpoint, verify=verify)
    if isinstance(checkpoint, (str, os.PathLike)):
        path = pathlib.Path(checkpoint)
        if path.name == "sam_tiny.pth" and (path.parent / "config.json").is_file():
            return load_default_sam(path.parent, verify=False)
    from vadapters.core.hosts.sam import load_sam as load_official

    return load_official(checkpoint)
