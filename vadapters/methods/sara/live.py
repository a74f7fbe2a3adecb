"""SaRA's training fast path: one live composed weight per tensor, refreshed in place at the selected entries only.

The plain parametrisation (`SaRATensor.compose`) builds `base.index_put(indices, values)` out of place on every
forward: a full copy of each targeted weight per call (the `aten::copy_` rows of `benchmarks/results/perf.md`'s
SaRA profile). While training one adapter at weight 1, `LiveWeight.get` instead keeps that composed tensor between
calls and writes only the `nnz` selected entries into it, and only after `values` changed (an optimizer step bumps
the parameter's version counter). Autograd is the same as `index_put`'s: `values` receives
`grad.flatten()[indices]`.

Safety: the live tensor shares its version counter with what autograd saved, so a graph whose weight was rewritten
before its backward raises torch's "modified by an inplace operation" error rather than computing a wrong
gradient. Several forwards with unchanged values (gradient accumulation, checkpoint recomputation) write nothing.
The live tensor is dropped by `release` (fuse, unfuse, `eval()`, unload) and rebuilt whenever the base, the
adapter, its indices or its pinned entries change.

Example:
    >>> import torch
    >>> from vadapters.methods.sara.live import LiveWeight
    >>> base, idx = torch.zeros(2, 3), torch.tensor([1, 4], dtype=torch.int32)
    >>> values = torch.nn.Parameter(torch.tensor([5.0, 7.0]))
    >>> w = LiveWeight().get(base, idx, values, key=("a",))
    >>> w.tolist(), w.requires_grad
    ([[0.0, 5.0, 0.0], [0.0, 7.0, 0.0]], True)
    >>> (w * torch.arange(6.0).view(2, 3)).sum().backward()
    >>> values.grad.tolist()
    [1.0, 4.0]
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["LiveWeight"]


class _Gather(torch.autograd.Function):
    """`forward(values, live, indices) -> live` (an alias; `live` already holds `values` at `indices`);
    backward: the gradient of `values` is the weight's gradient at `indices`."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, live: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(indices)
        return live.detach()  # shares storage and version counter with `live`

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (indices,) = ctx.saved_tensors
        return grad.reshape(-1)[indices], None, None


class LiveWeight:
    """Holds one live composed weight; `get` returns it, refreshed, as an autograd function of `values`."""

    def __init__(self) -> None:
        self.tensor: torch.Tensor | None = None
        self.key: tuple | None = None
        self.values_version: tuple[int, int] | None = None

    def release(self) -> None:
        self.tensor, self.key, self.values_version = None, None, None

    def get(
        self, base: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, key: tuple, version: tuple = ()
    ) -> torch.Tensor:
        """`base` with `values` (cast to `base.dtype`, differentiable) at the flat `indices`.

        `key` names everything besides `base` and `indices` that the composed tensor depends on (adapter, pinned
        entries): a change rebuilds it from `base`. `version` identifies the values' state (the trainable
        parameter's version counter); the entries are rewritten only when it changed (default: `values`' own).
        """
        full_key = (key, base.data_ptr(), base._version, base.dtype, base.device, tuple(base.shape),
                    indices.data_ptr(), indices._version, indices.numel())  # fmt: skip
        version = version or (id(values), values._version)
        if self.tensor is None or self.key != full_key:
            with torch.no_grad():
                self.tensor = base.detach().clone()
            self.key, self.values_version = full_key, None
        if self.values_version != version:
            with torch.no_grad():
                self.tensor.view(-1).index_put_((indices.long(),), values.detach())
            self.values_version = version
        return _Gather.apply(values, self.tensor, indices.long()).view(base.shape)
