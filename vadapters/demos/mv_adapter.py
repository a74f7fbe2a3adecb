"""Demo section: train an MV-Adapter on view sets of the synthetic 3D objects, then generate a grid of views."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch

TITLE = "MV-Adapter"
ORDER = 40

AZIMUTHS = (0.0, 90.0, 180.0, 270.0)


def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Train briefly, then per object: ground-truth renders | base (views independent) | with MV-Adapter."""
    import vadapters
    from vadapters.core.schedules import ShiftSNRScheduler
    from vadapters.methods.mv_adapter.consistency import occupied_row_fraction, row_occupancy_iou
    from vadapters.pipelines import load_pipeline, save_image, side_by_side, to_uint8
    from vadapters.pipelines.multiview import MultiViewPipeline
    from vadapters.train import train_adapter
    from vadapters.train.recipes.mv_adapter import MultiViewSource

    steps, size = (40, 16) if quick else (600, 16)
    views = len(AZIMUTHS)
    base = load_pipeline(None)
    # The official recipe (shifted-SNR noise, Min-SNR, weight decay), its 2,000-step warm-up scaled to this short run
    run = {"steps": steps, "checkpoint_every": steps, "batch_size": 2, "learning_rate": 1e-3, "seed": 0}
    run["lr_warmup_steps"] = steps // 10
    data = {"num_items": 64, "num_views": views, "resolutions": str(size)}
    summary = train_adapter("mv_adapter", base=base, output_dir=os.path.join(out, "mv_adapter"), **run, **data)
    components = {k: v for k, v in base.components.items() if k != "image_encoder"}
    # each arm samples with the schedule it was trained on: the adapter the shifted one, the base its own
    schedulers = {"base": base.scheduler, "mv_adapter": ShiftSNRScheduler.from_scheduler(base.scheduler, 8.0)}
    pipe = MultiViewPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    data = MultiViewSource(64, seed=0, num_views=views)
    rows, scores = [], {"ground_truth": [], "base": [], "mv_adapter": []}
    occupied: dict[str, list[float]] = {k: [] for k in scores}
    for index in range(2 if quick else 4):
        item = data.load(index, size, size)
        truth = (item["images"] + 1) / 2
        row = [side_by_side(to_uint8(truth))]
        scores["ground_truth"].append(row_occupancy_iou(truth))
        occupied["ground_truth"].append(occupied_row_fraction(truth))
        for key, ctx in (("base", vadapters.disabled(pipe)), ("mv_adapter", contextlib.nullcontext())):
            generator = torch.Generator().manual_seed(index)
            pipe.scheduler = schedulers[key]
            with ctx:
                images = pipe(
                    item["caption"], azimuths=AZIMUTHS, height=size, width=size, num_inference_steps=10,
                    generator=generator, output_type="pt",
                ).images  # fmt: skip
            scores[key].append(row_occupancy_iou(images))
            occupied[key].append(occupied_row_fraction(images))
            row.append(side_by_side(to_uint8(images)))
        rows.append(side_by_side(row, pad=6))
    grid = rows[0]
    for row in rows[1:]:
        grid = np.concatenate([grid, np.full((4, grid.shape[1], 3), 255, np.uint8), row])
    path = save_image(grid, os.path.join(out, "mv_adapter_views.png"), 4)
    metrics = {
        "train_steps": summary["steps"],
        "final_loss": summary["final_loss"],
        "sec_per_step": summary["sec_per_step"],
        **{f"row_iou_{k}": round(sum(v) / len(v), 4) for k, v in scores.items()},
        **{f"rows_occupied_{k}": round(sum(v) / len(v), 4) for k, v in occupied.items()},
    }
    caption = (
        f"MV-Adapter ({steps} training steps): per object, ground-truth renders | base model, views independent | "
        f"with MV-Adapter (azimuths {', '.join(str(int(a)) for a in AZIMUTHS)})"
    )
    return [(caption, os.path.relpath(path, out))], metrics
