"""Resolution buckets: a batch sampler whose every batch has one resolution, plus a resolution-list parser.

Example:
    >>> from vadapters.train.buckets import BucketBatchSampler, parse_resolutions
    >>> parse_resolutions("16,24x32,32")
    [(16, 16), (24, 32), (32, 32)]
    >>> sampler = BucketBatchSampler(6, batch_size=2, resolutions=[(16, 16), (32, 32)], seed=0)
    >>> len(sampler)
    3
    >>> batch = next(iter(sampler))
    >>> len(batch), len({(h, w) for _, h, w in batch})
    (2, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from vadapters.core.validation import parse_sizes

__all__ = ["BucketBatchSampler", "parse_resolutions"]


def parse_resolutions(spec: str | int | Sequence) -> list[tuple[int, int]]:
    """Parse bucket resolutions: `"16,24x32,32"` -> `[(16, 16), (24, 32), (32, 32)]` (`S` means `SxS`, `HxW`).

    Also accepts an int, or a sequence of ints, `(h, w)` pairs or such strings. Duplicates are dropped, the order
    is kept. The one size-list parser is `vadapters.core.validation.parse_sizes`.

    Raises:
        BadInputError (a `ValueError`): for an empty list, a malformed item, or a size that is not a positive
            integer.
    """
    return parse_sizes(spec, "resolutions")


class BucketBatchSampler:
    """Yields batches `[(index, height, width), ...]` in which every item has the same resolution.

    The order of the items and the resolution of each batch are drawn from a generator seeded with
    `(seed, epoch)` only, so an epoch is reproducible on its own (which is what resuming mid-epoch needs).
    Use it as a `DataLoader`'s `batch_sampler` over a dataset whose `__getitem__` takes `(index, h, w)`.

    Args:
        num_items (`int`): dataset size.
        batch_size (`int`): items per batch.
        resolutions (`list[tuple[int, int]]`): the buckets, `(height, width)`; a string is parsed with
            `parse_resolutions`.
        seed (`int`): base seed.
        drop_last (`bool`): drop the last, smaller batch of an epoch.
        shuffle (`bool`): shuffle the items each epoch (the resolutions are always drawn at random).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        resolutions: Sequence[tuple[int, int]] | str,
        seed: int = 0,
        drop_last: bool = True,
        shuffle: bool = True,
    ) -> None:
        if not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if drop_last and batch_size > num_items:
            raise ValueError(
                f"batch_size {batch_size} is larger than the dataset ({num_items} items) with drop_last=True: "
                "every epoch would be empty; lower the batch size or add data"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.resolutions = parse_resolutions(resolutions)
        self.seed = int(seed)
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return math.ceil(self.num_items / self.batch_size)

    def batches(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        """All batches of `epoch` (does not change the sampler's own epoch)."""
        state = np.random.SeedSequence([self.seed % 2**32, int(epoch), 0xB0C]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))
        if self.shuffle:
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        n = len(self)
        picks = torch.randint(len(self.resolutions), (n,), generator=generator).tolist()
        out = []
        for b in range(n):
            h, w = self.resolutions[picks[b]]
            out.append([(i, h, w) for i in order[b * self.batch_size : (b + 1) * self.batch_size]])
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        yield from self.batches(self.epoch)

    def __repr__(self) -> str:
        sizes = ",".join(f"{h}x{w}" for h, w in self.resolutions)
        return (
            f"BucketBatchSampler(num_items={self.num_items}, batch_size={self.batch_size}, resolutions={sizes}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )
