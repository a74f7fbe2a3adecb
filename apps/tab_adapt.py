"""Adapt tab: test-time adaptation of a classifier over a corrupted stream, with a live per-domain error plot.

Calls only public functions of `vadapters.tta`: `runner.load_classifier`, `runner.make_stream`, `build_method`,
`runner.run_stream` (fed one domain segment at a time so the plot can update between segments; the method is reset
exactly where the stream says `reset`, as `run_stream` does on a whole stream).
"""

from __future__ import annotations

import copy
from typing import Any

from vadapters.errors import BadInputError

from .context import StudioContext
from .security import check_choice, check_number, ui_errors

PLOT_COLUMNS = ["segment", "domain", "method", "error"]
"""Rows of the table; the plot's x is `segment` as zero-padded "NN domain" so it sorts in stream order."""


def _segments(batches: list[dict]) -> list[list[dict]]:
    """Split a stream into runs of consecutive batches of one domain (a new run also starts at each `reset`)."""
    runs: list[list[dict]] = []
    for batch in batches:
        if not runs or runs[-1][-1]["domain"] != batch["domain"] or batch.get("reset", False):
            runs.append([])
        runs[-1].append(batch)
    return runs


def adapt_stream(
    ctx: StudioContext,
    classifier: str,
    stream: str,
    corruptions: list[str],
    severity: Any,
    num_samples: Any,
    batch_size: Any,
    methods: list[str],
    seed: Any = 0,
):
    """Yield `(rows, summary)` after each (method, domain segment); rows are `[segment, domain, method, error %]`."""
    from vadapters.tta import METHODS, build_method
    from vadapters.tta.runner import STREAMS, load_classifier, make_stream, run_stream

    stream = check_choice(stream, "stream", STREAMS)
    if not corruptions:
        raise BadInputError("pick at least one corruption (or 'clean')")
    if len(corruptions) > 16:
        raise BadInputError(f"at most 16 corruptions, got {len(corruptions)}")
    if not methods:
        raise BadInputError("pick at least one method")
    for name in methods:
        check_choice(name, "method", METHODS)
    severity = check_number(severity, "severity", 1, 5, integer=True)
    num_samples = check_number(num_samples, "images per domain", 8, 2000, integer=True)
    batch_size = check_number(batch_size, "batch size", 2, 256, integer=True)
    seed = check_number(seed, "seed", 0, 2**31 - 1, integer=True)
    spec = (classifier or "cnn").strip()
    if spec not in ("cnn", "vit") and not spec.startswith("tiny:"):
        spec = ctx.roots.resolve(spec, what="classifier folder", kind="dir")

    base = ctx.cache.get("classifier", spec, (), lambda: load_classifier(spec))
    batches = make_stream(stream, corruptions=list(corruptions), severity=severity, batch_size=batch_size,
                          seed=seed, num_samples=num_samples)  # fmt: skip
    runs = _segments(batches)
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {"stream": stream, "severity": severity, "images_per_domain": num_samples}
    for name in methods:
        model = copy.deepcopy(base).to(ctx.torch_device)  # every method starts from the same weights
        method = build_method(name, model, seed=seed)
        seen: dict[str, int] = {}
        errors = []
        for index, run in enumerate(runs):
            if index and run[0].get("reset", False):
                method.reset()
            result = run_stream(method, run, progress=False)
            segment = result.segments[0]
            domain = segment["domain"]
            seen[domain] = seen.get(domain, -1) + 1
            label = domain + (f"#{seen[domain] + 1}" if seen[domain] else "")
            errors.append(segment["error"])
            rows.append([f"{index + 1:02d} {label}", label, name, round(100.0 * segment["error"], 2)])
            summary[name] = {"mean_error_%": round(100.0 * sum(errors) / len(errors), 2), "segments": len(errors)}
            yield rows, summary


def build(ctx: StudioContext, heavy: dict[str, Any]) -> None:
    """Add the Adapt tab's components and events to the current `gr.Blocks`."""
    import gradio as gr
    import pandas as pd

    from vadapters.synthetic.streams import CORRUPTIONS
    from vadapters.tta import METHODS
    from vadapters.tta.runner import STREAMS

    with gr.Row():
        with gr.Column(scale=2):
            classifier = gr.Dropdown(
                ["cnn", "vit", "tiny:test_resnet"],
                value="cnn",
                allow_custom_value=True,
                label="Classifier (embedded cnn / vit, or a folder in their layout)",
            )
            stream = gr.Dropdown(list(STREAMS), value="continual", label="Stream")
            corruptions = gr.Dropdown(
                ["clean", *CORRUPTIONS],
                value=["gaussian_noise", "defocus_blur", "fog", "contrast"],
                multiselect=True,
                label="Corruptions (in order)",
            )
        with gr.Column(scale=2):
            methods = gr.CheckboxGroup(list(METHODS), value=["source", "bn", "lame"], label="Methods")
            with gr.Row():
                severity = gr.Slider(1, 5, value=3, step=1, label="Severity")
                num_samples = gr.Slider(8, 2000, value=128, step=8, label="Images per domain")
                batch_size = gr.Slider(2, 256, value=64, step=2, label="Batch size")
            run = gr.Button("Run stream", variant="primary")
    plot = gr.Image(label="Error per domain (%), one line per method", type="pil", format="png", interactive=False)
    table = gr.Dataframe(headers=PLOT_COLUMNS, label="Per-domain error (%)")
    summary = gr.JSON(label="Mean error")

    def error_plot(rows):
        from types import SimpleNamespace

        from vadapters.demos.tta import error_plot_image

        series: dict[str, list[dict]] = {}
        for _, domain, method, error in rows:
            series.setdefault(method, []).append({"domain": domain, "error": float(error) / 100})
        results = {
            name: SimpleNamespace(segments=segs, mean_error=sum(s["error"] for s in segs) / len(segs))
            for name, segs in series.items()
        }
        return error_plot_image(results)

    @ui_errors
    def on_run(
        classifier, stream, corruptions, severity, num_samples, batch_size, methods,
        progress=gr.Progress(),  # noqa: B008 - Gradio's progress idiom
    ):  # fmt: skip
        total = len(methods or []) * max(1, len(corruptions or []))
        for rows, info in adapt_stream(ctx, classifier, stream, corruptions, severity, num_samples, batch_size,
                                       methods):  # fmt: skip
            progress((len(rows), total), desc=f"{rows[-1][2]} on {rows[-1][1]}")
            frame = pd.DataFrame(rows, columns=PLOT_COLUMNS)
            yield error_plot(rows), frame, info

    run.click(
        on_run,
        [classifier, stream, corruptions, severity, num_samples, batch_size, methods],
        [plot, table, summary],
        api_name="adapt",
        **heavy,
    )
