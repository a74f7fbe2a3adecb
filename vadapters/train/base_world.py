"""tiny-sd v2 of the proof world: the world VAE, tiny-clip's text tower (frozen), and a UNet trained on shapes and objects.

The training data (`ShapesAndObjects`) mixes tiny-sd v1's distribution (one large shape on flat ground, with its
caption) with single views of the multi-view objects on plain ground at a random azimuth (with the object's caption),
so the same base can draw what the judges read *and* serve MV-Adapter as a base that draws one object on empty ground.

Example:
    >>> data = ShapesAndObjects(4, seed=0, object_share=0.5)
    >>> item = data.load(1, 32, 32)
    >>> tuple(item["image"].shape), isinstance(item["caption"], str)
    ((3, 32, 32), True)
    >>> sorted({data.kind(i) for i in range(4)})
    ['object', 'shape']
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from vadapters.errors import BadInputError

__all__ = [
    "ShapesAndObjects",
    "export_tiny_sd_v2_checkpoint",
    "load_tiny_clip",
    "tiny_sd_v2_pipeline",
    "tiny_sd_v2_unet_config",
    "train_tiny_sd_v2",
]


def tiny_sd_v2_unet_config(cross_attention_dim: int = 64) -> dict[str, Any]:
    """tiny-sd's UNet (`models.tiny_unet_config`) attending to tiny-clip's `cross_attention_dim`-wide tokens."""
    from vadapters.models import tiny_unet_config

    return {**tiny_unet_config(), "cross_attention_dim": int(cross_attention_dim)}


class ShapesAndObjects:
    """A training source: `object_share` of the items are single object views, the rest large single shapes.

    Item `i` is a pure function of `(seed, i)`; object views use a random azimuth at elevation 0 (the cameras
    MV-Adapter generates).
    """

    def __init__(self, num_items: int, seed: int = 0, object_share: float = 0.4) -> None:
        from vadapters.synthetic.scenes import ShapeScenes
        from vadapters.train.base_vae import LARGE_SCENES

        if num_items < 1 or not 0.0 <= object_share <= 1.0:
            raise BadInputError(f"need num_items >= 1 and 0 <= object_share <= 1, got {num_items}, {object_share}")
        self.num_items, self.seed, self.object_share = int(num_items), int(seed), float(object_share)
        self.scenes = ShapeScenes(num_items, seed=seed, **LARGE_SCENES)

    def __len__(self) -> int:
        return self.num_items

    def _draw(self, index: int) -> tuple[str, float]:
        rng = np.random.default_rng([self.seed, index, 0x5D2])
        kind = "object" if rng.random() < self.object_share else "shape"
        return kind, float(rng.uniform(0.0, 360.0))

    def kind(self, index: int) -> str:
        """`"object"` or `"shape"`."""
        return self._draw(index)[0]

    def _object(self, index: int, azimuth: float) -> Any:
        from vadapters.synthetic.multiview import MultiViewObjects

        return MultiViewObjects(self.num_items, seed=self.seed, azimuths=[azimuth])

    def caption(self, index: int) -> str:
        kind, azimuth = self._draw(index)
        if kind == "shape":
            return self.scenes.caption(index)
        return self._object(index, azimuth).object(index).caption

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        kind, azimuth = self._draw(index)
        if kind == "shape":
            item = self.scenes.render(index, height, width)
            return {"image": item["image"], "caption": item["caption"]}
        views = self._object(index, azimuth).render(index, height, width)
        return {"image": views["images"][0], "caption": views["caption"]}


def load_tiny_clip(directory: str) -> Any:
    """The tiny-clip `open_clip.CLIP` saved by `train_tiny_clip` (`open_clip_config.json` + safetensors), strict."""
    from safetensors.torch import load_file

    from vadapters.errors import CheckpointError
    from vadapters.models.clip import tiny_clip

    config_path = os.path.join(directory, "open_clip_config.json")
    weights_path = os.path.join(directory, "open_clip_model.safetensors")
    if not (os.path.isfile(config_path) and os.path.isfile(weights_path)):
        raise CheckpointError(
            f"{directory} is not a tiny-clip folder (open_clip_config.json + open_clip_model.safetensors)"
        )
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)["model_cfg"]
    model = tiny_clip(config=config)
    try:
        model.load_state_dict(load_file(weights_path), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights_path} does not fit its config: {exc}") from exc
    return model.eval()


def tiny_sd_v2_pipeline(vae: Any, text_encoder: Any, seed: int = 0, scheduler: str = "ddpm") -> Any:
    """A `StableDiffusionPipeline` of the given VAE and text encoder, with a fresh tiny-sd v2 UNet."""
    from diffusers import StableDiffusionPipeline

    from vadapters.models import clip_tokenizer, make_scheduler, tiny_unet

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=tiny_unet(tiny_sd_v2_unet_config(text_encoder.config.hidden_size), seed),
        scheduler=make_scheduler(scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _v2_parts(vae: str, clip: str) -> tuple[Any, Any]:
    """The frozen parts of tiny-sd v2: the world VAE (an `AutoencoderKL` folder) and tiny-clip's text tower."""
    from diffusers import AutoencoderKL

    from vadapters.models.clip import text_encoder_from_open_clip

    encoder = text_encoder_from_open_clip(load_tiny_clip(clip)).requires_grad_(False)
    return AutoencoderKL.from_pretrained(vae).requires_grad_(False).eval(), encoder


