"""SAM-Adapter's way of training: the recipe of `vadapters.methods.sam_adapter.train` on a loaded SAM.

Example:
    >>> import tempfile
    >>> from vadapters.train import train_adapter
    >>> summary = train_adapter("sam_adapter", data="synthetic:camouflage", output_dir=tempfile.mkdtemp(), steps=2,
    ...                         batch_size=2, num_items=6, config_overrides={"scale_factor": 8}, checkpoint_every=0)
    >>> summary["steps"], sorted(summary["validation"])[:3]
    (2, ['BER', 'BER_per_image', 'E'])
"""

from __future__ import annotations

from typing import Any

from vadapters.methods.sam_adapter.config import SAMAdapterConfig
from vadapters.methods.sam_adapter.data import make_segmentation_source
from vadapters.methods.sam_adapter.train import SAMAdapterRecipe
from vadapters.train.recipes import RecipeInputs, register_recipe

__all__ = ["build"]


def build(
    inputs: RecipeInputs,
    *,
    num_items: int = 400,
    loss: str = "iou",
    val_fraction: float = 0.1,
    mode: str = "adapter",
    lean: Any = False,
) -> SAMAdapterRecipe:
    """A SAM-Adapter recipe on `inputs.base` (anything `vadapters.models.load_sam` reads: None for the embedded
    trained tiny SAM, `"vit_b"`, an official `.pth`, a `Sam`).

    Args:
        inputs.data: `"synthetic:camouflage"` (default) / `"synthetic:shadow"` / `"synthetic:salient"`, a folder with
            `images/` and `masks/`, or a source object.
        loss (`str`): `"iou"` (BCE + IoU), `"bbce"` (balanced BCE, for shadows) or `"bce"`.
        val_fraction (`float`): share of the data held out for validation (metrics at the end, in the summary's
            `validation`, and every `validate_every` steps).
        mode (`str`): `"adapter"`, or `"full"` (every SAM weight: the full fine-tuning baseline).
        lean: memory-lean training of the frozen encoder (see `SAMAdapterRecipe`).
    """
    from vadapters.models import load_sam

    config = SAMAdapterConfig.from_overrides(inputs.config_overrides)  # refuses typos before loading the model
    model = load_sam(inputs.base)
    size = (model.image_encoder.img_size,) * 2
    data = "synthetic:camouflage" if inputs.data is None else inputs.data
    source = make_segmentation_source(data, num_items=num_items, seed=inputs.seed, size=size)
    seed, name = inputs.seed, inputs.adapter_name
    return SAMAdapterRecipe(model, config, source, inputs.batch_size, loss, val_fraction, seed, name, mode, lean=lean)


# AdamW at the official 2e-4 with cosine decay.
register_recipe("sam_adapter", build, learning_rate=2e-4, batch_size=4, lr_scheduler="cosine")
