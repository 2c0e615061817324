"""The epoch plan: which samples form batch `b` of epoch `e`, on this rank.

# NOTE [ Batches and shards ]
An epoch's order is one global permutation (or the dataset order), cut into global batches of
`batch_size`: global batch `g` is `order[g * batch_size:(g + 1) * batch_size]`. Batches are never
built per worker, so their content does not depend on how many workers compute them.
With `world_size > 1`, rank `r` takes every `world_size`-th global batch starting at `r`: its
local batch `b` is global batch `r + b * world_size`. Ranks are disjoint and together cover the
epoch. The global batch count rarely divides evenly, so `shard_mode` says what happens to the rest:
- "pad" (training, the default; as `DistributedSampler`): every rank gets `ceil(G / world_size)`
  batches; the missing ones wrap around to the epoch's first global batches (at most
  `world_size - 1` batches are seen twice);
- "drop" (training): every rank gets `floor(G / world_size)` batches; the last `G % world_size`
  global batches are not seen that epoch (a different set each epoch when shuffling);
- "exact" (evaluation): no duplicates, no losses; rank counts differ by at most one batch and a
  rank may have none.
"""

from __future__ import annotations

import numpy as np

from xloader._random import epoch_permutation

__all__ = ["EpochPlan", "SHARD_MODES"]

SHARD_MODES = ("pad", "drop", "exact")


def local_batch_count(global_batches: int, rank: int, world_size: int, shard_mode: str) -> int:
    """Batches per epoch on `rank`: see NOTE [ Batches and shards ]."""
    if shard_mode == "pad":
        return -(-global_batches // world_size)
    if shard_mode == "drop":
        return global_batches // world_size
    return len(range(rank, global_batches, world_size))


class EpochPlan:
    """Maps (epoch, batch) to sample indices for a dataset of `num_samples`, on one rank.

    Args:
        num_samples: dataset length, >= 1.
        batch_size: samples per batch, >= 1.
        shuffle: if True, each epoch uses its own permutation fixed by (seed, epoch);
            if False, samples come in dataset order every epoch.
        seed: non-negative int.
        drop_last: drop the last incomplete global batch (its samples are not seen that epoch).
        rank, world_size, shard_mode: this process's share of each epoch, see
            NOTE [ Batches and shards ]; the defaults (0, 1) mean no sharding.

    Example:
        >>> plan = EpochPlan(10, batch_size=4, shuffle=False, seed=0, drop_last=False)
        >>> len(plan), plan.batch_indices(0, 2).tolist()
        (3, [8, 9])
        >>> EpochPlan(10, batch_size=2, shuffle=False, seed=0, drop_last=False,
        ...           rank=1, world_size=2, shard_mode="exact").batch_indices(0, 1).tolist()
        [6, 7]
    """

    def __init__(
        self,
        num_samples: int,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        rank: int = 0,
        world_size: int = 1,
        shard_mode: str = "pad",
    ):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.shard_mode = shard_mode
        if drop_last:
            self.global_batches = num_samples // batch_size
        else:
            self.global_batches = -(-num_samples // batch_size)
        self.num_batches = local_batch_count(self.global_batches, rank, world_size, shard_mode)
        # (epoch, order) as one tuple, so threads never see an order paired with another epoch.
        self._cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def order(self, epoch: int) -> np.ndarray:
        """All sample indices of `epoch` in global order (int64, length `num_samples`), before sharding."""
        if not self.shuffle:
            return np.arange(self.num_samples, dtype=np.int64)
        cache = self._cache
        if cache is not None and cache[0] == epoch:
            return cache[1]
        order = epoch_permutation(self.seed, epoch, self.num_samples)
        order.flags.writeable = False  # shared by every caller of this epoch
        self._cache = (epoch, order)
        return order

    def global_batch(self, batch: int) -> int:
        """The global batch that is this rank's local `batch` (the same for every epoch)."""
        if not 0 <= batch < self.num_batches:
            raise IndexError(f"batch {batch} is out of range: this loader has {self.num_batches} batches per epoch.")
        return (self.rank + batch * self.world_size) % self.global_batches

    def batch_indices(self, epoch: int, batch: int) -> np.ndarray:
        """Sample indices of `batch` in `epoch` (int64). Raises `IndexError` outside `range(len(self))`."""
        start = self.global_batch(batch) * self.batch_size
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}.")
        return self.order(epoch)[start : start + self.batch_size]
