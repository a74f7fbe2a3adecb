"""Official I2V-Adapter checkpoints <-> vadapters state dicts (pure functions), plus file detection and loading.

The official adapter (`i2v_module.pth`, KwaiVGI/I2V-Adapter, loaded there with `strict=False`) is a flat state dict
of the AnimateDiff v1 `UNet3DConditionModel`, whose spatial transformer blocks carry the new layers as attributes
of the self-attention module:

    <block>.attentions.<j>.transformer_blocks.0.attn1.to_q_ff.weight        (d, d), no bias
    <block>.attentions.<j>.transformer_blocks.0.attn1.to_out_ff.weight      (d, d)
    <block>.attentions.<j>.transformer_blocks.0.attn1.to_out_ff.bias        (d,)

with `<block>` one of `down_blocks.<i>`, `mid_block`, `up_blocks.<i>` - the same block names as diffusers'
`UNetMotionModel` (the motion modules live apart, under `motion_modules`). The key names are inferred from the
official module names (the weight file itself is not public in the repository; see the design notes). vadapters
keeps the layers on the attention processor, so the conversion inserts `.processor` after `attn1`; every key must
match, and `vadapters.load` then checks strictly that nothing is missing or unexpected on the target UNet.

Example:
    >>> import torch
    >>> sd = {"mid_block.attentions.0.transformer_blocks.0.attn1.to_q_ff.weight": torch.zeros(4, 4)}
    >>> list(convert_official(sd))
    ['mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_ff.weight']
    >>> list(to_official(convert_official(sd))) == list(sd)
    True
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from vadapters.core.io import foreign_tensor_names, read_checkpoint
from vadapters.core.keys import rename_keys
from vadapters.errors import CheckpointError
from vadapters.methods.i2v_adapter.config import I2VAdapterConfig

_BLOCK = r"(?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.\d+\.attn1"
_LEAF = r"(?:to_q_ff\.weight|to_out_ff\.(?:weight|bias))"
_OFFICIAL_KEY = re.compile(rf"^({_BLOCK})\.({_LEAF})$")
_OURS_KEY = re.compile(rf"^({_BLOCK})\.processor\.({_LEAF})$")
_EXPECTED = "'<block>.attentions.<j>.transformer_blocks.<k>.attn1.{to_q_ff.weight,to_out_ff.weight,to_out_ff.bias}'"
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def convert_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official keys -> vadapters keys; raises `CheckpointError` on any key that is not I2V-Adapter's."""
    out = rename_keys(state_dict, _OFFICIAL_KEY, r"\1.processor.\2", "an I2V-Adapter checkpoint", _EXPECTED)
    if not out:
        raise CheckpointError("the I2V-Adapter checkpoint holds no tensors")
    return out


def to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vadapters keys -> the official layout (inverse of `convert_official`)."""
    return rename_keys(state_dict, _OURS_KEY, r"\1.\2", "an I2V-Adapter", "'<block>...attn1.processor.<leaf>'")


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of an official file: safetensors, or a PyTorch pickle read with `torch.load(weights_only=True)`
    (the official release is a `.pth`); a `{"state_dict": ...}` wrapper is unwrapped."""
    state = read_checkpoint(path, "I2V-Adapter checkpoint")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{os.fspath(path)!r} does not hold a flat state dict of tensors")
    return state


def detect(path: str) -> bool:
    """True for an official I2V-Adapter safetensors file (`attn1.to_q_ff` keys, no vadapters config).

    Pickled `.pth` files are not sniffed here (vadapters never unpickles during detection); convert them with
    `convert_file` or load them with `load_official`.
    """
    return any(_OFFICIAL_KEY.match(k) for k in foreign_tensor_names(path))


def convert(path: str) -> tuple[I2VAdapterConfig, dict[str, torch.Tensor]]:
    """Read an official I2V-Adapter file into (config, vadapters state dict)."""
    return I2VAdapterConfig(), convert_official(read_official(path))


def convert_file(path: str | os.PathLike, out_dir: str | os.PathLike) -> list[str]:
    """Convert an official file (`.pth` or safetensors) into a vadapters adapter folder; returns written paths."""
    from vadapters.core.api import write_adapter

    config, tensors = convert(os.fspath(path))
    return write_adapter(tensors, config, os.fspath(out_dir))


def load_official(host: Any, path: str | os.PathLike, adapter_name: str = "i2v_adapter", **kwargs: Any) -> Any:
    """Load an official I2V-Adapter file (`.pth` included) into a pipeline or `UNetMotionModel`, strictly.

    `kwargs` go to `vadapters.load` (`is_trainable`, `weight`, ...). Returns `host`.
    """
    import tempfile

    from vadapters.core.api import load

    with tempfile.TemporaryDirectory(prefix="i2v-official-") as tmp:
        convert_file(path, tmp)
        return load(host, tmp, adapter_name=adapter_name, **kwargs)
