"""I2V-Adapter training: a clip recipe for the one trainer (`train_adapter("i2v_adapter", ...)`; the official
repository has no training code).

Differences from the single-image `DiffusionAdapterRecipe` it extends:
- a batch holds whole clips: `pixel_values [B*F, 3, H, W]`, clip-major, encoded to latents `(B, C, F, h, w)`;
- frame 0 stays clean (noise 0): the UNet sees the clean first frame at the clip's random timestep, and the loss
  is masked on frame 0 (frames 1..F-1 only);
- the captions are encoded once per clip (the I2V runtime repeats them per frame inside the UNet call);
- only `to_q_ff` / `to_out_ff` are trainable (the injector freezes the UNet, motion modules included).

Data: the synthetic motion clips (`"synthetic"`, deterministic from first frame + caption) or a folder of clips
(`ClipFolder`: sub-folders of frames, or GIF / WebP / video files readable by imageio).

Example (run in `tests/test_i2v_adapter.py`; skipped here because building a pipeline takes seconds):
    >>> from vadapters.models import tiny_animatediff_pipeline
    >>> from vadapters.methods.i2v_adapter import I2VAdapterConfig
    >>> from vadapters.train.recipes.i2v_adapter import I2VAdapterRecipe, MotionClipSource
    >>> recipe = I2VAdapterRecipe(tiny_animatediff_pipeline(), I2VAdapterConfig(), MotionClipSource(4), "16", 2)  # doctest: +SKIP
    >>> batch = recipe.collate([recipe.dataset[(i, 16, 16)] for i in range(2)])  # doctest: +SKIP
    >>> tuple(batch["pixel_values"].shape), bool(recipe.loss(batch, 0).isfinite())  # doctest: +SKIP
    ((16, 3, 16, 16), True)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from vadapters.errors import BadInputError
from vadapters.methods.i2v_adapter.config import I2VAdapterConfig
from vadapters.train.data import IMAGE_EXTENSIONS, collate_sequences
from vadapters.train.diffusion import DiffusionAdapterRecipe, write_validation_grid
from vadapters.train.recipes import RecipeInputs, register_recipe

__all__ = [
    "ClipFolder",
    "I2VAdapterRecipe",
    "MotionClipSource",
    "build",
    "collate_clips",
    "make_clip_source",
]

VIDEO_EXTENSIONS = (".gif", ".webp", ".mp4", ".avi", ".mov", ".mkv", ".webm")


class MotionClipSource:
    """The synthetic motion clips as a training source: `load(i, h, w)` -> `frames [F, 3, h, w]` in [-1, 1].

    Example:
        >>> item = MotionClipSource(2, num_frames=8).load(0, 8, 8)
        >>> tuple(item["frames"].shape), " moving " in item["caption"]
        ((8, 3, 8, 8), True)
    """

    def __init__(self, num_items: int, seed: int = 0, num_frames: int = 8, **clip_options: Any) -> None:
        from vadapters.synthetic.motion import MotionClips

        self.clips = MotionClips(num_items, seed=seed, num_frames=num_frames, **clip_options)

    def __len__(self) -> int:
        return len(self.clips)

    def caption(self, index: int) -> str:
        return self.clips.caption(index)

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        item = self.clips.render(index, height, width)
        return {"frames": item["frames"].float(), "caption": item["caption"]}


def _fit(image, height: int, width: int) -> torch.Tensor:
    """PIL image -> `[3, height, width]` in [-1, 1] (resize the shorter side, centre-crop)."""
    from PIL import Image

    image = image.convert("RGB")
    w0, h0 = image.size
    scale = max(height / h0, width / w0)
    nw, nh = max(width, round(w0 * scale)), max(height, round(h0 * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - width) // 2, (nh - height) // 2
    array = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class ClipFolder:
    """Clips under `root`: each sub-folder of images (sorted by name) is one clip, and so is each video file
    (GIF / WebP through PIL, others through imageio when it has a backend for them). A clip's caption is
    `caption.txt` in its folder, or the `.txt` file with the video's stem; otherwise empty. The first
    `num_frames` frames (every `stride`-th) are used; shorter clips are skipped.
    """

    def __init__(self, root: str | os.PathLike, num_frames: int = 8, stride: int = 1) -> None:
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise BadInputError(f"clip folder not found: {root!r}")
        self.root, self.num_frames, self.stride = root, int(num_frames), int(stride)
        self.items: list[tuple[str, str]] = []  # (path, caption)
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if os.path.isdir(path) and not name.startswith("."):
                frames = [f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS)]
                if len(frames) >= self._needed():
                    self.items.append((path, _read_text(os.path.join(path, "caption.txt"))))
            elif name.lower().endswith(VIDEO_EXTENSIONS):
                self.items.append((path, _read_text(os.path.splitext(path)[0] + ".txt")))
        if not self.items:
            raise BadInputError(
                f"no clips in {root!r}: expected sub-folders with >= {self._needed()} frames "
                f"({', '.join(IMAGE_EXTENSIONS)}) or video files ({', '.join(VIDEO_EXTENSIONS)})"
            )

    def _needed(self) -> int:
        return (self.num_frames - 1) * self.stride + 1

    def __len__(self) -> int:
        return len(self.items)

    def caption(self, index: int) -> str:
        return self.items[index][1]

    def _images(self, path: str) -> list[Any]:
        from PIL import Image

        if os.path.isdir(path):
            names = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
            return [Image.open(os.path.join(path, n)) for n in names[: self._needed()]]
        if path.lower().endswith((".gif", ".webp")):
            with Image.open(path) as im:
                frames = []
                for i in range(min(getattr(im, "n_frames", 1), self._needed())):
                    im.seek(i)
                    frames.append(im.convert("RGB"))
                return frames
        try:
            import imageio.v3 as iio

            array = iio.imread(path, index=None)
        except Exception as exc:  # noqa: BLE001 - imageio raises many types for missing backends / bad files
            raise BadInputError(
                f"cannot read video {path!r} ({exc}); install an imageio backend or use frames"
            ) from exc
        return [Image.fromarray(np.asarray(f)[..., :3]) for f in array[: self._needed()]]

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        path, caption = self.items[index]
        images = self._images(path)[:: self.stride][: self.num_frames]
        if len(images) < self.num_frames:
            raise BadInputError(f"clip {path!r} has {len(images)} usable frames, fewer than {self.num_frames}")
        return {"frames": torch.stack([_fit(im, height, width) for im in images]), "caption": caption}


def _read_text(path: str) -> str:
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def make_clip_source(spec: Any, num_items: int = 200, seed: int = 0, num_frames: int = 8) -> Any:
    """`"synthetic"` (motion clips), a folder of clips, or an object with `load(index, h, w)` (returned as is)."""
    if callable(getattr(spec, "load", None)) and hasattr(spec, "__len__"):
        return spec
    text = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else None
    if text is None:
        raise BadInputError(f"data must be 'synthetic', a folder of clips, or a source object; got {type(spec)}")
    if text.strip().lower() in ("synthetic", "synthetic:motion"):
        return MotionClipSource(num_items, seed=seed, num_frames=num_frames)
    if os.path.isdir(text):
        return ClipFolder(text, num_frames=num_frames)
    raise BadInputError(f"data {text!r} is neither 'synthetic' nor an existing folder of clips")


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips clip-major: `pixel_values [B*F, 3, H, W]`, one caption per clip, `num_frames`."""
    return collate_sequences(items, "frames", "num_frames")


