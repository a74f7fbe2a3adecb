"""Text-to-video on the embedded image model: a diffusers `MotionAdapter` (AnimateDiff) shaped for tiny-sd.

AnimateDiff keeps a text-to-image UNet frozen and inserts *motion modules* (temporal transformers that attend
across frames at each pixel) after every spatial block; only those are trained, on video clips. diffusers builds
the video UNet with `UNetMotionModel.from_unet2d(unet, motion_adapter)`, which needs the adapter's
`block_out_channels` and `motion_layers_per_block` to match the UNet's. `tiny_motion_adapter` derives them from a
UNet config (default: tiny-sd's) and zero-initialises each motion module's output projection, as the AnimateDiff
paper does, so an untrained adapter leaves every frame exactly what the image model would have produced.

- `tiny_motion_adapter(unet_config=None, seed=0)`: a fresh `MotionAdapter` for a tiny-sd-shaped UNet.
- `animatediff_from_sd(sd_pipe, motion_adapter)`: an `AnimateDiffPipeline` sharing the image pipeline's VAE, text
  encoder and tokenizer, with a DDIM scheduler made from its scheduler config.
- `load_animatediff_pipeline(sd_dir=None, motion_dir=None)`: the same from folders (`None`: the embedded defaults
  `weights/tiny-sd` and `weights/tiny-animatediff`).

Example:
    >>> from vadapters.models import tiny_sd_pipeline
    >>> from vadapters.models.video import animatediff_from_sd, tiny_motion_adapter
    >>> pipe = animatediff_from_sd(tiny_sd_pipeline(), tiny_motion_adapter())
    >>> out = pipe("a red square moving right slowly", num_frames=8, num_inference_steps=2, height=16, width=16,
    ...            output_type="np")
    >>> out.frames.shape
    (1, 8, 16, 16, 3)
"""

from __future__ import annotations

import os
from typing import Any

import torch

from vadapters.errors import CheckpointError, IncompatibleBaseError

__all__ = [
    "DEFAULT_MOTION",
    "DEFAULT_SD",
    "animatediff_from_sd",
    "load_animatediff_pipeline",
    "motion_state_dict",
    "tiny_motion_adapter",
]

DEFAULT_SD = "tiny-sd"
DEFAULT_MOTION = "tiny-animatediff"
MOTION_KEY = "motion_modules"


def _largest_divisor(channels: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if channels % d == 0)


