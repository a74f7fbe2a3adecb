"""Rows of the method matrix: one `MatrixCase` per (method, host).

The core rows live here; each later method puts its rows in its own `tests/matrix_<method>.py` (a module-level
`CASES` list), which `all_cases()` collects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class MatrixCase:
    """How to build a host, an adapter config, inputs, and how to run the host.

    Args:
        id: pytest id.
        make_host: returns a fresh host (same weights every call).
        make_config: returns a fresh adapter config.
        make_inputs: returns inputs for `run` (deterministic).
        forward: `forward(host, inputs) -> tensor`, differentiable (`run` is the same under no_grad).
        adapter_module: `adapter_module(host) -> nn.Module` that carries the adapter (for parameter checks).
        zero_init_noop: a freshly injected adapter leaves outputs bit-identical.
        mergeable: fuse / unfuse apply.
    """

    id: str
    make_host: Callable[[], Any]
    make_config: Callable[[], Any]
    make_inputs: Callable[[], Any]
    forward: Callable[[Any, Any], torch.Tensor]
    adapter_module: Callable[[Any], torch.nn.Module] = lambda host: host
    zero_init_noop: bool = True
    mergeable: bool = False
    extra: dict = field(default_factory=dict)

    def run(self, host: Any, inputs: Any) -> torch.Tensor:
        with torch.no_grad():
            return self.forward(host, inputs)


def perturb_adapter(module: torch.nn.Module, name: str, scale: float, seed: int) -> None:
    """Add seeded noise (std `scale`) to every parameter of adapter `name` on `module`, so it changes outputs."""
    import vadapters

    injector = vadapters.get_method(vadapters.list_adapters(module)[name]).injector_cls()
    g = torch.Generator().manual_seed(seed)
    for p in injector.adapter_parameters(module, name):
        with torch.no_grad():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _tiny_unet():
    from vadapters.models import tiny_sd_pipeline

    return tiny_sd_pipeline(seed=0).unet


def _unet_inputs():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, 4, 8, 12, generator=g),  # non-square latents on purpose
        torch.tensor([10, 700]),
        torch.randn(2, 7, 32, generator=g),
    )


def _forward_unet(unet, inputs):
    sample, t, emb = inputs
    return unet(sample, t, encoder_hidden_states=emb).sample


def _res_config():
    from vadapters.methods.res_adapter import ResAdapterConfig

    return ResAdapterConfig(rank=4, alpha=2.0)


def _toy_config():
    import toy_methods

    return toy_methods.ToyProcessorConfig()


CASES = [
    MatrixCase(
        id="res_adapter-unet",
        make_host=_tiny_unet,
        make_config=_res_config,
        make_inputs=_unet_inputs,
        forward=_forward_unet,
        mergeable=True,
    ),
    MatrixCase(
        id="toy_processor-unet",
        make_host=_tiny_unet,
        make_config=_toy_config,
        make_inputs=_unet_inputs,
        forward=_forward_unet,
    ),
]


def all_cases() -> list[MatrixCase]:
    """The core rows plus the `CASES` of every `tests/matrix_*.py` module, in file-name order."""
    import importlib
    import pathlib

    cases = list(CASES)
    for path in sorted(pathlib.Path(__file__).parent.glob("matrix_*.py")):
        if path.stem != "matrix_cases":
            cases += importlib.import_module(path.stem).CASES
    return cases