class I2VAdapterRecipe(DiffusionAdapterRecipe):
    """Clip denoising recipe with a clean, loss-masked first frame (see the module docstring).

    Args:
        pipe: an `AnimateDiffPipeline` (its `unet` is a `UNetMotionModel`).
        config, data_source, resolutions, batch_size, adapter_name, caption_dropout, seed: as
            `DiffusionAdapterRecipe`; `batch_size` counts clips and the source's `load` returns `frames`.
    """

    config_cls = I2VAdapterConfig

    def __init__(self, *args: Any, adapter_name: str = "i2v_adapter", caption_dropout: float = 0.1, **kwargs: Any):
        super().__init__(*args, adapter_name=adapter_name, caption_dropout=caption_dropout, **kwargs)
        self.collate = collate_clips

    def loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        frames = int(batch["num_frames"])
        if frames < 2:
            raise BadInputError("I2V-Adapter trains on clips of at least 2 frames (frame 0 is the condition)")
        pixels = batch["pixel_values"]
        captions = self.drop_captions(batch["captions"])
        latents, cond = self.encode(pixels, captions)
        clips = len(captions)
        latents = latents.reshape(clips, frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
        noise, timesteps = self.sample_noise(latents, clips)
        timesteps = timesteps.to(latents.device)
        noisy, target = self.noisy_and_target(latents, noise, timesteps)
        noisy[:, :, 0] = latents[:, :, 0]  # the first frame stays clean
        prediction = self._unet(noisy, timesteps, **cond, return_dict=False)[0]
        return self.denoising_loss(prediction[:, :, 1:], target[:, :, 1:], timesteps)  # loss masked on frame 0

    def validate(self, step: int, output_dir: str) -> list[str]:
        """One video per validation clip (its real first frame, fixed seed) as rows of frames in a PNG."""
        from vadapters.pipelines.image2video import I2VPipeline, video_frames

        pipe = I2VPipeline(**self.pipe.components)
        pipe.set_progress_bar_config(disable=True)
        height, width = self.resolutions[0]
        rows = []
        with torch.no_grad():
            for index in range(min(2, len(self.source))):
                item = self.source.load(index, height, width)
                first = (item["frames"][:1] + 1) / 2
                generator = torch.Generator("cpu").manual_seed(self.seed)
                out = pipe(
                    item["caption"],
                    num_frames=item["frames"].shape[0],
                    height=height,
                    width=width,
                    image=first,
                    generator=generator,
                    output_type="np",
                    guidance_scale=1.0,
                    **self.validation_kwargs,
                )
                rows.append(video_frames(out.frames[0]))
        return [write_validation_grid(rows, output_dir, step)]


def build(
    inputs: RecipeInputs,
    *,
    num_items: int = 200,
    num_frames: int = 8,
    resolutions: Any = "16",
    caption_dropout: float = 0.1,
    snr_gamma: float | None = None,
    noise_shift: float | None = None,
) -> I2VAdapterRecipe:
    """An I2V-Adapter recipe.

    Args:
        inputs.base: an AnimateDiff pipeline, a folder, `"tiny"`, or None for the embedded default video model
            (see `vadapters.pipelines.image2video.load_video_pipeline`).
        inputs.data: `"synthetic"` (motion clips, the default), a folder of clips (`ClipFolder`) or a source object.
        num_items, num_frames: synthetic clips and frames per clip.
        snr_gamma, noise_shift: Min-SNR weighting and shifted-SNR training noise (off: the official repository has
            no training code to follow; see `DiffusionAdapterRecipe`).
    """
    from vadapters.pipelines.image2video import load_video_pipeline

    config = I2VAdapterConfig.from_overrides(inputs.config_overrides)
    pipe = load_video_pipeline(inputs.base)  # inject records its base name in the adapter
    data = "synthetic" if inputs.data is None else inputs.data
    source = make_clip_source(data, num_items=num_items, seed=inputs.seed, num_frames=num_frames)
    options = {"caption_dropout": caption_dropout, "snr_gamma": snr_gamma, "noise_shift": noise_shift}
    return I2VAdapterRecipe.from_inputs(pipe, config, source, resolutions, inputs, **options)


register_recipe("i2v_adapter", build, learning_rate=1e-4, batch_size=2)
