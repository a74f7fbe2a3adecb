"""`vadapters demo`: the main job on the embedded defaults, written as `index.html` + `metrics.json`.

Sections live in `vadapters.demos` (one module per method; each method issue adds its own), with the small image
helpers they share. This module is the runner.
"""

from __future__ import annotations

import html
import json
import os
import time
from typing import Any

from vadapters.core.io import atomic_write_text


def _defaults_status() -> dict[str, Any]:
    from vadapters.models.weights import read_manifest

    return {name: entry.get("metrics", {}) for name, entry in read_manifest()["entries"].items()}


def run_demo(
    out: str = "outputs/demo", quick: bool = True, only: list[str] | None = None, train: bool = False
) -> dict[str, Any]:
    """Run every section (or those named in `only`); write `out/index.html` and `out/metrics.json`.

    Sections that ship trained adapters show those unless `train` (then they train live, as the others do)."""
    import inspect

    from vadapters.demos import section_modules

    os.makedirs(out, exist_ok=True)
    start = time.time()
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    metrics: dict[str, Any] = {
        "quick": quick,
        "train": train,
        "embedded_defaults": _defaults_status(),
        "section_seconds": {},
    }
    for module in section_modules():
        key = module.__name__.rsplit(".", 1)[-1]
        if only and key not in only:
            continue
        t0 = time.time()
        kwargs = {"train": train} if "train" in inspect.signature(module.section).parameters else {}
        items, section_metrics = module.section(out, quick, **kwargs)
        metrics["section_seconds"][key] = round(time.time() - t0, 1)
        if section_metrics:
            metrics[key] = section_metrics
        sections.append((module.TITLE, items))
    metrics["seconds"] = round(time.time() - start, 1)
    atomic_write_text(os.path.join(out, "metrics.json"), json.dumps(metrics, indent=2, default=str) + "\n")
    body = []
    for title, entries in sections:
        body.append(f"<h2>{html.escape(title)}</h2>")
        for caption, rel in entries:
            body.append(
                f'<figure><img src="{html.escape(rel)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
            )
    body.append(f"<h2>Metrics</h2><pre>{html.escape(json.dumps(metrics, indent=2, default=str))}</pre>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>vadapters demo</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{image-rendering:pixelated;max-width:100%}"
        "figure{margin:1em 0}</style></head><body><h1>vadapters demo</h1>" + "\n".join(body) + "</body></html>\n"
    )
    atomic_write_text(os.path.join(out, "index.html"), page)
    return metrics
