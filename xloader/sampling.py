"""The epoch plan: which samples form batch `b` of epoch `e`.

Batches are slices of one global order (`order[b * batch_size:(b + 1) * batch_size]`), never
built per worker, so their content does not depend on how many workers compute them.
"""

from __future__ import annotations

import numpy as np

from xloader._random import epoch_permutation

__all__ = ["EpochPlan"]


class EpochPlan:
    """Maps (epoch, batch) to sample indices for a dataset of `num_samples`.

    Args:
        num_samples: dataset length, >= 1.
        batch_size: samples per batch, >= 1.
        shuffle: if True, each epoch uses its own permutation fixed by (seed, epoch);
            if False, samples come in dataset order every epoch.
        seed: non-negative int.
        drop_last: drop the last incomplete batch (its samples are not seen that epoch).

    Example:
        >>> plan = EpochPlan(10, batch_size=4, shuffle=False, seed=0, drop_last=False)
        >>> len(plan), plan.batch_indices(0, 2).tolist()
        (3, [8, 9])
    """

    def __init__(self, num_samples: int, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        if drop_last:
            self.num_batches = num_samples // batch_size
        else:
            self.num_batches = -(-num_samples // batch_size)
        # (epoch, order) as one tuple, so threads never see an order paired with another epoch.
        self._cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def order(self, epoch: int) -> np.ndarray:
        """All sample indices of `epoch` in the order they are served (int64, length `num_samples`)."""
        if not self.shuffle:
            return np.arange(self.num_samples, dtype=np.int64)
        cache = self._cache
        if cache is not None and cache[0] == epoch:
            return cache[1]
        order = epoch_permutation(self.seed, epoch, self.num_samples)
        order.flags.writeable = False  # shared by every caller of this epoch
        self._cache = (epoch, order)
        return order

    def batch_indices(self, epoch: int, batch: int) -> np.ndarray:
        """Sample indices of `batch` in `epoch` (int64). Raises `IndexError` outside `range(len(self))`."""
        if not 0 <= batch < self.num_batches:
            raise IndexError(f"batch {batch} is out of range: this loader has {self.num_batches} batches per epoch.")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}.")
        start = batch * self.batch_size
        return self.order(epoch)[start : start + self.batch_size]
