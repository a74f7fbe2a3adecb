"""MV-Adapter text/image-to-multiview as a diffusers custom pipeline (Stable Diffusion 1.x / 2.x).

    pipe = DiffusionPipeline.from_pretrained(sd_folder, custom_pipeline=vadapters.pipelines.custom_pipeline("mv_adapter"),
                                             trust_remote_code=True)

diffusers copies this file into its modules cache and imports it; the class lives in the installed
`vadapters` package (`vadapters.pipelines.multiview`), so this file only names it.
"""

from vadapters.pipelines.multiview import MultiViewPipeline

__all__ = ["MultiViewPipeline"]
