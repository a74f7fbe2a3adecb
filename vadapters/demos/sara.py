"""Demo section: SaRA fine-tunes the embedded pipeline's smallest weights towards textured backgrounds.

Trains a SaRA adapter (10% of the UNet's entries, nuclear norm, progressive re-selection) through the shared
trainer on shapes over textured backgrounds, loads it into a fresh copy of the pipeline from its folder, and
shows base | SaRA for a textured-background prompt (the new domain) and a flat-background one (the old domain).
"""

from __future__ import annotations

import os
from typing import Any

import torch

TITLE = "SaRA (sparse fine-tuning of the smallest weights)"
ORDER = 40

PROMPTS = (
    "a red circle on a blue and yellow textured background, centre",
    "a green square on a white background, centre",
)


def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Train SaRA on textured-background scenes, then compare base | adapter on a new- and an old-domain prompt."""
    import vadapters
    from vadapters.methods.sara import sara_summary
    from vadapters.pipelines import load_pipeline, save_image, side_by_side, to_uint8
    from vadapters.synthetic.scenes import ShapeScenes
    from vadapters.train import train_adapter

    steps = 12 if quick else 400
    adapter_dir = os.path.join(out, "sara")
    data = ShapeScenes(256, seed=1, max_shapes=1, background="texture", min_size=0.4, max_size=0.7)
    train_pipe = load_pipeline(None)
    summary = train_adapter(
        "sara",
        base=train_pipe,
        data=data,
        output_dir=adapter_dir,
        resolutions="16,24,32",
        steps=steps,
        batch_size=4,
        learning_rate=1e-3,
        config_overrides={"quantile": 0.1, "rank_min_dim": 16, "progressive_at": 0.5},
        seed=0,
        checkpoint_every=steps,
        validate_every=0,
    )
    counts = sara_summary(train_pipe, "sara")
    pipe = load_pipeline(None)  # a fresh copy: the adapter comes back from its folder (fingerprint checked)
    vadapters.load(pipe, adapter_dir, adapter_name="sara")
    rows = []
    for prompt in PROMPTS:
        pair = []
        for enabled in (False, True):
            gen = torch.Generator().manual_seed(0)
            with vadapters.disabled(pipe) if not enabled else _nullcontext():
                image = pipe(prompt, height=32, width=32, num_inference_steps=10, generator=gen, output_type="np")
            pair.append(to_uint8(image.images)[0])
        rows.append(side_by_side(pair))
    path = save_image(side_by_side(rows, pad=6), f"{out}/sara_pairs.png", 3)
    metrics = {
        "train_steps": summary["steps"],
        "final_loss": summary["final_loss"],
        "sec_per_step": summary["sec_per_step"],
        "selected_entries": counts["selected"],
        "selected_fraction": round(counts["selected"] / counts["targeted"], 4),
        "still_trainable_after_reselection": counts["trainable"],
        "threshold": counts["threshold"],
    }
    title = (
        f"SaRA on {counts['selected']:,} of {counts['targeted']:,} UNet entries ({steps} steps on textured "
        f"backgrounds; {counts['trainable']:,} still trainable after re-selection): "
        + " / ".join(f"'{p}'" for p in PROMPTS)
        + ", each pair base | SaRA"
    )
    return [(title, os.path.relpath(path, out))], metrics


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()
