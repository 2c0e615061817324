"""The block order of packed shards: few long runs of neighbouring samples, still (seed, epoch) pure.

# NOTE [ Block order ]
`TarShards(order="block")` replaces the epoch's full permutation with a permutation built for
sequential storage: the packed order is cut into blocks of `block_size` neighbouring samples
(neighbouring bytes in a shard), the blocks are shuffled, consecutive shuffled blocks are grouped
into windows of `window` blocks, and the samples of each window are shuffled together. A window
of batches thus reads `window` contiguous byte ranges instead of `block_size * window` scattered
members. It is one permutation of every sample, derived from `SeedSequence([tag, seed, epoch])`
alone, so like the random order it is the same for every worker count, thread or process, and
batches are still cut from it globally (NOTE [ Batches and shards ] in xloader/sampling.py).
The price is shuffle quality: a batch draws from `window` blocks, not from the whole dataset,
and a packed class-per-folder dataset is sorted by class (figures in docs/shards.md).
"""

from __future__ import annotations

import numpy as np

from xloader._random import BLOCK_TAG


def block_order(seed: int, epoch: int, n: int, *, block_size: int, window: int) -> np.ndarray:
    """The sample order of `epoch` for `n` packed samples: a permutation of `range(n)`, int64.

    See NOTE [ Block order ]. Blocks are `range(k * block_size, (k + 1) * block_size)`; the full
    ones are shuffled and a last, shorter one stays last. Windows are `window` consecutive
    blocks of that list.
    """
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([BLOCK_TAG, seed, epoch])))
    full, rest = divmod(n, block_size)
    starts = generator.permutation(full).astype(np.int64) * block_size
    if rest:  # the short block goes last, so windows stay aligned with batches of window * block_size
        starts = np.append(starts, full * block_size)
    blocks = len(starts)
    lengths = np.minimum(block_size, n - starts)
    ends = np.cumsum(lengths)
    # Position p of the block-ordered sequence holds sample starts[k] + (p - where block k begins).
    in_block = np.arange(n, dtype=np.int64) - np.repeat(ends - lengths, lengths)
    sequence = np.repeat(starts, lengths) + in_block
    window_of = np.repeat(np.arange(blocks, dtype=np.int64) // window, lengths)
    # Windows are contiguous in `sequence`: sorting by window + a uniform [0, 1) key shuffles inside each.
    return sequence[np.argsort(window_of + generator.random(n), kind="stable")]
