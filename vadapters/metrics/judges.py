"""Judges: small classifiers trained on synthetic ground truth, used only as *metrics*.

`ShapeColourJudge` reads a 32x32 single-shape scene and predicts the shape and the colour named in its caption,
so "does the generated image show a red star?" becomes a measurable accuracy. Each judge is reported with its own
accuracy on held-out ground-truth renders, so its error bars are known.

Example:
    >>> import torch
    >>> judge = ShapeColourJudge(num_shapes=6, num_colours=8)
    >>> [t.shape for t in judge(torch.zeros(2, 3, 32, 32))]
    [torch.Size([2, 6]), torch.Size([2, 8])]
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.core.io import atomic_write_text, load_tensors, save_tensors


class ShapeColourJudge(nn.Module):
    """A 4-conv CNN with two heads (shape, colour) for 32x32 images in [-1, 1]."""

    def __init__(self, num_shapes: int, num_colours: int, width: int = 32) -> None:
        super().__init__()
        self.num_shapes, self.num_colours, self.width = num_shapes, num_colours, width

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(
            block(3, width),
            block(width, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            block(2 * width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.shape_head = nn.Linear(4 * width, num_shapes)
        self.colour_head = nn.Linear(4 * width, num_colours)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        h = self.features(x)
        return self.shape_head(h), self.colour_head(h)

    def save(self, directory: str, classes: dict[str, list[str]], metrics: dict[str, Any]) -> None:
        os.makedirs(directory, exist_ok=True)
        save_tensors(self.state_dict(), os.path.join(directory, "model.safetensors"), {"format": "pt"})
        config = {
            "num_shapes": self.num_shapes,
            "num_colours": self.num_colours,
            "width": self.width,
            **classes,
            "metrics": metrics,
        }
        atomic_write_text(os.path.join(directory, "config.json"), json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str) -> tuple[ShapeColourJudge, dict[str, Any]]:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
        judge = cls(config["num_shapes"], config["num_colours"], config["width"])
        tensors, _ = load_tensors(os.path.join(directory, "model.safetensors"))
        judge.load_state_dict(tensors)
        return judge.eval(), config


def single_shape_batch(scenes: Any, indices: list[int], size: int = 32) -> dict[str, Any]:
    """Images and (shape, colour) labels of single-shape scenes."""
    shapes, colours = list(scenes.shapes), list(scenes.colours)
    images, shape_ids, colour_ids = [], [], []
    for i in indices:
        item = scenes.render(i, size, size)
        label = item["labels"][0]
        images.append(item["image"])
        shape_ids.append(shapes.index(label["shape"]))
        colour_ids.append(colours.index(label["colour"]))
    return {"image": torch.stack(images), "shape": torch.tensor(shape_ids), "colour": torch.tensor(colour_ids)}


# The scene distributions a judge must read (issue 18: >= 98 % of ground truth on each). "large_flat" is what
# tiny-sd is trained on; the others are what the benchmarks and the other worlds show.
JUDGE_DISTRIBUTIONS: dict[str, dict[str, Any]] = {
    "large_flat": {"background": "flat", "min_size": 0.4, "max_size": 0.7},
    "large_textured": {"background": "texture", "min_size": 0.4, "max_size": 0.7},
    "small_flat": {"background": "flat", "min_size": 0.2, "max_size": 0.45},
    "small_mixed": {"background": "mixed", "min_size": 0.2, "max_size": 0.45},
}


def degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random mild degradations of images in [-1, 1], per image: blur (resize down and up) and pixel noise.

    What generated and VAE-decoded images show (soft edges, grain), so the judge reads shapes, not render details.
    """
    n, _, h, w = images.shape
    out = images.clone()
    pick = torch.rand(n, generator=generator)
    soft = pick < 0.5
    if soft.any():
        scale = float(torch.empty(1).uniform_(0.5, 0.85, generator=generator))
        small = F.interpolate(out[soft], scale_factor=scale, mode="bilinear", antialias=True)
        out[soft] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    sigma = torch.rand(n, 1, 1, 1, generator=generator) * 0.08
    out = out + sigma * torch.randn(out.shape, generator=generator)
    return out.clamp(-1, 1)


