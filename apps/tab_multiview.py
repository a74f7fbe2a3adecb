"""Generate tab, multi-view mode: text-to-multiview with an MV-Adapter on a Stable Diffusion pipeline.

A prompt, the number of views (an orbit rig: azimuths evenly spaced over 360 degrees at one elevation), seed,
steps and size on the embedded tiny-sd (or a typed pipeline folder) plus an MV-Adapter folder (`vadapters train
mv_adapter`) give a grid of views; optionally a second row with the adapter switched off (views generated
independently) for comparison. Calls only public functions: `vadapters.pipelines.load_pipeline`,
`vadapters.load`, `vadapters.disabled` and `vadapters.pipelines.MultiViewPipeline`.

Example:
    >>> orbit_azimuths(4)
    [0.0, 90.0, 180.0, 270.0]
"""

from __future__ import annotations

from typing import Any

from vadapters.core.io import CONFIG_NAME
from vadapters.errors import BadInputError

from .bases import list_update, pipeline_base
from .cache import adapter_stamp
from .context import StudioContext
from .security import check_number, ui_errors

MAX_VIEWS = 8
MAX_SIDE = 256


def orbit_azimuths(num_views: int) -> list[float]:
    """`num_views` azimuths in degrees, evenly spaced from 0 (front)."""
    return [round(360.0 * i / num_views, 4) for i in range(num_views)]


