"""Demo section: train a ResAdapter on the embedded pipeline, then a resolution sweep base vs adapter."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

TITLE = "ResAdapter"
ORDER = 10


def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Train a ResAdapter on the embedded pipeline, then compare base vs adapter over a resolution sweep."""
    import vadapters
    from vadapters.pipelines import load_pipeline, save_image, side_by_side, to_uint8
    from vadapters.train import train_adapter

    steps = 30 if quick else 300
    adapter_dir = os.path.join(out, "res_adapter")
    summary = train_adapter(
        "res_adapter",
        base=None,
        data="synthetic:shapes",
        output_dir=adapter_dir,
        resolutions="16,24,32,48",
        steps=steps,
        batch_size=4,
        learning_rate=1e-3,
        config_overrides={"rank": 4, "alpha": 4.0},
        seed=0,
        checkpoint_every=max(steps, 1),
        validate_every=0,
    )
    pipe = load_pipeline(None)
    vadapters.load(pipe, adapter_dir, adapter_name="res")
    prompt = "a red circle on a blue background, centre"
    rows = []
    for h, w in ((24, 24), (32, 32), (48, 48), (32, 64)):
        pair = []
        for enabled in (False, True):
            gen = torch.Generator().manual_seed(0)
            ctx = vadapters.disabled(pipe) if not enabled else contextlib.nullcontext()
            with ctx:
                image = pipe(prompt, height=h, width=w, num_inference_steps=10, generator=gen, output_type="np").images
            pair.append(to_uint8(image)[0])
        rows.append(side_by_side(pair))
    path = save_image(side_by_side(rows, pad=6), f"{out}/res_adapter_sweep.png", 3)
    metrics = {
        "train_steps": summary["steps"],
        "final_loss": summary["final_loss"],
        "sec_per_step": summary["sec_per_step"],
    }
    title = f"ResAdapter: '{prompt}' at 24, 32, 48 and 32x64 px, each pair base | with adapter"
    return [(title, os.path.relpath(path, out))], metrics
