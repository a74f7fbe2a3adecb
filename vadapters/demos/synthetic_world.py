"""Demo section: one picture per synthetic generator (what every experiment is checked on)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vadapters.demos import mask_to_uint8, save_gif, to_uint8_image

TITLE = "Synthetic world"
ORDER = 0


def section(out: str, quick: bool, size: int = 64) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Write one picture per generator; returns (title, relative path) pairs."""
    from vadapters.pipelines import save_image, side_by_side
    from vadapters.synthetic.classification import ShapeClasses
    from vadapters.synthetic.motion import MotionClips
    from vadapters.synthetic.multiview import MultiViewObjects
    from vadapters.synthetic.scenes import ShapeScenes
    from vadapters.synthetic.segmentation import CamouflageScenes, ShadowScenes

    items: list[tuple[str, str]] = []
    scenes = ShapeScenes(6, seed=0)
    row = [to_uint8_image(scenes.render(i, size, size)["image"]) for i in range(6)]
    captions = "; ".join(scenes.caption(i) for i in range(3))
    items.append((f"Shape scenes (captions: {captions}, ...)", save_image(side_by_side(row), f"{out}/scenes.png", 2)))
    for name, ds in (
        ("Camouflage (image | mask)", CamouflageScenes(3, seed=0)),
        ("Shadow (image | BER mask)", ShadowScenes(3, seed=0)),
    ):
        row = []
        for i in range(3):
            item = ds.render(i, size, size)
            row += [to_uint8_image(item["image"]), mask_to_uint8(item["mask"])]
        items.append((name, save_image(side_by_side(row), f"{out}/{name.split()[0].lower()}.png", 2)))
    mv = MultiViewObjects(1, seed=0).render(0, size, size)
    row = [to_uint8_image(v) for v in mv["images"]] + [
        ((p.permute(1, 2, 0).numpy()) * 255).astype(np.uint8) for p in mv["normals"][:2]
    ]
    items.append(
        (
            f"Multi-view: {mv['caption']} (6 views, then 2 normal maps)",
            save_image(side_by_side(row), f"{out}/multiview.png", 2),
        )
    )
    clip = MotionClips(1, seed=0, num_frames=12).render(0, size, size)
    items.append(
        (
            f"Motion clip: {clip['caption']}",
            save_gif([to_uint8_image(f) for f in clip["frames"]], f"{out}/motion.gif", 2),
        )
    )
    cls = ShapeClasses(10, seed=0)
    row = [(cls[i][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(10)]
    items.append(
        ("Classification set: " + ", ".join(cls.class_names), save_image(side_by_side(row), f"{out}/classes.png", 3))
    )
    return [(t, os.path.relpath(p, out)) for t, p in items], {}
