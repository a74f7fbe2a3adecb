"""Demo section: SAM-Adapter; side by side image | SAM mask | adapted mask | ground truth, with measured figures.

By default the section loads the SAM-Adapters shipped in `weights/` (`vadapters:sam-adapter-shadow`,
`vadapters:sam-adapter-camouflage`) and scores SAM and SAM + adapter on held-out scenes live, next to the figures
the manifest records for them (`benchmarks/sam_adapter_ship.py`, 200 test scenes). `train=True` (`vadapters demo
--train`) trains one on camouflage scenes instead, as the earlier demo did.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np

TITLE = "SAM-Adapter"
ORDER = 30
SHIPPED = {  # task -> (shipped adapter, held-out scenes)
    "shadow": ("sam-adapter-shadow", "synthetic:shadow"),
    "camouflage": ("sam-adapter-camouflage", "synthetic:camouflage-texture"),
}


def _panel(base: Any, adapted: Any, data: str, count: int, size: int) -> np.ndarray:
    import torch

    from vadapters.demos import mask_to_uint8
    from vadapters.methods.sam_adapter.data import make_segmentation_source
    from vadapters.pipelines import side_by_side
    from vadapters.pipelines.sam import SAMAdapterPredictor

    source = make_segmentation_source(data, num_items=count, seed=999, size=(size, size))
    predictors = SAMAdapterPredictor(base), SAMAdapterPredictor(adapted)
    rows = []
    for i in range(count):
        item = source.load(i)
        image = (item["image"].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        tiles = [image]
        for predictor in predictors:
            predictor.set_image(image)
            masks, _, _ = predictor.predict()  # prompt-free
            tiles.append(mask_to_uint8(torch.from_numpy(masks[0])))
        tiles.append(mask_to_uint8(item["mask"]))
        rows.append(side_by_side(tiles))
    return np.concatenate(rows, axis=0)


def _scores(sam: Any, base: Any, data: str, count: int, size: int) -> dict[str, float]:
    from vadapters.methods.sam_adapter.data import SAMSegmentationDataset, make_segmentation_source
    from vadapters.methods.sam_adapter.train import evaluate

    source = make_segmentation_source(data, num_items=count, seed=999, size=(size, size))
    return {
        k: round(v, 4) for k, v in evaluate(sam, SAMSegmentationDataset(source, base)).items() if k in ("S", "BER")
    }


def shipped_section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The shipped adapters against SAM on held-out scenes, scored live and beside their recorded figures."""
    import warnings

    import vadapters
    from vadapters.models import load_sam
    from vadapters.models.weights import read_manifest
    from vadapters.pipelines import save_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        base = load_sam(None)
    size, n = base.image_encoder.img_size, 16 if quick else 200
    entries, metrics = read_manifest()["entries"], {"held_out_scenes": n, "source": "shipped adapters"}
    items = []
    for task, (name, data) in SHIPPED.items():
        adapted = vadapters.load(copy.deepcopy(base), f"vadapters:{name}")
        sam, ours = _scores(base, base, data, n, size), _scores(adapted, base, data, n, size)
        recorded = entries[name]["metrics"]
        metrics[task] = {"adapter": f"vadapters:{name}", "data": data, "sam": sam, "sam_adapter": ours,
                         "recorded_200_scenes": {"sam": {k: recorded["zero_shot"][k] for k in ("S", "BER")},
                                                 "sam_adapter": {k: recorded["sam_adapter"][k] for k in ("S", "BER")}},
                         "gate": recorded.get("fair_benchmark")}  # fmt: skip
        path = save_image(_panel(base, adapted, data, 3, size), f"{out}/sam_adapter_{task}.png", 3)
        caption = (f"{task} ({data}, `vadapters:{name}`): image | SAM | SAM + adapter | truth. On {n} held-out "
                   f"scenes: SAM S {sam['S']:.3f} / BER {sam['BER']:.1f} %, SAM-Adapter S {ours['S']:.3f} / BER "
                   f"{ours['BER']:.1f} %")  # fmt: skip
        items.append((caption, os.path.relpath(path, out)))
    return items, metrics


def section(out: str, quick: bool, train: bool = False) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The shipped adapters (default), or with `train` a SAM-Adapter trained live on camouflage scenes."""
    if not train:
        return shipped_section(out, quick)
    return trained_section(out, quick)


def trained_section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
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
