"""Official SAM-Adapter checkpoints (`tianrun-chen/SAM-Adapter-PyTorch`) <-> vadapters state dicts.

The official training script saves `model.state_dict()` of its own `SAM` class (sometimes wrapped as
`{"model": {"sd": ...}}`). Its adapter keys are

- `image_encoder.prompt_generator.embedding_generator.{weight,bias}`  (Linear C -> C/32)
- `image_encoder.prompt_generator.prompt_generator.proj.{weight,bias}`  (the HFC patch conv, C/32 channels)
- `image_encoder.prompt_generator.lightweight_mlp_{i}.0.{weight,bias}`  (per-block tune Linear, then GELU)
- `image_encoder.prompt_generator.shared_mlp.{weight,bias}`  (shared up-projection C/32 -> C)
- `mask_decoder.*` (the whole trained decoder), `no_mask_embed.weight`, `pe_layer.positional_encoding_gaussian_matrix`

and also every frozen `image_encoder.*` weight of SAM, which the conversion drops (the user's SAM supplies them).
Converted adapters keep the official behaviour: scrambled token layout, official init, and the decoder's own
positional-encoding matrix (see `SAMAdapterConfig`).

Example:
    >>> import torch
    >>> official = {
    ...     "image_encoder.prompt_generator.embedding_generator.weight": torch.zeros(24, 768),
    ...     "image_encoder.prompt_generator.shared_mlp.weight": torch.zeros(768, 24),
    ...     "no_mask_embed.weight": torch.zeros(1, 256),
    ... }
    >>> config, ours = convert_state_dict(official)
    >>> config.scale_factor, sorted(ours)[0]
    (32, 'image_encoder.patch_embed.prompt_generator.embedding_generator.weight')
"""

from __future__ import annotations

import os
import re

import torch

from vadapters.errors import CheckpointError
from vadapters.methods.sam_adapter.config import SAMAdapterConfig

OFFICIAL_PREFIX = "image_encoder.prompt_generator."
OURS_PREFIX = "image_encoder.patch_embed.prompt_generator."
_GENERATOR_NAMES = [
    (re.compile(r"^embedding_generator\.(weight|bias)$"), r"embedding_generator.\1"),
    (re.compile(r"^prompt_generator\.proj\.(weight|bias)$"), r"hfc_embed.\1"),
    (re.compile(r"^lightweight_mlp_(\d+)\.0\.(weight|bias)$"), r"tune.\1.\2"),
    (re.compile(r"^shared_mlp\.(weight|bias)$"), r"shared_up.\1"),
]
_NO_MASK = ("no_mask_embed.weight", "prompt_encoder.no_mask_embed.adapter_weight")
_PE = (
    "pe_layer.positional_encoding_gaussian_matrix",
    "prompt_encoder.pe_layer.gaussian_matrix.positional_encoding_gaussian_matrix",
)
_DECODER = ("mask_decoder.", "mask_decoder.decoder.")


def _unwrap(state: dict) -> dict[str, torch.Tensor]:
    for key in ("model", "sd", "state_dict"):
        if isinstance(state.get(key), dict):
            return _unwrap(state[key])
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key.removeprefix("module.")] = value
    return out


