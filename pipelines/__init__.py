"""Diffusers-style pipelines and pipeline helpers (installed as `vadapters.pipelines`)."""

import os
from typing import Any

from vadapters.models.loading import load_pipeline
from vadapters.pipelines.loading import image_grid, save_image, side_by_side, to_uint8
from vadapters.pipelines.sam import SAMAdapterPredictor

__all__ = [
    "I2VPipeline",
    "MultiViewPipeline",
    "MultiViewXLPipeline",
    "SAMAdapterPredictor",
    "custom_pipeline",
    "image_grid",
    "load_pipeline",
    "save_image",
    "side_by_side",
    "to_uint8",
]


CUSTOM_PIPELINES = {
    "mv_adapter": "MultiViewPipeline",
    "mv_adapter_xl": "MultiViewXLPipeline",
    "i2v_adapter": "I2VPipeline",
}


def custom_pipeline(name: str) -> str:
    """The local pipeline file to pass as diffusers' `custom_pipeline=` (with `trust_remote_code=True`) to load a
    plain diffusers folder straight into one of our pipeline classes.

    Names: `"mv_adapter"` (`MultiViewPipeline`), `"mv_adapter_xl"` (`MultiViewXLPipeline`), `"i2v_adapter"`
    (`I2VPipeline`). Each is `<name>.py` in this package's `community/` folder and imports the class from the
    installed package. Files, not `pipeline.py` folders: diffusers imports every local folder's `pipeline.py` as
    the same module, so two of them in one process would collide.

    Example:
        >>> os.path.basename(custom_pipeline("mv_adapter"))
        'mv_adapter.py'
    """
    if name not in CUSTOM_PIPELINES:
        from vadapters.errors import BadInputError

        raise BadInputError(f"unknown custom pipeline {name!r}; choose one of {sorted(CUSTOM_PIPELINES)}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "community", f"{name}.py")


def __getattr__(name: str) -> Any:  # diffusers' pipeline classes take seconds to import: load them on first use
    if name in ("MultiViewPipeline", "MultiViewXLPipeline"):
        from vadapters.pipelines import multiview

        return getattr(multiview, name)
    if name in ("I2VPipeline", "save_video", "video_frames"):
        from vadapters.pipelines import image2video

        return getattr(image2video, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
