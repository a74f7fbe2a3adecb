"""Method-matrix rows for SAM-Adapter on the tiny segment-anything `Sam` (host kind "sam")."""

from __future__ import annotations

import torch
from matrix_cases import MatrixCase


def _tiny_sam():
    from vadapters.models import tiny_sam

    return tiny_sam(seed=0)


def _images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _forward_prompt_free(sam, images):
    from vadapters.core.hosts.sam import decode_masks

    logits, iou = decode_masks(sam, sam.image_encoder(images), return_iou=True)
    return torch.cat([logits.flatten(1), iou], dim=1)


def _forward_with_points(sam, images):
    from vadapters.core.hosts.sam import decode_masks

    coords = torch.tensor([[[20.0, 30.0]], [[40.0, 12.0]]])
    points = (coords, torch.ones(2, 1))
    logits, iou = decode_masks(sam, sam.image_encoder(images), points=points, multimask_output=True, return_iou=True)
    return torch.cat([logits.flatten(1), iou], dim=1)


def _config():
    from vadapters.methods.sam_adapter import SAMAdapterConfig

    return SAMAdapterConfig(scale_factor=8)


def _official_config():
    from vadapters.methods.sam_adapter import SAMAdapterConfig

    return SAMAdapterConfig(
        scale_factor=4, init="official", official_token_layout=True, official_positional_encoding=True
    )


CASES = [
    MatrixCase(
        id="sam_adapter-sam",
        make_host=_tiny_sam,
        make_config=_config,
        make_inputs=_images,
        forward=_forward_prompt_free,
    ),
    MatrixCase(
        id="sam_adapter-sam-points-official",
        make_host=_tiny_sam,
        make_config=_official_config,
        make_inputs=_images,
        forward=_forward_with_points,
        zero_init_noop=False,
    ),
]