def tiny_motion_adapter(unet_config: dict[str, Any] | None = None, seed: int = 0, max_seq_length: int = 32):
    """A `diffusers.MotionAdapter` whose shape fits a UNet with `unet_config` (default: tiny-sd's UNet).

    Matches `block_out_channels` and `layers_per_block` (what `UNetMotionModel.from_unet2d` checks), uses the
    UNet's `norm_num_groups` and heads of width 8 (at most 8 heads), keeps a motion module in the mid block, and
    zero-initialises every motion module's `proj_out` so the untrained adapter is the identity on each frame.

    Args:
        unet_config (`dict`, optional): a `UNet2DConditionModel` config (a `FrozenDict` or a plain dict).
        seed (`int`): weight-initialisation seed (the caller's RNG state is left untouched).
        max_seq_length (`int`): the longest clip (frames) the sinusoidal position table covers.

    Example:
        >>> adapter = tiny_motion_adapter()
        >>> list(adapter.config.block_out_channels), adapter.config.motion_layers_per_block
        ([32, 64, 64], 1)
        >>> float(adapter.down_blocks[0].motion_modules[0].proj_out.weight.abs().sum())
        0.0
    """
    from diffusers import MotionAdapter

    from vadapters.models.tiny import _finish, seeded, tiny_unet_config

    config = dict(unet_config or tiny_unet_config())
    channels = tuple(int(c) for c in config["block_out_channels"])
    layers = config.get("layers_per_block", 2)
    groups = int(config.get("norm_num_groups") or 32)
    if any(c % groups for c in channels):
        raise IncompatibleBaseError(f"norm_num_groups {groups} does not divide block_out_channels {channels}")
    heads = tuple(_largest_divisor(c, max(1, min(8, c // 8))) for c in channels)
    with seeded(seed):
        adapter = MotionAdapter(
            block_out_channels=channels,
            motion_layers_per_block=layers if isinstance(layers, int) else tuple(layers),
            motion_norm_num_groups=groups,
            motion_num_attention_heads=heads,
            motion_max_seq_length=int(max_seq_length),
            use_motion_mid_block=True,
        )
    with torch.no_grad():
        for name, module in adapter.named_modules():
            if name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
                module.weight.zero_()
                module.bias.zero_()
    return _finish(adapter)


def motion_state_dict(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The motion-module tensors of a `UNetMotionModel`, keyed as in a `MotionAdapter` (the names coincide).

    Example:
        >>> from diffusers import UNetMotionModel
        >>> from vadapters.models import tiny_unet
        >>> unet = UNetMotionModel.from_unet2d(tiny_unet(), tiny_motion_adapter())
        >>> sorted(motion_state_dict(unet)) == sorted(tiny_motion_adapter().state_dict())
        True
    """
    return {k: v for k, v in unet.state_dict().items() if f".{MOTION_KEY}." in k}


def animatediff_from_sd(sd_pipe: Any, motion_adapter: Any, scheduler: Any = None):
    """An `AnimateDiffPipeline` built from a Stable Diffusion pipeline's components plus `motion_adapter`.

    The video UNet is `UNetMotionModel.from_unet2d(sd_pipe.unet, motion_adapter)` (spatial weights copied, motion
    modules loaded from the adapter); VAE, text encoder and tokenizer are shared with `sd_pipe`. The scheduler is
    `scheduler`, else a `DDIMScheduler` from `sd_pipe.scheduler.config` (the image model's noise schedule).

    Raises:
        IncompatibleBaseError: if the adapter's block layout does not match the UNet's.
    """
    from diffusers import AnimateDiffPipeline, DDIMScheduler, UNetMotionModel

    if any(getattr(sd_pipe, n, None) is None for n in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")):
        raise IncompatibleBaseError(
            f"expected a Stable Diffusion pipeline (unet, vae, text_encoder, tokenizer, scheduler); got "
            f"{type(sd_pipe).__name__}"
        )
    unet_cfg, motion_cfg = sd_pipe.unet.config, motion_adapter.config
    layers = unet_cfg.layers_per_block
    motion_layers = motion_cfg.motion_layers_per_block
    n = len(unet_cfg.block_out_channels)
    same_layers = (list(layers) if not isinstance(layers, int) else [layers] * n) == (
        list(motion_layers) if not isinstance(motion_layers, int) else [motion_layers] * n
    )
    if list(unet_cfg.block_out_channels) != list(motion_cfg.block_out_channels) or not same_layers:
        raise IncompatibleBaseError(
            f"the motion adapter (block_out_channels {list(motion_cfg.block_out_channels)}, layers "
            f"{motion_layers}) does not fit the UNet (block_out_channels {list(unet_cfg.block_out_channels)}, "
            f"layers {layers}); make one with `tiny_motion_adapter(pipe.unet.config)` and train it with "
            "`vadapters train-base tiny-animatediff --sd DIR`"
        )
    unet = UNetMotionModel.from_unet2d(sd_pipe.unet, motion_adapter).eval()
    if unet.dtype != sd_pipe.unet.dtype:
        unet.to(dtype=sd_pipe.unet.dtype)
    if scheduler is None:
        scheduler = DDIMScheduler.from_config(sd_pipe.scheduler.config, clip_sample=False)
    pipe = AnimateDiffPipeline(
        vae=sd_pipe.vae,
        text_encoder=sd_pipe.text_encoder,
        tokenizer=sd_pipe.tokenizer,
        unet=unet,
        motion_adapter=motion_adapter,
        scheduler=scheduler,
        feature_extractor=None,
        image_encoder=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _default_folder(name: str, flag: str) -> str:
    from vadapters.models.weights import default_path, read_manifest

    if name not in read_manifest()["entries"]:
        raise CheckpointError(
            f"the embedded default {name!r} is not in weights/ yet; train it with `{_train_hint(name)}` "
            f"and record it, or pass {flag} a folder"
        )
    return str(default_path(name))


def _train_hint(name: str) -> str:
    if name == DEFAULT_MOTION:
        return "vadapters train-base tiny-animatediff --sd weights/tiny-sd --out outputs/train-base/tiny-animatediff"
    return f"vadapters train-base {name}"


def sd_folder(path: Any, option: str) -> str:
    """A Stable Diffusion pipeline folder: `path`, or the embedded tiny-sd (hash-verified) when None; a clear
    `CheckpointError` naming `option` and the train-base command when it is missing or not a pipeline folder."""
    sd_dir = os.fspath(path) if path is not None else _default_folder(DEFAULT_SD, option)
    if not os.path.isfile(os.path.join(sd_dir, "model_index.json")):
        what = "not found" if not os.path.isdir(sd_dir) else "is not a diffusers pipeline folder (no model_index.json)"
        raise CheckpointError(
            f"Stable Diffusion pipeline folder {what}: {sd_dir!r}; pass {option} a `StableDiffusionPipeline."
            "save_pretrained` folder or train the default with `vadapters train-base tiny-sd`"
        )
    return sd_dir


def load_animatediff_pipeline(
    sd_dir: str | os.PathLike | None = None,
    motion_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
):
    """An `AnimateDiffPipeline` from a `StableDiffusionPipeline` folder and a `MotionAdapter.save_pretrained` folder.

    Args:
        sd_dir: the image pipeline folder; `None` is the embedded `weights/tiny-sd` (hash-verified).
        motion_dir: the motion adapter folder (`config.json` + `diffusion_pytorch_model.safetensors`, e.g.
            `<run>/motion_adapter` from `vadapters train-base tiny-animatediff`), or a Hub id ORG/NAME
            (fetched by diffusers; offline, from the cache); `None` is the embedded `weights/tiny-animatediff`.
        device: where to put the pipeline (default: CPU).

    Raises:
        CheckpointError: a folder is missing or is not what it should be (the message names the command that
            makes it).

    Example:
        >>> load_animatediff_pipeline("no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vadapters.errors.CheckpointError: Stable Diffusion pipeline folder not found: 'no/such/folder'...
    """
    from diffusers import MotionAdapter

    from vadapters.core.hub import not_cached_message, split_hub_id
    from vadapters.models.loading import load_pipeline

    sd_dir = sd_folder(sd_dir, "sd_dir")
    motion_dir = os.fspath(motion_dir) if motion_dir is not None else _default_folder(DEFAULT_MOTION, "motion_dir")
    hub = None if os.path.isdir(motion_dir) else split_hub_id(motion_dir)
    if hub is not None and hub[1] is None:  # ORG/NAME, e.g. an official AnimateDiff motion adapter repository
        try:
            adapter = MotionAdapter.from_pretrained(motion_dir)
        except OSError as err:
            raise CheckpointError(not_cached_message("motion adapter", motion_dir) + f" ({err})") from err
    elif not os.path.isfile(os.path.join(motion_dir, "config.json")):
        raise CheckpointError(
            f"motion adapter folder {motion_dir!r} has no config.json; expected a `MotionAdapter.save_pretrained` "
            f"folder such as <run>/motion_adapter written by `{_train_hint(DEFAULT_MOTION)}`"
        )
    else:
        try:
            adapter = MotionAdapter.from_pretrained(motion_dir, use_safetensors=True)
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"cannot load the motion adapter in {motion_dir!r}: {err}") from err
    sd_pipe = load_pipeline(sd_dir)
    pipe = animatediff_from_sd(sd_pipe, adapter.eval())
    from vadapters.core.bases import canonical_base_name

    pipe.register_to_config(_name_or_path=canonical_base_name(motion_dir))  # the base adapters record (motion model)
    return pipe.to(device) if device is not None else pipe
