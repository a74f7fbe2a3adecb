"""Loaders of the embedded perception defaults in `weights/` (hash-verified against `weights/manifest.json`).

- `load_default_classifier("cnn" | "vit")`: timm `test_resnet` (BatchNorm) / `test_vit` (LayerNorm) trained on clean
  `ShapeClasses` 32x32; inputs are images in [0, 1] normalised by `model.pretrained_cfg["mean"/"std"]`, and
  `model.pretrained_cfg["class_names"]` names the 10 classes.
- `load_default_sam()`: a real `segment_anything` `Sam` (tiny ViT, 64 px input) trained on salient scenes.
- `load_sam(checkpoint)`: the default (`None`), a folder like `weights/tiny-sam`, an official SAM
  `sam_vit_{b,l,h}_*.pth` (variant read from the tensor shapes, built with segment_anything's own classes), or a
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

from vadapters.core.io import load_tensors, read_checkpoint
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
    return _load_into(sam, read_checkpoint(folder / "sam_tiny.pth", "SAM state dict"), str(folder))


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
            variant read from the tensor shapes, `torch.load(weights_only=True)`), or a `Sam` (returned as is).
        device: where to put the model (default: leave it where it is / CPU).
        verify: check the embedded default's hash against `weights/manifest.json`.

    Example:
        >>> type(load_sam()).__name__
        'Sam'
    """
    from vadapters.core.hosts.sam import is_sam

    if checkpoint is None or (isinstance(checkpoint, (str, os.PathLike)) and os.path.isdir(checkpoint)):
        model = load_default_sam(checkpoint, verify=verify)
    elif is_sam(checkpoint):
        model = checkpoint
    elif isinstance(checkpoint, (str, os.PathLike)):
        path = pathlib.Path(checkpoint)
        if path.name == "sam_tiny.pth" and (path.parent / "config.json").is_file():
            model = load_default_sam(path.parent, verify=False)
        else:
            model = load_official_sam(path)
    else:
        raise BadInputError(
            f"expected None, a SAM checkpoint path or a segment_anything Sam, got {type(checkpoint).__name__}"
        )
    return model.to(device) if device is not None else model
