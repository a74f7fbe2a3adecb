"""Random draws for one process's share of a global batch, so N processes train exactly as one process would.

The trainer splits every global batch across its processes (rank r gets rows `[r * n, (r + 1) * n)`). A recipe
that drew noise, timesteps, dropout or flips for its own rows from its own generator would give each rank the
numbers of rank 0 (every rank seeds the same generator) and make N processes at batch n differ from one process at
batch N x n. `BatchShard` draws the global batch's numbers on every rank, in the same order and from the same
generator as a single process does, and keeps this rank's rows: the generators stay in step across ranks and a
single process (`BatchShard()`, the default) draws exactly what `torch.randn(shape, generator=...)` draws.

Example:
    >>> import torch
    >>> g0, g1, g = (torch.Generator().manual_seed(0) for _ in range(3))
    >>> rank0, rank1 = BatchShard(0, 2).randn((2, 3), g0), BatchShard(1, 2).randn((2, 3), g1)
    >>> torch.equal(torch.cat([rank0, rank1]), BatchShard().randn((4, 3), g))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["BatchShard"]


@dataclass(frozen=True)
class BatchShard:
    """This process's rows of a global batch split evenly across `count` processes (`index` is the rank).

    Args:
        index (`int`): the process index (rank).
        count (`int`): the number of processes sharing each global batch.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"BatchShard needs 0 <= index < count, got index={self.index!r}, count={self.count!r}")

    @classmethod
    def of(cls, accelerator: Any) -> BatchShard:
        """The shard of an `accelerate.Accelerator` (its `process_index` of `num_processes`).

        Example:
            >>> from types import SimpleNamespace
            >>> BatchShard.of(SimpleNamespace(process_index=1, num_processes=2))
            BatchShard(index=1, count=2)
        """
        return cls(int(accelerator.process_index), int(accelerator.num_processes))

    def rows(self, full: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor holding the whole global batch along dim 0."""
        if self.count == 1:
            return full
        n = full.shape[0] // self.count
        return full[self.index * n : (self.index + 1) * n]

    def _global(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in shape)
        return (shape[0] * self.count, *shape[1:])

    def randn(
        self, shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Standard normal numbers shaped `shape` (this process's rows), drawn on the generator's device."""
        return self.rows(torch.randn(self._global(shape), generator=generator, dtype=dtype, device=generator.device))

    def rand(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` uniform numbers in [0, 1) for this process's rows."""
        return self.rows(torch.rand(self._global((count,)), generator=generator, device=generator.device))

    def randint(self, high: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` integers in [0, `high`) for this process's rows."""
        return self.rows(torch.randint(0, high, self._global((count,)), generator=generator, device=generator.device))
