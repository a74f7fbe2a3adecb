"""Recipes that train the perception defaults (`tiny-classifier-cnn`, `tiny-classifier-vit`, `tiny-sam`).

Both run on the one `Trainer` (Accelerate, checkpoints, exact resume, progress bar) and write the folders that
`vadapters.models.defaults` loads:

- `tiny-classifier-<kind>/`: `model.safetensors` (timm state dict) + `config.json` (architecture, classes, input
  normalisation, metrics).
- `tiny-sam/`: `sam_tiny.pth` (a plain SAM state dict, loadable like the official `sam_vit_b_01ec64.pth`) +
  `config.json` (the `tiny_sam` builder arguments, metrics).

Example:
    >>> from vadapters.train.perception import CLASSIFIER_ARCHS
    >>> CLASSIFIER_ARCHS["cnn"], CLASSIFIER_ARCHS["vit"]
    ('test_resnet', 'test_vit')
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.core.io import atomic_write_text, save_tensors
from vadapters.errors import BadInputError
from vadapters.train.trainer import Trainer, TrainingArguments

CLASSIFIER_ARCHS = {"cnn": "test_resnet", "vit": "test_vit"}
CLASSIFIER_STEPS = {"cnn": 2500, "vit": 8000}
CLASSIFIER_MEAN = (0.5, 0.5, 0.5)
CLASSIFIER_STD = (0.5, 0.5, 0.5)
# tiny-sam: 64 px input, 4 px patches (16 x 16 tokens), 4 blocks of width 48, two of them global.
TINY_SAM_CONFIG: dict[str, Any] = {
    "img_size": 64,
    "patch_size": 4,
    "embed_dim": 48,
    "depth": 4,
    "num_heads": 3,
    "window_size": 8,
    "global_attn_indexes": [1, 3],
    "prompt_dim": 32,
}


class ShuffleBatchSampler:
    """Seeded random batches of indices; the order depends on `(seed, epoch)` only (what resuming needs)."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0) -> None:
        self.num_items, self.batch_size, self.seed, self.epoch = int(num_items), int(batch_size), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_items // self.batch_size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.num_items, generator=g).tolist()
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


