"""I2V-Adapter rows of the method matrix (collected by `matrix_cases.all_cases`).

The host is the tiny `UNetMotionModel` of `tiny_animatediff_pipeline` (frozen: on CPU a trainable motion UNet takes
another matmul path in its motion modules, ~1e-6 apart, and `inject` freezes the host). Inputs: 2 clips of 3 frames
at 8x12 latents (non-square on purpose); the text states are repeated per frame as diffusers expects. A fresh
adapter has a zero `to_out_ff`, hence `zero_init_noop=True`. Nothing to fuse (the branch is an extra attention).
"""

from __future__ import annotations

import copy
import functools

import torch
from matrix_cases import MatrixCase


@functools.lru_cache(maxsize=1)
def _motion_unet():
    from vadapters.models import tiny_animatediff_pipeline

    return tiny_animatediff_pipeline(seed=0).unet.requires_grad_(False)


def _host():
    return copy.deepcopy(_motion_unet())


def _inputs():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, 4, 3, 8, 12, generator=g),  # (clips, channels, frames, height, width)
        torch.tensor(700),
        torch.randn(2, 7, 32, generator=g),  # one text state per clip
    )


def _forward(unet, inputs):
    sample, t, emb = inputs
    return unet(sample, t, encoder_hidden_states=emb.repeat_interleave(sample.shape[2], dim=0)).sample


def _config():
    from vadapters.methods.i2v_adapter import I2VAdapterConfig

    return I2VAdapterConfig()


CASES = [
    MatrixCase(
        id="i2v_adapter-motion_unet", make_host=_host, make_config=_config, make_inputs=_inputs, forward=_forward
    )
]
