"""SaRA rows of the method matrix (collected by `matrix_cases.all_cases`).

A fresh SaRA adapter holds the base's own entries, so it is a bit-exact no-op (`zero_init_noop=True`); its
update is a weight delta, so fuse / unfuse apply.
"""

from __future__ import annotations

import torch
from matrix_cases import MatrixCase, _forward_unet, _tiny_unet, _unet_inputs


def _sara_config():
    from vadapters.methods.sara import SaRAConfig

    return SaRAConfig(quantile=0.1, rank_min_dim=8)


def _timm_host():
    from vadapters.models import tiny_timm_classifier

    return tiny_timm_classifier("test_vit", num_classes=5, img_size=32, seed=0)


def _timm_inputs():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _timm_forward(model, x):
    return model(x)


CASES = [
    MatrixCase(
        id="sara-unet",
        make_host=_tiny_unet,
        make_config=_sara_config,
        make_inputs=_unet_inputs,
        forward=_forward_unet,
        zero_init_noop=True,
        mergeable=True,
    ),
    MatrixCase(
        id="sara-timm",
        make_host=_timm_host,
        make_config=_sara_config,
        make_inputs=_timm_inputs,
        forward=_timm_forward,
        zero_init_noop=True,
        mergeable=True,
    ),
]
