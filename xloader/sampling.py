"""The epoch plan: which samples form batch `b` of epoch `e`, on this rank.

# NOTE [ Batches and shards ]
An epoch's order is one global sequence of sample indices: the dataset order, a permutation
fixed by (seed, epoch), or with `weights` `len(dataset)` weighted draws fixed by (seed, epoch).
Ranks share it as `torch.utils.data.DistributedSampler` does, sample by sample: rank `r` of `W`
takes positions `r, r + W, r + 2W, ...` and cuts its share into batches of `batch_size`. Batches
are never built per worker, so their content does not depend on how many workers compute them.
When `W` does not divide the sample count `N`, `shard_mode` says what happens to the rest:
- "pad" (training, the default; `DistributedSampler(drop_last=False)`): every rank gets
  `ceil(N / W)` samples; positions past the end wrap around to the epoch's first samples, so at
  most `W - 1` samples are seen twice;
- "drop" (training; `DistributedSampler(drop_last=True)`): every rank gets `floor(N / W)`
  samples; the last `N % W` (at most `W - 1`) are not seen that epoch;
- "exact" (evaluation): no duplicates, no losses; ranks' sample counts differ by at most one
  and their batch counts by at most one.
`drop_last` then drops each rank's own last incomplete batch, as a `DataLoader` after a
`DistributedSampler` does. With every rank at local batch `k`, the ranks together have read
exactly the first `k * batch_size * W` positions of the order: a prefix, whatever `W` is.

# NOTE [ Elastic resume ]
Because what all ranks have read is a prefix of the epoch's order, a saved position is one
number: `position`, the length of that prefix. Any number of ranks can continue from it: the
rest of the epoch, positions `position, position + 1, ...`, is sharded over the new ranks by
the same rule (pad wraps to the epoch's first samples, which were already seen), so each unseen
sample is read once; the next epochs are those of an uninterrupted run with the new ranks.
When `position` is a multiple of `batch_size * W` (always so when `W` did not change), the rest
is the ordinary epoch from batch `position // (batch_size * W)`. Otherwise the epoch is a
`PartialEpoch(e, start=position)`: it has fewer batches, numbered as the *last* batches of the
epoch (`len(plan) - count, ..., len(plan) - 1`), so the adapters' "next batch" arithmetic and
iteration lengths need no change, and `PartialEpoch(e, start) + 1 == e + 1` is an ordinary epoch.
"""

from __future__ import annotations

import numpy as np

from xloader._random import epoch_permutation, repeat_seed, weighted_draws
from xloader.source import SupportsEpochOrder

__all__ = ["SHARD_MODES", "EpochPlan", "PartialEpoch", "class_balanced_weights"]

SHARD_MODES = ("pad", "drop", "exact")


class PartialEpoch(int):
    """Epoch `epoch` resumed at position `start` of its order: NOTE [ Elastic resume ].

    An `int` (the epoch number, so `epoch + 1` is the next, ordinary epoch) that compares equal
    only to the same partial epoch, so keyed caches never mix it with the whole epoch.
    """

    start: int

    def __new__(cls, epoch: int, start: int) -> PartialEpoch:
        self = super().__new__(cls, epoch)
        self.start = int(start)
        return self

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        return PartialEpoch, (int(self), self.start)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartialEpoch) and int(self) == int(other) and self.start == other.start

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((int(self), self.start))

    def __repr__(self) -> str:
        return f"PartialEpoch({int(self)}, start={self.start})"


def epoch_start(epoch: int) -> int:
    """The position of the epoch's order that `epoch` starts at (0 unless a `PartialEpoch`)."""
    return epoch.start if isinstance(epoch, PartialEpoch) else 0


