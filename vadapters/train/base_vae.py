"""The proof world's VAE: one `AutoencoderKL` that round-trips every synthetic world without losing what the judges read.

`WorldImages` pre-renders a fixed mix of the worlds at one resolution (large single shapes on flat ground, as tiny-sd
draws them; 1-3 smaller shapes on gradient and textured ground; single views of the multi-view objects; frames of
the motion clips), so training reads tensors instead of re-rendering. `EdgeAwareVAERecipe` adds an L1 term on the
Sobel gradients to the reconstruction loss: plain MSE reaches 30 dB long before the corners that tell a square from
a triangle come back (issue 18's measurement), and the gradient term weighs exactly those pixels.

Example:
    >>> images = WorldImages(8, seed=0, resolution=16)
    >>> item = images.load(0, 16, 16)
    >>> tuple(item["image"].shape), sorted(images.counts)
    ((3, 16, 16), ['motion', 'objects', 'scenes_large', 'scenes_small'])
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from vadapters.errors import BadInputError
from vadapters.train.base import VAERecipe, latent_scaling_factor

__all__ = [
    "WORLD_MIX", "EdgeAwareVAERecipe", "WorldImages", "calibrate_scaling_factor", "latent_scaling_factor", "sobel",
    "world_psnr",
]  # fmt: skip

# Share of each world in `WorldImages` (object views and motion frames come in groups of 6 and 8 per item).
WORLD_MIX: dict[str, float] = {"scenes_large": 0.3, "scenes_small": 0.3, "objects": 0.2, "motion": 0.2}
LARGE_SCENES: dict[str, Any] = {"max_shapes": 1, "background": "flat", "min_size": 0.4, "max_size": 0.7}
SMALL_SCENES: dict[str, Any] = {"max_shapes": 3, "background": "mixed", "min_size": 0.2, "max_size": 0.45}


def render_world(world: str, count: int, seed: int, resolution: int) -> torch.Tensor:
    """`count` images in [-1, 1] of one world (`WORLD_MIX`'s keys) at `resolution` x `resolution`."""
    from vadapters.synthetic.motion import MotionClips
    from vadapters.synthetic.multiview import MultiViewObjects
    from vadapters.synthetic.scenes import ShapeScenes

    r = resolution
    if world in ("scenes_large", "scenes_small"):
        scenes = ShapeScenes(count, seed=seed, **(LARGE_SCENES if world == "scenes_large" else SMALL_SCENES))
        return torch.stack([scenes.render(i, r, r)["image"] for i in range(count)])
    if world == "objects":
        objects = MultiViewObjects(-(-count // 6), seed=seed)
        views = torch.cat([objects.render(i, r, r)["images"] for i in range(len(objects))])
        return views[:count]
    if world == "motion":
        clips = MotionClips(-(-count // 8), seed=seed)
        frames = torch.cat([clips.render(i, r, r)["frames"] for i in range(len(clips))])
        return frames[:count]
    raise BadInputError(f"unknown world {world!r}; known: {', '.join(WORLD_MIX)}")


class WorldImages:
    """A fixed, pre-rendered mix of the synthetic worlds (a training *source*: `load(index, height, width)`).

    Args:
        num_items (`int`): total images, split by `mix`.
        seed (`int`): seed of every world's generator.
        resolution (`int`): the side the images are rendered at; `load` resizes if asked for another size.
        mix (`dict[str, float]`): share of each world (default `WORLD_MIX`).
        cache (`str`, optional): a `.pt` file to keep the rendered tensors in (re-used when it matches).
    """

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        resolution: int = 32,
        mix: dict[str, float] | None = None,
        cache: str | None = None,
    ) -> None:
        mix = dict(WORLD_MIX if mix is None else mix)
        if num_items < len(mix) or resolution < 8:
            raise BadInputError(f"need num_items >= {len(mix)} and resolution >= 8, got {num_items}, {resolution}")
        total = sum(mix.values())
        self.counts = {w: max(1, round(num_items * s / total)) for w, s in mix.items()}
        key = {"counts": self.counts, "seed": int(seed), "resolution": int(resolution)}
        if cache and os.path.isfile(cache):
            stored = torch.load(cache, weights_only=True)
            if stored.get("key") == repr(key):
                self.images, self.worlds = stored["images"], stored["worlds"]
                return
        parts = [render_world(w, n, seed, resolution) for w, n in self.counts.items()]
        self.images = torch.cat(parts).contiguous()
        self.worlds = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])
        if cache:
            os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
            tmp = cache + ".tmp"
            torch.save({"key": repr(key), "images": self.images, "worlds": self.worlds}, tmp)
            os.replace(tmp, cache)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        image = self.images[index]
        if image.shape[-2:] != (height, width):
            image = F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True)[0]
        return {"image": image, "caption": ""}


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel responses of every channel, `[B, 2C, H, W]` (replicate padding)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device) / 4
    kernel = torch.stack([kx, kx.T])[:, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])


