"""Diffusers-style pipelines and pipeline helpers (installed as `vadapters.pipelines`)."""

from vadapters.pipelines.loading import load_pipeline, save_image, side_by_side, to_uint8
from vadapters.pipelines.sam import SAMAdapterPredictor

__all__ = ["SAMAdapterPredictor", "load_pipeline", "save_image", "side_by_side", "to_uint8"]
