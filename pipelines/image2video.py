"""Image-to-video with I2V-Adapter on an AnimateDiff pipeline, plus GIF / WebP / MP4 writers.

`I2VPipeline` subclasses `diffusers.AnimateDiffPipeline`: it encodes the first frame, sets the per-call sampling
state, and calls the parent `__call__`, so diffusers' conventions hold (`generator`, `latents`, `output_type`,
`num_inference_steps`, `guidance_scale`, `callback_on_step_end`, schedulers, IP-Adapter, motion LoRAs). Options:

- `keep_first_frame` (default True, as upstream): frame 0 is the clean image latent, never stepped: after every
  scheduler step its latents are put back, and the UNet sees the clean latent in frame 0 at every timestep
  (whatever the scheduler's input scaling).
- Frame Similarity Prior (`prior_strength`, off by default): the initial latents of every frame start from a
  degraded copy of the first frame (`prior_mask_prob`, `prior_blur_sigma`, `prior_blur_kernel`); `"auto"` is the
  official strength, sqrt(alpha_bar) of the first sampling timestep. See `vadapters.methods.i2v_adapter.sampling`.
- `color_match`: match each decoded frame's CIELAB a/b histograms to frame 0 (official post-process; off).
  `True` converts the RGB frames correctly; `"official"` reproduces the official script, which converts them as
  if they were BGR (see `vadapters.methods.i2v_adapter.sampling`).
- `i2v_scale`: scale of the adapter's first-frame branch for this call.

Without an I2V-Adapter on the UNet the pipeline still works: the base text-to-video model with frame 0 clamped
(a baseline).

Example:
    >>> import torch, vadapters
    >>> from vadapters.models import tiny_animatediff_pipeline
    >>> from vadapters.methods.i2v_adapter import I2VAdapterConfig
    >>> pipe = I2VPipeline.from_pipe(tiny_animatediff_pipeline())
    >>> _ = vadapters.inject(pipe, I2VAdapterConfig())
    >>> out = pipe("a red square moving right", image=torch.rand(1, 3, 16, 16), num_frames=4, height=16, width=16,
    ...            num_inference_steps=2, output_type="np")
    >>> out.frames.shape
    (1, 4, 16, 16, 3)
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from diffusers import AnimateDiffPipeline

from vadapters.core.io import atomic_write
from vadapters.errors import BadInputError
from vadapters.methods.i2v_adapter.model import RUNTIME_ATTRIBUTE, i2v_state
from vadapters.methods.i2v_adapter.sampling import color_match_frames, first_timestep_strength, prior_latents

__all__ = ["I2VPipeline", "load_video_pipeline", "save_video", "video_frames"]


def load_video_pipeline(pipeline: Any = None) -> Any:
    """An AnimateDiff pipeline: a pipeline object (returned as is), `None` (the embedded default tiny-sd +
    tiny-animatediff; a clear error naming `vadapters train-base tiny-animatediff` until it exists), `"tiny"` (the
    random-init tiny architecture), a diffusers AnimateDiff pipeline folder, or a `MotionAdapter` folder (put on the
    embedded tiny-sd).

    Example:
        >>> type(load_video_pipeline("tiny")).__name__
        'AnimateDiffPipeline'
    """
    from vadapters.core.hosts import is_pipeline
    from vadapters.errors import CheckpointError, IncompatibleBaseError
    from vadapters.methods.i2v_adapter.model import has_motion_modules

    if pipeline is None or isinstance(pipeline, (str, os.PathLike)):
        path = None if pipeline is None else os.fspath(pipeline)
        if path == "tiny":
            from vadapters.models import tiny_animatediff_pipeline

            pipe = tiny_animatediff_pipeline()
        elif path is not None and os.path.isfile(os.path.join(path, "model_index.json")):
            from vadapters.models.loading import load_pipeline

            pipe = load_pipeline(path)
        else:
            try:
                from vadapters.models.video import load_animatediff_pipeline
            except ImportError:
                raise CheckpointError(
                    "no embedded default video model in this install; train it with `vadapters train-base "
                    "tiny-animatediff`, or pass a local AnimateDiff pipeline folder (or 'tiny')"
                ) from None
            pipe = load_animatediff_pipeline(None, path)
        if not pipe.name_or_path:  # assembled in memory: name the base an adapter records (vadapters.core.bases)
            from vadapters.core.bases import canonical_base_name

            names = {None: "vadapters:tiny-animatediff", "tiny": "vadapters:tiny"}
            pipe.register_to_config(_name_or_path=names.get(path) or canonical_base_name(path))
        pipe.set_progress_bar_config(disable=True)
    else:
        pipe = pipeline
    if not is_pipeline(pipe) or not has_motion_modules(getattr(pipe, "unet", None)):
        raise IncompatibleBaseError(
            f"expected an AnimateDiff-style pipeline whose unet has motion modules, got {type(pipe).__name__}"
        )
    return pipe


class _CallState:
    def __init__(self, first: torch.Tensor, keep: bool, strength: Any, mask_prob: float, sigma: float, kernel: int,
                 color_match: bool | str, generator: Any) -> None:  # fmt: skip
        self.first, self.keep, self.strength = first, keep, strength
        self.mask_prob, self.sigma, self.kernel = mask_prob, sigma, kernel
        self.color_match, self.generator = color_match, generator

    def first_for(self, batch: int) -> torch.Tensor:
        if self.first.shape[0] == batch:
            return self.first
        if batch % self.first.shape[0]:
            raise BadInputError(f"got {self.first.shape[0]} first frames for a batch of {batch} videos")
        return self.first.repeat(batch // self.first.shape[0], 1, 1, 1)


class I2VPipeline(AnimateDiffPipeline):
    """AnimateDiff image-to-video: `pipe(prompt, image=first_frame, num_frames=...)` (see the module docstring).

    Build it from any AnimateDiff pipeline with `I2VPipeline.from_pipe(pipe)` or `I2VPipeline(**pipe.components)`;
    put an I2V-Adapter on its UNet with `vadapters.load(pipe, path)` or `vadapters.inject`.
    """

    _i2v_call: _CallState | None = None

    @torch.no_grad()
    def encode_first_frame(self, image: Any, height: int, width: int, batch: int) -> torch.Tensor:
        """Latents `(batch, C, h, w)` of the first frame (PIL image, array, or tensor `[N, 3, H, W]` in [0, 1])."""
        if image is None:
            raise BadInputError("I2VPipeline needs image= (the first frame)")
        pixels = self.video_processor.preprocess(image, height=height, width=width)
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise BadInputError(f"the first frame must be an RGB image, got pixels of shape {tuple(pixels.shape)}")
        if tuple(pixels.shape[-2:]) != (height, width):  # AnimateDiff's video processor does not resize
            pixels = torch.nn.functional.interpolate(
                pixels.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=True
            ).clamp(-1, 1)
        device = self._execution_device
        vae = self.vae
        latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
        if latents.shape[0] not in (1, batch):
            raise BadInputError(f"got {latents.shape[0]} first frames for {batch} prompt(s); pass one or one each")
        return latents.expand(batch, -1, -1, -1) if latents.shape[0] == 1 else latents

    def prepare_latents(self, batch_size, num_channels_latents, num_frames, height, width, dtype, device, generator,
                        latents=None):  # fmt: skip
        latents = super().prepare_latents(
            batch_size, num_channels_latents, num_frames, height, width, dtype, device, generator, latents
        )
        state = self._i2v_call
        if state is None:
            return latents
        first = state.first_for(batch_size).to(device, latents.dtype)
        if state.strength is not None:
            strength = first_timestep_strength(self.scheduler) if state.strength == "auto" else float(state.strength)
            sigma = float(self.scheduler.init_noise_sigma)
            gen = state.generator[0] if isinstance(state.generator, list) else state.generator
            latents = sigma * prior_latents(
                first, latents / sigma, strength, mask_prob=state.mask_prob, blur_sigma=state.sigma,
                blur_kernel=state.kernel, generator=gen,
            )  # fmt: skip
        if state.keep:
            latents = latents.clone()
            latents[:, :, 0] = first
        return latents

    def decode_latents(self, latents, decode_chunk_size: int = 16):
        video = super().decode_latents(latents, decode_chunk_size)
        state = self._i2v_call
        if state is not None and state.color_match:
            swap = state.color_match == "official"
            video = color_match_frames(((video + 1) / 2).clamp(0, 1), official_channel_swap=swap) * 2 - 1
        return video

    def _clean_first_frame_hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        first = self._i2v_call.first_for(self._i2v_batch).to(sample.device, sample.dtype)
        sample = sample.clone()
        sample[:, :, 0] = first.repeat(sample.shape[0] // first.shape[0], 1, 1, 1)
        return ((sample, *args[1:]), kwargs) if args else (args, {**kwargs, "sample": sample})

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        num_frames: int | None = 16,
        height: int | None = None,
        width: int | None = None,
        *,
        image: Any = None,
        keep_first_frame: bool = True,
        prior_strength: float | str | None = None,
        prior_mask_prob: float = 0.5,
        prior_blur_sigma: float = 18.0,
        prior_blur_kernel: int = 9,
        color_match: bool | str = False,
        i2v_scale: float = 1.0,
        callback_on_step_end: Any = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        **kwargs: Any,
    ):
        """Generate videos whose first frame is `image`; other keyword arguments go to `AnimateDiffPipeline`.

        Args:
            image: the first frame: a PIL image, a numpy array, or a tensor `[1 or batch, 3, H, W]` in [0, 1].
            keep_first_frame: keep frame 0 clean and never step it (official).
            prior_strength: Frame Similarity Prior: None (off), `"auto"` (official: sqrt(alpha_bar) of the first
                timestep) or a share in [0, 1) of the degraded first frame in the initial latents.
            prior_mask_prob, prior_blur_sigma, prior_blur_kernel: the prior's degradation (official 0.5, 18, 9).
            color_match: histogram-match each frame's a/b channels to frame 0 after decoding: False (off), True
                (correct RGB conversion) or `"official"` (the official script's conversion of RGB as BGR).
            i2v_scale: scale of the I2V-Adapter branch (0 turns it off exactly).
        """
        if (prior_strength is not None and prior_strength != "auto") and (
            isinstance(prior_strength, str) or not 0.0 <= float(prior_strength) < 1.0
        ):
            raise BadInputError(f"prior_strength must be None, 'auto' or a number in [0, 1), got {prior_strength!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise BadInputError(f"num_frames must be a positive int, got {num_frames!r}")
        if color_match not in (False, True, "official"):
            raise BadInputError(f"color_match must be False, True or 'official', got {color_match!r}")
        default = self.unet.config.sample_size * self.vae_scale_factor
        height, width = height or default, width or default
        batch = len(prompt) if isinstance(prompt, list) else 1
        if prompt is None and kwargs.get("prompt_embeds") is not None:
            batch = kwargs["prompt_embeds"].shape[0]
        first = self.encode_first_frame(image, height, width, batch)
        self._i2v_call = _CallState(first, keep_first_frame, prior_strength, prior_mask_prob, prior_blur_sigma,
                                    prior_blur_kernel, color_match, kwargs.get("generator"))  # fmt: skip
        self._i2v_batch = batch
        user_callback = callback_on_step_end
        inputs = list(getattr(user_callback, "tensor_inputs", None) or callback_on_step_end_tensor_inputs)
        if "latents" not in inputs:
            inputs.append("latents")

        def restore_first_frame(pipe, step, timestep, callback_kwargs):
            latents = callback_kwargs["latents"]
            if keep_first_frame:
                latents = latents.clone()
                latents[:, :, 0] = self._i2v_call.first_for(latents.shape[0]).to(latents.dtype)
            callback_kwargs["latents"] = latents
            outputs = dict(callback_kwargs)
            if user_callback is not None:
                outputs.update(user_callback(pipe, step, timestep, callback_kwargs) or {})
            return outputs

        handle = self.unet.register_forward_pre_hook(self._clean_first_frame_hook, with_kwargs=True) if (
            keep_first_frame
        ) else None  # fmt: skip
        has_adapter = getattr(self.unet, RUNTIME_ATTRIBUTE, None) is not None
        try:
            with i2v_state(self, scale=i2v_scale) if has_adapter else contextlib.nullcontext():
                return super().__call__(
                    prompt, num_frames=num_frames, height=height, width=width,
                    callback_on_step_end=restore_first_frame, callback_on_step_end_tensor_inputs=inputs, **kwargs,
                )  # fmt: skip
        finally:
            if handle is not None:
                handle.remove()
            self._i2v_call = None


# ----------------------------------------------------------------------------------------------------- writers
def video_frames(video: Any) -> list[np.ndarray]:
    """One video as a list of uint8 `H x W x 3` frames, from what `I2VPipeline` returns for one prompt.

    Accepts a list of PIL images, a numpy array `(F, H, W, 3)` in [0, 1] or uint8, or a tensor `(F, 3, H, W)` or
    `(3, F, H, W)` in [0, 1].

    Example:
        >>> [f.shape for f in video_frames(np.zeros((2, 4, 4, 3)))]
        [(4, 4, 3), (4, 4, 3)]
    """
    if isinstance(video, torch.Tensor):
        array = video.detach().cpu().float()
        if array.ndim == 4 and array.shape[0] == 3 and array.shape[1] != 3:
            array = array.permute(1, 0, 2, 3)
        video = array.permute(0, 2, 3, 1).numpy()
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] not in (1, 3, 4):
            raise BadInputError(f"expected frames (F, H, W, 3), got an array of shape {video.shape}")
        if video.dtype != np.uint8:
            video = (np.clip(video, 0, 1) * 255).round().astype(np.uint8)
        return [np.ascontiguousarray(f[..., :3]) for f in video]
    if isinstance(video, (list, tuple)) and video:
        return [np.asarray(f.convert("RGB")) if hasattr(f, "convert") else video_frames(f[None])[0] for f in video]
    raise BadInputError(f"cannot read frames from {type(video).__name__}")


def save_video(video: Any, path: str | os.PathLike, fps: float = 8.0, scale: int = 1, loop: int = 0) -> str:
    """Write one video atomically as GIF, WebP (animated) or MP4 (needs `imageio-ffmpeg`), chosen by extension.

    Args:
        video: frames (see `video_frames`).
        fps: frames per second.
        scale: integer nearest-neighbour upscaling (tiny videos).
        loop: GIF / WebP loop count (0 = forever).

    Example:
        >>> import tempfile
        >>> path = save_video(np.random.rand(3, 8, 8, 3), tempfile.mkdtemp() + "/v.gif", scale=2)
        >>> from PIL import Image
        >>> Image.open(path).n_frames, Image.open(path).size
        (3, (16, 16))
    """
    path = os.fspath(path)
    frames = video_frames(video)
    if scale > 1:
        frames = [f.repeat(scale, axis=0).repeat(scale, axis=1) for f in frames]
    ext = os.path.splitext(path)[1].lower()
    duration = int(round(1000 / fps))
    if ext in (".gif", ".webp"):
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        buffer = io.BytesIO()
        options = {"lossless": True} if ext == ".webp" else {}
        images[0].save(buffer, format=ext[1:].upper(), save_all=True, append_images=images[1:], duration=duration,
                       loop=loop, **options)  # fmt: skip
        atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
        return path
    if ext == ".mp4":
        try:
            import imageio.v3 as iio
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise BadInputError(
                "writing MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); write .gif or .webp instead"
            ) from None
        import tempfile

        directory = os.path.dirname(os.path.abspath(path)) or "."
        os.makedirs(directory, exist_ok=True)
        from vadapters.core.io import new_file_mode

        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=directory)
        os.close(fd)
        os.chmod(tmp, new_file_mode(path))  # mkstemp makes 0600; the video gets the user's umask
        try:
            iio.imwrite(tmp, np.stack(frames), fps=fps, codec="libx264", plugin="FFMPEG")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
    raise BadInputError(f"unknown video extension {ext!r} in {path!r}; use .gif, .webp or .mp4")