def train_tiny_sd_v2(
    output_dir: str,
    *,
    vae: str = "weights/tiny-world-vae",
    clip: str = "weights/tiny-clip",
    steps: int = 8000,
    batch_size: int = 32,
    resolution: int = 32,
    learning_rate: float = 5e-4,
    num_items: int = 50000,
    object_share: float = 0.4,
    seed: int = 0,
    checkpoint_every: int = 250,
    validate_every: int = 0,
    init: str | None = None,
) -> dict[str, Any]:
    """Train tiny-sd v2's UNet (resumable: re-run the same call) under the frozen world VAE and tiny-clip text
    tower, on `ShapesAndObjects`; the pipeline (DDIM sampling, same betas) is written to `output_dir/pipeline`.

    `init`: a UNet `.safetensors` file (the `unet.`-prefixed keys of a checkpoint's `trainable_parameters`, or
    plain UNet keys, any float dtype) to start from, e.g. an earlier session's partial run (fresh optimizer)."""
    import time

    from vadapters.train.base import train_denoiser

    start = time.time()
    pipe = tiny_sd_v2_pipeline(*_v2_parts(vae, clip), seed=seed, scheduler="ddpm")
    if init:
        load_unet_weights(pipe.unet, init)
    source = ShapesAndObjects(num_items, seed=seed, object_share=object_share)
    summary, _ = train_denoiser(
        pipe, source, output_dir, steps=steps, batch_size=batch_size, resolution=resolution,
        learning_rate=learning_rate, seed=seed, checkpoint_every=checkpoint_every, validate_every=validate_every,
        sample_scheduler="ddim", train_text_encoder=False,
    )  # fmt: skip
    return {
        "pipeline": os.path.join(output_dir, "pipeline"),
        "parts": {"vae": vae, "clip": clip},
        "train": summary,
        "seconds": round(time.time() - start, 1),
    }


def load_unet_weights(unet: Any, path: str) -> None:
    """Load a UNet state (plain or `unet.`-prefixed keys, any float dtype) strictly into `unet`, in its dtype."""
    from safetensors.torch import load_file

    from vadapters.errors import CheckpointError

    state = load_file(path)
    state = {k[len("unet.") :] if k.startswith("unet.") else k: v for k, v in state.items()}
    dtype = next(unet.parameters()).dtype
    try:
        unet.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the tiny-sd v2 UNet: {exc}") from exc


def export_tiny_sd_v2_checkpoint(
    run_dir: str,
    target: str,
    *,
    vae: str = "weights/tiny-world-vae",
    clip: str = "weights/tiny-clip",
    step: int | None = None,
    seed: int = 0,
) -> str:
    """Write the pipeline of a `train_tiny_sd_v2` checkpoint (`run_dir/checkpoints/step-N`, latest when `step` is
    None) to `target`, sampling with DDIM; the UNet is loaded strictly (another architecture: `CheckpointError`)."""
    from safetensors.torch import load_file

    from vadapters.errors import CheckpointError
    from vadapters.train.checkpoints import list_checkpoints
    from vadapters.train.diffusion import save_pipeline_atomically

    found = dict(list_checkpoints(run_dir))
    if not found or (step is not None and step not in found):
        raise BadInputError(
            f"no checkpoint {'step-' + str(step) if step else ''} under {run_dir} (found {sorted(found)})"
        )
    step = max(found) if step is None else step
    state = load_file(os.path.join(found[step], "trainable_parameters.safetensors"))
    pipe = tiny_sd_v2_pipeline(*_v2_parts(vae, clip), seed=seed, scheduler="ddim")
    unet = {k[len("unet.") :]: v for k, v in state.items() if k.startswith("unet.")}
    try:
        pipe.unet.load_state_dict(unet, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint step-{step} does not fit the tiny-sd v2 UNet: {exc}") from exc
    return save_pipeline_atomically(pipe, target)