def load_multiview_pipeline(ctx: StudioContext, pipeline: str | None, adapter: str) -> Any:
    """The (cached) `MultiViewPipeline` on `pipeline` (None: the embedded default) with the MV-Adapter at `adapter`."""
    import vadapters
    from vadapters.pipelines import MultiViewPipeline, load_pipeline

    def load():
        base = load_pipeline(pipeline, device=ctx.device)
        if getattr(base, "text_encoder_2", None) is not None:
            raise BadInputError(
                "the multi-view mode runs Stable Diffusion 1.x / 2.x pipelines; this folder holds an SDXL pipeline"
            )
        vadapters.load(base, adapter)
        components = {k: v for k, v in base.components.items() if k != "image_encoder"}
        pipe = MultiViewPipeline(**components, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return ctx.cache.get("multiview", pipeline or "default", (adapter_stamp(adapter),), load)


def generate_views(
    ctx: StudioContext,
    pipeline: str,
    adapter: str,
    prompt: str,
    num_views: Any,
    seed: Any,
    steps: Any,
    size: Any,
    guidance_scale: Any,
    elevation: Any,
    mv_scale: Any,
    compare: bool,
    progress: Any = None,
) -> tuple[list[tuple[Any, str]], dict[str, Any]]:
    """Views (one gallery item each, captioned with the azimuth) and a summary; see the module docstring."""
    import torch

    import vadapters
    from vadapters.pipelines import to_uint8

    prompt = (prompt or "").strip()
    if not prompt or len(prompt) > 500:
        raise BadInputError("prompt: write 1-500 characters")
    views = check_number(num_views, "number of views", 1, MAX_VIEWS, integer=True)
    seed = check_number(seed, "seed", 0, 2**31 - 1, integer=True)
    steps = check_number(steps, "steps", 1, 100, integer=True)
    side = check_number(size, "image size", 8, MAX_SIDE, integer=True)
    if side % 8:
        raise BadInputError(f"image size must be a multiple of 8 (the pipeline's latent grid), got {side}")
    guidance = check_number(guidance_scale, "guidance scale", 0.0, 20.0)
    elevation = check_number(elevation, "elevation", -89.0, 89.0)
    mv_scale = check_number(mv_scale, "multi-view scale", 0.0, 4.0)
    if not (adapter or "").strip():
        raise BadInputError(
            "MV-Adapter folder: pick one from the list (Refresh list) or type its path; train one with "
            "`vadapters train mv_adapter`"
        )
    adapter_dir = ctx.roots.resolve(adapter, what="MV-Adapter folder", kind="dir")
    method = StudioContext._method_of(adapter_dir)
    if method != "mv_adapter":
        found = f"a {method} adapter" if method else f"no {CONFIG_NAME}"
        raise BadInputError(
            f"MV-Adapter folder {adapter!r} holds {found}; expected an MV-Adapter folder (method mv_adapter), "
            "e.g. one written by `vadapters train mv_adapter`"
        )
    base = ctx.optional_path(pipeline, "pipeline folder", kind="dir")
    pipe = load_multiview_pipeline(ctx, base, adapter_dir)
    azimuths = orbit_azimuths(views)

    def run():
        generator = torch.Generator("cpu").manual_seed(seed)
        out = pipe(
            prompt, azimuths=azimuths, elevations=elevation, mv_scale=mv_scale, height=side, width=side,
            num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="np",
        )  # fmt: skip
        return to_uint8(out.images)

    rows = [("MV-Adapter", True), ("independent", False)] if compare else [("MV-Adapter", True)]
    items = []
    for i, (label, on) in enumerate(rows):
        if progress is not None:
            progress((i, len(rows)), desc=f"{views} views, {label}")
        if on:
            images = run()
        else:
            with vadapters.disabled(pipe):
                images = run()
        items += [(image, f"{label} {az:g} deg") for image, az in zip(images, azimuths)]
    info = {
        "pipeline": base or "embedded default",
        "mv_adapter": ctx.roots.display(adapter_dir),
        "views": views,
        "azimuths": azimuths,
        "elevation": elevation,
        "mv_scale": mv_scale,
        "size": f"{side}x{side}",
        "seed": seed,
        "steps": steps,
    }
    return items, info


def build(ctx: StudioContext, heavy: dict[str, Any]) -> None:
    """Add the multi-view mode's components and events to the current `gr.Blocks` (inside the Generate tab)."""
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value="a red box", max_length=500)
            with gr.Row():
                views = gr.Slider(1, MAX_VIEWS, value=4, step=1, label="Views (azimuths evenly spaced)")
                elevation = gr.Slider(-60, 60, value=0, step=5, label="Elevation (deg)")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                steps = gr.Slider(1, 100, value=10, step=1, label="Steps")
                guidance = gr.Slider(0.0, 20.0, value=1.0, step=0.5, label="Guidance scale")
            with gr.Row():
                size = gr.Slider(8, MAX_SIDE, value=16, step=8, label="Size")
                mv_scale = gr.Slider(0.0, 4.0, value=1.0, step=0.1, label="Multi-view scale")
        with gr.Column(scale=2):
            pipeline = gr.Textbox(
                label="Pipeline folder", placeholder="empty = embedded default (weights/tiny-sd)", value=""
            )
            found = gr.Dropdown(
                label="MV-Adapters found under the allowed folders", choices=[], allow_custom_value=False
            )
            refresh = gr.Button("Refresh list", size="sm")
            adapter = gr.Textbox(label="MV-Adapter folder", placeholder="outputs/studio/runs/mv")
            compare = gr.Checkbox(label="Add a row with the adapter off (views independent)", value=True)
            run = gr.Button("Generate views", variant="primary")
    gallery = gr.Gallery(label="Views", columns=4, height="auto", object_fit="contain", format="png")
    info = gr.JSON(label="Run")

    def list_found(pipeline_text: str = ""):
        return list_update(ctx, ["mv_adapter"], pipeline_base, pipeline_text)

    def pick(choice: str | None, current: str) -> str:
        return choice or current

    @ui_errors
    def on_generate(
        pipeline, adapter, prompt, views, seed, steps, size, guidance, elevation, mv_scale, compare,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's progress idiom
    ):  # fmt: skip
        items, summary = generate_views(ctx, pipeline, adapter, prompt, views, seed, steps, size, guidance,
                                        elevation, mv_scale, compare, progress)  # fmt: skip
        return items, summary

    refresh.click(list_found, pipeline, found, api_name="generate_list_mv_adapters", queue=False)
    gr.on([pipeline.submit, pipeline.blur], list_found, pipeline, found, queue=False, api_name=False)
    gr.on(None, list_found, pipeline, found, queue=False, api_visibility="private")  # filled when the page loads
    found.change(pick, [found, adapter], adapter, api_name=False, queue=False)
    views.change(lambda n: gr.Gallery(columns=int(n)), views, gallery, api_name=False, queue=False)  # a row per set
    run.click(
        on_generate,
        [pipeline, adapter, prompt, views, seed, steps, size, guidance, elevation, mv_scale, compare],
        [gallery, info],
        api_name="generate_multiview",
        **heavy,
    )
