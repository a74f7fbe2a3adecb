"""Train tiny-clip contrastively on the synthetic world's captions, with open_clip's own training code.

The pairs (`CaptionedWorld`): shape scenes with their captions (one large shape on flat ground, and 1-3 smaller
shapes on gradient / textured ground), one view of a multi-view object at a random azimuth with the object's caption,
and motion clips as a *trail image* (the last frame over a faded blend of the earlier ones, so the direction of
travel is visible in one picture) with the motion caption ("a red square moving up-left quickly"). That gives the
direction words a contrastive signal the denoising loss never gave them.

The loop is open_clip's: `open_clip_train.train.train_one_epoch` with `open_clip.ClipLoss` and
`open_clip_train.scheduler.cosine_lr`, one short "epoch" at a time with an atomic checkpoint after each (resumable).

Example:
    >>> world = CaptionedWorld(8, seed=0)
    >>> image, tokens = world[0]
    >>> tuple(image.shape), tuple(tokens.shape), sorted(world.counts)
    ((3, 32, 32), (77,), ['motion', 'objects', 'scenes_large', 'scenes_small'])
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vadapters.errors import BadInputError

__all__ = [
    "CaptionedWorld", "caption_probes", "direction_zero_shot", "evaluate_clip", "grouped_batches", "motion_key", "train_tiny_clip",
    "trail_image",
]  # fmt: skip

CLIP_MIX: dict[str, float] = {"scenes_large": 0.3, "scenes_small": 0.2, "objects": 0.2, "motion": 0.3}


def trail_image(frames: torch.Tensor) -> torch.Tensor:
    """One picture of a clip `[F, 3, H, W]`: 0.6 x the last frame + 0.4 x the earlier frames weighted 1..F-1, so
    the sprite is solid where it ends and faint where it started."""
    weights = torch.arange(1, len(frames), dtype=frames.dtype)
    earlier = (frames[:-1] * (weights / weights.sum())[:, None, None, None]).sum(0)
    return 0.6 * frames[-1] + 0.4 * earlier


def _render(world: str, count: int, seed: int, size: int) -> tuple[torch.Tensor, list[str]]:
    from vadapters.synthetic.motion import MotionClips
    from vadapters.synthetic.multiview import MultiViewObjects
    from vadapters.synthetic.scenes import ShapeScenes
    from vadapters.train.base_vae import LARGE_SCENES, SMALL_SCENES

    if world in ("scenes_large", "scenes_small"):
        scenes = ShapeScenes(count, seed=seed, **(LARGE_SCENES if world == "scenes_large" else SMALL_SCENES))
        items = [scenes.render(i, size, size) for i in range(count)]
        return torch.stack([it["image"] for it in items]), [it["caption"] for it in items]
    if world == "objects":
        objects, rng = MultiViewObjects(count, seed=seed), np.random.default_rng([seed, 0xC11])
        views = [objects.render(i, size, size) for i in range(count)]
        pick = rng.integers(0, objects.num_views, count)
        return torch.stack([v["images"][k] for v, k in zip(views, pick)]), [v["caption"] for v in views]
    if world == "motion":
        clips = MotionClips(count, seed=seed)
        items = [clips.render(i, size, size) for i in range(count)]
        return torch.stack([trail_image(it["frames"]) for it in items]), [it["caption"] for it in items]
    raise BadInputError(f"unknown world {world!r}; known: {', '.join(CLIP_MIX)}")


class CaptionedWorld(torch.utils.data.Dataset):
    """Pre-rendered (image in [-1, 1], open_clip tokens) pairs of every world, split by `mix` (default `CLIP_MIX`)."""

    def __init__(self, num_items: int, seed: int = 0, size: int = 32, mix: dict[str, float] | None = None) -> None:
        import open_clip

        mix = dict(CLIP_MIX if mix is None else mix)
        total = sum(mix.values())
        self.counts = {w: max(1, round(num_items * s / total)) for w, s in mix.items()}
        images, captions, worlds = [], [], []
        for k, (world, n) in enumerate(self.counts.items()):
            x, c = _render(world, n, seed, size)
            images.append(x)
            captions += c
            worlds += [k] * n
        self.images, self.captions = torch.cat(images), captions
        self.worlds = torch.tensor(worlds)
        self.tokens = open_clip.tokenize(captions)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.tokens[index]


def motion_key(caption: str) -> str:
    """A motion caption without its direction word ("a red square moving up-left quickly" -> "a red square /
    quickly"): clips sharing a key differ only in where they go."""
    head, _, tail = caption.partition(" moving ")
    return head + " / " + " ".join(tail.split()[1:])


def grouped_batches(dataset: CaptionedWorld, batch_size: int, steps: int, seed: int, group: int) -> torch.Tensor:
    """`[steps, batch_size]` indices where the batch's motion share (the dataset's) comes in runs of `group` clips
    sharing `motion_key`, so the contrastive loss can only tell them apart by direction (hard negatives)."""
    g = torch.Generator().manual_seed(seed)
    motion_world = list(dataset.counts).index("motion") if "motion" in dataset.counts else -1
    motion = (dataset.worlds == motion_world).nonzero().flatten()
    rest = (dataset.worlds != motion_world).nonzero().flatten()
    keys: dict[str, list[int]] = {}
    for i in motion.tolist():
        keys.setdefault(motion_key(dataset.captions[i]), []).append(i)
    pools = [torch.tensor(v) for v in keys.values() if len(v) >= 2]
    n_motion = round(batch_size * len(motion) / len(dataset)) if pools else 0
    out = torch.empty(steps, batch_size, dtype=torch.long)
    for s in range(steps):
        picked: list[torch.Tensor] = []
        while sum(len(p) for p in picked) < n_motion:
            pool = pools[int(torch.randint(0, len(pools), (1,), generator=g))]
            take = min(group, len(pool), n_motion - sum(len(p) for p in picked))
            picked.append(pool[torch.randperm(len(pool), generator=g)[:take]])
        fill = rest[torch.randint(0, len(rest), (batch_size - n_motion,), generator=g)]
        out[s] = torch.cat(picked + [fill]) if picked else fill
    return out


class _Loader:
    """What `train_one_epoch` reads of open_clip's `DataInfo`: a dataloader with `num_batches` / `num_samples`."""

    def __init__(self, dataset: CaptionedWorld, batch_size: int, steps: int, seed: int, group: int = 0) -> None:
        if group > 1:
            self.batches = grouped_batches(dataset, batch_size, steps, seed, group)
        else:
            g = torch.Generator().manual_seed(seed)
            order = torch.randint(0, len(dataset), (steps * batch_size,), generator=g)
            self.batches = order.view(steps, batch_size)
        self.dataset, self.num_batches, self.num_samples = dataset, steps, steps * batch_size

    def __iter__(self):
        for idx in self.batches:
            yield self.dataset.images[idx], self.dataset.tokens[idx]

    def __len__(self) -> int:
        return self.num_batches


class _DataInfo:
    def __init__(self, dataloader: _Loader) -> None:
        self.dataloader = dataloader

    def set_epoch(self, epoch: int) -> None:
        pass


def train_tiny_clip(
    output_dir: str,
    *,
    steps: int = 3000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: int = 200,
    num_items: int = 40000,
    steps_per_epoch: int = 250,
    seed: int = 0,
    init: str | None = None,
    motion_group: int = 0,
    mix: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Train tiny-clip (resumable: re-run the same call); writes `output_dir/open_clip_model.safetensors` and
    `open_clip_config.json`, returns held-out retrieval and caption-probe metrics.

    `init`: a tiny-clip folder to start from (e.g. `weights/tiny-clip`; fresh optimizer and schedule).
    `motion_group` > 1: batches carry motion clips in runs of that many sharing colour, shape and speed
    (`grouped_batches`), so direction words must carry the contrast. `mix`: world shares (default `CLIP_MIX`)."""
    from open_clip import ClipLoss
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch
    from safetensors.torch import save_file

    from vadapters.models.clip import TINY_CLIP_CONFIG, tiny_clip

    if min(steps, batch_size, num_items, steps_per_epoch) < 1:
        raise BadInputError("steps, batch_size, num_items and steps_per_epoch must be positive")
    start = time.time()
    os.makedirs(output_dir, exist_ok=True)
    model = tiny_clip(seed)
    if init:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(os.path.join(init, "open_clip_model.safetensors")))
    model.output_dict = True  # what open_clip's train_one_epoch reads
    data = CaptionedWorld(num_items, seed, mix=mix)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=learning_rate, betas=(0.9, 0.98), eps=1e-6,
    )  # fmt: skip
    scheduler = cosine_lr(optimizer, learning_rate, warmup, steps)
    args = argparse.Namespace(
        device="cpu", precision="fp32", distill=False, accum_freq=1, horovod=False, grad_clip_norm=1.0,
        log_every_n_steps=steps_per_epoch, batch_size=batch_size, wandb=False, world_size=1, rank=0, local_rank=0,
        skip_scheduler=False,
    )  # fmt: skip
    state_path = os.path.join(output_dir, "checkpoint.pt")
    epoch = 0
    if os.path.isfile(state_path):
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch = int(state["epoch"])
    loss = ClipLoss()
    epochs = -(-steps // steps_per_epoch)
    while epoch < epochs:
        loader = _Loader(data, batch_size, steps_per_epoch, seed * 100003 + epoch, motion_group)
        train_one_epoch(model, {"train": _DataInfo(loader)}, loss, epoch, optimizer, None, scheduler, None, args)
        epoch += 1
        tmp = state_path + ".tmp"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, tmp)
        os.replace(tmp, state_path)
        print(f"tiny-clip epoch {epoch}/{epochs}: {time.time() - start:.0f} s", flush=True)
    model.eval()
    metrics = evaluate_clip(model, seed=seed + 1000)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(output_dir, "model.tmp"))
    os.replace(os.path.join(output_dir, "model.tmp"), os.path.join(output_dir, "open_clip_model.safetensors"))
    with open(os.path.join(output_dir, "open_clip_config.json"), "w", encoding="utf-8") as fh:
        json.dump({"model_cfg": TINY_CLIP_CONFIG, "metrics": metrics}, fh, indent=2)
    return {"metrics": metrics, "seconds": round(time.time() - start, 1), "steps": epochs * steps_per_epoch}


@torch.no_grad()
def evaluate_clip(model: Any, seed: int = 1000, per_world: int = 200) -> dict[str, Any]:
    """Held-out zero-shot retrieval per world (caption -> image and image -> caption top-1 among `per_world`
    pairs; identical captions count as correct) and `caption_probes`."""
    import open_clip

    model.eval()
    out: dict[str, Any] = {}
    for k, world in enumerate(CLIP_MIX):
        images, captions = _render(world, per_world, seed + k, 32)
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(open_clip.tokenize(captions)), dim=-1)
        sim = txt @ img.T
        same = torch.tensor([[a == b for b in captions] for a in captions])
        t2i = same[torch.arange(per_world), sim.argmax(1)].float().mean()
        i2t = same[sim.argmax(0), torch.arange(per_world)].float().mean()
        out[world] = {"text_to_image_top1": round(float(t2i), 4), "image_to_text_top1": round(float(i2t), 4),
                      "chance": round(1 / per_world, 4)}  # fmt: skip
    out["motion_direction"] = direction_zero_shot(model, seed + len(CLIP_MIX), per_world)
    out["caption_probes"] = caption_probes(model)
    return out


@torch.no_grad()
def direction_zero_shot(model: Any, seed: int = 1004, count: int = 200) -> dict[str, float]:
    """Held-out motion trail images classified among their caption's 8 direction variants (colour, shape and speed
    kept): top-1 accuracy, chance 1/8. Tells whether the image tower reads direction, which retrieval hides."""
    import open_clip

    from vadapters.synthetic.motion import DIRECTIONS

    images, captions = _render("motion", count, seed, 32)
    img = F.normalize(model.encode_image(images), dim=-1)
    correct = 0
    for i, caption in enumerate(captions):
        head, _, tail = caption.partition(" moving ")
        direction, speed = tail.split()[0], " ".join(tail.split()[1:])
        variants = open_clip.tokenize([f"{head} moving {d} {speed}" for d in DIRECTIONS])
        txt = F.normalize(model.encode_text(variants), dim=-1)
        correct += list(DIRECTIONS)[int((txt @ img[i]).argmax())] == direction
    return {"top1": round(correct / count, 4), "chance": round(1 / len(DIRECTIONS), 4)}


@torch.no_grad()
def caption_probes(model: Any) -> dict[str, float]:
    """Mean cosine distance (1 - cos) of text embeddings when one word of a caption changes: direction, colour,
    shape (measured on the text tower's output embedding)."""
    import open_clip

    pairs = {
        "direction": [("a red square moving left slowly", "a red square moving right slowly"),
                      ("a blue circle moving up quickly", "a blue circle moving down quickly"),
                      ("a green triangle moving up-left slowly", "a green triangle moving down-right slowly")],
        "colour": [("a red square moving left slowly", "a blue square moving left slowly"),
                   ("a white star on a red background, centre", "a green star on a red background, centre")],
        "shape": [("a red square moving left slowly", "a red circle moving left slowly"),
                  ("a white star on a red background, centre", "a white triangle on a red background, centre")],
    }  # fmt: skip
    out = {}
    for kind, items in pairs.items():
        a = F.normalize(model.encode_text(open_clip.tokenize([x for x, _ in items])), dim=-1)
        b = F.normalize(model.encode_text(open_clip.tokenize([y for _, y in items])), dim=-1)
        out[kind] = round(float((1 - (a * b).sum(-1)).mean()), 4)
    return out
