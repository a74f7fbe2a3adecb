"""`vadapters train-base tiny-animatediff`: AnimateDiff motion modules for tiny-sd, trained with the one Trainer.

AnimateDiff's recipe: take a text-to-image Stable Diffusion model, insert motion modules (temporal transformers,
zero-initialised output) after its spatial blocks, freeze everything of the image model (UNet, VAE, text encoder)
and train only the motion modules with the ordinary epsilon-prediction loss on video clips - every frame encoded
by the frozen VAE, one timestep and one caption per clip. Here the clips are `vadapters.synthetic.motion` sprites
whose caption states the direction and speed ("a red square moving up-left quickly").

Quality (`summary.json`): generated clips for held-out captions, with the trained and the untrained (zero, i.e.
"every frame is an independent image") motion adapter. `estimate_motion` tracks the moving foreground (each
frame's difference from the clip's temporal median, its centroid fitted with a straight line) and gives the
velocity in pixels per frame; *direction accuracy* is the fraction of clips whose velocity is nearest to the
caption's direction among the 8 directions (chance: 1/8), *frame diff* the mean |frame t+1 - frame t| in [0, 1].
The estimator's accuracy on the ground-truth clips of the same captions is reported as its ceiling.

Example:
    >>> from vadapters.synthetic.motion import MotionClips
    >>> clips = MotionClips(8, seed=5, size=(32, 32))
    >>> direction_accuracy([clips.render(i)["frames"] for i in range(8)], [clips.caption(i) for i in range(8)])
    1.0
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vadapters.core.io import atomic_write_text
from vadapters.errors import BadInputError
from vadapters.train.buckets import BucketBatchSampler
from vadapters.train.trainer import Trainer, TrainingArguments

__all__ = [
    "MotionClipDataset",
    "MotionModuleRecipe",
    "direction_accuracy",
    "estimate_motion",
    "evaluate_motion",
    "train_tiny_animatediff",
]

MOTION_DIR = "motion_adapter"
SUMMARY_NAME = "summary.json"


# ------------------------------------------------------------------------------------------------------- data
class MotionClipDataset(Dataset):
    """Map-style view of `MotionClips` indexed by the `(index, height, width)` items of `BucketBatchSampler`.

    Example:
        >>> from vadapters.synthetic.motion import MotionClips
        >>> item = MotionClipDataset(MotionClips(2, num_frames=8))[(1, 16, 16)]
        >>> tuple(item["frames"].shape), "moving" in item["caption"]
        ((8, 3, 16, 16), True)
    """

    def __init__(self, clips: Any) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        index, height, width = key
        clip = self.clips.render(index, height, width)
        return {"frames": clip["frames"], "caption": clip["caption"], "index": index}


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips into `pixel_values` `[B, F, 3, H, W]` and list `captions`."""
    return {
        "pixel_values": torch.stack([it["frames"] for it in items]),
        "captions": [it["caption"] for it in items],
        "indices": [it["index"] for it in items],
    }


