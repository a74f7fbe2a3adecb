"""SAM-Adapter's decoder-side parts: a trainable mask-decoder copy, a trainable `no_mask_embed`, and (for official
checkpoints only) the positional-encoding matrix the official decoder was trained with.

Each wraps the original module and leaves it untouched, so `disabled()` and `unload()` give SAM back exactly. With
several active adapters (or a weight other than 1) the decoder-side tensors combine as
`base + sum_a w_a * (theta_a - base)`; one adapter at weight 1 uses its own tensors as they are.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.func import functional_call

from vadapters.core.layers import AdapterLayer


def _blend(base: torch.Tensor, adapters: list[tuple[torch.Tensor, float]]) -> torch.Tensor:
    if len(adapters) == 1 and adapters[0][1] == 1.0:
        return adapters[0][0]
    out = base
    for value, weight in adapters:
        out = out + weight * (value - base)
    return out


class AdaptedMaskDecoder(AdapterLayer):
    """Wraps `sam.mask_decoder`; adapter `a` owns `decoder[a]`, a trainable copy initialised from SAM's decoder."""

    method = "sam_adapter"
    adapter_layer_names = ("decoder",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.decoder = nn.ModuleDict()

    def __getattr__(self, name: str):  # SAM's own attributes (num_mask_tokens, ...) stay reachable
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("__") or "_modules" not in self.__dict__:
                raise
            return getattr(self.__dict__["_modules"]["base_layer"], name)

    def add(self, name: str) -> None:
        replica = copy.deepcopy(self.base_layer)
        replica._forward_hooks.clear()
        replica._forward_pre_hooks.clear()
        self.decoder[name] = replica

    def forward(self, *args, **kwargs):
        active = [(n, w) for n, w in self.effective_adapters() if w != 0.0]
        if not active:
            return self.base_layer(*args, **kwargs)
        if len(active) == 1 and active[0][1] == 1.0:
            return self.decoder[active[0][0]](*args, **kwargs)
        base = dict(self.base_layer.named_parameters())
        params = {
            key: _blend(value, [(dict(self.decoder[n].named_parameters())[key], w) for n, w in active])
            for key, value in base.items()
        }
        return functional_call(self.base_layer, params, args, kwargs)


class AdaptedNoMaskEmbed(AdapterLayer):
    """Wraps `prompt_encoder.no_mask_embed` (an `nn.Embedding(1, D)`); `.weight` is the active adapters' value.

    SAM's `PromptEncoder` reads `self.no_mask_embed.weight` directly, so the wrapper exposes `weight`.
    """

    method = "sam_adapter"
    adapter_layer_names = ("adapter_weight",)

    def __init__(self, base_layer: nn.Embedding) -> None:
        super().__init__(base_layer)
        self.adapter_weight = nn.ParameterDict()

    def add(self, name: str) -> None:
        self.adapter_weight[name] = nn.Parameter(self.base_layer.weight.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        active = [(self.adapter_weight[n], w) for n, w in self.effective_adapters() if w != 0.0]
        base = self.base_layer.weight
        return _blend(base, active) if active else base

    @property
    def embedding_dim(self) -> int:
        return self.base_layer.embedding_dim

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(indices, self.weight)


class _GaussianMatrix(nn.Module):
    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", matrix)


class PositionalEncodingOverride(AdapterLayer):
    """Wraps `prompt_encoder.pe_layer`: while an adapter that carries a matrix is active, SAM's random-Fourier
    positional encoding uses that matrix (the last active one; weights do not blend it)."""

    method = "sam_adapter"
    adapter_layer_names = ("gaussian_matrix",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.gaussian_matrix = nn.ModuleDict()

    def add(self, name: str) -> None:
        base = self.base_layer.positional_encoding_gaussian_matrix
        self.gaussian_matrix[name] = _GaussianMatrix(base.detach().clone())

    @contextlib.contextmanager
    def _swapped(self):
        active = [n for n, w in self.effective_adapters() if w != 0.0]
        buffers = self.base_layer._buffers
        original = buffers["positional_encoding_gaussian_matrix"]
        if active:
            buffers["positional_encoding_gaussian_matrix"] = self.gaussian_matrix[
                active[-1]
            ].positional_encoding_gaussian_matrix
        try:
            yield self.base_layer
        finally:
            buffers["positional_encoding_gaussian_matrix"] = original

    def forward(self, size):
        with self._swapped() as pe:
            return pe(size)

    def forward_with_coords(self, coords: torch.Tensor, image_size):
        with self._swapped() as pe:
            return pe.forward_with_coords(coords, image_size)
