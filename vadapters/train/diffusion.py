"""The latent-diffusion recipe: train any adapter that lives on a Stable Diffusion (1.x/2.x/XL) UNet.

The recipe injects the adapter (which freezes the whole UNet and leaves only the adapter trainable), then
computes the usual denoising loss on mixed-resolution buckets: encode images with the frozen VAE and captions
with the frozen text encoder(s), add DDPM noise at random timesteps, and regress the UNet output on the
scheduler's target (epsilon, v or sample). It knows nothing about the method, so ResAdapter, SaRA or any
future UNet adapter trains through it unchanged.

Example:
    >>> from vadapters.models import tiny_sd_pipeline
    >>> from vadapters.methods.res_adapter import ResAdapterConfig
    >>> from vadapters.train.data import make_source
    >>> from vadapters.train.diffusion import DiffusionAdapterRecipe
    >>> recipe = DiffusionAdapterRecipe(
    ...     tiny_sd_pipeline(), ResAdapterConfig(rank=4, alpha=2.0), make_source("synthetic", 8), "16,24", 2
    ... )
    >>> batch = recipe.collate([recipe.dataset[(i, 16, 16)] for i in range(2)])
    >>> bool(recipe.loss(batch, 0).isfinite())
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vadapters.core import hosts, inject, save_pretrained
from vadapters.core.config import AdapterConfig
from vadapters.core.io import current_umask
from vadapters.core.registry import get_method
from vadapters.core.shards import BatchShard
from vadapters.errors import BadInputError
from vadapters.train.buckets import parse_resolutions
from vadapters.train.data import BucketedDataset, collate_image_caption, make_source
from vadapters.train.weighting import check_snr_gamma, denoising_mse, training_scheduler

__all__ = [
    "DiffusionAdapterRecipe",
    "build_diffusion_recipe",
    "check_resolutions",
    "load_training_pipeline",
    "resolution_multiple",
    "write_validation_grid",
]


def resolution_multiple(pipe: Any) -> int:
    """Pixel sizes must be multiples of this: `vae_scale_factor * 2 ** (number of UNet downsamplers)`."""
    vae_factor = getattr(pipe, "vae_scale_factor", None) or 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    downsamplers = sum(1 for block in pipe.unet.down_blocks if getattr(block, "downsamplers", None))
    return int(vae_factor) * 2**downsamplers


def check_resolutions(pipe: Any, resolutions: Any, batch_size: int = 1) -> list[tuple[int, int]]:
    """Parse `resolutions` and check that the pipeline can denoise each of them, and that a training batch of the
    largest fits in memory (`hosts.diffusers.check_pipeline_sizes`); raises `BadInputError`."""
    try:
        sizes = parse_resolutions(resolutions)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    multiple = resolution_multiple(pipe)
    bad = [f"{h}x{w}" for h, w in sizes if h % multiple or w % multiple]
    if bad:
        raise BadInputError(
            f"resolution(s) {', '.join(bad)} are not multiples of {multiple} (= VAE scale factor x 2^UNet "
            f"downsamplers) for this pipeline; use e.g. {', '.join(str(multiple * k) for k in (2, 3, 4))}"
        )
    return hosts.diffusers.check_pipeline_sizes(pipe, sizes, batch_size=batch_size, training=True)


class DiffusionAdapterRecipe:
    """Denoising-loss recipe for an adapter on a diffusers Stable Diffusion / SDXL pipeline's UNet.

    Args:
        pipe: a `StableDiffusionPipeline` or `StableDiffusionXLPipeline` (any pipeline with `unet`, `vae`,
            `tokenizer`, `text_encoder`, `scheduler`; SDXL's second encoder and added conditioning are handled).
        config (`AdapterConfig` or None): the adapter to train, injected as `adapter_name` (frozen base, trainable
            adapter); None trains the whole UNet and text encoder(s) (base models, single process).
        data_source: a source with `load(index, height, width)` (see `vadapters.train.data.make_source`).
        resolutions: bucket sizes (`"16,24x32,32"` or a list); each must be a multiple of
            `resolution_multiple(pipe)`.
        batch_size (`int`): items per batch (every batch has one resolution).
        adapter_name (`str`): name of the adapter on the pipeline and in the saved files.
        caption_dropout (`float`): probability of training a sample on the empty caption.
        validation_prompts (`list[str]`, optional): prompts of the validation grid (default: two data captions).
        validation_resolutions: sizes of the validation grid's columns (default: the training resolutions).
        validation_kwargs (`dict`, optional): extra pipeline arguments for validation (default:
            `num_inference_steps=10`).
        seed (`int`): seed of the adapter initialisation, the noise/timestep generator and validation.
        snr_gamma (`float`, optional): Min-SNR-gamma loss weighting (`vadapters.train.weighting`); None: plain MSE.
        noise_shift (`float`, optional): draw the training noise from the shifted-SNR schedule with this scale
            (`noise_shift_mode` `"interpolated"` or `"shifted"`); None: the pipeline's own schedule. Sample an adapter
            trained this way with the same shift (`vadapters.core.schedules.ShiftSNRScheduler`).

    Subclasses for one method (a view-set or clip recipe) set `config_cls`; other configs are refused.
    """

    config_cls: type | None = None

    def __init__(
        self,
        pipe: Any,
        config: AdapterConfig | None,
        data_source: Any,
        resolutions: Any,
        batch_size: int,
        adapter_name: str = "default",
        caption_dropout: float = 0.0,
        validation_prompts: Sequence[str] | None = None,
        validation_resolutions: Any = None,
        validation_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        train_text_encoder: bool = True,
        snr_gamma: float | None = None,
        noise_shift: float | None = None,
        noise_shift_mode: str = "interpolated",
    ) -> None:
        missing = [
            n for n in ("unet", "vae", "tokenizer", "text_encoder", "scheduler") if getattr(pipe, n, None) is None
        ]
        if missing:
            raise BadInputError(f"{type(pipe).__name__} lacks {missing}; expected a Stable Diffusion (XL) pipeline")
        if self.config_cls is not None and not isinstance(config, self.config_cls):
            raise BadInputError(
                f"{type(self).__name__} trains a {self.config_cls.__name__}, got {type(config).__name__}"
            )
        if not 0.0 <= caption_dropout <= 1.0:
            raise BadInputError(f"caption_dropout must be in [0, 1], got {caption_dropout!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadInputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.resolutions = check_resolutions(pipe, resolutions, batch_size)
        self.validation_resolutions = (
            check_resolutions(pipe, validation_resolutions) if validation_resolutions else list(self.resolutions)
        )
        self.dataset = BucketedDataset(data_source)
        if len(self.dataset) < batch_size:
            raise BadInputError(f"the data has {len(self.dataset)} items, fewer than one batch of {batch_size}")
        if config is None:
            # Base training: the whole UNet and text encoder(s) learn (VAE frozen; SDXL's `text_encoder_2` too),
            # or the UNet alone under a frozen, pre-trained text encoder (`train_text_encoder=False`).
            # Single process only: the modules are called directly, outside any DDP wrapper.
            self.pipe, self.adapter_name, self.seed = pipe, None, int(seed)
            encoders = [n for n in ("text_encoder", "text_encoder_2") if getattr(pipe, n, None) is not None]
            if not train_text_encoder:
                for name in encoders:
                    getattr(pipe, name).requires_grad_(False).eval()
                encoders = []
            self.model = nn.ModuleDict({"unet": pipe.unet, **{name: getattr(pipe, name) for name in encoders}})
            pipe.vae.requires_grad_(False)
            self.model.requires_grad_(True)
            self._params = list(self.model.parameters())
            self.method_hooks = None
        else:
            component = config.target_component or get_method(config.method).injector_cls.component
            devices = (
                [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
            )
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                inject(pipe, config, adapter_name)
            self.pipe, self.adapter_name, self.seed = pipe, adapter_name, int(seed)
            self.model = hosts.resolve_target(pipe, component)
            spec = get_method(config.method)
            self._params = list(spec.injector_cls().adapter_parameters(self.model, adapter_name))
            # Optional per-method extras (e.g. SaRA's regulariser and re-selection): see `on_train_begin`.
            make_hooks = spec.training_hooks
            self.method_hooks = make_hooks(self.model, adapter_name, seed=seed) if make_hooks else None
        self.config = config
        self.source, self.batch_size, self.caption_dropout = data_source, batch_size, float(caption_dropout)
        self.collate = collate_image_caption
        self.snr_gamma = check_snr_gamma(snr_gamma)
        if noise_shift is not None and not (isinstance(noise_shift, (int, float)) and noise_shift > 0):
            raise BadInputError(f"noise_shift must be None or a positive number, got {noise_shift!r}")
        self.noise_shift, self.noise_shift_mode = noise_shift, noise_shift_mode
        self.noise_scheduler = training_scheduler(pipe.scheduler.config, noise_shift, noise_shift_mode)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise BadInputError(f"unsupported prediction_type {self.prediction_type!r} in the scheduler config")
        self.generator = torch.Generator().manual_seed(self.seed)
        self.shard = BatchShard()  # this process's rows of each global batch (set by `setup`)
        self.validation_prompts = list(validation_prompts or self._default_prompts())
        self.validation_kwargs = {"num_inference_steps": 10, **(validation_kwargs or {})}
        self.sdxl = getattr(pipe, "text_encoder_2", None) is not None
        self._unet: nn.Module = pipe.unet
        self._text_encoder_trainable = (config is None and train_text_encoder) or self.model is pipe.text_encoder

    @classmethod
    def from_inputs(
        cls, pipe: Any, config: AdapterConfig, source: Any, resolutions: Any, inputs: Any, **options: Any
    ) -> DiffusionAdapterRecipe:
        """The recipe with `batch_size`, `adapter_name` and `seed` from `inputs` (a `RecipeInputs`)."""
        batch_size, name, seed = inputs.batch_size, inputs.adapter_name, inputs.seed
        return cls(pipe, config, source, resolutions, batch_size, adapter_name=name, seed=seed, **options)

    # ------------------------------------------------------------------------------------------------ protocol
    def trainable_parameters(self) -> list[nn.Parameter]:
        return self._params

    def setup(self, accelerator: Any, model: nn.Module) -> None:
        """Run the trained module through its prepared wrapper; move the frozen parts to the device; draw random
        numbers for this process's rows of each global batch (`BatchShard`)."""
        self.shard = BatchShard.of(accelerator)
        if self.model is self.pipe.unet:
            self._unet = model
        for name in ("vae", "text_encoder", "text_encoder_2", "unet"):
            module = getattr(self.pipe, name, None)
            if isinstance(module, nn.Module) and module is not self.model:
                module.to(accelerator.device)

    def on_train_begin(self, optimizer: Any = None, max_steps: int | None = None) -> None:
        """Hand the optimizer and run length to the method's training hooks, if it has any."""
        if self.method_hooks is not None:
            self.method_hooks.on_train_begin(optimizer=optimizer, max_steps=max_steps)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        if self.method_hooks is not None:
            state["method"] = self.method_hooks.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if self.method_hooks is not None and "method" in state:
            self.method_hooks.load_state_dict(state["method"])

    @property
    def device(self) -> torch.device:
        return next(self.pipe.unet.parameters()).device

    # ---------------------------------------------------------------------------------------------------- loss
    def _encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        dist = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist  # sampled as diffusers samples it
        latents = dist.mean + dist.std * self.shard.randn(dist.mean.shape, self.generator, dist.mean.dtype).to(
            dist.mean.device
        )
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor

    def _tokens(self, tokenizer: Any, captions: list[str]) -> torch.Tensor:
        ids = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        return ids.to(self.device)

    def _encode_prompts(self, captions: list[str], height: int, width: int) -> dict[str, Any]:
        pipe = self.pipe
        if not self.sdxl:
            return {"encoder_hidden_states": pipe.text_encoder(self._tokens(pipe.tokenizer, captions))[0]}
        hidden, pooled = [], None
        for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            out = encoder(self._tokens(tokenizer, captions), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=pooled.dtype, device=self.device)
        return {
            "encoder_hidden_states": torch.cat(hidden, dim=-1),
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids.repeat(len(captions), 1)},
        }

    def drop_captions(self, captions: Sequence[str]) -> list[str]:
        """Each caption replaced by `""` with probability `caption_dropout` (draws from the recipe's generator)."""
        captions = list(captions)
        if self.caption_dropout > 0:
            drop = (self.shard.rand(len(captions), self.generator) < self.caption_dropout).tolist()
            captions = ["" if d else c for c, d in zip(captions, drop)]
        return captions

    def encode(self, pixels: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, dict[str, Any]]:
        """`(latents, UNet conditioning kwargs)`: images through the frozen VAE, captions through the text
        encoder(s) (with gradients only when they train)."""
        with torch.no_grad():
            latents = self._encode_images(pixels)
        with torch.set_grad_enabled(self._text_encoder_trainable):
            cond = self._encode_prompts(captions, pixels.shape[-2], pixels.shape[-1])
        return latents, cond

    def sample_noise(self, latents: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise shaped like `latents` and `count` training timesteps (on the CPU), in that order from the recipe's
        generator, so that a resumed run draws the same numbers (and N processes the numbers of one)."""
        noise = self.shard.randn(latents.shape, self.generator).to(latents.device, latents.dtype)
        steps = self.noise_scheduler.config.num_train_timesteps
        return noise, self.shard.randint(steps, count, self.generator)

    def noisy_and_target(
        self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The DDPM-noised latents and what the UNet regresses on for the scheduler's `prediction_type`."""
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.prediction_type == "epsilon":
            return noisy, noise
        if self.prediction_type == "v_prediction":
            return noisy, self.noise_scheduler.get_velocity(latents, noise, timesteps)
        return noisy, latents

    def denoising_loss(self, prediction: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """MSE of `prediction` on `target` (one timestep per sample along dim 0), Min-SNR weighted with `snr_gamma`."""
        return denoising_mse(prediction, target, timesteps, self.noise_scheduler, self.snr_gamma, self.prediction_type)

    def loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        """MSE between the UNet output and the scheduler's target on one batch (plus the method's extra loss)."""
        if self.method_hooks is not None:
            self.method_hooks.before_loss(step)
        latents, cond = self.encode(batch["pixel_values"], self.drop_captions(batch["captions"]))
        noise, timesteps = self.sample_noise(latents, latents.shape[0])
        timesteps = timesteps.to(latents.device)
        noisy, target = self.noisy_and_target(latents, noise, timesteps)
        prediction = self._unet(noisy, timesteps, **cond, return_dict=False)[0]
        loss = self.denoising_loss(prediction, target, timesteps)
        extra = self.method_hooks.extra_loss(step) if self.method_hooks is not None else None
        return loss if extra is None else loss + extra

    # ------------------------------------------------------------------------------------------ validate / save
    def _default_prompts(self) -> list[str]:
        caption = getattr(self.source, "caption", None)
        if caption is None:
            return ["a photo"]
        return [caption(i) for i in range(min(2, len(self.source)))]

    def validate(self, step: int, output_dir: str) -> list[str]:
        """Generate every prompt at every validation size (fixed seed) into `validation/step-N.png`."""
        pipe = self.pipe
        saved_bar = dict(getattr(pipe, "_progress_bar_config", {}))
        pipe.set_progress_bar_config(disable=True)
        rows = []
        try:
            with torch.no_grad():
                for prompt in self.validation_prompts:
                    row = []
                    for height, width in self.validation_resolutions:
                        generator = torch.Generator("cpu").manual_seed(self.seed)
                        out = pipe(
                            prompt, height=height, width=width, generator=generator, output_type="np",
                            **self.validation_kwargs,
                        )  # fmt: skip
                        row.append((np.clip(out.images[0], 0.0, 1.0) * 255).round().astype(np.uint8))
                    rows.append(row)
        finally:
            pipe._progress_bar_config = saved_bar
        return [write_validation_grid(rows, output_dir, step)]

    def save(self, output_dir: str) -> list[str]:
        """Write the adapter (`adapter_config.json` + `adapter_model.safetensors`), or the whole pipeline for base
        training (into `output_dir/pipeline`, swapped in atomically)."""
        if self.adapter_name is None:
            return [save_pipeline_atomically(self.pipe, os.path.join(output_dir, "pipeline"))]
        return save_pretrained(self.pipe, output_dir, adapter_names=[self.adapter_name])


def write_validation_grid(rows: list[list[np.ndarray]], output_dir: str, step: int) -> str:
    """The one validation writer of the diffusion recipes: rows of uint8 images as `validation/step-N.png`."""
    from vadapters.pipelines.loading import image_grid, save_image

    return save_image(image_grid(rows), os.path.join(output_dir, "validation", f"step-{step}.png"))


def load_training_pipeline(base: Any) -> tuple[Any, str | None]:
    """`(pipeline, its base name)` for training: a pipeline object (as is), or what `load_pipeline` reads (None: the
    embedded trained tiny-sd, the one default base; a folder; a Hub id; `"tiny"`: the random-weights architecture,
    only by name). The name (`vadapters.core.bases`) is what `inject` records in the adapter."""
    from vadapters.core.bases import host_base_name

    if base is None or isinstance(base, (str, os.PathLike)):
        from vadapters.models.loading import load_pipeline

        base = load_pipeline(base)
    return base, host_base_name(base)


def build_diffusion_recipe(
    inputs: Any,
    *,
    method: str,
    resolutions: Any = "16,24,32",
    num_items: int = 1000,
    caption_dropout: float = 0.0,
    validation_prompts: list[str] | None = None,
    validation_resolutions: Any = None,
    validation_kwargs: dict[str, Any] | None = None,
    snr_gamma: float | None = None,
    noise_shift: float | None = None,
) -> DiffusionAdapterRecipe:
    """The recipe of a UNet adapter (`method`) from `inputs` (a `vadapters.train.recipes.RecipeInputs`): its base
    as `load_training_pipeline` reads it, its data `"synthetic"` disc scenes by default, a folder of images with
    captions, or a source object. `snr_gamma` / `noise_shift`: Min-SNR weighting and shifted-SNR training noise
    (off by default; see `DiffusionAdapterRecipe`)."""
    config = get_method(method).config_cls.from_overrides(inputs.config_overrides)
    pipe, _ = load_training_pipeline(inputs.base)  # inject records its base name in the adapter
    data = "synthetic" if inputs.data is None else inputs.data
    source = make_source(data, num_items=num_items, seed=inputs.seed)
    validation = {"prompts": validation_prompts, "resolutions": validation_resolutions, "kwargs": validation_kwargs}
    options = {"caption_dropout": caption_dropout, **{f"validation_{k}": v for k, v in validation.items()}}
    options.update(snr_gamma=snr_gamma, noise_shift=noise_shift)
    return DiffusionAdapterRecipe.from_inputs(pipe, config, source, resolutions, inputs, **options)


def save_pipeline_atomically(pipe: Any, target: str) -> str:
    """`pipe.save_pretrained` into a temporary sibling folder, then swap it into place."""
    import shutil
    import tempfile

    parent = os.path.dirname(os.path.abspath(target)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; the folder gets the user's umask
        pipe.save_pretrained(tmp, safe_serialization=True)
        old = None
        if os.path.exists(target):
            old = tempfile.mkdtemp(prefix=".old-", dir=parent)
            os.replace(target, os.path.join(old, "x"))
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
