"""Import of official SaRA checkpoints (`optimizer.save_params()`, saved by upstream as `unet.pt`).

The official file is `{0: values_0, 1: values_1, ..., ["threshold": tau]}`: one 1-D tensor per parameter of the
fine-tuned model, keyed by its **position** in `model.parameters()`, holding the values of the entries with
`|w_base| < tau`. It only means something next to the exact base model: the positions become names and the mask
is recomputed from that base here, and a mismatch in count raises `IncompatibleBaseError` instead of silently
corrupting the model (upstream raises a bare size error or scatters wrong values).

Upstream writes it with `torch.save` (a pickle). vadapters never unpickles on its own: pass the dict you loaded
(`torch.load(path, weights_only=True)`), a safetensors file with the same keys as strings, or
`allow_pickle=True` to have `torch.load(..., weights_only=True)` (torch's restricted unpickler) read it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from vadapters.core import hosts
from vadapters.core.io import read_checkpoint, sniff_format
from vadapters.core.layers import AdapterLayer
from vadapters.errors import BadInputError, CheckpointError, IncompatibleBaseError
from vadapters.methods.sara.config import SaRAConfig
from vadapters.methods.sara.sparse import find_targets, fingerprint


def read_official(source: Any, allow_pickle: bool = False) -> tuple[dict[int, torch.Tensor], float | None]:
    """`({position: values}, threshold or None)` from a dict, a safetensors file, or (opt-in) a pickle."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise CheckpointError(f"official SaRA checkpoint not found: {path!r}")
        if allow_pickle or sniff_format(path) == "safetensors":
            data: Any = read_checkpoint(path, "official SaRA checkpoint")
        else:
            raise CheckpointError(
                f"{path!r} is a pickle (upstream saves unet.pt with torch.save); vadapters does not unpickle on its "
                "own. Pass allow_pickle=True (torch.load with weights_only=True) or the dict you loaded yourself."
            )
    elif isinstance(source, dict):
        data = source
    else:
        raise BadInputError(f"expected a dict or a checkpoint path, got {type(source).__name__}")
    threshold = None
    values: dict[int, torch.Tensor] = {}
    for key, value in data.items():
        if key == "threshold":
            threshold = float(value.item() if isinstance(value, torch.Tensor) else value)
            continue
        try:
            position = int(key)
        except (TypeError, ValueError):
            raise CheckpointError(
                f"unexpected key {key!r} in an official SaRA checkpoint (expected 0, 1, ...)"
            ) from None
        if not isinstance(value, torch.Tensor) or value.dim() != 1:
            raise CheckpointError(f"entry {key!r} of the official SaRA checkpoint is not a 1-D tensor")
        values[position] = value
    if not values:
        raise CheckpointError("the official SaRA checkpoint holds no parameter entries")
    return values, threshold


def convert_official(
    source: Any, base: Any, threshold: float | None = None, allow_pickle: bool = False, **config_fields: Any
) -> tuple[SaRAConfig, dict[str, torch.Tensor]]:
    """Official checkpoint + its base model (a plain UNet or pipeline) -> `(SaRAConfig, our state dict)`.

    Args:
        source: the official dict, or a path (see the module docstring).
        base: the exact base model the checkpoint was trained from, without adapters.
        threshold: upstream's `--threshold` when the file does not record it (upstream default 2e-3).
        **config_fields: further `SaRAConfig` fields (e.g. `lambda_rank`) for training on from it.
    """
    module = hosts.resolve_target(base, "unet")
    if any(isinstance(m, AdapterLayer) for m in module.modules()):
        raise BadInputError("convert_official needs the plain base model; unload its adapters first")
    values, recorded = read_official(source, allow_pickle)
    tau = recorded if recorded is not None else threshold
    if tau is None:
        raise BadInputError("the checkpoint does not record its threshold; pass threshold= (upstream default 2e-3)")
    if recorded is not None and threshold is not None and abs(recorded - threshold) > 1e-12:
        raise BadInputError(f"threshold={threshold} differs from the {recorded} recorded in the checkpoint")
    named = list(module.named_parameters())
    if max(values) >= len(named) or len(values) != len(named):
        raise IncompatibleBaseError(
            f"the checkpoint has entries for {len(values)} parameters (positions up to {max(values)}), the model "
            f"has {len(named)}; it was trained on another architecture"
        )
    config = SaRAConfig(threshold=float(tau), **config_fields)
    state: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    wrong = []
    for position, (name, param) in enumerate(named):
        idx = torch.nonzero(param.detach().abs().float().reshape(-1) < tau).reshape(-1)
        vals = values[position]
        if vals.numel() != idx.numel():
            wrong.append(f"{name} ({vals.numel()} values, {idx.numel()} entries below {tau})")
            continue
        if idx.numel():
            state[f"{name}.values"] = vals.to(param.dtype)
            state[f"{name}.indices"] = idx.to(torch.int32)
            counts[name] = int(idx.numel())
    if wrong:
        raise IncompatibleBaseError(
            f"{len(wrong)} parameter(s) of the checkpoint do not match this base's mask, e.g. {wrong[:3]}: the base "
            "model (or the threshold) is not the one it was trained with"
        )
    targets = find_targets(module, config)
    config.realised_threshold = float(tau)
    config.selection = counts
    config.base_fingerprint = fingerprint(targets)
    return config, state


def load_official(
    host: Any,
    source: Any,
    adapter_name: str = "sara",
    *,
    threshold: float | None = None,
    allow_pickle: bool = False,
    is_trainable: bool = False,
    **config_fields: Any,
) -> Any:
    """Convert an official checkpoint against `host`'s own weights and load it as adapter `adapter_name`.

    Returns `host`; `vadapters.save_pretrained(host, dir)` then writes it in vadapters' format.
    """
    from vadapters.core.api import inject, load_adapter_state_dict
    from vadapters.core.lifecycle import delete_adapter
    from vadapters.methods.sara.model import SaRAInjector

    module: nn.Module = hosts.resolve_target(host, "unet")
    config, state = convert_official(source, module, threshold, allow_pickle, **config_fields)
    inject(module, config, adapter_name=adapter_name)
    try:
        load_adapter_state_dict(module, adapter_name, state)
    except BaseException:
        delete_adapter(module, adapter_name)
        raise
    for p in SaRAInjector().adapter_parameters(module, adapter_name):
        p.requires_grad_(is_trainable)
    return host
