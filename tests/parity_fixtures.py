"""Shared loading of the parity fixtures: golden tensors computed by each method's official code.

The fixtures live outside the repository, at `<repo>/../shared/fixtures/parity/<method>/` (`parity.safetensors`,
`spec.json`, `README.md`). Keys carry a group prefix ending in "/" (`host/`, `official_ckpt/`, `inputs/...`,
`outputs/...`); removing it gives the original key. A test that needs a fixture folder calls `load_parity`, which
skips (naming the path) only when the folder is absent; `benchmarks/parity.py` calls `read_parity`, which raises.
The calls compared with each fixture are in `parity_cases.py`.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file

REPO = pathlib.Path(__file__).resolve().parents[1]
PARITY = REPO.parent / "shared" / "fixtures" / "parity"


@dataclass
class Parity:
    """One fixture folder: `spec` (the parsed spec.json) and `tensors` (every key of parity.safetensors)."""

    folder: pathlib.Path
    spec: dict
    tensors: dict[str, torch.Tensor]

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under `prefix` (ending in "/"), with the prefix removed."""
        return {k.removeprefix(prefix): v for k, v in self.tensors.items() if k.startswith(prefix)}

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    @property
    def official_commit(self) -> str:
        return self.spec["official"]["commit"]


def read_parity(method: str, root: pathlib.Path = PARITY) -> Parity:
    """The fixture folder `root/method`; FileNotFoundError (naming the path) when it is absent."""
    folder = root / method
    if not (folder / "parity.safetensors").is_file():
        raise FileNotFoundError(
            f"parity fixture for {method} not found at {folder} (it lives in shared/fixtures/parity)"
        )
    spec = json.loads((folder / "spec.json").read_text())
    return Parity(folder, spec, load_file(str(folder / "parity.safetensors")))


def load_parity(method: str) -> Parity:
    """The fixture folder of `method`; skips the calling test when it is absent."""
    import pytest

    try:
        return read_parity(method)
    except FileNotFoundError as err:
        pytest.skip(str(err))


def write_official(tensors: dict[str, torch.Tensor], path: pathlib.Path) -> str:
    """Write official-layout tensors to a safetensors file, as a user's downloaded checkpoint would be."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference (shapes must agree)."""
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
