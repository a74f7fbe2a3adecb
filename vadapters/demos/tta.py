"""Demo section: test-time adaptation of the embedded classifiers on a short continual corruption stream.

Every method (source, BN adapt, TENT, CoTTA, LAME, VDP) runs over the same stream; the section draws per-domain
error (one line per method, PIL only) and reports the mean errors. LAME also runs on a class-sorted (non-i.i.d.)
stream, its home scenario.
"""

from __future__ import annotations

import os
from typing import Any

TITLE = "Test-time adaptation (LAME, visual domain prompts, TENT, CoTTA)"
ORDER = 60

QUICK_DOMAINS = ("gaussian_noise", "snow", "contrast", "jpeg_compression")
COLOURS = ((90, 90, 90), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


def plot_errors(results: dict[str, Any], path: str, title: str = "") -> str:
    """Line plot of per-segment error (%) for each method's `StreamResult`; PNG via PIL. Returns `path`."""
    import io

    from vadapters.core.io import atomic_write

    buffer = io.BytesIO()
    error_plot_image(results, title).save(buffer, format="PNG")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return path


def error_plot_image(results: dict[str, Any], title: str = ""):
    """The plot of `plot_errors` as a PIL image; `results` maps a method name to anything with `segments` (dicts
    with `domain` and `error` in [0, 1]) and `mean_error`."""
    from PIL import Image, ImageDraw

    first = next(iter(results.values()))
    labels = [s["domain"][:8] for s in first.segments]
    width, height, left, right, top, bottom = 120 + 70 * len(labels), 360, 50, 150, 30, 60
    image = Image.new("RGB", (width + right, height), "white")
    draw = ImageDraw.Draw(image)
    plot_w, plot_h = width - left - 20, height - top - bottom

    def xy(i: int, err: float) -> tuple[float, float]:
        x = left + (i + 0.5) * plot_w / max(1, len(labels))
        return x, top + plot_h * (1 - err)

    for tick in range(0, 101, 20):
        y = top + plot_h * (1 - tick / 100)
        draw.line([(left, y), (left + plot_w, y)], fill=(225, 225, 225))
        draw.text((8, y - 6), f"{tick}%", fill="black")
    for i, label in enumerate(labels):
        x, _ = xy(i, 0)
        draw.text((x - 22, top + plot_h + 8 + 12 * (i % 2)), label, fill="black")
    for k, (name, result) in enumerate(results.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [xy(i, s["error"]) for i, s in enumerate(result.segments)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((width + 5, top + 16 * k), f"{name} {100 * result.mean_error:.1f}", fill=colour)
    draw.text((left, 8), title or "error per domain (lower is better); legend: method, mean error %", fill="black")
    return image


def _methods(quick: bool, bn_model: bool) -> dict[str, dict[str, Any]]:
    n_aug = 2 if quick else 32
    methods = {
        "source": {},
        "bn": {},
        "tent": {},
        "cotta": {"n_aug": n_aug, "hflip": False},
        "lame": {},
        "vdp": {"n_aug": min(n_aug, 4), "hflip": False},
    }
    if bn_model:
        methods["vdp+bn"] = {"n_aug": min(n_aug, 4), "hflip": False, "bn_mode": "batch_stats"}
    else:
        methods.pop("bn")  # identical to source without BatchNorm
    return methods


def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Run every method on a short continual stream with each available embedded classifier; plot errors."""
    import torch

    from vadapters.errors import CheckpointError
    from vadapters.tta import build_method
    from vadapters.tta.runner import load_classifier, make_stream, run_stream

    num_samples = 120 if quick else 1000
    domains = list(QUICK_DOMAINS) if quick else "standard"
    items: list[tuple[str, str]] = []
    metrics: dict[str, Any] = {"num_samples_per_domain": num_samples, "severity": 5}
    kinds = ("cnn",) if quick else ("cnn", "vit")
    for kind in kinds:
        try:
            model = load_classifier(kind)
        except CheckpointError as err:
            metrics[kind] = f"skipped: {err}"
            continue
        torch.manual_seed(0)
        stream = make_stream("continual", domains, batch_size=40, num_samples=num_samples, seed=0)
        bn_model = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        results = {}
        for name, options in _methods(quick, bn_model).items():
            method_name = name.split("+")[0]
            results[name] = run_stream(build_method(method_name, model, **options), stream, progress=False)
        path = plot_errors(results, os.path.join(out, f"tta_{kind}.png"), f"{kind}: continual stream, severity 5")
        items.append(
            (f"{kind} classifier, continual corruption stream (error % per domain)", os.path.relpath(path, out))
        )
        metrics[kind] = {name: round(100 * r.mean_error, 2) for name, r in results.items()}
        sorted_stream = make_stream("non-iid", ["snow", "jpeg_compression"] if quick else "standard", batch_size=40,
                                    num_samples=num_samples)  # fmt: skip
        lame_sorted = {
            "source": run_stream(build_method("source", model), sorted_stream, progress=False),
            "lame": run_stream(build_method("lame", model), sorted_stream, progress=False),
        }
        metrics[f"{kind}_non_iid"] = {name: round(100 * r.mean_error, 2) for name, r in lame_sorted.items()}
    if not items:
        items.append(("TTA skipped: no embedded classifier found (train with `vadapters train-base`)", ""))
    return [item for item in items if item[1]], metrics