def convert_state_dict(state: dict) -> tuple[SAMAdapterConfig, dict[str, torch.Tensor]]:
    """Official keys -> (config, vadapters keys with the adapter name stripped). Frozen SAM weights are dropped."""
    state = _unwrap(state)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(OFFICIAL_PREFIX):
            rest = key[len(OFFICIAL_PREFIX) :]
            for pattern, replacement in _GENERATOR_NAMES:
                if pattern.match(rest):
                    out[OURS_PREFIX + pattern.sub(replacement, rest)] = value
                    break
            else:
                unknown.append(key)
        elif key.startswith(_DECODER[0]):
            out[_DECODER[1] + key[len(_DECODER[0]) :]] = value
        elif key == _NO_MASK[0]:
            out[_NO_MASK[1]] = value
        elif key == _PE[0]:
            out[_PE[1]] = value
    if unknown:
        raise CheckpointError(
            f"unrecognised SAM-Adapter prompt-generator keys {unknown[:4]}: only the official 'adaptor' variant "
            "(embedding_generator, prompt_generator.proj, lightweight_mlp_i, shared_mlp) is supported"
        )
    emb = state.get(OFFICIAL_PREFIX + "embedding_generator.weight")
    up = state.get(OFFICIAL_PREFIX + "shared_mlp.weight")
    if up is None:
        raise CheckpointError(
            f"no {OFFICIAL_PREFIX}shared_mlp.weight: not an official SAM-Adapter checkpoint "
            f"({len(state)} tensors, e.g. {sorted(state)[:3]})"
        )
    embed_dim, hidden = up.shape
    if embed_dim % hidden:
        raise CheckpointError(f"shared_mlp.weight has shape {tuple(up.shape)}; embed_dim must be a multiple of width")
    depth = len({k for k in state if re.match(rf"^{re.escape(OFFICIAL_PREFIX)}lightweight_mlp_\d+\.0\.weight$", k)})
    signature = {"embed_dim": int(embed_dim), "depth": depth}
    pos = state.get("image_encoder.pos_embed")
    conv = state.get(OFFICIAL_PREFIX + "prompt_generator.proj.weight")
    if pos is not None and conv is not None:
        signature["img_size"] = int(pos.shape[1] * conv.shape[-1])
    config = SAMAdapterConfig(
        scale_factor=int(embed_dim // hidden),
        use_embedding=emb is not None,
        use_hfc=conv is not None,
        freq_rate=0.25,
        init="official",
        official_token_layout=True,
        train_decoder=any(k.startswith(_DECODER[1]) for k in out),
        train_no_mask_embed=_NO_MASK[1] in out,
        official_positional_encoding=_PE[1] in out,
        base_signature=signature,
    )
    return config, out


def to_official_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vadapters SAM-Adapter keys -> the official names (adapter parts only; no frozen SAM weights)."""
    reverse = [
        (re.compile(r"^embedding_generator\.(weight|bias)$"), r"embedding_generator.\1"),
        (re.compile(r"^hfc_embed\.(weight|bias)$"), r"prompt_generator.proj.\1"),
        (re.compile(r"^tune\.(\d+)\.(weight|bias)$"), r"lightweight_mlp_\1.0.\2"),
        (re.compile(r"^shared_up\.(weight|bias)$"), r"shared_mlp.\1"),
    ]
    out = {}
    for key, value in tensors.items():
        if key.startswith(OURS_PREFIX):
            rest = key[len(OURS_PREFIX) :]
            for pattern, replacement in reverse:
                if pattern.match(rest):
                    out[OFFICIAL_PREFIX + pattern.sub(replacement, rest)] = value
                    break
            else:
                raise CheckpointError(f"unexpected SAM-Adapter key {key!r}")
        elif key.startswith(_DECODER[1]):
            out[_DECODER[0] + key[len(_DECODER[1]) :]] = value
        elif key == _NO_MASK[1]:
            out[_NO_MASK[0]] = value
        elif key == _PE[1]:
            out[_PE[0]] = value
        else:
            raise CheckpointError(f"unexpected SAM-Adapter key {key!r}")
    return out


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of an official checkpoint: a `.pth` (read with `torch.load(weights_only=True)`) or `.safetensors`."""
    from vadapters.core.io import read_checkpoint

    return _unwrap(read_checkpoint(path, "SAM-Adapter checkpoint"))


def detect(path: str) -> bool:
    """True for a `.safetensors` file with official SAM-Adapter keys (`.pth` files go through `convert`)."""
    from vadapters.core.io import foreign_tensor_names

    target = OFFICIAL_PREFIX + "shared_mlp.weight"
    return any(k.removeprefix("module.") == target for k in foreign_tensor_names(path))


def convert(path: str | os.PathLike) -> tuple[SAMAdapterConfig, dict[str, torch.Tensor]]:
    """`(config, state dict)` of an official checkpoint file (`.pth` or `.safetensors`)."""
    return convert_state_dict(read_official(path))


def convert_checkpoint(path: str | os.PathLike, out_dir: str | os.PathLike) -> list[str]:
    """Convert an official checkpoint into a vadapters adapter folder (safetensors + JSON); returns written paths."""
    from vadapters.core.api import write_adapter

    config, tensors = convert(path)
    return write_adapter(tensors, config, os.fspath(out_dir))