class _TensorDataset(torch.utils.data.Dataset):
    def __init__(self, **tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


class _TensorRecipe:
    """Recipe plumbing for in-memory tensor datasets: every parameter that requires grad trains, seeded shuffled
    batches, one owned generator (saved in checkpoints); the caller saves the model itself."""

    def __init__(self, model: nn.Module, batch_size: int, seed: int, **tensors: torch.Tensor) -> None:
        self.model = model
        self.dataset = _TensorDataset(**tensors)
        self.batch_size = int(batch_size)
        self.generator = torch.Generator().manual_seed(seed)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def batch_sampler(self, seed: int, batch_size: int) -> ShuffleBatchSampler:
        return ShuffleBatchSampler(len(self.dataset), batch_size, seed)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def save(self, output_dir: str) -> list[str]:
        return []


def _run_arguments(output_dir: str, steps: int, lr: float, batch: int, seed: int, every: int, weight_decay: float):
    """AdamW with warm-up then cosine decay; the resumable run state goes to `output_dir/.run` (never recorded in
    the manifest, ignored by git)."""
    return TrainingArguments(
        output_dir=os.path.join(output_dir, ".run"),
        max_steps=steps,
        learning_rate=lr,
        batch_size=batch,
        seed=seed,
        weight_decay=weight_decay,
        checkpoint_every=every,
        lr_scheduler="cosine",
        lr_warmup_steps=min(200, steps // 10),
    )


def _random_shift_flip(x: torch.Tensor, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Per-image random translation (reflect pad + crop) and horizontal flip."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g).tolist()
    flip = (torch.rand(b, generator=g) < 0.5).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    return torch.where(torch.tensor(flip).view(b, 1, 1, 1), out.flip(-1), out)


class ClassifierRecipe(_TensorRecipe):
    """Cross-entropy (label smoothing 0.1) on `ShapeClasses` images in [0, 1], normalised by mean/std 0.5."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int):
        super().__init__(model, batch_size, seed, image=images, label=labels)

    def setup(self, accelerator: Any, model: nn.Module) -> None:
        self._forward = model

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        x = _random_shift_flip(batch["image"], self.generator)
        x = (x - 0.5) / 0.5
        return F.cross_entropy(getattr(self, "_forward", self.model)(x), batch["label"], label_smoothing=0.1)


@torch.no_grad()
def classifier_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of `model` on images in [0, 1] (normalised by mean/std 0.5)."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        logits = model((images[i : i + batch] - 0.5) / 0.5)
        correct += int((logits.argmax(1) == labels[i : i + batch]).sum())
    return correct / len(images)


def train_tiny_classifier(
    kind: str,
    output_dir: str,
    *,
    steps: int | None = None,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    num_items: int = 20000,
    seed: int = 0,
    checkpoint_every: int = 500,
) -> dict[str, Any]:
    """Train timm `test_resnet` (kind "cnn") or `test_vit` (kind "vit") on clean `ShapeClasses` 32x32; `steps`
    defaults to what the embedded default was trained with (2,500 for the CNN, 8,000 for the ViT: at 3,000 it was
    underfit, 59.9 % clean)."""
    from vadapters.models import tiny_timm_classifier
    from vadapters.synthetic.classification import ShapeClasses

    if kind not in CLASSIFIER_ARCHS:
        raise BadInputError(f"kind must be one of {sorted(CLASSIFIER_ARCHS)}, got {kind!r}")
    steps = steps or CLASSIFIER_STEPS[kind]
    start = time.time()
    train = ShapeClasses(num_items, seed=seed)
    test = ShapeClasses(2000, seed=seed + 1000)
    images = torch.from_numpy(train.images_uint8().copy()).permute(0, 3, 1, 2).float() / 255
    model = tiny_timm_classifier(CLASSIFIER_ARCHS[kind], num_classes=10, img_size=32, seed=seed)
    model.train().requires_grad_(True)
    recipe = ClassifierRecipe(model, images, torch.from_numpy(train.labels.copy()), batch_size, seed)
    args = _run_arguments(output_dir, steps, learning_rate, batch_size, seed, checkpoint_every, weight_decay=0.05)
    summary = Trainer(recipe, args).train()
    test_images = torch.from_numpy(test.images_uint8().copy()).permute(0, 3, 1, 2).float() / 255
    metrics = {
        "clean_test_accuracy": round(classifier_accuracy(model, test_images, torch.from_numpy(test.labels.copy())), 4),
        "test_items": len(test),
        "train_steps": summary["steps"],
        "final_loss": round(float(summary["final_loss"]), 4),
    }
    config = {
        "architecture": CLASSIFIER_ARCHS[kind],
        "kind": kind,
        "num_classes": 10,
        "img_size": 32,
        "model_kwargs": {"patch_size": 4} if kind == "vit" else {},
        "mean": list(CLASSIFIER_MEAN),
        "std": list(CLASSIFIER_STD),
        "class_names": list(train.class_names),
        "trained_on": f"vadapters.synthetic.classification.ShapeClasses({num_items}, seed={seed}), clean",
        "metrics": metrics,
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_tensors(state, os.path.join(output_dir, "model.safetensors"))
    atomic_write_text(os.path.join(output_dir, "config.json"), json.dumps(config, indent=2) + "\n")
    return {**metrics, "seconds": round(time.time() - start, 1)}


# ------------------------------------------------------------------------------------------------------ tiny-sam
def render_segmentation_set(dataset: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All items of a `vadapters.synthetic.segmentation` set as uint8 images `[N, 3, S, S]` and bool masks."""
    images, masks = [], []
    for i in range(len(dataset)):
        item = dataset.render(i, size, size)
        images.append(((item["image"] + 1) * 127.5).round().to(torch.uint8))
        masks.append(item["mask"])
    return torch.stack(images), torch.stack(masks)


def sample_prompt(mask: torch.Tensor, kind: str, g: torch.Generator) -> dict[str, Any]:
    """A SAM prompt for `mask` (`[H, W]` bool): kind "point" (1 positive point, plus a negative one half the
    time), "box" (the mask's box with up to 2 px jitter) or "none"; coordinates are (x, y) pixels."""
    if kind == "none" or not bool(mask.any()):
        return {"points": None, "boxes": None}
    if kind == "point":
        ys, xs = torch.nonzero(mask, as_tuple=True)
        j = int(torch.randint(len(ys), (1,), generator=g))
        coords, labels = [[float(xs[j]) + 0.5, float(ys[j]) + 0.5]], [1]
        if float(torch.rand(1, generator=g)) < 0.5 and bool((~mask).any()):
            ys, xs = torch.nonzero(~mask, as_tuple=True)
            j = int(torch.randint(len(ys), (1,), generator=g))
            coords.append([float(xs[j]) + 0.5, float(ys[j]) + 0.5])
            labels.append(0)
        return {"points": (torch.tensor([coords]), torch.tensor([labels])), "boxes": None}
    ys, xs = torch.nonzero(mask, as_tuple=True)
    box = torch.tensor([[float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]])
    box = box + torch.randint(-2, 3, (1, 4), generator=g).float()
    return {"points": None, "boxes": box.clamp(0, mask.shape[-1])}


def sam_mask_logits(sam: nn.Module, images_uint8: torch.Tensor, prompts: list[dict[str, Any]]) -> tuple:
    """Differentiable SAM forward (SAM's own `forward` runs under no_grad): images `[B, 3, S, S]` uint8 at the
    encoder's input size, one prompt per image; returns low-res mask logits `[B, 1, h, w]` and IoU predictions."""
    x = sam.preprocess(images_uint8.float())
    embeddings = sam.image_encoder(x)
    pe = sam.prompt_encoder.get_dense_pe()
    logits, ious = [], []
    for b, prompt in enumerate(prompts):
        sparse, dense = sam.prompt_encoder(points=prompt["points"], boxes=prompt["boxes"], masks=None)
        low, iou = sam.mask_decoder(
            image_embeddings=embeddings[b : b + 1],
            image_pe=pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        logits.append(low)
        ious.append(iou)
    return torch.cat(logits), torch.cat(ious)


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


class SamRecipe(_TensorRecipe):
    """Train every SAM part on image/mask pairs with random point / box / no prompts: BCE + Dice on the mask
    logits (at the decoder's resolution) + MSE of the predicted IoU."""

    PROMPT_KINDS = ("point", "box", "none")

    def __init__(self, sam: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int, seed: int):
        super().__init__(sam, batch_size, seed, image=images, mask=masks)

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        sam = self.model.module if hasattr(self.model, "module") else self.model
        images, masks = batch["image"], batch["mask"]
        if float(torch.rand(1, generator=self.generator)) < 0.5:
            images, masks = images.flip(-1), masks.flip(-1)
        kinds = torch.randint(len(self.PROMPT_KINDS), (len(images),), generator=self.generator).tolist()
        prompts = [sample_prompt(m, self.PROMPT_KINDS[k], self.generator) for m, k in zip(masks, kinds)]
        logits, iou_pred = sam_mask_logits(sam, images, prompts)
        target = F.interpolate(masks[:, None].float(), size=logits.shape[-2:], mode="area")
        with torch.no_grad():
            hard = (logits > 0).float()
            inter = (hard * (target > 0.5)).flatten(1).sum(1)
            union = ((hard + (target > 0.5).float()) > 0).flatten(1).sum(1)
            iou = inter / union.clamp_min(1)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + _dice_loss(logits, target) + F.mse_loss(iou_pred[:, 0], iou)


@torch.no_grad()
def sam_miou(sam: nn.Module, images: torch.Tensor, masks: torch.Tensor, kind: str, seed: int = 0) -> float:
    """Mean IoU of SAM's single-mask prediction (thresholded at 0, at input resolution) with `kind` prompts."""
    sam.eval()
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, len(images), 32):
        prompts = [sample_prompt(m, kind, g) for m in masks[i : i + 32]]
        logits, _ = sam_mask_logits(sam, images[i : i + 32], prompts)
        pred = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
        gt = masks[i : i + 32]
        inter = (pred & gt).flatten(1).sum(1).float()
        union = (pred | gt).flatten(1).sum(1).float().clamp_min(1)
        total += float((inter / union).sum())
    return total / len(images)


def train_tiny_sam(
    output_dir: str,
    *,
    steps: int = 3000,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    num_items: int = 6000,
    seed: int = 0,
    checkpoint_every: int = 500,
    eval_items: int = 300,
) -> dict[str, Any]:
    """Train tiny-sam from scratch on `SalientScenes`; report mIoU per prompt kind on held-out salient scenes and,
    zero-shot, on camouflage and shadow scenes (where SAM-Adapter is meant to help)."""
    from vadapters.models import tiny_sam
    from vadapters.synthetic.segmentation import CamouflageScenes, SalientScenes, ShadowScenes

    start = time.time()
    size = TINY_SAM_CONFIG["img_size"]
    images, masks = render_segmentation_set(SalientScenes(num_items, seed=seed), size)
    sam = tiny_sam(seed=seed, **TINY_SAM_CONFIG)
    sam.train().requires_grad_(True)
    args = _run_arguments(output_dir, steps, learning_rate, batch_size, seed, checkpoint_every, weight_decay=0.01)
    summary = Trainer(SamRecipe(sam, images, masks, batch_size, seed), args).train()
    metrics: dict[str, Any] = {"train_steps": summary["steps"], "final_loss": round(float(summary["final_loss"]), 4)}
    for name, cls in (("salient", SalientScenes), ("camouflage", CamouflageScenes), ("shadow", ShadowScenes)):
        test_images, test_masks = render_segmentation_set(cls(eval_items, seed=seed + 1000), size)
        for kind in SamRecipe.PROMPT_KINDS:
            metrics[f"{name}_miou_{kind}"] = round(sam_miou(sam, test_images, test_masks, kind, seed), 4)
    config = {
        "builder": "vadapters.models.tiny_sam",
        "builder_kwargs": TINY_SAM_CONFIG,
        "trained_on": f"vadapters.synthetic.segmentation.SalientScenes({num_items}, seed={seed}) at {size} px",
        "metrics": metrics,
    }
    os.makedirs(output_dir, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in sam.state_dict().items()}
    from vadapters.core.io import atomic_write

    atomic_write(os.path.join(output_dir, "sam_tiny.pth"), lambda fh: torch.save(state, fh))
    atomic_write_text(os.path.join(output_dir, "config.json"), json.dumps(config, indent=2) + "\n")
    return {**metrics, "seconds": round(time.time() - start, 1)}
