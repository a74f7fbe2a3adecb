"""Official ResAdapter checkpoints <-> vadapters state dicts (pure functions), plus folder detection.

The official release is a folder with two files (checked against the released v1/v2 weights):
- `pytorch_lora_weights.safetensors` (older name `resolution_lora.safetensors`): Kohya-named conv LoRA on the
  sampler convs, `lora_unet_<path_with_underscores>.{lora_down.weight,lora_up.weight,alpha}`, fp16.
- `diffusion_pytorch_model.safetensors` (older name `resolution_normalization.safetensors`): resnet GroupNorm
  affines in diffusers naming, `<block>.resnets.<j>.norm{1,2}.{weight,bias}`, fp32.
"""

from __future__ import annotations

import os
import re

import torch

from vadapters.core.io import foreign_tensor_names, load_tensors, save_tensors
from vadapters.core.keys import rename_keys
from vadapters.errors import CheckpointError
from vadapters.methods.res_adapter.config import ResAdapterConfig

LORA_FILES = ("pytorch_lora_weights.safetensors", "resolution_lora.safetensors")
NORM_FILES = ("diffusion_pytorch_model.safetensors", "resolution_normalization.safetensors")

_KOHYA_KEY = re.compile(
    r"^lora_unet_(down|up)_blocks_(\d+)_(downsamplers|upsamplers)_(\d+)_conv\.(lora_down\.weight|lora_up\.weight|alpha)$"
)
_NORM_KEY = re.compile(r"^((?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.resnets\.\d+\.norm[12])\.(weight|bias)$")
_OUR_LORA_KEY = re.compile(r"^(.+\.(?:downsamplers|upsamplers)\.\d+\.conv)\.(lora_down|lora_up)\.weight$")
_OUR_NORM_KEY = re.compile(r"^(.+\.norm[12])\.(norm_weight|norm_bias)$")

# Official key counts -> the base they were made for (LoRA keys incl. alpha, norm keys).
_KNOWN_BASES = {
    (18, 88): {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768},
    (12, 68): {"block_out_channels": [320, 640, 1280], "cross_attention_dim": 2048},
}


def _find(path: str, names: tuple[str, ...]) -> str | None:
    for name in names:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def detect(path: str) -> bool:
    """True for an official ResAdapter folder (a LoRA file of sampler-conv keys, optionally the norm file)."""
    if not os.path.isdir(path):
        return False
    lora = _find(path, LORA_FILES)
    if lora is None:
        return _find(path, NORM_FILES[1:]) is not None
    keys = foreign_tensor_names(lora)
    return bool(keys) and all(_KOHYA_KEY.match(k) for k in keys)


def convert_official_lora(kohya: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int, float]:
    """Kohya sampler-conv LoRA -> (our state dict, rank, alpha)."""
    out: dict[str, torch.Tensor] = {}
    ranks, alphas = set(), set()
    for key, tensor in kohya.items():
        m = _KOHYA_KEY.match(key)
        if m is None:
            raise CheckpointError(f"unexpected key in ResAdapter LoRA file: {key!r} (expected sampler-conv LoRA keys)")
        side, block, kind, index, leaf = m.groups()
        path = f"{side}_blocks.{block}.{kind}.{index}.conv"
        if leaf == "alpha":
            alphas.add(float(tensor.float().item()))
            continue
        name = "lora_down" if leaf.startswith("lora_down") else "lora_up"
        out[f"{path}.{name}.weight"] = tensor
        if name == "lora_down":
            ranks.add(int(tensor.shape[0]))
    if len(ranks) != 1:
        raise CheckpointError(f"ResAdapter LoRA file has inconsistent ranks {sorted(ranks)}")
    if len(alphas) > 1:
        raise CheckpointError(f"ResAdapter LoRA file has several alpha values {sorted(alphas)}")
    rank = ranks.pop()
    alpha = alphas.pop() if alphas else float(rank)
    return out, rank, alpha


def convert_official_norms(norms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers-named resnet norm affines -> our keys (`...norm1.norm_weight` / `norm_bias`)."""
    return rename_keys(norms, _NORM_KEY, r"\1.norm_\2", "a ResAdapter norm file", "resnet norm affines")


def to_official(state_dict: dict[str, torch.Tensor], config: ResAdapterConfig):
    """Our state dict -> (Kohya LoRA dict incl. alpha, diffusers norm dict): the official two-file layout."""
    lora: dict[str, torch.Tensor] = {}
    norms: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        m = _OUR_LORA_KEY.match(key)
        if m:
            stem = "lora_unet_" + m.group(1).replace(".", "_")
            lora[f"{stem}.{m.group(2)}.weight"] = tensor
            lora[f"{stem}.alpha"] = torch.tensor(float(config.alpha))
            continue
        m = _OUR_NORM_KEY.match(key)
        if m:
            norms[f"{m.group(1)}.{m.group(2).removeprefix('norm_')}"] = tensor
            continue
        raise CheckpointError(f"key {key!r} is not part of a ResAdapter")
    return lora, norms


def convert(path: str) -> tuple[ResAdapterConfig, dict[str, torch.Tensor]]:
    """Read an official ResAdapter folder (or a lone official LoRA/norm file) into (config, state dict)."""
    if os.path.isdir(path):
        lora_path, norm_path = _find(path, LORA_FILES), _find(path, NORM_FILES)
    else:
        keys = list(load_tensors(path)[0]) if os.path.isfile(path) else []
        is_lora = bool(keys) and all(_KOHYA_KEY.match(k) for k in keys)
        is_norm = bool(keys) and all(_NORM_KEY.match(k) for k in keys)
        lora_path = path if is_lora else None
        norm_path = path if is_norm else None
    if lora_path is None and norm_path is None:
        raise CheckpointError(
            f"{path!r} is not an official ResAdapter checkpoint: expected {LORA_FILES[0]} and/or {NORM_FILES[0]}"
        )
    state: dict[str, torch.Tensor] = {}
    rank, alpha, n_lora, n_norm = 16, 8.0, 0, 0
    if lora_path is not None:
        kohya, _ = load_tensors(lora_path)
        n_lora = len(kohya)
        lora_sd, rank, alpha = convert_official_lora(kohya)
        state.update(lora_sd)
    if norm_path is not None:
        norms, _ = load_tensors(norm_path)
        n_norm = len(norms)
        state.update(convert_official_norms(norms))
    config = ResAdapterConfig(
        rank=rank,
        alpha=alpha,
        use_lora=lora_path is not None,
        use_norms=norm_path is not None,
        base_model_name_or_path=None,  # released for any SD1.5 / SDXL checkpoint: no one base to compare with
        base_signature=_KNOWN_BASES.get((n_lora, n_norm)),
    )
    return config, state


def export_official(
    state_dict: dict[str, torch.Tensor],
    config: ResAdapterConfig,
    directory: str,
    lora_dtype: torch.dtype = torch.float16,
) -> list[str]:
    """Write the official two-file folder; the LoRA file also loads with diffusers' `pipe.load_lora_weights`."""
    lora, norms = to_official(state_dict, config)
    written = []
    meta = {"format": "pt"}
    if lora:
        path = os.path.join(directory, LORA_FILES[0])
        save_tensors({k: v.to(lora_dtype) for k, v in lora.items()}, path, meta)
        written.append(path)
    if norms:
        path = os.path.join(directory, NORM_FILES[0])
        save_tensors({k: v.float() for k, v in norms.items()}, path, meta)
        written.append(path)
    return written
