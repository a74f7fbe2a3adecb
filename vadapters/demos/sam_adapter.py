"""Demo section: SAM-Adapter on camouflaged scenes; side by side image | SAM mask | adapted mask | ground truth."""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np

TITLE = "SAM-Adapter"
ORDER = 30


def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Train a SAM-Adapter on camouflage scenes from the embedded SAM, then compare it with SAM on held-out scenes."""
    import warnings

    import torch

    from vadapters.demos import mask_to_uint8
    from vadapters.models import load_sam
    from vadapters.pipelines import save_image, side_by_side
    from vadapters.pipelines.sam import SAMAdapterPredictor
    from vadapters.synthetic.segmentation import CamouflageScenes
    from vadapters.train import train_adapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        base = load_sam(None)
    steps = 20 if quick else 300
    adapted = copy.deepcopy(base)
    summary = train_adapter(
        "sam_adapter",
        base=adapted,
        data="synthetic:camouflage",
        output_dir=os.path.join(out, "sam_adapter"),
        steps=steps,
        batch_size=4,
        learning_rate=1e-3,
        num_items=40 if quick else 400,
        config_overrides={"scale_factor": 4},
        checkpoint_every=max(steps, 1),
        seed=0,
    )
    size = base.image_encoder.img_size
    scenes = CamouflageScenes(3, seed=999, size=(size, size))
    sam_predictor, adapted_predictor = SAMAdapterPredictor(base), SAMAdapterPredictor(adapted)
    rows = []
    for i in range(3):
        item = scenes.render(i, size, size)
        image = ((item["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        tiles = [image]
        for predictor in (sam_predictor, adapted_predictor):
            predictor.set_image(image)
            masks, _, _ = predictor.predict()  # prompt-free
            tiles.append(mask_to_uint8(torch.from_numpy(masks[0])))
        tiles.append(mask_to_uint8(item["mask"]))
        rows.append(side_by_side(tiles))
    path = save_image(np.concatenate(rows, axis=0), f"{out}/sam_adapter_camouflage.png", 3)
    metrics = {
        "train_steps": summary["steps"],
        "sec_per_step": summary["sec_per_step"],
        "trainable_parameters": summary["trainable_parameters"],
        "validation": {k: round(v, 4) for k, v in summary["validation"].items() if isinstance(v, float)},
    }
    title = f"SAM-Adapter ({steps} steps): image | SAM (prompt-free) | SAM + adapter | ground truth, held-out scenes"
    return [(title, os.path.relpath(path, out))], metrics