# ----------------------------------------------------------------------------------------------------- recipe
class MotionModuleRecipe:
    """Epsilon-loss recipe that trains only the motion modules of `UNetMotionModel.from_unet2d(sd.unet, adapter)`.

    Args:
        sd_pipe: a `StableDiffusionPipeline` (its UNet and VAE stay frozen; its text encoder too unless
            `train_text_encoder`).
        motion_adapter: the `MotionAdapter` to start from (e.g. `tiny_motion_adapter(sd_pipe.unet.config)`).
        clips: a `MotionClips`-like source (`render(index, h, w)`, `caption(index)`, `num_frames`).
        resolution (`int`): square frame size in pixels.
        batch_size (`int`): clips per batch.
        caption_dropout (`float`): probability of training a clip on the empty caption (keeps guidance usable).
        seed (`int`): seed of the noise / timestep / dropout generator.
        train_text_encoder (`bool`): also train the text encoder (as diffusers' `--train_text_encoder`); not
            AnimateDiff's recipe, which keeps it frozen. `save` then writes `text_encoder/` beside the adapter.
    """

    def __init__(
        self,
        sd_pipe: Any,
        motion_adapter: Any,
        clips: Any,
        resolution: int,
        batch_size: int,
        caption_dropout: float = 0.1,
        seed: int = 0,
        train_text_encoder: bool = False,
    ) -> None:
        from diffusers import DDPMScheduler, UNetMotionModel

        from vadapters.train.diffusion import check_resolutions

        if not 0.0 <= caption_dropout <= 1.0:
            raise BadInputError(f"caption_dropout must be in [0, 1], got {caption_dropout!r}")
        check_resolutions(sd_pipe, [resolution])
        self.pipe, self.motion_adapter = sd_pipe, motion_adapter
        self.unet = UNetMotionModel.from_unet2d(sd_pipe.unet, motion_adapter)
        self.unet.requires_grad_(False)
        self._params = [p for n, p in self.unet.named_parameters() if ".motion_modules." in n]
        for p in self._params:
            p.requires_grad_(True)
        for module in (sd_pipe.vae, sd_pipe.text_encoder):
            module.requires_grad_(False).eval()
        self.model: nn.Module = self.unet
        self._unet: nn.Module = self.unet
        self.train_text_encoder = bool(train_text_encoder)
        if self.train_text_encoder:
            self._params += list(sd_pipe.text_encoder.requires_grad_(True).train().parameters())
            self.model = nn.ModuleDict({"unet": self.unet, "text_encoder": sd_pipe.text_encoder})
        self.dataset = MotionClipDataset(clips)
        self.collate = collate_clips
        self.resolution, self.batch_size, self.seed = int(resolution), int(batch_size), int(seed)
        self.caption_dropout = float(caption_dropout)
        self.noise_scheduler = DDPMScheduler.from_config(sd_pipe.scheduler.config)
        if self.noise_scheduler.config.prediction_type != "epsilon":
            raise BadInputError(
                f"the image model predicts {self.noise_scheduler.config.prediction_type!r}; this recipe trains "
                "epsilon-prediction models (AnimateDiff's loss)"
            )
        self.generator = torch.Generator().manual_seed(self.seed)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self._params

    def batch_sampler(self, seed: int, batch_size: int) -> BucketBatchSampler:
        res = [(self.resolution, self.resolution)]
        return BucketBatchSampler(len(self.dataset), batch_size, res, seed=seed, drop_last=True)

    def setup(self, accelerator: Any, model: nn.Module) -> None:
        """Run the UNet through its prepared wrapper (alone, it is the trained module); move the frozen parts over."""
        self._unet = self.unet if self.train_text_encoder else model
        self.pipe.vae.to(accelerator.device)
        self.pipe.text_encoder.to(accelerator.device)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        """MSE between the predicted and the true noise over every frame of every clip."""
        pixels = batch["pixel_values"]  # [B, F, 3, H, W]
        b, f = pixels.shape[:2]
        captions = list(batch["captions"])
        if self.caption_dropout > 0:
            drop = (torch.rand(len(captions), generator=self.generator) < self.caption_dropout).tolist()
            captions = ["" if d else c for c, d in zip(captions, drop)]
        vae, tokenizer = self.pipe.vae, self.pipe.tokenizer
        with torch.no_grad():
            flat = pixels.flatten(0, 1).to(self.device, vae.dtype)
            latents = vae.encode(flat).latent_dist.sample(generator=self.generator) * vae.config.scaling_factor
            latents = latents.unflatten(0, (b, f)).transpose(1, 2)  # [B, C, F, h, w]
        with torch.set_grad_enabled(self.train_text_encoder):
            ids = tokenizer(
                captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)  # fmt: skip
            text = self.pipe.text_encoder(ids)[0].repeat_interleave(f, dim=0)  # per-frame, as UNetMotionModel needs
        noise = torch.randn(latents.shape, generator=self.generator).to(latents.device, latents.dtype)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (b,), generator=self.generator).to(latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = self._unet(noisy, timesteps, encoder_hidden_states=text, return_dict=False)[0]
        return F.mse_loss(prediction.float(), noise.float())

    def motion_adapter_state(self) -> Any:
        """A `MotionAdapter` (same config as the starting one) holding the trained motion modules."""
        from diffusers import MotionAdapter

        from vadapters.models.video import motion_state_dict

        adapter = MotionAdapter.from_config(self.motion_adapter.config)
        adapter.load_state_dict({k: v.detach().cpu() for k, v in motion_state_dict(self.unet).items()}, strict=True)
        return adapter.eval()

    def save(self, output_dir: str) -> list[str]:
        """Write `output_dir/motion_adapter` (`MotionAdapter.save_pretrained`, safetensors), swapped in atomically."""
        from vadapters.train.diffusion import save_pipeline_atomically

        saved = [save_pipeline_atomically(self.motion_adapter_state(), os.path.join(output_dir, MOTION_DIR))]
        if self.train_text_encoder:
            saved.append(save_pipeline_atomically(self.pipe.text_encoder, os.path.join(output_dir, "text_encoder")))
        return saved


# --------------------------------------------------------------------------------------------------- metrics
def _frames_hwc(frames: Any) -> np.ndarray:
    """`[F, 3, H, W]` in [-1, 1] (torch, as the generator gives) or `[F, H, W, 3]` in [0, 1] -> float `[F, H, W, 3]`."""
    if isinstance(frames, torch.Tensor):
        return ((frames.detach().float().cpu().numpy().transpose(0, 2, 3, 1) + 1) / 2).astype(np.float64)
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise BadInputError(f"expected frames [F, H, W, 3] in [0, 1] or a tensor [F, 3, H, W], got {x.shape}")
    return x / 255.0 if x.max() > 1.5 else x


def estimate_motion(frames: Any) -> tuple[float, float]:
    """Foreground velocity `(vx, vy)` in pixels per frame (x right, y down) of a clip over a static background.

    The foreground of frame t is its absolute difference from the per-pixel temporal median; the velocity is the
    least-squares slope of the foreground centroids over t.

    Example:
        >>> from vadapters.synthetic.motion import FirstFrame, render_clip
        >>> clip = render_clip(FirstFrame("circle", "red", 0.25, (0.5, 0.3)), "x moving right quickly", 8, 32, 32)
        >>> vx, vy = estimate_motion(clip["frames"])
        >>> vx > 0.5 and abs(vy) < 0.2
        True
    """
    x = _frames_hwc(frames)
    if x.shape[0] < 2:
        raise BadInputError(f"need at least 2 frames to estimate motion, got {x.shape[0]}")
    weight = np.abs(x - np.median(x, axis=0, keepdims=True)).sum(-1)  # [F, H, W]
    total = weight.sum((1, 2)) + 1e-8
    ys, xs = np.mgrid[: x.shape[1], : x.shape[2]]
    cy, cx = (weight * ys).sum((1, 2)) / total, (weight * xs).sum((1, 2)) / total
    t = np.arange(x.shape[0], dtype=np.float64)
    t -= t.mean()
    return float((t * (cx - cx.mean())).sum() / (t * t).sum()), float((t * (cy - cy.mean())).sum() / (t * t).sum())


def nearest_direction(vx: float, vy: float) -> str | None:
    """The `DIRECTIONS` word closest in angle to `(vx, vy)`; None for no motion.

    Example:
        >>> nearest_direction(1.0, -0.9), nearest_direction(0.0, 0.0)
        ('up-right', None)
    """
    from vadapters.synthetic.motion import DIRECTIONS

    if np.hypot(vx, vy) < 1e-6:
        return None
    return max(DIRECTIONS, key=lambda d: DIRECTIONS[d][0] * vx + DIRECTIONS[d][1] * vy)


def direction_accuracy(clips: Sequence[Any], captions: Sequence[str]) -> float:
    """Fraction of `clips` whose estimated motion direction is the one their caption states (chance: 1/8)."""
    from vadapters.synthetic.motion import Motion

    if len(clips) != len(captions) or not clips:
        raise BadInputError(f"need as many clips as captions (>= 1), got {len(clips)} and {len(captions)}")
    hits = [
        nearest_direction(*estimate_motion(c)) == Motion.from_caption(t).direction for c, t in zip(clips, captions)
    ]
    return float(np.mean(hits))


def frame_difference(clips: Sequence[Any]) -> float:
    """Mean |frame t+1 - frame t| over clips, pixels and channels, in [0, 1] units.

    Example:
        >>> frame_difference([np.stack([np.zeros((4, 4, 3)), np.ones((4, 4, 3))])])
        1.0
    """
    return float(np.mean([np.abs(np.diff(_frames_hwc(c), axis=0)).mean() for c in clips]))


@torch.no_grad()
def evaluate_motion(
    pipe: Any,
    captions: Sequence[str],
    *,
    num_frames: int = 8,
    resolution: int = 32,
    num_inference_steps: int = 20,
    guidance_scale: float = 3.0,
    seed: int = 0,
    batch: int = 8,
) -> dict[str, float]:
    """Generate one clip per caption with an `AnimateDiffPipeline`; direction accuracy and mean frame difference.

    Example:
        >>> from vadapters.models.video import load_animatediff_pipeline
        >>> evaluate_motion(load_animatediff_pipeline(), ["a red square moving left slowly"])  # doctest: +SKIP
        {'direction_accuracy': 1.0, 'frame_diff': 0.0071, 'clips': 1}
    """
    clips = []
    for start in range(0, len(captions), batch):
        chunk = list(captions[start : start + batch])
        generator = torch.Generator("cpu").manual_seed(seed + start)
        out = pipe(
            chunk, num_frames=num_frames, height=resolution, width=resolution, generator=generator,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, output_type="np",
        )  # fmt: skip
        clips += list(np.asarray(out.frames))
    return {
        "direction_accuracy": round(direction_accuracy(clips, captions), 4),
        "frame_diff": round(frame_difference(clips), 5),
        "clips": len(clips),
    }


# ------------------------------------------------------------------------------------------------------- train
def train_tiny_animatediff(
    output_dir: str | os.PathLike,
    sd_dir: str | os.PathLike | None = None,
    steps: int = 3000,
    batch_size: int = 8,
    frames: int = 8,
    *,
    resolution: int = 32,
    learning_rate: float = 3e-4,
    num_items: int = 20000,
    caption_dropout: float = 0.1,
    seed: int = 0,
    checkpoint_every: int = 250,
    eval_clips: int = 64,
    eval_steps: int = 20,
    eval_guidance: float = 3.0,
    **training_kwargs: Any,
) -> dict[str, Any]:
    """Train the motion modules of AnimateDiff on tiny-sd (resumable: re-run the same call) and evaluate them.

    Writes `output_dir/motion_adapter` (load it with `load_animatediff_pipeline(sd_dir, that folder)`),
    `checkpoints/`, `train_log.jsonl` and `summary.json` (training summary plus `metrics` for the trained and the
    untrained adapter and for the ground-truth clips; see the module docstring).

    Args:
        output_dir: run folder.
        sd_dir: `StableDiffusionPipeline` folder of the frozen image model (`None`: the embedded `weights/tiny-sd`).
        steps, batch_size, learning_rate, checkpoint_every, **training_kwargs: `TrainingArguments`.
        frames (`int`): frames per clip (8-16).
        resolution (`int`): frame size (tiny-sd's training size is 32).
        num_items (`int`): synthetic training clips; held-out clips use seed `seed + 1`.
        caption_dropout (`float`): see `MotionModuleRecipe`.
        eval_clips, eval_steps, eval_guidance: held-out clips generated per adapter (0 skips the evaluation),
            sampler steps and guidance scale.

    Example:
        >>> summary = train_tiny_animatediff("outputs/anim", "weights/tiny-sd", steps=2000)  # doctest: +SKIP
        >>> summary["metrics"]["trained"]["direction_accuracy"]  # doctest: +SKIP
    """
    from vadapters.models.loading import load_pipeline
    from vadapters.models.video import DEFAULT_SD, _default_folder, animatediff_from_sd, tiny_motion_adapter
    from vadapters.synthetic.motion import MotionClips

    for name, value in (("steps", steps), ("batch_size", batch_size), ("num_items", num_items)):
        if not isinstance(value, int) or value < 1:
            raise BadInputError(f"{name} must be a positive int, got {value!r}")
    if eval_clips < 0:
        raise BadInputError(f"eval_clips must be >= 0, got {eval_clips!r}")
    output_dir = os.fspath(output_dir)
    sd_dir = os.fspath(sd_dir) if sd_dir is not None else _default_folder(DEFAULT_SD, "--sd")
    start = time.time()
    sd_pipe = load_pipeline(sd_dir)
    clips = MotionClips(num_items, seed=seed, num_frames=frames, size=(resolution, resolution))
    initial = tiny_motion_adapter(sd_pipe.unet.config, seed=seed, max_seq_length=max(32, frames))
    recipe = MotionModuleRecipe(sd_pipe, initial, clips, resolution, batch_size, caption_dropout, seed)
    args = TrainingArguments.from_options(
        output_dir,
        max_steps=steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        checkpoint_every=checkpoint_every,
        **{"lr_scheduler": "cosine", "lr_warmup_steps": min(100, steps // 10), **training_kwargs},
    )
    trained = Trainer(recipe, args).train()
    summary: dict[str, Any] = {
        "motion_adapter": os.path.join(output_dir, MOTION_DIR),
        "sd_dir": os.path.abspath(sd_dir),
        "frames": frames,
        "resolution": resolution,
        "trainable_parameters": sum(p.numel() for p in recipe.trainable_parameters()),
        "train": trained,
    }
    if eval_clips:
        held_out = MotionClips(eval_clips, seed=seed + 1, num_frames=frames, size=(resolution, resolution))
        captions = [held_out.caption(i) for i in range(eval_clips)]
        options = {
            "num_frames": frames, "resolution": resolution, "num_inference_steps": eval_steps,
            "guidance_scale": eval_guidance, "seed": seed,
        }  # fmt: skip
        eval_sd = load_pipeline(sd_dir)  # a clean copy: the recipe's UNet and encoders moved to the device
        untrained = tiny_motion_adapter(eval_sd.unet.config, seed=seed, max_seq_length=max(32, frames))
        trained_adapter = recipe.motion_adapter_state()
        summary["metrics"] = {
            "trained": evaluate_motion(animatediff_from_sd(eval_sd, trained_adapter), captions, **options),
            "untrained": evaluate_motion(animatediff_from_sd(eval_sd, untrained), captions, **options),
            "ground_truth_direction_accuracy": direction_accuracy(
                [held_out.render(i)["frames"] for i in range(eval_clips)], captions
            ),
            "chance": 1 / 8,
            **options,
        }
    summary["seconds"] = round(time.time() - start, 1)
    atomic_write_text(os.path.join(output_dir, SUMMARY_NAME), json.dumps(summary, indent=2, default=str) + "\n")
    return summary
