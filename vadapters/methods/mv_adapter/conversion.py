"""Official MV-Adapter checkpoints <-> vadapters state dicts (pure functions), plus file detection.

The official release (`mvadapter_{t2mv,i2mv}_{sd21,sdxl}.safetensors`, `mvadapter_{tg2mv,ig2mv}_sdxl...`) is one
flat safetensors file holding
- UNet processor keys: `<...>.attn1.processor.to_{q,k,v}_{mv,ref}.weight`, `<...>.attn1.processor.to_out_{mv,ref}.0.
  {weight,bias}` - the same names vadapters uses, because our wrapper sits where the official processor sits;
- the condition encoder (a diffusers `T2IAdapter`) **unprefixed**: `adapter.conv_in.weight`, `adapter.body...`;
  vadapters keeps it under `mv_condition_encoder.cond_encoder.`.
Upstream loads both with `strict=False`; here every key must map, and `vadapters.load` then checks strictly that
nothing is missing or unexpected on the target UNet.

What the config is read from (the file's content, never its name):
- `use_ref` and the condition encoder (type, downscale factor, residual blocks) from the tensors;
- the camera convention: always `"official"` (z-up, azimuth - 90), the world frame the released models were
  trained on;
- the attention topology from the file's metadata key `mv_adapter_topology` (written by `save_official`),
  else `"row"`. The official files do not record it: row and row + column models hold the same tensors (in the
  official code the topology is the attention-processor class the script picks). The geometry-guided releases
  (`ig2mv`, `tg2mv`) run with row + column attention in the official scripts, so load them with
  `vadapters.load(pipe, path, topology="rowcol6")`.
"""

from __future__ import annotations

import math
import re
import warnings

import torch

from vadapters.core.io import foreign_tensor_names, load_tensors
from vadapters.errors import CheckpointError
from vadapters.methods.mv_adapter.condition import ENCODER_ATTRIBUTE
from vadapters.methods.mv_adapter.config import TOPOLOGIES, MVAdapterConfig

ENCODER_PREFIX = f"{ENCODER_ATTRIBUTE}.cond_encoder."
TOPOLOGY_METADATA = "mv_adapter_topology"
_PROC_KEY = re.compile(
    r"^(?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.\d+\.attn1\.processor\."
    r"(?:to_[qkv]_(?:mv|ref)\.weight|to_out_(?:mv|ref)\.0\.(?:weight|bias))$"
)
_ENCODER_KEY = re.compile(r"^adapter\.[\w.]+$")
_RES_BLOCK = re.compile(r"^adapter\.body\.0\.resnets\.(\d+)\.")


def convert_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official flat keys -> vadapters keys; raises `CheckpointError` on any key that is not MV-Adapter's.

    Example:
        >>> sd = {"mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_mv.weight": torch.zeros(2, 2),
        ...       "adapter.conv_in.weight": torch.zeros(1)}
        >>> sorted(convert_official(sd))[0]
        'mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_mv.weight'
        >>> sorted(convert_official(sd))[1]
        'mv_condition_encoder.cond_encoder.adapter.conv_in.weight'
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if _PROC_KEY.match(key):
            out[key] = tensor
        elif _ENCODER_KEY.match(key):
            out[ENCODER_PREFIX + key] = tensor
        else:
            raise CheckpointError(
                f"unexpected key in an MV-Adapter checkpoint: {key!r} (expected '...attn1.processor.to_*_mv/ref...' "
                "or unprefixed T2I-Adapter keys 'adapter....')"
            )
    return out


def to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vadapters keys -> the official flat layout (inverse of `convert_official`)."""
    out = {}
    for key, tensor in state_dict.items():
        if key.startswith(ENCODER_PREFIX):
            out[key.removeprefix(ENCODER_PREFIX)] = tensor
        elif _PROC_KEY.match(key):
            out[key] = tensor
        else:
            raise CheckpointError(f"key {key!r} is not part of an MV-Adapter")
    return out


def infer_config(state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> MVAdapterConfig:
    """Config of an official file from its tensors and metadata (see the module docstring; never the file name).

    The official encoders take 6-channel maps; the downscale factor follows from `conv_in` (6 * f^2 inputs):
    8 is the SD 2.1 `full_adapter`, 16 the SDXL `full_adapter_xl`.

    Example:
        >>> sd = {"mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_ref.weight": torch.zeros(2, 2)}
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     cfg = infer_config(sd)
        >>> "topology='rowcol6'" in str(caught[0].message)
        True
        >>> cfg.use_ref, cfg.topology, cfg.camera_convention
        (True, 'row', 'official')
        >>> infer_config(sd, {"mv_adapter_topology": "rowcol6"}).topology
        'rowcol6'
    """
    use_ref = any("_ref." in k for k in state_dict)
    topology = (metadata or {}).get(TOPOLOGY_METADATA)
    if topology is None:
        warnings.warn(
            "this MV-Adapter file does not record its attention topology (official files never do); unless "
            "vadapters.load(..., topology=...) says otherwise it runs with row attention. The geometry-guided "
            "releases (ig2mv / tg2mv) were trained with row + column attention: load them with topology='rowcol6'.",
            UserWarning,
            stacklevel=3,
        )
        topology = "row"
    if topology not in TOPOLOGIES:
        raise CheckpointError(f"metadata {TOPOLOGY_METADATA}={topology!r} is not one of {TOPOLOGIES}")
    kwargs: dict = {"num_views": 6, "use_ref": use_ref, "topology": topology, "camera_convention": "official"}
    conv_in = state_dict.get("adapter.conv_in.weight")
    if conv_in is not None:
        factor = math.isqrt(int(conv_in.shape[1]) // 6)
        if 6 * factor * factor != int(conv_in.shape[1]):
            raise CheckpointError(
                f"adapter.conv_in takes {conv_in.shape[1]} channels, not 6 * f^2 as official encoders"
            )
        blocks = {int(m.group(1)) for k in state_dict if (m := _RES_BLOCK.match(k))}
        kwargs.update(
            condition_channels=6,
            condition_downscale_factor=factor,
            condition_type="full_adapter_xl" if factor == 16 else "full_adapter",
            condition_num_res_blocks=max(blocks) + 1 if blocks else None,
        )
    return MVAdapterConfig(**kwargs)


def detect(path: str) -> bool:
    """True for an official MV-Adapter safetensors file (processor `_mv` keys, no vadapters config)."""
    return any(k.endswith("processor.to_q_mv.weight") for k in foreign_tensor_names(path))


def convert(path: str) -> tuple[MVAdapterConfig, dict[str, torch.Tensor]]:
    """Read an official MV-Adapter file into (config, vadapters state dict)."""
    tensors, metadata = load_tensors(path)
    return infer_config(tensors, metadata), convert_official(tensors)


def save_official(path: str, state_dict: dict[str, torch.Tensor], topology: str = "row") -> str:
    """Write a vadapters MV-Adapter state dict as an official-layout file (the official loader reads it as is)
    that records its attention topology in the metadata, so `vadapters.load` restores it under any file name.

    Example:
        >>> import os, tempfile
        >>> sd = {"mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_mv.weight": torch.ones(2, 2)}
        >>> path = save_official(os.path.join(tempfile.mkdtemp(), "renamed.safetensors"), sd, "rowcol6")
        >>> convert(path)[0].topology
        'rowcol6'
    """
    from safetensors.torch import save_file

    if topology not in TOPOLOGIES:
        raise CheckpointError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
    tensors = {k: v.detach().contiguous() for k, v in to_official(state_dict).items()}
    save_file(tensors, path, metadata={"format": "pt", TOPOLOGY_METADATA: topology})
    return path
