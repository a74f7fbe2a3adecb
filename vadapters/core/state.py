"""Per-host bookkeeping: which adapters a module carries, which are active, and how to restore it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

STATE_ATTR = "_vadapters_state"


@dataclass
class AdapterRecord:
    name: str
    method: str
    config: Any


@dataclass
class HostState:
    """Lives on the adapted module as a plain attribute (never in its `state_dict`)."""

    adapters: dict[str, AdapterRecord] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    disabled: bool = False
    requires_grad_backup: dict[str, bool] = field(default_factory=dict)
    fused: bool = False

    def methods(self) -> set[str]:
        return {r.method for r in self.adapters.values()}


def get_state(module: nn.Module, create: bool = False) -> HostState | None:
    state = getattr(module, STATE_ATTR, None)
    if state is None and create:
        state = HostState()
        object.__setattr__(module, STATE_ATTR, state)
    return state


def drop_state(module: nn.Module) -> None:
    if hasattr(module, STATE_ATTR):
        object.__delattr__(module, STATE_ATTR)
