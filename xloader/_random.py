"""Every random stream xloader uses, derived from (seed, epoch[, sample index]).

# NOTE [ Where randomness comes from ]
The epoch's sample order and each sample's augmentation are pure functions of integers the
user controls: the loader `seed`, the `epoch` number and the sample's position in the dataset.
They are mixed with `numpy.random.SeedSequence` (never added together: seed 1 at epoch 0 must
not equal seed 0 at epoch 1), and each purpose has its own tag so the shuffle stream and the
augmentation streams never coincide. Nothing here reads a global RNG, a worker id or a clock,
so any process or thread computes the same values for the same integers.
With `weights` drawn with replacement, a sample can appear several times in one epoch; its
`k`-th repeat is loaded with `repeat_seed(seed, k)` in place of `seed`, so every copy gets its own
augmentation while the first draw keeps the stream an unweighted loader would use.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

# Stream tags: arbitrary fixed constants. Changing one changes every user's batches.
_SHUFFLE_TAG = 0x5A4D_0001
_SAMPLE_TAG = 0x5A4D_0002
SPLIT_TAG = 0x5A4D_0003  # xl.split and ImageFolder's split_seed (xloader/index/subset.py)
_WEIGHTED_TAG = 0x5A4D_0004
_REPEAT_TAG = 0x5A4D_0005
_BATCH_TAG = 0x5A4D_0006
BLOCK_TAG = 0x5A4D_0007  # TarShards(order="block") (xloader/shards/_block_order.py)


def check_seed(seed: object) -> int:
    """Return `seed` if it is a non-negative int, else raise `TypeError`/`ValueError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {seed!r} ({type(seed).__name__}).")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}.")
    return int(seed)


def draw_seed() -> int:
    """A seed for a loader built with `seed=None`, drawn once from Python's global `random`
    (the generator `keras.utils.set_random_seed` and `random.seed` seed, and the one Keras
    itself draws unseeded seeds from): seeded programs repeat, unseeded ones vary.

    NOTE [ Unseeded loaders ]
    `seed=None` (the default) draws the seed at construction from the framework's global RNG:
    Python's `random` for `Batches` and `xloader.keras.PyDataset`, torch's default generator
    for `xloader.torch.DataLoader` (as torch's own DataLoader draws its base seed). The seed is
    recorded (`repr`, `state_dict()`), and a loader whose seed was drawn adopts the saved seed
    in `load_state_dict`, so an unseeded run resumes into its own batches. With
    `world_size > 1` nothing is drawn: every rank must use the same order, and ranks seeded
    differently would duplicate and drop samples, so the seed is 0, as
    `DistributedSampler(seed=0)`; pass `seed=` to vary it.
    """
    return random.getrandbits(63)


def resolve_seed(seed: object, world_size: object, draw: Callable[[], int] = draw_seed) -> tuple[int, bool]:
    """(the seed to use, whether it was drawn): NOTE [ Unseeded loaders ]. A bad `seed` raises;
    a bad `world_size` is left for `LoaderOptions` to report."""
    if seed is not None:
        return check_seed(seed), False
    if isinstance(world_size, (int, np.integer)) and not isinstance(world_size, bool) and world_size > 1:
        return 0, False
    return check_seed(draw()), True


def batch_generator(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The NumPy generator a `batch_transform` receives for global batch `batch` of `epoch`,
    fixed by (seed, epoch, batch) and independent of every sample's stream."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([_BATCH_TAG, seed, epoch, batch])))


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of `epoch`: a permutation of `range(n)` as int64, fixed by (seed, epoch)."""
    sequence = np.random.SeedSequence([_SHUFFLE_TAG, seed, epoch])
    return np.random.Generator(np.random.PCG64(sequence)).permutation(n).astype(np.int64, copy=False)


def weighted_draws(seed: int, epoch: int, weights: np.ndarray, replacement: bool) -> np.ndarray:
    """The sample order of `epoch` with `weights`: `len(weights)` draws (int64) of indices with
    probability proportional to their weight, fixed by (seed, epoch), as `WeightedRandomSampler`
    draws them; without `replacement`, a weighted permutation (every weight must be positive)."""
    sequence = np.random.SeedSequence([_WEIGHTED_TAG, seed, epoch])
    generator = np.random.Generator(np.random.PCG64(sequence))
    n = len(weights)
    return generator.choice(n, size=n, replace=replacement, p=weights / weights.sum()).astype(np.int64, copy=False)


def repeat_seed(seed: int, occurrence: int) -> int:
    """The seed that the `occurrence`-th repeat (1, 2, ...) of a sample within one epoch's
    weighted draws is loaded with, so that its augmentation differs from the first draw's
    (which keeps `seed`). A non-negative int fixed by (seed, occurrence)."""
    if occurrence == 0:
        return seed
    return int(np.random.SeedSequence([_REPEAT_TAG, seed, occurrence]).generate_state(1, np.uint64)[0])


def sample_generators(seed: int, epoch: int, index: int) -> tuple[np.random.Generator, random.Random]:
    """Fresh NumPy and Python generators for one sample, fixed by (seed, epoch, index).

    These are what `set_random_state` receives before the sample's transform runs.
    """
    sequence = np.random.SeedSequence([_SAMPLE_TAG, seed, epoch, index])
    state = sequence.generate_state(2, np.uint64)
    numpy_generator = np.random.Generator(np.random.PCG64(sequence))
    python_random = random.Random(int(state[0]) << 64 | int(state[1]))
    return numpy_generator, python_random
