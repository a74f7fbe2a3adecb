"""SAM-Adapter training recipe (loss, trainable set, batches) and evaluation; the one trainer runs it.

The recipe is registered for the trainer in `vadapters.train.recipes.sam_adapter`: train with
`vadapters.train.train_adapter("sam_adapter", ...)` (or `vadapters train-sam-adapter`).

Loss: `BCEWithLogits + (1 - soft IoU)` (camouflage, polyp; official `loss: iou`) or balanced BCE (shadows; official
`loss: bbce`), on the full-resolution logits, padding excluded. AdamW + cosine schedule come from the trainer;
validation runs on a held-out part of the training data (never on test data); horizontal flips (p = 0.5) are the
only augmentation, as in the official code.

Example:
    >>> from vadapters.models import tiny_sam
    >>> from vadapters.methods.sam_adapter.data import make_segmentation_source
    >>> source = make_segmentation_source("synthetic:camouflage", num_items=6, size=(64, 64))
    >>> recipe = SAMAdapterRecipe(tiny_sam(), SAMAdapterConfig(scale_factor=8), source, batch_size=2)
    >>> batch = recipe.collate([recipe.dataset[(i, 64, 64)] for i in range(2)])
    >>> bool(recipe.loss(batch, 0).isfinite())
    True
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.core.api import inject, save_pretrained
from vadapters.core.hosts.sam import decode_masks
from vadapters.core.io import atomic_write_text, save_tensors
from vadapters.core.registry import get_method
from vadapters.core.shards import BatchShard
from vadapters.errors import BadInputError
from vadapters.methods.sam_adapter.config import SAMAdapterConfig
from vadapters.methods.sam_adapter.data import (
    SAMSegmentationDataset,
    collate_segmentation,
    split_indices,
)
from vadapters.methods.sam_adapter.lean import enable_lean_training

LOSSES = ("iou", "bbce", "bce")
MODES = ("adapter", "full")


def bce_iou_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean BCE over valid pixels + mean over images of `1 - soft IoU` (official `_iou_loss`, padding excluded)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * valid).sum() / valid.sum().clamp_min(1)
    prob = torch.sigmoid(logits) * valid
    inter = (prob * target).flatten(1).sum(1)
    union = (prob + target).flatten(1).sum(1) - inter
    return bce + (1 - inter / union.clamp_min(1e-6)).mean()


def balanced_bce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Official `BBCEWithLogitLoss`: positives weighted by `N_neg / N_pos`, the mean scaled by `N_pos / N`."""
    pos = (target * valid).sum() + 1e-10
    neg = ((1 - target) * valid).sum()
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=neg / pos, reduction="none")
    return pos / (pos + neg) * (bce * valid).sum() / valid.sum().clamp_min(1)