class EpochPlan:
    """Maps (epoch, batch) to sample indices for a dataset of `num_samples`, on one rank.

    Args:
        num_samples: dataset length, >= 1.
        batch_size: samples per batch on each rank, >= 1.
        shuffle: if True, each epoch uses its own permutation fixed by (seed, epoch);
            if False, samples come in dataset order every epoch.
        seed: non-negative int.
        drop_last: drop this rank's last incomplete batch of each epoch.
        rank, world_size, shard_mode: this process's share of each epoch, see
            NOTE [ Batches and shards ]; the defaults (0, 1) mean no sharding.
        weights: None, or a read-only float64 array of `num_samples` non-negative weights with a
            positive sum: each epoch's order is then `num_samples` draws (`shuffle` must be False).
        replacement: with `weights`, draw with replacement (else a weighted permutation).
        source_order: the source, if it chooses its shuffled order (`SupportsEpochOrder`).

    Example:
        >>> plan = EpochPlan(10, batch_size=4, shuffle=False, seed=0, drop_last=False)
        >>> len(plan), plan.batch_indices(0, 2).tolist()
        (3, [8, 9])
        >>> EpochPlan(10, batch_size=2, shuffle=False, seed=0, drop_last=False,
        ...           rank=1, world_size=2, shard_mode="exact").batch_indices(0, 1).tolist()
        [5, 7]
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
        weights: np.ndarray | None = None,
        replacement: bool = True,
        source_order: SupportsEpochOrder | None = None,
    ):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.shard_mode = shard_mode
        self.weights = weights
        self.replacement = replacement
        self.source_order = source_order
        self.num_batches = self.batch_count(0)
        # (epoch, order) as one tuple, so threads never see an order paired with another epoch.
        self._cache: tuple[int, np.ndarray] | None = None
        self._occurrences: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def shard_size(self, start: int = 0) -> int:
        """Samples this rank reads of an epoch started at position `start` (before `drop_last`)."""
        remaining = self.num_samples - start
        if self.shard_mode == "pad":
            return -(-remaining // self.world_size)
        if self.shard_mode == "drop":
            return remaining // self.world_size
        return len(range(self.rank, remaining, self.world_size))

    def batch_count(self, start: int = 0) -> int:
        """Batches this rank reads of an epoch started at position `start`."""
        size = self.shard_size(start)
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """All sample indices of `epoch` in global order (int64, length `num_samples`), before sharding."""
        epoch = int(epoch)
        if not self.shuffle and self.weights is None:
            return np.arange(self.num_samples, dtype=np.int64)
        cache = self._cache
        if cache is not None and cache[0] == epoch:
            return cache[1]
        if self.weights is not None:
            order = weighted_draws(self.seed, epoch, self.weights, self.replacement)
        else:
            chosen = self.source_order.epoch_order(self.seed, epoch) if self.source_order is not None else None
            if chosen is not None and len(chosen) != self.num_samples:
                raise ValueError(
                    f"{type(self.source_order).__name__}.epoch_order gave {len(chosen)} samples for a loader of "
                    f"{self.num_samples}: it must be a permutation of all the source's indices."
                )
            order = chosen if chosen is not None else epoch_permutation(self.seed, epoch, self.num_samples)
        order.flags.writeable = False  # shared by every caller of this epoch
        self._cache = (epoch, order)
        return order

    def occurrences(self, epoch: int) -> np.ndarray | None:
        """With weights drawn with replacement: for each position of `epoch`'s order, how many
        earlier positions drew the same sample (0 for a first draw). Else None."""
        if self.weights is None or not self.replacement:
            return None
        epoch = int(epoch)
        cache = self._occurrences
        if cache is not None and cache[0] == epoch:
            return cache[1]
        order = self.order(epoch)
        by_sample = np.argsort(order, kind="stable")  # each sample's draws together, in draw order
        first = np.r_[True, np.diff(order[by_sample]) != 0]
        run_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        counts = np.empty(len(order), dtype=np.int64)
        counts[by_sample] = np.arange(len(order)) - run_start
        self._occurrences = (epoch, counts)
        return counts

    def batch_seeds(self, epoch: int, batch: int) -> list[int]:
        """The seed each sample of `batch` is loaded with: the loader's `seed`, except for a
        sample drawn again in the same epoch (weights with replacement), whose repeats get
        `repeat_seed(seed, k)` so that each copy is augmented differently."""
        occurrences = self.occurrences(epoch)
        if occurrences is None:
            return [self.seed] * len(self.positions(epoch, batch))
        repeats = occurrences[self.positions(epoch, batch) % self.num_samples]
        return [repeat_seed(self.seed, k) for k in repeats.tolist()]

    def positions(self, epoch: int, batch: int) -> np.ndarray:
        """Positions in `epoch`'s order (before the wrap of "pad") that this rank's `batch` reads."""
        if not 0 <= batch < self.num_batches:
            raise IndexError(f"batch {batch} is out of range: this loader has {self.num_batches} batches per epoch.")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}.")
        start = epoch_start(epoch)
        first = self.num_batches - self.batch_count(start)
        if batch < first:
            raise IndexError(
                f"batch {batch} of epoch {int(epoch)} was read before the resume at position {start}: "
                f"this resumed epoch has batches {first} to {self.num_batches - 1} only. "
                "model.fit starts every epoch at batch 0: with fit, resume from a state saved at an epoch boundary."
            )
        local = np.arange(
            (batch - first) * self.batch_size, min((batch - first + 1) * self.batch_size, self.shard_size(start))
        )
        return start + self.rank + self.world_size * local

    def global_batch(self, batch: int) -> int:
        """A number for this rank's `batch` that no other rank's batch has: `rank + batch *
        world_size` (its place when the ranks' batches are interleaved). Keys the batch
        transform's generator; with one rank it is `batch`."""
        return self.rank + batch * self.world_size

    def batch_indices(self, epoch: int, batch: int) -> np.ndarray:
        """Sample indices of `batch` in `epoch` (int64). Raises `IndexError` outside `range(len(self))`."""
        positions = self.positions(epoch, batch)
        return self.order(epoch)[positions % self.num_samples]  # "pad" wraps to the epoch's first samples

    def position(self, epoch: int, next_batch: int) -> int:
        """How much of `epoch`'s order all ranks have read when each is at local batch `next_batch`."""
        start = epoch_start(epoch)
        read = max(next_batch - (self.num_batches - self.batch_count(start)), 0)
        return min(start + read * self.batch_size * self.world_size, self.num_samples)

    def resume_at(self, epoch: int, position: int) -> tuple[int, int]:
        """(epoch, next_batch) on this rank that continue `epoch` after its first `position`
        samples were read, by any number of ranks: NOTE [ Elastic resume ]."""
        stride = self.batch_size * self.world_size
        if position >= self.num_samples:
            return epoch + 1, 0
        if position % stride == 0:
            return epoch, min(position // stride, self.num_batches)
        return PartialEpoch(epoch, position), self.num_batches - self.batch_count(position)


def check_weights(weights: object, replacement: bool) -> np.ndarray:
    """`weights` as a read-only float64 array, after checking it can drive `weighted_draws`.

    Raises:
        TypeError: not a 1-D sequence of real numbers.
        ValueError: a negative, NaN or infinite weight, no positive weight, or (without
            replacement) a zero weight.
    """
    try:
        array = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"weights must be a 1-D sequence of numbers (one per sample), got {type(weights).__name__}."
        ) from None
    if array.ndim != 1 or np.asarray(weights).dtype.kind not in "biuf":
        raise TypeError(
            f"weights must be a 1-D sequence of numbers (one per sample), got {type(weights).__name__} "
            f"of shape {array.shape} and dtype {np.asarray(weights).dtype}."
        )
    bad = np.flatnonzero(~np.isfinite(array) | (array < 0))
    if len(bad):
        raise ValueError(f"weights must be finite and >= 0; weights[{bad[0]}] is {array[bad[0]]}.")
    if not (array > 0).any():
        raise ValueError("weights are all zero: at least one sample needs a positive weight.")
    if not replacement and (array == 0).any():
        zero = int(np.flatnonzero(array == 0)[0])
        raise ValueError(
            f"weights[{zero}] is 0, but replacement=False draws every sample once per epoch. "
            "Remove the sample (xloader.Subset) or pass replacement=True."
        )
    array.flags.writeable = False
    return array


def class_balanced_weights(labels: object) -> np.ndarray:
    """One weight per sample, `1 / (number of samples of its class)`: with `weights=` every class
    is drawn equally often on average (float64, read-only).

    Args:
        labels: a source with integer class `labels` (`ImageFolder`, `ImageManifest` with
            label_mode "int", "categorical" or "binary") or a 1-D array of class indices.

    Raises:
        TypeError: the source has no `labels`, or they are not 1-D integers.

    Example:
        >>> class_balanced_weights(np.array([0, 0, 0, 1])).tolist()
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    if not isinstance(labels, (np.ndarray, list, tuple)):
        source = labels
        labels = getattr(source, "labels", None)
        if labels is None:
            raise TypeError(
                f"{type(source).__name__} has no integer class labels to balance. "
                "Pass the class index of each sample as an array instead."
            )
    array = np.asarray(labels)
    if array.ndim != 1 or array.dtype.kind not in "iu" or (array < 0).any():
        raise TypeError(
            f"class labels must be 1-D non-negative integers, got shape {array.shape} and dtype {array.dtype}."
        )
    weights = 1.0 / np.bincount(array)[array]
    weights.flags.writeable = False
    return weights
