"""`vadapters train-base`: train the embedded default models in `weights/` with the one Trainer.

`tiny-sd` is trained in two stages on synthetic shape scenes: the VAE (reconstruction + a small KL term), then the
UNet and CLIP text encoder jointly with the denoising loss (VAE frozen). The result is a real diffusers
`StableDiffusionPipeline` folder written to `weights/tiny-sd/` and recorded in `weights/manifest.json`.

Example:
    >>> from vadapters.train.base import BASE_MODELS
    >>> "tiny-sd" in BASE_MODELS
    True
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.errors import BadInputError
from vadapters.train.buckets import BucketBatchSampler
from vadapters.train.data import BucketedDataset, collate_image_caption
from vadapters.train.trainer import Trainer, TrainingArguments

BASE_MODELS = ("tiny-sd",)


# What tiny-sd is trained on: one large shape on a flat background. The first run on 1-3 small shapes over
# textured backgrounds (2,000 steps) learnt the background colours but no shapes (benchmarks/results).
TINY_SD_SCENES: dict[str, Any] = {"max_shapes": 1, "background": "flat", "min_size": 0.4, "max_size": 0.7}


def scene_source(num_items: int, seed: int, **scene_options: Any) -> Any:
    """Captioned shape scenes (`ShapeScenes` options, e.g. `max_shapes=1, background="flat"`)."""
    from vadapters.synthetic.scenes import ShapeScenes

    return ShapeScenes(num_items, seed=seed, **scene_options)


class VAERecipe:
    """Reconstruction (MSE + L1) plus `kl_weight` x KL for a diffusers `AutoencoderKL`, at one resolution."""

    def __init__(
        self, vae: nn.Module, source: Any, resolution: int, batch_size: int, seed: int = 0, kl_weight: float = 1e-6
    ) -> None:
        self.model = vae
        vae.requires_grad_(True)
        self.dataset = BucketedDataset(source)
        self.resolution, self.batch_size, self.kl_weight = int(resolution), int(batch_size), float(kl_weight)
        self.collate = collate_image_caption
        self.generator = torch.Generator().manual_seed(seed)
        self._vae = vae

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def batch_sampler(self, seed: int, batch_size: int) -> BucketBatchSampler:
        return BucketBatchSampler(len(self.dataset), batch_size, [(self.resolution, self.resolution)], seed=seed)

    def setup(self, accelerator: Any, model: nn.Module) -> None:
        self._vae = model

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        vae = self._vae.module if hasattr(self._vae, "module") else self._vae
        x = batch["pixel_values"].to(next(vae.parameters()).device)
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=self.generator)
        recon = vae.decode(z).sample
        return F.mse_loss(recon, x) + 0.1 * F.l1_loss(recon, x) + self.kl_weight * posterior.kl().mean()

    def save(self, output_dir: str) -> list[str]:
        self.model.save_pretrained(os.path.join(output_dir, "vae"), safe_serialization=True)
        return [os.path.join(output_dir, "vae")]


@torch.no_grad()
def vae_psnr(vae: nn.Module, source: Any, resolution: int, n: int = 64) -> float:
    """Mean PSNR (dB, images in [-1, 1] mapped to [0, 1]) of VAE reconstructions (posterior mode)."""
    vae.eval()
    images = torch.stack([source.load(i, resolution, resolution)["image"] for i in range(n)])
    recon = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
    mse = ((recon - images) / 2).square().flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean())


@torch.no_grad()
def latent_scaling_factor(vae: Any, images: torch.Tensor, batch_size: int = 256, seed: int = 0) -> float:
    """`1 / std` of the VAE's posterior samples over `images` (in [-1, 1]), rounded to 5 significant digits.

    Latent diffusion rescales the latents to unit variance before noising them (Rombach et al. 2022, section 4.3.2
    and appendix G: "we rescale the latents by the component-wise standard deviation" estimated on a batch of
    training data); Stable Diffusion's 0.18215 is this number for its own VAE. A VAE trained here has latents of about
    unit std, so keeping SD's constant would noise signal of std 0.19 with unit noise: every timestep 28x noisier
    than the schedule intends, and the global layout (which shape) buried from the first steps.

    Example:
        >>> from vadapters.models import tiny_vae
        >>> factor = latent_scaling_factor(tiny_vae(0), torch.rand(8, 3, 16, 16) * 2 - 1)
        >>> factor > 0
        True
    """
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    samples = [
        vae.encode(images[i : i + batch_size]).latent_dist.sample(generator) for i in range(0, len(images), batch_size)
    ]
    std = float(torch.cat(samples).float().std())
    if not std > 0:
        raise BadInputError(f"the VAE's latents have std {std}: cannot calibrate a scaling factor")
    return float(f"{1.0 / std:.5g}")


def train_denoiser(
    pipe: Any,
    source: Any,
    output_dir: str,
    *,
    steps: int,
    batch_size: int,
    resolution: int,
    learning_rate: float,
    seed: int,
    checkpoint_every: int,
    validate_every: int,
    sample_scheduler: str | None = None,
    train_text_encoder: bool = True,
) -> tuple[dict[str, Any], Any]:
    """The base models' denoising stage: UNet + text encoder(s) fully trained (VAE frozen) with the denoising loss,
    AdamW with warm-up and cosine decay, resumable; returns the Trainer's summary and the recipe.

    `train_text_encoder=False` keeps a pre-trained text encoder frozen (tiny-sd v2 under tiny-clip's text tower).
    The recipe noises with its own copy of `pipe`'s scheduler config; `sample_scheduler` (e.g. "ddim") then
    replaces `pipe.scheduler` for validation and the saved pipeline (same betas).
    """
    from vadapters.models import make_scheduler
    from vadapters.train.diffusion import DiffusionAdapterRecipe

    recipe = DiffusionAdapterRecipe(
        pipe, None, source, str(resolution), batch_size, caption_dropout=0.1, seed=seed,
        validation_resolutions=str(resolution), train_text_encoder=train_text_encoder,
    )  # fmt: skip
    if sample_scheduler:
        pipe.scheduler = make_scheduler(sample_scheduler)
    args = TrainingArguments(
        output_dir=output_dir, max_steps=steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
        checkpoint_every=checkpoint_every, validate_every=validate_every, lr_scheduler="cosine",
        lr_warmup_steps=min(200, steps // 10),
    )  # fmt: skip
    return Trainer(recipe, args).train(), recipe


def train_tiny_sd(
    output_dir: str,
    *,
    vae_steps: int = 1500,
    unet_steps: int = 6000,
    batch_size: int = 32,
    resolution: int = 32,
    learning_rate: float = 6e-4,
    num_items: int = 50000,
    seed: int = 0,
    checkpoint_every: int = 250,
    validate_every: int = 0,
    scene_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train tiny-sd from scratch; resumable (re-run the same call). Returns a summary with the pipeline path.

    `scene_options` are `ShapeScenes` options for the training data (default `TINY_SD_SCENES`). Between the stages the
    VAE's `scaling_factor` is calibrated to unit-variance latents (`latent_scaling_factor`).
    """
    from vadapters.models import tiny_sd_pipeline

    if min(vae_steps, unet_steps, batch_size, resolution, num_items) < 1:
        raise BadInputError("vae_steps, unet_steps, batch_size, resolution and num_items must be positive")
    start = time.time()
    scene_options = dict(TINY_SD_SCENES if scene_options is None else scene_options)
    source = scene_source(num_items, seed, **scene_options)
    pipe = tiny_sd_pipeline(seed=seed, scheduler="ddpm")
    vae_dir = os.path.join(output_dir, "stage1-vae")
    vae_args = TrainingArguments(
        output_dir=vae_dir,
        max_steps=vae_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        checkpoint_every=checkpoint_every,
        lr_scheduler="cosine",
        lr_warmup_steps=min(100, vae_steps // 10),
    )
    vae_summary = Trainer(VAERecipe(pipe.vae, source, resolution, batch_size, seed), vae_args).train()
    pipe.vae.requires_grad_(False).eval()
    psnr = vae_psnr(pipe.vae, scene_source(64, seed + 1, **scene_options), resolution)
    calibration = scene_source(512, seed + 3000, **scene_options)
    images = torch.stack([calibration.render(i, resolution, resolution)["image"] for i in range(len(calibration))])
    pipe.vae.register_to_config(scaling_factor=latent_scaling_factor(pipe.vae, images, seed=seed))
    pipe.vae.save_config(os.path.join(vae_dir, "vae"))  # export_tiny_sd_checkpoint reads the VAE from there

    unet_dir = os.path.join(output_dir, "stage2-unet")
    unet_summary, _ = train_denoiser(
        pipe, source, unet_dir, steps=unet_steps, batch_size=batch_size, resolution=resolution,
        learning_rate=learning_rate, seed=seed, checkpoint_every=checkpoint_every, validate_every=validate_every,
    )  # fmt: skip
    return {
        "pipeline": os.path.join(unet_dir, "pipeline"),
        "vae_psnr_db": round(psnr, 2),
        "scene_options": scene_options,
        "vae": vae_summary,
        "unet": unet_summary,
        "seconds": round(time.time() - start, 1),
    }


def export_tiny_sd_checkpoint(
    run_dir: str, target: str, step: int | None = None, seed: int = 0, scheduler: str = "ddim"
) -> str:
    """Write the pipeline of an intermediate tiny-sd checkpoint (`run_dir/stage2-unet/checkpoints/step-N`) to `target`.

    Lets a long run be judged (`benchmarks/tiny_sd_quality.py`) or shipped before it finishes. `step=None` takes the
    latest checkpoint. The VAE comes from `run_dir/stage1-vae/vae`; the UNet and text encoder from the checkpoint's
    trainable parameters, loaded strictly (a checkpoint from another architecture raises `CheckpointError`).
    The written pipeline samples with `scheduler` (DDIM by default; training used DDPM noising, same betas).
    """
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    from vadapters.errors import CheckpointError
    from vadapters.models import tiny_sd_pipeline
    from vadapters.train.diffusion import save_pipeline_atomically

    folder = os.path.join(run_dir, "stage2-unet", "checkpoints")
    steps = (
        sorted(int(n.split("-")[1]) for n in os.listdir(folder) if n.startswith("step-"))
        if os.path.isdir(folder)
        else []
    )
    if not steps or (step is not None and step not in steps):
        raise BadInputError(
            f"no checkpoint {'step-' + str(step) if step else ''} under {folder} (found steps {steps})"
        )
    step = steps[-1] if step is None else step
    state = load_file(os.path.join(folder, f"step-{step}", "trainable_parameters.safetensors"))
    pipe = tiny_sd_pipeline(seed=seed, scheduler=scheduler)
    pipe.vae = AutoencoderKL.from_pretrained(os.path.join(run_dir, "stage1-vae", "vae")).eval()
    for name in ("unet", "text_encoder"):
        part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        try:
            getattr(pipe, name).load_state_dict(part, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint step-{step} does not fit the tiny-sd {name}: {exc}") from exc
    return save_pipeline_atomically(pipe, target)
