"""MV-Adapter rows of the method matrix (collected by `matrix_cases.all_cases`).

The shared inputs have batch 2 and non-square 8x12 latents, so the rows use `num_views=2` (one object of two
views). A fresh adapter has zero `to_out_mv` / `to_out_ref`, hence `zero_init_noop=True` for the attention-only row;
the condition encoder (a T2IAdapter, randomly initialised as upstream) changes outputs as soon as a condition is
fed. Nothing to fuse.
"""

from __future__ import annotations

import torch
from matrix_cases import MatrixCase, _forward_unet, _tiny_unet, _unet_inputs


def _row_config():
    from vadapters.methods.mv_adapter import MVAdapterConfig

    return MVAdapterConfig(num_views=2, topology="row")


def _full_config():
    from vadapters.methods.mv_adapter import MVAdapterConfig

    return MVAdapterConfig(num_views=2, topology="full", condition_channels=6, condition_downscale_factor=2)


def _forward_with_condition(unet, inputs):
    """UNet forward with camera maps through the condition encoder (None, hence the base, when none is active)."""
    from vadapters.methods.mv_adapter import condition_residuals

    sample, t, emb = inputs
    maps = torch.linspace(0, 1, 2 * 6 * 16 * 24).reshape(2, 6, 16, 24)  # pixel size = 2 x latent size
    residuals = condition_residuals(unet, maps)
    return unet(sample, t, encoder_hidden_states=emb, down_intrablock_additional_residuals=residuals).sample


CASES = [
    MatrixCase(
        id="mv_adapter-row-unet",
        make_host=_tiny_unet,
        make_config=_row_config,
        make_inputs=_unet_inputs,
        forward=_forward_unet,
    ),
    MatrixCase(
        id="mv_adapter-full+encoder-unet",
        make_host=_tiny_unet,
        make_config=_full_config,
        make_inputs=_unet_inputs,
        forward=_forward_with_condition,
        zero_init_noop=False,  # the T2I condition encoder is not zero-initialised (as upstream); its features act
    ),
]
