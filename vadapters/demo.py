"""`vadapters demo`: the main job on the embedded defaults, written as `index.html` + `metrics.json`.

Sections: the synthetic world (what every experiment is checked on) and each landed method. Every method issue
adds its section here.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import time
from typing import Any

import numpy as np
import torch

from vadapters.core.io import _atomic_replace, atomic_write_text


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] in [-1,1] -> HxWx3 uint8."""
    return ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def _mask_to_uint8(mask: torch.Tensor) -> np.ndarray:
    return np.repeat((mask.numpy().astype(np.uint8) * 255)[..., None], 3, axis=2)


def _save_gif(frames: list[np.ndarray], path: str, scale: int = 4, ms: int = 120) -> str:
    from PIL import Image

    images = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=ms, loop=0)
    _atomic_replace(path, lambda fh: fh.write(buffer.getvalue()))
    return path


def synthetic_gallery(out: str, size: int = 64) -> list[tuple[str, str]]:
    """Write one picture per generator; returns (title, relative path) pairs."""
    from vadapters.pipelines import save_image, side_by_side
    from vadapters.synthetic.classification import ShapeClasses
    from vadapters.synthetic.motion import MotionClips
    from vadapters.synthetic.multiview import MultiViewObjects
    from vadapters.synthetic.scenes import ShapeScenes
    from vadapters.synthetic.segmentation import CamouflageScenes, ShadowScenes

    items: list[tuple[str, str]] = []
    scenes = ShapeScenes(6, seed=0)
    row = [_to_uint8(scenes.render(i, size, size)["image"]) for i in range(6)]
    captions = "; ".join(scenes.caption(i) for i in range(3))
    items.append((f"Shape scenes (captions: {captions}, ...)", save_image(side_by_side(row), f"{out}/scenes.png", 2)))
    for name, ds in (
        ("Camouflage (image | mask)", CamouflageScenes(3, seed=0)),
        ("Shadow (image | BER mask)", ShadowScenes(3, seed=0)),
    ):
        row = []
        for i in range(3):
            item = ds.render(i, size, size)
            row += [_to_uint8(item["image"]), _mask_to_uint8(item["mask"])]
        items.append((name, save_image(side_by_side(row), f"{out}/{name.split()[0].lower()}.png", 2)))
    mv = MultiViewObjects(1, seed=0).render(0, size, size)
    row = [_to_uint8(v) for v in mv["images"]] + [
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
        (f"Motion clip: {clip['caption']}", _save_gif([_to_uint8(f) for f in clip["frames"]], f"{out}/motion.gif", 2))
    )
    cls = ShapeClasses(10, seed=0)
    row = [(cls[i][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(10)]
    items.append(
        ("Classification set: " + ", ".join(cls.class_names), save_image(side_by_side(row), f"{out}/classes.png", 3))
    )
    return [(t, os.path.relpath(p, out)) for t, p in items]


def res_adapter_section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Train a ResAdapter on the embedded pipeline, then compare base vs adapter over a resolution sweep."""
    import vadapters
    from vadapters.pipelines import load_pipeline, save_image, side_by_side, to_uint8
    from vadapters.train import train_adapter

    steps = 30 if quick else 300
    adapter_dir = os.path.join(out, "res_adapter")
    summary = train_adapter(
        "res_adapter",
        pipeline=None,
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


def _defaults_status() -> dict[str, Any]:
    from vadapters.models.weights import read_manifest

    return {name: entry.get("metrics", {}) for name, entry in read_manifest()["entries"].items()}


def run_demo(out: str = "outputs/demo", quick: bool = True) -> dict[str, Any]:
    """Run every section; write `out/index.html` and `out/metrics.json`; return the metrics."""
    os.makedirs(out, exist_ok=True)
    start = time.time()
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    metrics: dict[str, Any] = {"quick": quick, "embedded_defaults": _defaults_status()}
    sections.append(("Synthetic world", synthetic_gallery(out)))
    items, metrics["res_adapter"] = res_adapter_section(out, quick)
    sections.append(("ResAdapter", items))
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
