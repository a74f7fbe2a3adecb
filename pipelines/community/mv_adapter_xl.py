"""MV-Adapter text/image-to-multiview as a diffusers custom pipeline (SDXL).

    pipe = DiffusionPipeline.from_pretrained(sdxl_folder, custom_pipeline=vadapters.pipelines.custom_pipeline("mv_adapter_xl"),
                                             trust_remote_code=True)

The class lives in the installed `vadapters` package (`vadapters.pipelines.multiview`); this file only names it.
"""

from vadapters.pipelines.multiview import MultiViewXLPipeline

__all__ = ["MultiViewXLPipeline"]