def predict_logits(sam: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Prompt-free full-resolution logits `[B, 1, S, S]` (differentiable)."""
    low = decode_masks(sam, sam.image_encoder(pixels), multimask_output=False)
    size = sam.image_encoder.img_size
    return F.interpolate(low, (size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def evaluate(sam: nn.Module, dataset: SAMSegmentationDataset, batch_size: int = 8) -> dict[str, float]:
    """Prompt-free metrics (`SegmentationMetrics`) at each image's original size."""
    from vadapters.metrics.saliency import SegmentationMetrics

    metrics = SegmentationMetrics()
    device = next(sam.parameters()).device
    was_training = sam.training
    sam.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collate_segmentation([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            logits = predict_logits(sam, batch["pixels"].to(device)).float().cpu()
            for i, (ih, iw) in enumerate(batch["input_size"]):
                crop = logits[i : i + 1, :, :ih, :iw]
                prob = torch.sigmoid(
                    F.interpolate(crop, batch["original_size"][i], mode="bilinear", align_corners=False)
                )
                metrics.update(prob[0, 0].numpy(), dataset.load_raw(start + i)["mask"].numpy())
    finally:
        sam.train(was_training)
    return metrics.compute()


class SAMAdapterRecipe:
    """Train a SAM-Adapter (or, with `mode="full"`, every SAM weight: the full fine-tuning baseline).

    Args:
        sam (`Sam`): the host (mutated: the adapter is injected).
        config (`SAMAdapterConfig`): adapter config (ignored with `mode="full"`).
        source: a segmentation source (see `make_segmentation_source`).
        batch_size (`int`): per-device batch size.
        loss (`str`): `"iou"` (BCE + IoU), `"bbce"` (balanced BCE) or `"bce"`.
        val_fraction (`float`): share of `source` held out for validation.
        seed (`int`): seed of the adapter's initial values, the split and the augmentation.
        adapter_name (`str`): the adapter's name.
        mode (`str`): `"adapter"` or `"full"`.
        hflip (`bool`): random horizontal flips.
        lean: memory-lean training of the frozen encoder (`lean.LeanOptions`: `True`, a dict of its fields, or
            `False`); mixed precision comes from `TrainingArguments.mixed_precision`.
    """

    # The adapter's decoder copy keeps SAM's IoU head (saved with it, as in the official files), which the mask loss
    # never reaches: DDP has to expect parameters without a gradient.
    find_unused_parameters = True

    def __init__(
        self,
        sam: nn.Module,
        config: SAMAdapterConfig | None,
        source: Any,
        batch_size: int,
        loss: str = "iou",
        val_fraction: float = 0.1,
        seed: int = 0,
        adapter_name: str = "sam_adapter",
        mode: str = "adapter",
        hflip: bool = True,
        lean: Any = False,
    ) -> None:
        if loss not in LOSSES or mode not in MODES:
            raise BadInputError(f"loss must be one of {LOSSES} and mode one of {MODES}; got {loss!r}, {mode!r}")
        self.model, self.mode, self.adapter_name, self.hflip = sam, mode, adapter_name, hflip
        self.loss_fn = {"iou": bce_iou_loss, "bbce": balanced_bce_loss, "bce": None}[loss]
        train_idx, val_idx = split_indices(len(source), val_fraction, seed)
        self.dataset = SAMSegmentationDataset(source, sam, train_idx)
        self.val_dataset = SAMSegmentationDataset(source, sam, val_idx) if val_idx else None
        self.batch_size = int(batch_size)
        self.resolutions = [(self.dataset.img_size, self.dataset.img_size)]
        self.collate = collate_segmentation
        self.generator = torch.Generator().manual_seed(seed)
        if mode == "adapter":
            cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
            with torch.random.fork_rng(devices=cuda):  # the adapter's initial values come from `seed` alone
                torch.manual_seed(seed)
                inject(sam, config or SAMAdapterConfig(), adapter_name=adapter_name)
            injector = get_method("sam_adapter").injector_cls()
            self._params = injector.adapter_parameters(sam, adapter_name)
        else:
            sam.requires_grad_(True)
            self._params = list(sam.parameters())
        self._sam = self._prepared = sam  # the host, and what the trainer prepared (DDP wraps it on N processes)
        self.shard = BatchShard()  # this process's rows of each global batch (set by `setup`)
        self.lean = enable_lean_training(sam, lean, self._params) if lean else None
        self._autocast = contextlib.nullcontext
        self.validations: list[dict[str, Any]] = []

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self._params)

    def setup(self, accelerator: Any, model: nn.Module) -> None:
        self._prepared = model
        self.shard = BatchShard.of(accelerator)
        self._autocast = accelerator.autocast  # the forward runs outside model.forward, Accelerate's autocast

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def _flip(self, batch: dict[str, Any]) -> dict[str, Any]:
        flips = self.shard.rand(len(batch["input_size"]), self.generator) < 0.5
        out = {k: batch[k].clone() for k in ("pixels", "mask", "valid")}
        for i, (_, w) in enumerate(batch["input_size"]):
            if flips[i]:
                for k in out:
                    out[k][i, ..., :w] = out[k][i, ..., :w].flip(-1)
        return out

    def _logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """`predict_logits` run as the prepared model's forward: a DDP wrapper averages the gradients of the calls
        that go through it only (called on the bare SAM, each process trained alone)."""
        sam, prepared = self._sam, self._prepared
        if prepared is sam:
            return predict_logits(sam, pixels)
        saved = sam.__dict__.get("forward")  # Accelerate's mixed-precision forward, if it set one
        sam.forward = functools.partial(predict_logits, sam)
        try:
            return prepared(pixels)
        finally:
            if saved is None:
                del sam.forward
            else:
                sam.forward = saved

    def loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        tensors = self._flip(batch) if self.hflip else batch
        device = next(self._sam.parameters()).device
        pixels, target, valid = (tensors[k].to(device) for k in ("pixels", "mask", "valid"))
        with self._autocast():
            logits = self._logits(pixels)[:, 0].float()
        if self.loss_fn is None:
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            return (bce * valid).sum() / valid.sum().clamp_min(1)
        return self.loss_fn(logits, target, valid)

    def validate(self, step: int, output_dir: str) -> list[str]:
        if self.val_dataset is None:
            return []
        result = {"step": step, **evaluate(self._sam, self.val_dataset, self.batch_size)}
        self.validations.append(result)
        path = os.path.join(output_dir, "validation", f"step-{step}.json")
        atomic_write_text(path, json.dumps(result, indent=2))
        return [path]

    def save(self, output_dir: str) -> list[str]:
        if self.mode == "adapter":
            return save_pretrained(self.model, output_dir, [self.adapter_name])
        path = os.path.join(output_dir, "sam.safetensors")
        save_tensors(self.model.state_dict(), path, {"format": "pt"})
        return [path]

    def report(self) -> dict[str, Any]:
        """What a training summary adds: parameter counts and the final held-out metrics."""
        out: dict[str, Any] = {
            "trainable_parameters": sum(p.numel() for p in self.trainable_parameters()),
            "total_parameters": sum(p.numel() for p in self.model.parameters()),
        }
        if self.val_dataset is not None:
            out["validation"] = evaluate(self.model, self.val_dataset, self.batch_size)
        return out
