"""vadapters studio: a Gradio app to generate, segment, adapt at test time and train adapters.

`build_demo(...)` returns a `gr.Blocks` without loading any model (models load lazily, on the first event that
needs them, into `apps.cache.CACHE`); `launch(demo)` serves it on 127.0.0.1 by default. The embedded defaults in
`weights/` are what every tab uses unless a user names their own pipeline / SAM checkpoint / classifier / adapter
folder, which must lie under the allowed roots.

Heavy events (Generate, Video, Segment, Adapt) share one queue slot (`concurrency_id="heavy"`, one at a time, at
most `max_queue` waiting); training runs beside them, one job at a time, each job owned by its session
(`apps.jobs.JobManager`); every event has a stable `api_name`, so `gradio_client` can drive the app:
`/generate`, `/generate_multiview`, `/image_to_video`, `/segment`, `/adapt`, `/train`, `/train_stop` (and small helpers such as
`/generate_list_adapters`).

`?tab=segment` (or generate / video / adapt / train) in the URL opens that tab.

Example:
    >>> import tempfile
    >>> demo = build_demo(roots=[tempfile.mkdtemp()])
    >>> sorted(d.api_name for d in demo.fns.values() if d.api_name in ("generate", "segment", "adapt", "train"))
    ['adapt', 'generate', 'segment', 'train']
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from . import tab_adapt, tab_generate, tab_multiview, tab_segment, tab_train, tab_video
from .context import StudioContext

TITLE = "vadapters studio"
TABS = ("generate", "video", "segment", "adapt", "train")
HEAVY_CONCURRENCY_ID = "heavy"

CSS = """
.vadapters-header { margin-bottom: 0.25rem; }
.gallery-item img { image-rendering: pixelated; }
"""

# Opens the tab named by `?tab=` (deep links; also how the browser test takes one screenshot per tab).
TAB_JS = """
() => {
  const wanted = new URLSearchParams(window.location.search).get("tab");
  if (!wanted) return;
  const pick = (tries) => {
    const buttons = Array.from(document.querySelectorAll('button[role="tab"]'));
    const button = buttons.find((b) => b.textContent.trim().toLowerCase() === wanted.toLowerCase());
    if (button) { button.click(); } else if (tries > 0) { setTimeout(() => pick(tries - 1), 100); }
  };
  pick(50);
}
"""

INTRO = """# vadapters studio
Adapters for diffusers, segment-anything and timm on small embedded default models. **Generate** stacks
diffusion adapters (ResAdapter, SaRA) with weights, and its multi-view mode draws a grid of views with an
MV-Adapter; **Video** animates a first frame with an I2V-Adapter next to the base video model; **Segment** compares SAM and SAM-Adapter; **Adapt** runs
test-time adaptation (LAME, VDP, TENT, CoTTA, BN) over corrupted streams; **Train** trains an adapter that the
other tabs can load. Typed paths must lie under: {roots}.
"""


def build_demo(
    roots: Iterable[str | os.PathLike] | None = None,
    *,
    workdir: str | os.PathLike | None = None,
    device: str | None = None,
    max_queue: int = 16,
) -> Any:
    """Build the studio app (no model is loaded here).

    Args:
        roots: folders whose files a user may name by path (default: the current folder).
        workdir: where training runs and uploads go (default: `<first root>/outputs/studio`; always allowed).
        device: torch device (default: CUDA if available, else CPU).
        max_queue: how many requests may wait in the queue before new ones are refused.

    Returns:
        `gr.Blocks`, with the queue configured (one heavy job at a time).
    """
    import gradio as gr

    ctx = StudioContext(roots, workdir=workdir, device=device)
    heavy = {"concurrency_id": HEAVY_CONCURRENCY_ID, "concurrency_limit": 1}
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(INTRO.format(roots=", ".join(f"`{r}`" for r in ctx.roots.roots)), elem_classes="vadapters-header")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                tab_generate.build(ctx, heavy)
                with gr.Accordion("Multi-view mode (MV-Adapter)", open=False):
                    tab_multiview.build(ctx, heavy)
            with gr.Tab("Video", id="video"):
                tab_video.build_video_tab(ctx, heavy)
            with gr.Tab("Segment", id="segment"):
                tab_segment.build(ctx, heavy)
            with gr.Tab("Adapt", id="adapt"):
                tab_adapt.build(ctx, heavy)
            with gr.Tab("Train", id="train"):
                tab_train.build(ctx, heavy)
    demo.queue(default_concurrency_limit=1, max_size=int(max_queue))
    demo.studio_context = ctx
    return demo


def launch(
    demo: Any,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    *,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    max_file_size: str = "25mb",
) -> tuple[Any, str, Any]:
    """Serve `demo` (theme, css and the tab deep-link script go to `launch`, as Gradio 6 wants).

    Returns Gradio's `(app, local_url, share_url)`.
    """
    import gradio as gr

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        share=False,
        show_error=True,
        max_file_size=max_file_size,
        ssr_mode=False,
        theme=gr.themes.Soft(),
        css=CSS,
        js=TAB_JS,
        footer_links=["api"],
    )
