"""Diffusers-style pipelines and pipeline helpers (installed as `vadapters.pipelines`)."""

from typing import Any

from vadapters.pipelines.loading import load_pipeline, save_image, side_by_side, to_uint8
from vadapters.pipelines.sam import SAMAdapterPredictor

__all__ = [
    "I2VPipeline",
    "MultiViewPipeline",
    "MultiViewXLPipeline",
    "SAMAdapterPredictor",
    "load_pipeline",
    "save_image",
    "side_by_side",
    "to_uint8",
]


def __getattr__(name: str) -> Any:  # diffusers' pipeline classes take seconds to import: load them on first use
    if name in ("MultiViewPipeline", "MultiViewXLPipeline"):
        from vadapters.pipelines import multiview

        return getattr(multiview, name)
    if name in ("I2VPipeline", "save_video", "video_frames"):
        from vadapters.pipelines import image2video

        return getattr(image2video, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
