"""I2V-Adapter image-to-video as a diffusers custom pipeline (an AnimateDiff folder with a motion adapter).

    pipe = DiffusionPipeline.from_pretrained(animatediff_folder, custom_pipeline=vadapters.pipelines.custom_pipeline("i2v_adapter"),
                                             trust_remote_code=True)

The class lives in the installed `vadapters` package (`vadapters.pipelines.image2video`); this file only names it.
"""

from vadapters.pipelines.image2video import I2VPipeline

__all__ = ["I2VPipeline"]
