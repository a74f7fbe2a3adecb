"""SaRA training glue: progressive re-selection, the regulariser per step, and the hooks a recipe calls.

With the shared trainer, nothing here is called by hand: the package registers `SaRATrainingHooks` as its
`MethodSpec.training_hooks`, and `DiffusionAdapterRecipe` calls them (re-selection before the loss of step `progressive_step`, the nuclear norm
added to each loss, the pinned entries kept in every checkpoint). In a custom loop:

    >>> import torch, vadapters
    >>> from vadapters.methods.sara import SaRAConfig, reselect
    >>> from vadapters.methods.sara.regularizers import eligible_matrices, nuclear_norm_penalty
    >>> model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 4))
    >>> _ = vadapters.inject(model, SaRAConfig(quantile=0.2, rank_min_dim=2), adapter_name="s")
    >>> params = [p for p in model.parameters() if p.requires_grad]
    >>> opt = torch.optim.AdamW(params, lr=1e-2)
    >>> for step in range(4):
    ...     if step == 2:
    ...         stats = reselect(model, "s", optimizer=opt)  # entries past the threshold freeze
    ...     loss = model(torch.randn(8, 16)).square().mean() + nuclear_norm_penalty(model, "s", step)
    ...     loss.backward(); opt.step(); opt.zero_grad()
    >>> stats["trainable_after"] <= stats["trainable_before"]
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vadapters.methods.sara.model import SaRAInjector, adapter_config
from vadapters.methods.sara.regularizers import eligible_matrices, nuclear_norm_penalty

_PIN_HOOK_ATTR = "_vadapters_sara_pin_hooks"


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The underlying torch optimizer (Accelerate wraps it in `AcceleratedOptimizer.optimizer`)."""
    inner = getattr(optimizer, "optimizer", None)
    return inner if isinstance(inner, torch.optim.Optimizer) else optimizer


def reselect(
    module: nn.Module,
    adapter_name: str,
    *,
    threshold: float | None = None,
    optimizer: Any = None,
    reset_moments: bool | None = None,
) -> dict[str, int]:
    """Progressive parameter adjustment: freeze the trained entries whose magnitude reached the threshold.

    For each tensor, M' = {i in M : |value_i| < threshold} (entries frozen earlier stay frozen), so M' is a
    subset of M. Frozen entries keep their current values: the forward pins them (they get no gradient) and,
    when `optimizer` is given, a post-step hook writes them back so the `values` parameters stay truthful.
    The Adam moments of the still-trainable entries are kept unless `reset_moments` (default: the config's).

    Returns:
        `{"selected": |M|, "trainable_before": ..., "trainable_after": |M'|, "frozen_now": ...}`.
    """
    config = adapter_config(module, adapter_name)
    tau = float(threshold if threshold is not None else config.realised_threshold)
    deltas = SaRAInjector().deltas(module, adapter_name)
    before = after = total = 0
    with torch.no_grad():
        for delta in deltas.values():
            values = delta.effective_values()
            total += delta.nnz
            before += delta.num_trainable
            frozen = values.detach().float().abs() >= tau
            if delta.frozen_pos.numel():
                frozen[delta.frozen_pos.long()] = True
            positions = torch.nonzero(frozen).reshape(-1)
            delta.frozen_values = values.detach()[positions].clone()
            delta.frozen_pos = positions.to(torch.int32)
            after += delta.num_trainable
    if optimizer is not None:
        inner = _torch_optimizer(optimizer)
        reset = config.reset_moments if reset_moments is None else bool(reset_moments)
        if reset:
            for delta in deltas.values():
                inner.state.pop(delta.values, None)
        install_pin_hook(inner, module, adapter_name)
    return {"selected": total, "trainable_before": before, "trainable_after": after, "frozen_now": before - after}


def install_pin_hook(optimizer: Any, module: nn.Module, adapter_name: str) -> None:
    """After every `optimizer.step()`, write the pinned entries back into `values` (once per optimizer)."""
    inner = _torch_optimizer(optimizer)
    installed = inner.__dict__.setdefault(_PIN_HOOK_ATTR, set())
    key = (id(module), adapter_name)
    if key in installed:
        return
    deltas = list(SaRAInjector().deltas(module, adapter_name).values())

    def pin(*_: Any) -> None:
        for delta in deltas:
            delta.pin()

    inner.register_step_post_hook(pin)
    installed.add(key)


def frozen_state(module: nn.Module, adapter_name: str) -> dict[str, dict[str, torch.Tensor]]:
    """`{parameter name: {"pos", "values"}}` of the entries re-selection froze (for checkpoints)."""
    return {
        name: {"pos": d.frozen_pos.cpu().clone(), "values": d.frozen_values.cpu().clone()}
        for name, d in SaRAInjector().deltas(module, adapter_name).items()
        if d.frozen_pos.numel()
    }


def load_frozen_state(module: nn.Module, adapter_name: str, state: dict[str, dict[str, torch.Tensor]]) -> None:
    deltas = SaRAInjector().deltas(module, adapter_name)
    for name, delta in deltas.items():
        item = state.get(name)
        device = delta.indices.device
        if item is None:
            delta.frozen_pos = torch.zeros(0, dtype=torch.int32, device=device)
            delta.frozen_values = torch.zeros(0, dtype=delta.values.dtype, device=device)
        else:
            delta.frozen_pos = item["pos"].to(device, torch.int32)
            delta.frozen_values = item["values"].to(device)


class SaRATrainingHooks:
    """Per-step extras of SaRA for a training recipe (see `vadapters.train.diffusion`).

    Protocol: `on_train_begin(optimizer, max_steps)`, `before_loss(step)` (re-selects once, when `step`
    optimizer steps are done and `step >= progressive_step`), `extra_loss(step)` (the nuclear-norm term or
    None), `state_dict()` / `load_state_dict()` (the frozen entries, so a resumed run continues exactly).
    """

    def __init__(self, module: nn.Module, adapter_name: str, seed: int = 0) -> None:
        self.module, self.adapter_name, self.seed = module, adapter_name, int(seed)
        self.config = config = adapter_config(module, adapter_name)
        self.optimizer: Any = None
        self.progressive_step: int | None = None
        self.reselected = False
        self.last_reselection: dict[str, int] | None = None
        self._eligible = eligible_matrices(module, adapter_name, config.rank_min_dim, config.rank_include_conv)
        self._frozen_cache: dict[str, Any] | None = None  # the recipe asks for the state after every step

    def on_train_begin(self, optimizer: Any = None, max_steps: int | None = None) -> None:
        self.optimizer = optimizer
        if max_steps is not None:
            self.progressive_step = self.config.progressive_step(int(max_steps))
        if optimizer is not None:
            install_pin_hook(optimizer, self.module, self.adapter_name)

    def before_loss(self, step: int) -> None:
        if self.progressive_step is not None and not self.reselected and step >= self.progressive_step:
            self.last_reselection = reselect(self.module, self.adapter_name, optimizer=self.optimizer)
            self.reselected = True
            self._frozen_cache = None

    def extra_loss(self, step: int) -> torch.Tensor | None:
        if self.config.lambda_rank == 0:
            return None
        return nuclear_norm_penalty(self.module, self.adapter_name, step, seed=self.seed, eligible=self._eligible)

    def state_dict(self) -> dict[str, Any]:
        if self._frozen_cache is None:  # the frozen entries change only at re-selection
            self._frozen_cache = frozen_state(self.module, self.adapter_name)
        return {"reselected": self.reselected, "frozen": self._frozen_cache}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.reselected = bool(state.get("reselected", False))
        load_frozen_state(self.module, self.adapter_name, state.get("frozen", {}))
        self._frozen_cache = None
