"""Generate tab: text-to-image on a diffusers pipeline with stacked, weighted adapters; with/without side by side;
a resolution sweep (ResAdapter's use case).

Calls only public functions: `vadapters.pipelines.load_pipeline`, `vadapters.load`, `vadapters.set_adapters`,
`vadapters.disabled` (as `vadapters generate` does).
"""

from __future__ import annotations

import os
from typing import Any

from vadapters.errors import BadInputError

from .bases import list_update, pipeline_base
from .cache import adapter_stamp
from .context import StudioContext, parse_adapter_lines
from .security import check_number, ui_errors

DIFFUSION_METHODS = ("res_adapter", "sara")
MAX_SIDE = 1024
MAX_SWEEP = 8


def parse_sizes(text: str, height: int, width: int) -> list[tuple[int, int]]:
    """`"24,32,32x64"` -> `[(24, 24), (32, 32), (32, 64)]` (`HxW`); empty -> `[(height, width)]`.

    Example:
        >>> parse_sizes("24, 32x64", 32, 32)
        [(24, 24), (32, 64)]
    """
    items = [s.strip().lower() for s in (text or "").split(",") if s.strip()]
    if not items:
        sizes = [(height, width)]
    else:
        sizes = []
        for item in items:
            parts = item.split("x")
            if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
                raise BadInputError(f"sweep sizes are comma-separated S or HxW (e.g. 24,32,32x64); got {item!r}")
            h, w = (int(parts[0]), int(parts[-1]))
            sizes.append((h, w))
    if len(sizes) > MAX_SWEEP:
        raise BadInputError(f"at most {MAX_SWEEP} sweep sizes, got {len(sizes)}")
    for h, w in sizes:
        for value in (h, w):
            check_number(value, "image size", 8, MAX_SIDE, integer=True)
            if value % 8:
                raise BadInputError(f"image sizes must be multiples of 8 (the pipeline's latent grid), got {h}x{w}")
    return sizes


def load_generation_pipeline(ctx: StudioContext, pipeline: str | None, adapters: list[str]) -> tuple[Any, list]:
    """The (cached) pipeline with `adapters` loaded; returns `(pipe, [adapter names per folder])`."""
    import vadapters
    from vadapters.core.io import CONFIG_NAME
    from vadapters.pipelines import load_pipeline

    def load():
        pipe = load_pipeline(pipeline, device=ctx.device)
        names = []
        for i, path in enumerate(adapters):
            before = set(vadapters.list_adapters(pipe))
            single = os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME))
            vadapters.load(pipe, path, adapter_name=f"adapter{i}" if single else None)
            names.append([n for n in vadapters.list_adapters(pipe) if n not in before])
        return pipe, names

    key = tuple(adapter_stamp(p) for p in adapters)
    return ctx.cache.get("pipeline", pipeline or "default", key, load)


def generate(
    ctx: StudioContext,
    pipeline: str,
    adapters: str,
    prompt: str,
    negative_prompt: str,
    seed: Any,
    steps: Any,
    height: Any,
    width: Any,
    guidance_scale: Any,
    compare: bool,
    sweep: str,
    progress: Any = None,
) -> tuple[list[tuple[Any, str]], dict[str, Any]]:
    """Images (with captions) and a summary; see the module docstring."""
    import torch

    import vadapters
    from vadapters.core.hosts.diffusers import check_pipeline_sizes
    from vadapters.core.validation import check_prompt
    from vadapters.pipelines import to_uint8

    prompt = check_prompt((prompt or "").strip(), allow_empty=False)
    if len(prompt) > 500:
        raise BadInputError("prompt: write 1-500 characters")
    negative_prompt = check_prompt(negative_prompt or "", "negative prompt")
    seed = check_number(seed, "seed", 0, 2**31 - 1, integer=True)
    steps = check_number(steps, "steps", 1, 100, integer=True)
    guidance = check_number(guidance_scale, "guidance scale", 0.0, 20.0)
    sizes = parse_sizes(sweep, check_number(height, "height", 8, MAX_SIDE, integer=True),
                        check_number(width, "width", 8, MAX_SIDE, integer=True))  # fmt: skip
    base = ctx.optional_path(pipeline, "pipeline folder", kind="dir")
    specs = [(ctx.optional_path(p, "adapter"), w) for p, w in parse_adapter_lines(adapters)]  # or a Hub id
    pipe, names = load_generation_pipeline(ctx, base, [p for p, _ in specs])
    sizes = check_pipeline_sizes(pipe, sizes, batch_size=2 if guidance > 1 else 1)  # the model's rules, memory
    flat_names, flat_weights = [], []
    for group, (_, weight) in zip(names, specs):
        flat_names += group
        flat_weights += [weight] * len(group)
    if flat_names:
        vadapters.set_adapters(pipe, flat_names, flat_weights)

    def run(h: int, w: int):
        generator = torch.Generator("cpu").manual_seed(seed)
        out = pipe(
            prompt,
            negative_prompt=(negative_prompt or None),
            height=h,
            width=w,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
            output_type="np",
        )
        return to_uint8(out.images)[0]

    images = []
    jobs = [(h, w, on) for h, w in sizes for on in ((False, True) if compare and flat_names else (True,))]
    for i, (h, w, on) in enumerate(jobs):
        if progress is not None:
            progress((i, len(jobs)), desc=f"{h}x{w} {'with' if on else 'without'} adapters")
        if on:
            image = run(h, w)
        else:
            with vadapters.disabled(pipe):
                image = run(h, w)
        label = "with adapters" if on and flat_names else ("without adapters" if flat_names else "base")
        images.append((image, f"{h}x{w} {label}"))
    info = {
        "pipeline": base or "embedded default",
        "adapters": dict(zip(flat_names, flat_weights)),
        "sizes": [f"{h}x{w}" for h, w in sizes],
        "seed": seed,
        "steps": steps,
    }
    return images, info


def build(ctx: StudioContext, heavy: dict[str, Any]) -> None:
    """Add the Generate tab's components and events to the current `gr.Blocks`."""
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value="a red circle on a blue background, centre", max_length=500)
            negative = gr.Textbox(label="Negative prompt", value="")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                steps = gr.Slider(1, 100, value=10, step=1, label="Steps")
                guidance = gr.Slider(0.0, 20.0, value=1.0, step=0.5, label="Guidance scale")
            with gr.Row():
                height = gr.Slider(8, MAX_SIDE, value=32, step=8, label="Height")
                width = gr.Slider(8, MAX_SIDE, value=32, step=8, label="Width")
            sweep = gr.Textbox(
                label="Resolution sweep (optional)",
                placeholder="24,32,48,32x64 - one image per size instead of height x width",
            )
        with gr.Column(scale=2):
            pipeline = gr.Textbox(
                label="Pipeline folder or Hub id", placeholder="empty = embedded default (weights/tiny-sd)", value=""
            )
            found = gr.Dropdown(label="Adapters found under the allowed folders", choices=[], allow_custom_value=False)
            with gr.Row():
                refresh = gr.Button("Refresh list", size="sm")
                add = gr.Button("Add to stack", size="sm")
            adapters = gr.Textbox(
                label="Adapter stack (one FOLDER[:WEIGHT] per line; Hub ids ORG/NAME[/FOLDER] too)",
                lines=3,
                placeholder="outputs/studio/runs/res/:1.0",
            )
            compare = gr.Checkbox(label="Side by side: without | with adapters", value=True)
            run = gr.Button("Generate", variant="primary")
    gallery = gr.Gallery(label="Images", columns=6, height="auto", object_fit="contain")
    info = gr.JSON(label="Run")

    def list_found(pipeline_text: str = ""):
        from vadapters.core.registry import all_specs

        own_tabs = ("mv_adapter", "i2v_adapter")  # they run in the multi-view mode and the Video tab
        methods = [s.name for s in all_specs() if "diffusers.unet" in s.hosts and s.name not in own_tabs]
        return list_update(ctx, methods or DIFFUSION_METHODS, pipeline_base, pipeline_text)  # by method and base

    def add_found(choice: str | None, text: str) -> str:
        if not choice:
            raise gr.Error("pick an adapter in the list first (Refresh list to search the allowed folders)")
        lines = [line for line in (text or "").splitlines() if line.strip()]
        return "\n".join([*lines, f"{choice}:1.0"])

    @ui_errors
    def on_generate(
        pipeline, adapters, prompt, negative, seed, steps, height, width, guidance, compare, sweep,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's progress idiom
    ):  # fmt: skip
        return generate(ctx, pipeline, adapters, prompt, negative, seed, steps, height, width, guidance, compare,
                        sweep, progress)  # fmt: skip

    refresh.click(list_found, pipeline, found, api_name="generate_list_adapters", queue=False)
    gr.on([pipeline.submit, pipeline.blur], list_found, pipeline, found, queue=False, api_name=False)
    gr.on(None, list_found, pipeline, found, queue=False, api_visibility="private")  # filled when the page loads
    add.click(add_found, [found, adapters], adapters, api_name="generate_add_adapter", queue=False)
    run.click(
        on_generate,
        [pipeline, adapters, prompt, negative, seed, steps, height, width, guidance, compare, sweep],
        [gallery, info],
        api_name="generate",
        **heavy,
    )