def train_shape_colour_judge(
    output_dir: str,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    num_items: int = 40000,
    eval_items: int = 1000,
    distributions: dict[str, dict[str, Any]] | None = None,
    augment: bool = False,
    width: int = 32,
) -> dict[str, Any]:
    """Train the judge on single-shape ground-truth renders; returns held-out accuracies.

    With `distributions` (name -> `ShapeScenes` options, e.g. `JUDGE_DISTRIBUTIONS`) every batch mixes them equally
    and the returned metrics hold one entry per distribution; `augment` applies `degrade` to half of each batch.
    Without it, the v1 judge's data (`ShapeScenes` defaults).
    """
    from vadapters.synthetic.scenes import ShapeScenes

    options = distributions or {"default": {}}
    train = [
        ShapeScenes(num_items, seed=seed + k, min_shapes=1, max_shapes=1, **o) for k, o in enumerate(options.values())
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        judge = ShapeColourJudge(len(train[0].shapes), len(train[0].colours), width)
    opt = torch.optim.AdamW(judge.parameters(), lr=learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    judge.train()
    per = -(-batch_size // len(train))
    # v2 (several distributions): render each distribution's `num_items` once, then draw batches from memory
    pools = [single_shape_batch(t, list(range(num_items))) for t in train] if distributions is not None else None
    for _ in range(steps):
        draws = [torch.randint(0, num_items, (per,), generator=g) for _ in train]
        if pools is None:
            parts = [single_shape_batch(t, d.tolist()) for t, d in zip(train, draws)]
        else:
            parts = [{k: pool[k][d] for k in pool} for pool, d in zip(pools, draws)]
        batch = {k: torch.cat([p[k] for p in parts]) for k in ("image", "shape", "colour")}
        images = batch["image"]
        if augment:
            half = len(images) // 2
            images = torch.cat([images[:half], degrade(images[half:], g)])
        shape_logits, colour_logits = judge(images)
        loss = F.cross_entropy(shape_logits, batch["shape"]) + F.cross_entropy(colour_logits, batch["colour"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    judge.eval()
    if distributions is None:
        held_out = ShapeScenes(eval_items, seed=seed + 1000, min_shapes=1, max_shapes=1)
        metrics = evaluate_judge(judge, held_out, list(range(eval_items)))
    else:
        metrics = {
            name: evaluate_judge(
                judge,
                ShapeScenes(eval_items, seed=seed + 1000, min_shapes=1, max_shapes=1, **o),
                list(range(eval_items)),
            )
            for name, o in options.items()
        }
    judge.save(output_dir, {"shapes": list(train[0].shapes), "colours": list(train[0].colours)}, metrics)
    return metrics


@torch.no_grad()
def evaluate_judge(
    judge: ShapeColourJudge, scenes: Any, indices: list[int], transform: Any = None
) -> dict[str, float]:
    """Held-out accuracy of `judge` on single-shape `scenes`; `transform` (images -> images) is applied first,
    e.g. a VAE round trip."""
    batch = single_shape_batch(scenes, indices)
    images = batch["image"] if transform is None else transform(batch["image"])
    shape_logits, colour_logits = judge(images)
    shape_ok = shape_logits.argmax(1) == batch["shape"]
    colour_ok = colour_logits.argmax(1) == batch["colour"]
    return {
        "shape_accuracy": round(float(shape_ok.float().mean()), 4),
        "colour_accuracy": round(float(colour_ok.float().mean()), 4),
        "both_accuracy": round(float((shape_ok & colour_ok).float().mean()), 4),
        "n": len(indices),
    }


@torch.no_grad()
def score_text_to_image(
    pipe: Any,
    judge: ShapeColourJudge,
    judge_config: dict[str, Any],
    *,
    n: int = 128,
    seed: int = 12345,
    steps: int = 20,
    guidance_scale: float = 3.0,
    size: int = 32,
    batch_size: int = 32,
    scene_options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Generate from held-out single-shape captions and let the judge check shape and colour.

    `scene_options` (`ShapeScenes` options) pick the caption distribution: the one the base was trained on.
    """
    from vadapters.synthetic.scenes import ShapeScenes

    scenes = ShapeScenes(n, seed=seed, min_shapes=1, max_shapes=1, **(scene_options or {}))
    shapes, colours = judge_config["shapes"], judge_config["colours"]
    shape_ok = colour_ok = both_ok = 0
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        labels = [scenes.render(i, 8, 8)["labels"][0] for i in idx]
        prompts = [scenes.caption(i) for i in idx]
        generator = torch.Generator().manual_seed(seed + start)
        images = pipe(
            prompts,
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generator,
            output_type="pt",
        ).images
        shape_logits, colour_logits = judge(images * 2 - 1)
        s = shape_logits.argmax(1).tolist()
        c = colour_logits.argmax(1).tolist()
        for lab, si, ci in zip(labels, s, c):
            a, b = shapes[si] == lab["shape"], colours[ci] == lab["colour"]
            shape_ok, colour_ok, both_ok = shape_ok + a, colour_ok + b, both_ok + (a and b)
    return {
        "shape_accuracy": round(shape_ok / n, 4),
        "colour_accuracy": round(colour_ok / n, 4),
        "both_accuracy": round(both_ok / n, 4),
        "chance_shape": round(1 / len(shapes), 4),
        "chance_colour": round(1 / len(colours), 4),
        "n": n,
        "steps": steps,
        "guidance_scale": guidance_scale,
    }
