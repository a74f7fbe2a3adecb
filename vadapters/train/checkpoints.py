"""Trainer checkpoints: atomic `step-N` folders of Accelerate state plus the trainable tensors only.

Layout of `output_dir/checkpoints/step-N/` (written as `.tmp-step-N`, renamed when complete):

- `trainable_parameters.safetensors`: the trainable tensors, by their name in `recipe.model` (never the frozen
  base, which Accelerate would otherwise write in full);
- `optimizer.bin`, `scheduler.bin`, `random_states_<rank>.pkl` (Accelerate's `save_state`);
- `recipe_state_<rank>.pt`: the recipe's extra state (its RNG generator, ...), if it has any;
- `trainer_state.json`: step, epoch, batches consumed in that epoch, seed, batch size (written last).

Example:
    >>> from vadapters.train.checkpoints import find_latest_checkpoint
    >>> find_latest_checkpoint("/nonexistent") is None
    True
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from typing import Any

import torch
from torch import nn

from vadapters.core.io import atomic_write_text, load_tensors, save_tensors
from vadapters.errors import CheckpointError

__all__ = [
    "CHECKPOINTS_DIR",
    "LOG_NAME",
    "PARAMS_NAME",
    "STATE_NAME",
    "clean_output",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "register_trainable_hooks",
    "save_checkpoint",
]

CHECKPOINTS_DIR = "checkpoints"
LOG_NAME = "train_log.jsonl"
STATE_NAME = "trainer_state.json"
PARAMS_NAME = "trainable_parameters.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_CHECKED_KEYS = ("seed", "batch_size", "gradient_accumulation_steps", "num_processes")


def _complete(path: str) -> bool:
    return os.path.isfile(os.path.join(path, STATE_NAME)) and os.path.isfile(os.path.join(path, PARAMS_NAME))


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """`[(step, path)]` of the complete checkpoints in `output_dir/checkpoints`, oldest first."""
    root = os.path.join(output_dir, CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = _STEP_DIR.match(name)
        path = os.path.join(root, name)
        if m and os.path.isdir(path) and _complete(path):
            found.append((int(m.group(1)), path))
    return sorted(found)


def find_latest_checkpoint(output_dir: str) -> str | None:
    """The complete `step-N` checkpoint with the largest N in `output_dir/checkpoints`, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def register_trainable_hooks(accelerator: Any, named: dict[str, nn.Parameter]) -> None:
    """Make `accelerator.save_state` / `load_state` store only `named` (the trainable tensors) for the models."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            save_tensors({n: p.detach() for n, p in named.items()}, os.path.join(output_dir, PARAMS_NAME))
        weights.clear()

    def load_hook(models, input_dir):
        tensors, _ = load_tensors(os.path.join(input_dir, PARAMS_NAME))
        if set(tensors) != set(named):
            raise CheckpointError(
                f"checkpoint {input_dir} holds {len(tensors)} trainable tensors that do not match this run's "
                f"{len(named)} (missing {sorted(set(named) - set(tensors))[:4]}, "
                f"unexpected {sorted(set(tensors) - set(named))[:4]}); was it made with another adapter config?"
            )
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(tensors[n].to(p.device, p.dtype))
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(
    accelerator: Any, output_dir: str, state: dict[str, Any], recipe_state: Any = None, keep: int = 2
) -> str:
    """Write `checkpoints/step-<state["step"]>` atomically, keep the last `keep`; call on every process."""
    root = os.path.join(output_dir, CHECKPOINTS_DIR)
    step = int(state["step"])
    tmp, final = os.path.join(root, f".tmp-step-{step}"), os.path.join(root, f"step-{step}")
    if accelerator.is_main_process and os.path.exists(tmp):
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    if recipe_state is not None:
        torch.save(recipe_state, os.path.join(tmp, f"recipe_state_{accelerator.process_index}.pt"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_text(os.path.join(tmp, STATE_NAME), json.dumps(state, indent=2) + "\n")
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: str, recipe: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """Restore Accelerate state, trainable tensors and recipe state from `path`; returns its trainer state.

    Warns when a setting in `expected` (seed, batch size, ...) differs from the checkpoint's: training goes on,
    but not along the data order of an uninterrupted run.
    """
    with open(os.path.join(path, STATE_NAME), encoding="utf-8") as fh:
        state = json.load(fh)
    for key in _CHECKED_KEYS:
        if key in state and key in expected and state[key] != expected[key]:
            warnings.warn(
                f"resuming {path} with {key}={expected[key]} (checkpoint: {state[key]}); "
                "the data order will differ from an uninterrupted run",
                stacklevel=3,
            )
    accelerator.load_state(path)
    recipe_file = os.path.join(path, f"recipe_state_{accelerator.process_index}.pt")
    if hasattr(recipe, "load_state_dict") and os.path.isfile(recipe_file):
        recipe.load_state_dict(torch.load(recipe_file, map_location="cpu", weights_only=True))
    return state


def checkpoint_step(path: str) -> int:
    m = _STEP_DIR.match(os.path.basename(os.path.normpath(path)))
    if m is None:
        raise CheckpointError(f"{path!r} is not a step-N checkpoint folder")
    return int(m.group(1))


def clean_output(output_dir: str, resume_step: int | None) -> None:
    """Remove what a new run must not mix with: half-written checkpoints, and checkpoints and log lines past
    `resume_step` (all of them when not resuming). Main process only."""
    root = os.path.join(output_dir, CHECKPOINTS_DIR)
    if os.path.isdir(root):
        for name in os.listdir(root):
            m = _STEP_DIR.match(name)
            if name.startswith(".tmp-step-") or (m and (resume_step is None or int(m.group(1)) > resume_step)):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    log = os.path.join(output_dir, LOG_NAME)
    if os.path.isfile(log):
        kept = []
        if resume_step is not None:
            with open(log, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        if json.loads(line).get("step", 0) <= resume_step:
                            kept.append(line.rstrip("\n") + "\n")
                    except (json.JSONDecodeError, AttributeError):
                        continue
        atomic_write_text(log, "".join(kept))
