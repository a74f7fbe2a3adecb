"""Image-to-video mode of vadapters studio: I2V-Adapter on an AnimateDiff pipeline, next to the base model.

A first frame (an upload, or frame 0 of a synthetic motion clip with its caption), a prompt, frames, steps, seed,
size and guidance, on the embedded tiny-sd + tiny-animatediff (or a typed AnimateDiff pipeline folder), give two
animated GIFs side by side: the base text-to-video model with frame 0 clamped to the image, and, when an
I2V-Adapter folder (`vadapters train i2v_adapter`) is named, the same call with the adapter (same seed, so the same
initial noise). Options, applied to the adapter's video (to the base video when no adapter is named): the Frame
Similarity Prior's strength (off, "auto" = the official strength, or a share in [0, 1)) and colour matching of
every frame to frame 0. Calls only public functions:
`vadapters.pipelines.image2video` (`load_video_pipeline`, `I2VPipeline`, `save_video`), `vadapters.load` and
`vadapters.disabled`, as `vadapters i2v` does.

Events (stable `api_name`s for `gradio_client`): `/image_to_video` (heavy: the shared one-at-a-time slot),
`/image_to_video_example`, `/image_to_video_list_adapters`.

Example:
    >>> parse_prior("auto"), parse_prior("off"), parse_prior(" 0.4 ")
    ('auto', None, 0.4)
    >>> image, caption = load_example(example_names()[0])
    >>> image.shape, " moving " in caption
    ((64, 64, 3), True)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from typing import Any

import numpy as np

from vadapters.core.io import CONFIG_NAME
from vadapters.errors import BadInputError

from .bases import list_update, video_base
from .cache import adapter_stamp
from .context import StudioContext
from .security import check_image, check_number, image_input, ui_errors

MAX_SIDE = 128
MAX_FRAMES = 24
EXAMPLE_CLIPS = 6
EXAMPLE_SEED = 2024
EXAMPLE_SIZE = 64
PRIOR_CHOICES = ["off", "auto", "0.2", "0.4", "0.6"]
DISPLAY_SIDE = 256  # GIFs are upscaled (nearest) to about this many pixels for viewing
KEEP_GIFS = 64

_OUT_LOCK = threading.Lock()
_OUT_DIR: list[str] = []


def example_names() -> list[str]:
    """First frames of synthetic motion clips (each with its caption as the prompt)."""
    return [f"motion clip {i}" for i in range(EXAMPLE_CLIPS)]


def load_example(name: str) -> tuple[np.ndarray, str]:
    """`(frame 0 as uint8 HxWx3, caption)` of an `example_names()` entry."""
    from vadapters.synthetic.motion import MotionClips

    parts = (name or "").rsplit(" ", 1)
    if len(parts) != 2 or parts[0] != "motion clip" or not parts[1].isdigit() or int(parts[1]) >= EXAMPLE_CLIPS:
        raise BadInputError(f"unknown example {name!r}; pick one of {example_names()}")
    clips = MotionClips(EXAMPLE_CLIPS, seed=EXAMPLE_SEED, num_frames=8)
    item = clips.render(int(parts[1]), EXAMPLE_SIZE, EXAMPLE_SIZE, num_frames=1)
    image = ((item["frames"][0].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    return image, item["caption"]


def parse_prior(text: Any) -> float | str | None:
    """Frame Similarity Prior strength from the UI: "off" / empty -> None, "auto", or a number in [0, 1)."""
    value = str(text if text is not None else "").strip().lower()
    if value in ("", "off", "none", "0"):
        return None
    if value == "auto":
        return "auto"
    try:
        strength = float(value)
    except ValueError:
        strength = float("nan")
    if not 0.0 <= strength < 1.0:
        raise BadInputError(f"prior strength must be 'off', 'auto' or a number in [0, 1), got {text!r}")
    return strength


def _output_dir() -> str:
    """A per-process folder under the system temp folder (Gradio serves files from there); old GIFs are pruned."""
    with _OUT_LOCK:
        if not _OUT_DIR or not os.path.isdir(_OUT_DIR[0]):
            _OUT_DIR[:] = [tempfile.mkdtemp(prefix="vadapters-studio-video-")]
        folder = _OUT_DIR[0]
        gifs = sorted((os.path.join(folder, f) for f in os.listdir(folder)), key=os.path.getmtime)
        for old in gifs[: max(0, len(gifs) - KEEP_GIFS)]:
            with contextlib.suppress(OSError):
                os.unlink(old)
        return folder


def load_video_model(ctx: StudioContext, pipeline: str | None, adapter: str | None) -> Any:
    """The (cached) `I2VPipeline` on `pipeline` (None: the embedded default) with the I2V-Adapter at `adapter`."""

    def load():
        import vadapters
        from vadapters.pipelines.image2video import I2VPipeline, load_video_pipeline

        base = load_video_pipeline(pipeline)
        pipe = I2VPipeline.from_pipe(base)
        if ctx.device:
            pipe = pipe.to(ctx.device)
        pipe.set_progress_bar_config(disable=True)
        if adapter is not None:
            vadapters.load(pipe, adapter, adapter_name="i2v_adapter")
        return pipe

    return ctx.cache.get("video", pipeline or "default", (adapter_stamp(adapter),) if adapter else (), load)


def animate(
    ctx: StudioContext,
    image: Any,
    prompt: str,
    pipeline: str,
    adapter: str,
    frames: Any,
    steps: Any,
    seed: Any,
    size: Any,
    guidance_scale: Any,
    prior: Any,
    color_match: bool,
    progress: Any = None,
) -> tuple[str, str | None, dict[str, Any]]:
    """`(base GIF path, I2V-Adapter GIF path or None, summary)`; see the module docstring."""
    import torch
    from PIL import Image

    import vadapters
    from vadapters.pipelines.image2video import save_video

    first = Image.fromarray(check_image(image, "first frame"))
    prompt = (prompt or "").strip()
    if len(prompt) > 500:
        raise BadInputError(f"prompt: at most 500 characters, got {len(prompt)}")
    frames = check_number(frames, "frames", 2, MAX_FRAMES, integer=True)
    steps = check_number(steps, "steps", 1, 100, integer=True)
    seed = check_number(seed, "seed", 0, 2**31 - 1, integer=True)
    side = check_number(size, "size", 8, MAX_SIDE, integer=True)
    if side % 8:
        raise BadInputError(f"size must be a multiple of 8 (the pipeline's latent grid), got {side}")
    guidance = check_number(guidance_scale, "guidance scale", 0.0, 20.0)
    strength = parse_prior(prior)
    adapter_dir = None
    if (adapter or "").strip():
        adapter_dir = ctx.roots.resolve(adapter, what="I2V-Adapter folder", kind="dir")
        method = StudioContext._method_of(adapter_dir)
        if method != "i2v_adapter":
            found = f"a {method} adapter" if method else f"no {CONFIG_NAME}"
            raise BadInputError(
                f"I2V-Adapter folder {adapter!r} holds {found}; expected an I2V-Adapter folder (method i2v_adapter), "
                "e.g. one written by `vadapters train i2v_adapter`"
            )
    base = ctx.optional_path(pipeline, "pipeline folder", kind="dir")
    pipe = load_video_model(ctx, base, adapter_dir)

    def run(with_options: bool) -> list[np.ndarray]:
        generator = torch.Generator("cpu").manual_seed(seed)
        options = {"prior_strength": strength, "color_match": bool(color_match)} if with_options else {}
        out = pipe(
            prompt, image=first, num_frames=frames, height=side, width=side, num_inference_steps=steps,
            guidance_scale=guidance, generator=generator, output_type="np", **options,
        )  # fmt: skip
        return out.frames[0]

    jobs = [("base (frame 0 clamped)", False)] + ([("I2V-Adapter", True)] if adapter_dir else [])
    options_on = "I2V-Adapter" if adapter_dir else "base (frame 0 clamped)"
    folder, scale = _output_dir(), max(1, DISPLAY_SIDE // side)
    paths: list[str | None] = []
    for i, (label, on) in enumerate(jobs):
        if progress is not None:
            progress((i, len(jobs)), desc=f"{frames} frames, {label}")
        if on:
            video = run(True)
        else:
            with vadapters.disabled(pipe):
                video = run(label == options_on)
        name = f"{'i2v' if on else 'base'}-{uuid.uuid4().hex[:12]}.gif"
        paths.append(save_video(video, os.path.join(folder, name), fps=8, scale=scale))
    info = {
        "pipeline": base or "embedded default (tiny-sd + tiny-animatediff)",
        "i2v_adapter": ctx.roots.display(adapter_dir) if adapter_dir else None,
        "frames": frames,
        "size": f"{side}x{side}",
        "steps": steps,
        "seed": seed,
        "guidance_scale": guidance,
        "prior_strength": strength,
        "color_match": bool(color_match),
        "options_apply_to": options_on,
        "prompt": prompt,
    }
    return paths[0], (paths[1] if len(paths) > 1 else None), info


def build_video_tab(ctx: StudioContext, heavy: dict[str, Any] | None = None) -> None:
    """Add the image-to-video mode's components and events to the current `gr.Blocks` (or tab).

    Args:
        ctx: the studio's shared context (allowed roots, device, model cache).
        heavy: event options that put the Animate event on the studio's shared slot; default
            `{"concurrency_id": "heavy", "concurrency_limit": 1}`.
    """
    import gradio as gr

    heavy = heavy or {"concurrency_id": "heavy", "concurrency_limit": 1}
    with gr.Row():
        with gr.Column(scale=2):
            image = image_input(label="First frame", type="numpy", sources=["upload", "clipboard"], height=220)
            with gr.Row():
                example = gr.Dropdown(label="Example (synthetic motion clip)", choices=example_names(),
                                      value=example_names()[0])  # fmt: skip
                load_btn = gr.Button("Load example", size="sm")
            prompt = gr.Textbox(label="Prompt", value="", max_length=500,
                                placeholder="e.g. a red square moving right slowly")  # fmt: skip
        with gr.Column(scale=2):
            with gr.Row():
                frames = gr.Slider(2, MAX_FRAMES, value=8, step=1, label="Frames")
                steps = gr.Slider(1, 100, value=20, step=1, label="Steps")
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
            with gr.Row():
                size = gr.Slider(8, MAX_SIDE, value=32, step=8, label="Size")
                guidance = gr.Slider(0.0, 20.0, value=3.0, step=0.5, label="Guidance scale")
            with gr.Row():
                prior = gr.Dropdown(label="Frame Similarity Prior strength", choices=PRIOR_CHOICES, value="off",
                                    allow_custom_value=True)  # fmt: skip
                color_match = gr.Checkbox(label="Match colours to frame 0", value=False)
            pipeline = gr.Textbox(label="AnimateDiff pipeline folder", value="",
                                  placeholder="empty = embedded default (tiny-sd + tiny-animatediff)")  # fmt: skip
            found = gr.Dropdown(label="I2V-Adapters found under the allowed folders", choices=[],
                                allow_custom_value=False)  # fmt: skip
            refresh = gr.Button("Refresh list", size="sm")
            adapter = gr.Textbox(label="I2V-Adapter folder (optional)", placeholder="outputs/studio/runs/i2v")
            run = gr.Button("Animate", variant="primary")
    with gr.Row():
        base_gif = gr.Image(label="Base, frame 0 clamped", type="filepath", format="gif", interactive=False)
        adapter_gif = gr.Image(label="I2V-Adapter", type="filepath", format="gif", interactive=False)
    info = gr.JSON(label="Run")

    @ui_errors
    def on_example(name):
        return load_example(name)

    def list_found(pipeline_text: str = ""):
        return list_update(ctx, ["i2v_adapter"], video_base, pipeline_text)

    def pick(choice: str | None, current: str) -> str:
        return choice or current

    @ui_errors
    def on_animate(
        image, prompt, pipeline, adapter, frames, steps, seed, size, guidance, prior, color_match,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's progress idiom
    ):  # fmt: skip
        return animate(ctx, image, prompt, pipeline, adapter, frames, steps, seed, size, guidance, prior,
                       color_match, progress)  # fmt: skip

    load_btn.click(on_example, example, [image, prompt], api_name="image_to_video_example", queue=False)
    refresh.click(list_found, pipeline, found, api_name="image_to_video_list_adapters", queue=False)
    gr.on([pipeline.submit, pipeline.blur], list_found, pipeline, found, queue=False, api_name=False)
    gr.on(None, list_found, pipeline, found, queue=False, api_visibility="private")  # filled when the page loads
    found.change(pick, [found, adapter], adapter, api_name=False, queue=False)
    run.click(
        on_animate,
        [image, prompt, pipeline, adapter, frames, steps, seed, size, guidance, prior, color_match],
        [base_gif, adapter_gif, info],
        api_name="image_to_video",
        **heavy,
    )
