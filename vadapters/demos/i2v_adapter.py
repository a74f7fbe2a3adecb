"""Demo section: train an I2V-Adapter on synthetic motion clips, then animate held-out first frames (a GIF)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch

TITLE = "I2V-Adapter (image-to-video)"
ORDER = 45


def _psnr(video: torch.Tensor, truth: torch.Tensor) -> float:
    mse = float((video - truth).square().mean())
    return 10 * float(np.log10(1.0 / max(mse, 1e-10)))


def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Per held-out clip, side by side: ground truth | base with frame 0 clamped | I2V-Adapter | + prior."""
    import vadapters
    from vadapters.errors import CheckpointError
    from vadapters.pipelines import side_by_side
    from vadapters.pipelines.image2video import I2VPipeline, load_video_pipeline, save_video, video_frames
    from vadapters.train import train_adapter
    from vadapters.train.recipes.i2v_adapter import MotionClipSource

    try:
        base, which = load_video_pipeline(None), "embedded tiny-animatediff"
    except CheckpointError:
        base, which = load_video_pipeline("tiny"), "random-init tiny AnimateDiff (no embedded video default yet)"
    steps, size, frames = (8, 16, 8) if quick else (300, 16, 8)
    run = {"steps": steps, "checkpoint_every": steps, "batch_size": 2, "learning_rate": 1e-3, "seed": 0}
    data = {"num_items": 64, "num_frames": frames, "resolutions": str(size)}
    summary = train_adapter("i2v_adapter", base=base, output_dir=os.path.join(out, "i2v_adapter"), **run, **data)
    pipe = I2VPipeline(**base.components)
    pipe.set_progress_bar_config(disable=True)
    held_out = MotionClipSource(4, seed=999, num_frames=frames)
    variants = {"base_clamped": {}, "i2v_adapter": {}, "i2v_adapter_prior": {"prior_strength": "auto"}}
    scores: dict[str, list[float]] = {k: [] for k in variants}
    rows = []
    for index in range(1 if quick else 3):
        item = held_out.load(index, size, size)
        truth = (item["frames"] + 1) / 2
        videos = [video_frames(truth)]
        for name, options in variants.items():
            with vadapters.disabled(pipe) if name == "base_clamped" else contextlib.nullcontext():
                video = pipe(
                    item["caption"], image=truth[:1], num_frames=frames, height=size, width=size,
                    num_inference_steps=5 if quick else 25, guidance_scale=1.0, output_type="pt",
                    generator=torch.Generator().manual_seed(index), **options,
                ).frames[0]  # fmt: skip
            scores[name].append(_psnr(video[1:], truth[1:]))
            videos.append(video_frames(video))
        rows.append(videos)
    strips = [side_by_side([row[v][f] for v in range(len(row))], pad=2) for row in rows for f in range(frames)]
    animation = [np.concatenate([strips[r * frames + f] for r in range(len(rows))]) for f in range(frames)]
    path = save_video(animation, os.path.join(out, "i2v_adapter.gif"), fps=6, scale=4)
    metrics = {
        "base": which,
        "train_steps": summary["steps"],
        "final_loss": summary["final_loss"],
        **{f"psnr_frames_1_{frames - 1}_{k}": round(sum(v) / len(v), 3) for k, v in scores.items()},
    }
    caption = (
        f"I2V-Adapter ({steps} training steps on {which}): per held-out clip, ground truth | base text-to-video with "
        "frame 0 clamped | I2V-Adapter | I2V-Adapter + Frame Similarity Prior (official strength)"
    )
    return [(caption, os.path.relpath(path, out))], metrics