class EdgeAwareVAERecipe(VAERecipe):
    """`VAERecipe` with MSE + `l1_weight` x L1 + `edge_weight` x L1 of the Sobel gradients + KL."""

    def __init__(
        self, *args: Any, l1_weight: float = 0.5, edge_weight: float = 1.0, decoder_only: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.l1_weight, self.edge_weight = float(l1_weight), float(edge_weight)
        self.decoder_only = bool(decoder_only)
        if self.decoder_only:  # the latent space stays exactly as it is: denoisers trained on it stay valid
            self.model.requires_grad_(False)
            self.model.decoder.requires_grad_(True)
            self.model.post_quant_conv.requires_grad_(True)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        vae = self._vae.module if hasattr(self._vae, "module") else self._vae
        x = batch["pixel_values"].to(next(vae.parameters()).device)
        with torch.set_grad_enabled(not self.decoder_only):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample(generator=self.generator)
        recon = vae.decode(z).sample
        edges = F.l1_loss(sobel(recon), sobel(x))
        kl = 0.0 if self.decoder_only else self.kl_weight * posterior.kl().mean()
        return F.mse_loss(recon, x) + self.l1_weight * F.l1_loss(recon, x) + self.edge_weight * edges + kl


@torch.no_grad()
def round_trip(vae: Any, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1] through the VAE (posterior mode), clamped to [-1, 1]."""
    vae.eval()
    out = [
        vae.decode(vae.encode(images[i : i + batch_size]).latent_dist.mode()).sample.clamp(-1, 1)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR in dB of two image batches in [-1, 1] (mapped to [0, 1])."""
    mse = ((a - b) / 2).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def world_psnr(vae: Any, seed: int = 1000, resolution: int = 32, per_world: int = 128) -> dict[str, float]:
    """Held-out round-trip PSNR (dB) per world."""
    out = {}
    for world in WORLD_MIX:
        images = render_world(world, per_world, seed, resolution)
        out[world] = round(psnr(round_trip(vae, images), images), 2)
    return out


def calibrate_scaling_factor(vae: Any, folder: str | None = None, *, seed: int = 0, resolution: int = 32,
                             per_world: int = 256) -> float:  # fmt: skip
    """Set `vae.config.scaling_factor` to `latent_scaling_factor` over held-out images of every world (`WORLD_MIX`,
    `per_world` each, seed `seed + 3000`); with `folder`, rewrite its `config.json` (weights untouched)."""
    images = torch.cat([render_world(w, per_world, seed + 3000, resolution) for w in WORLD_MIX])
    factor = latent_scaling_factor(vae, images, seed=seed)
    vae.register_to_config(scaling_factor=factor)
    if folder is not None:
        vae.save_config(folder)
    return factor


def train_world_vae(
    output_dir: str,
    *,
    steps: int = 4000,
    batch_size: int = 64,
    learning_rate: float = 5e-4,
    resolution: int = 32,
    num_items: int = 24000,
    seed: int = 0,
    init: str | None = None,
    edge_weight: float = 1.0,
    checkpoint_every: int = 250,
    decoder_only: bool = False,
    mix: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Train the proof world's VAE (resumable: re-run the same call); returns a summary with held-out PSNR per world.

    `init` starts from an `AutoencoderKL` folder (e.g. tiny-sd v1's `vae/`) instead of the tiny config's random
    weights. `decoder_only` trains the decoder alone (the encoder, hence the latents a UNet learned, unchanged).
    `mix`: world shares of the training images (default `WORLD_MIX`). The VAE is written to `output_dir/vae`.
    """
    import time

    from diffusers import AutoencoderKL

    from vadapters.models import tiny_vae
    from vadapters.train.trainer import Trainer, TrainingArguments

    if min(steps, batch_size, num_items) < 1:
        raise BadInputError("steps, batch_size and num_items must be positive")
    start = time.time()
    vae = AutoencoderKL.from_pretrained(init) if init else tiny_vae(seed)
    source = WorldImages(num_items, seed, resolution, mix=mix, cache=os.path.join(output_dir, "world_images.pt"))
    recipe = EdgeAwareVAERecipe(vae, source, resolution, batch_size, seed, edge_weight=edge_weight,
                                decoder_only=decoder_only)  # fmt: skip
    args = TrainingArguments(
        output_dir=output_dir, max_steps=steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
        checkpoint_every=checkpoint_every, lr_scheduler="cosine", lr_warmup_steps=min(100, steps // 10),
    )  # fmt: skip
    summary = Trainer(recipe, args).train()
    vae.requires_grad_(False).eval()
    factor = calibrate_scaling_factor(vae, os.path.join(output_dir, "vae"), seed=seed, resolution=resolution)
    return {
        "vae": os.path.join(output_dir, "vae"),
        "scaling_factor": factor,
        "psnr_db": world_psnr(vae, seed=seed + 1000, resolution=resolution),
        "counts": source.counts,
        "train": summary,
        "seconds": round(time.time() - start, 1),
    }
