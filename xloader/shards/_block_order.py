"""The block order of packed shards: few long reads of contiguous shard bytes, still (seed, epoch) pure.

# NOTE [ Block order ]
`TarShards(order="block")` replaces the epoch's full permutation with a permutation built for
sequential storage. The packed order is cut into blocks of neighbouring samples by bytes: a
shard of S bytes is cut into `k = max(1, round(S / block_size))` equal stretches, and sample `i`
belongs to the stretch where its first member starts, so a block is read with one ranged read of
about `block_size` bytes (a block never spans two shards; it may end up to one member past its
stretch, and a shard smaller than `block_size` is one block). The blocks are shuffled,
consecutive shuffled blocks are grouped into windows of `window` blocks, and the samples of each
window are shuffled together. Blocks depend only on
the index (never on which process reads), and the permutation is derived from
`SeedSequence([tag, seed, epoch])` alone, so like the random order it is the same for every
worker count, thread or process, and batches are still cut from it globally (NOTE [ Batches and
shards ] in xloader/sampling.py). The price is shuffle quality: a batch draws from `window`
blocks, not from the whole dataset, and a packed class-per-folder dataset is sorted by class
(figures in docs/shards.md).
"""

from __future__ import annotations

import numpy as np

from xloader._random import BLOCK_TAG


def block_bounds(shard: np.ndarray, start: np.ndarray, shard_bytes: np.ndarray, block_size: int) -> np.ndarray:
    """Where each block begins in the packed order, then `n` (int64, `len(blocks) + 1` values).

    `shard` and `start` are each sample's shard number and the first byte of its members, in
    packed order (so in increasing (shard, byte) order); `shard_bytes` is each shard's size.
    See NOTE [ Block order ].
    """
    n = len(shard)
    if n == 0:
        return np.zeros(1, np.int64)
    size = np.maximum(np.asarray(shard_bytes, np.int64), 1)
    stretches = np.maximum(1, (size + block_size // 2) // block_size)
    cell = start.astype(np.int64) * stretches[shard] // size[shard]
    changes = np.flatnonzero((np.diff(shard) != 0) | (np.diff(cell) != 0)) + 1
    return np.concatenate([[0], changes, [n]]).astype(np.int64)


def block_order(seed: int, epoch: int, bounds: np.ndarray, *, window: int) -> np.ndarray:
    """The sample order of `epoch` for blocks `bounds` (`block_bounds`): a permutation of
    `range(bounds[-1])`, int64. See NOTE [ Block order ]."""
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([BLOCK_TAG, seed, epoch])))
    lengths = np.diff(bounds)
    pick = generator.permutation(len(lengths))
    starts, lengths = bounds[:-1][pick], lengths[pick]
    n = int(bounds[-1])
    ends = np.cumsum(lengths)
    # Position p of the block-ordered sequence holds sample starts[k] + (p - where block k begins).
    in_block = np.arange(n, dtype=np.int64) - np.repeat(ends - lengths, lengths)
    sequence = np.repeat(starts, lengths) + in_block
    window_of = np.repeat(np.arange(len(lengths), dtype=np.int64) // window, lengths)
    # Windows are contiguous in `sequence`: sorting by window + a uniform [0, 1) key shuffles inside each.
    return sequence[np.argsort(window_of + generator.random(n), kind="stable")]
