"""Every random stream xloader uses, derived from (seed, epoch[, sample index]).

# NOTE [ Where randomness comes from ]
The epoch's sample order and each sample's augmentation are pure functions of integers the
user controls: the loader `seed`, the `epoch` number and the sample's position in the dataset.
They are mixed with `numpy.random.SeedSequence` (never added together: seed 1 at epoch 0 must
not equal seed 0 at epoch 1), and each purpose has its own tag so the shuffle stream and the
augmentation streams never coincide. Nothing here reads a global RNG, a worker id or a clock,
so any process or thread computes the same values for the same integers.
"""

from __future__ import annotations

import random

import numpy as np

# Stream tags: arbitrary fixed constants. Changing one changes every user's batches.
_SHUFFLE_TAG = 0x5A4D_0001
_SAMPLE_TAG = 0x5A4D_0002


def check_seed(seed: object) -> int:
    """Return `seed` if it is a non-negative int, else raise `TypeError`/`ValueError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {seed!r} ({type(seed).__name__}).")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}.")
    return int(seed)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of `epoch`: a permutation of `range(n)` as int64, fixed by (seed, epoch)."""
    sequence = np.random.SeedSequence([_SHUFFLE_TAG, seed, epoch])
    return np.random.Generator(np.random.PCG64(sequence)).permutation(n).astype(np.int64, copy=False)


def sample_generators(seed: int, epoch: int, index: int) -> tuple[np.random.Generator, random.Random]:
    """Fresh NumPy and Python generators for one sample, fixed by (seed, epoch, index).

    These are what `set_random_state` receives before the sample's transform runs.
    """
    sequence = np.random.SeedSequence([_SAMPLE_TAG, seed, epoch, index])
    state = sequence.generate_state(2, np.uint64)
    numpy_generator = np.random.Generator(np.random.PCG64(sequence))
    python_random = random.Random(int(state[0]) << 64 | int(state[1]))
    return numpy_generator, python_random
