"""`Subset` and `split`: part of any source, and a seeded train/validation split of any source.

# NOTE [ Validation splits ]
A split of a source with class labels splits each class separately, so every class keeps its
share; a source without class labels is one group.
- Default (`seed=None`, `ImageFolder`'s `split_seed=None`), Keras's `flow_from_directory` split:
  in each class's samples (in index order), the first `int(validation_split * n)` are validation
  and the rest training. Same float arithmetic as Keras, so the same files land in each subset.
- Seeded (`seed=s`): each sample gets a 64-bit key, a keyed BLAKE2b hash of its sample key (its
  path relative to the source's folder, with "/" separators; its id), the hash key derived from
  `SeedSequence([SPLIT_TAG, s])`; the `int(validation_split * n)` samples of a class with the
  smallest keys are validation. Keras's split takes the alphabetically first files, and names
  often follow the source or the date; this one is a random sample of each class. The counts
  are Keras's; which samples depends only on the seed and each sample's own key, not on the
  file system, the platform or the other files. So adding m images to a class moves at most m
  old files across the boundary (a seeded permutation of positions would reshuffle the whole
  split, and feed old validation images to a model trained on, e.g. when fine-tuning).
Both kinds: the two subsets are disjoint and cover every sample.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from xloader._checks import check_fraction
from xloader._random import SPLIT_TAG
from xloader.index._sample_index import positions
from xloader.source import (
    Source,
    SupportsEpochOrder,
    SupportsPaths,
    SupportsSampleKeys,
    fuses_normalize,
    refuse_indexing,
    y_is_image,
)

__all__ = ["Subset", "check_split_seed", "split", "validation_mask"]


def check_split_seed(seed: object, name: str = "seed") -> int | None:
    """A split's seed as a plain int, or None (Keras's split); `TypeError`/`ValueError` naming `name`."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative int, or None for Keras's split; got {seed!r}.")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, or None for Keras's split; got {seed}.")
    return int(seed)


def validation_mask(
    keys: Sequence[str], labels: np.ndarray | None, validation_split: float, seed: int | None
) -> np.ndarray:
    """Which samples are validation samples, bool (N,): NOTE [ Validation splits ].

    `keys` are the samples' stable keys and `labels` their class indices (None: one group).
    """
    labels = np.zeros(len(keys), np.int64) if labels is None else np.asarray(labels)
    mask = np.zeros(len(keys), dtype=bool)
    key = None
    if seed is not None:
        state = np.random.SeedSequence([SPLIT_TAG, seed]).generate_state(4, np.uint32)
        key = state.astype("<u4").tobytes()
    order = np.argsort(labels, kind="stable")  # each class's positions, in index order
    starts = np.flatnonzero(np.diff(labels[order], prepend=-1))
    for group in np.split(order, starts[1:]):
        count = int(validation_split * len(group))
        if key is None:
            chosen = group[:count]
        else:
            names = [keys[p] for p in group]
            digests = [
                hashlib.blake2b(name.encode("utf-8", "surrogateescape"), key=key, digest_size=8).digest()
                for name in names
            ]
            ranking = sorted(range(len(group)), key=lambda j: (digests[j], names[j]))
            chosen = group[ranking[:count]]
        mask[chosen] = True
    return mask


class Subset:
    """The samples `indices` of `source`, in that order: a source itself, for both adapters.

    Sample `i` of the subset is sample `indices[i]` of `source`, with that sample's augmentation
    stream (seed, epoch, `indices[i]`): a sample looks the same in a subset as in the whole
    source, so a subset's batches are identical in Keras and torch as any source's are. Indices
    may repeat (oversampling) and need not be sorted. A subset shuffles in the usual random
    order, also of a source that orders its own samples (`TarShards(order="block")`: warned).

    Args:
        source: any xloader source (or an object following `xloader.Source`).
        indices: integer positions in `range(len(source))`, or a bool mask of `len(source)`.

    Raises:
        TypeError: `source` is not a source, or `indices` are not integers.
        IndexError: an index outside `range(len(source))`.

    Example:
        >>> data = ArrayDataset(np.arange(10).reshape(10, 1), np.arange(10))  # doctest: +SKIP
        >>> Subset(data, [0, 2, 4]).load(1, seed=0, epoch=0, with_targets=True)[1]  # doctest: +SKIP
        array(2)
    """

    def __init__(self, source: Source, indices: Sequence[int] | np.ndarray):
        if not isinstance(source, Source):
            raise TypeError(f"source must be an xloader source, got {type(source).__name__}.")
        if isinstance(source, SupportsEpochOrder) and source.epoch_order(0, 0) is not None:
            warnings.warn(
                f"a Subset of {source!r} shuffles its samples in the usual random order, not in the order the "
                "source chooses for all of its samples (TarShards(order='block')): with shuffle=True expect "
                "one read per sample. To keep block reads, pack the subset on its own.",
                stacklevel=2,
            )
        self.source = source
        self.indices = positions(np.asarray(indices), len(source))
        self.indices.flags.writeable = False

    has_targets = property(lambda self: self.source.has_targets)
    x_is_image = property(lambda self: self.source.x_is_image)
    y_is_image = property(lambda self: y_is_image(self.source))
    fuses_normalize = property(lambda self: fuses_normalize(self.source))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: object) -> Any:
        refuse_indexing(self)  # a source, not a torch Dataset

    def __repr__(self) -> str:
        return f"Subset({self.source!r}, {len(self)} of {len(self.source)} samples)"

    def __getattr__(self, name: str) -> Any:
        # class_names, num_classes, mask_format...: what the whole source says of its samples.
        if name in ("source", "indices", "epoch_order"):  # the parent's order covers all its samples
            raise AttributeError(name)
        return getattr(self.source, name)

    def load(
        self, index: int, *, seed: int, epoch: int, with_targets: bool, defer_normalize: bool = False
    ) -> tuple[Any, np.ndarray | None]:
        deferred = {"defer_normalize": True} if defer_normalize else {}
        return self.source.load(int(self.indices[index]), seed=seed, epoch=epoch, with_targets=with_targets, **deferred)

    def describe(self, index: int) -> str:
        return self.source.describe(int(self.indices[index]))

    def paths_of(self, indices: Sequence[int]) -> list[str]:
        """The parent's `paths_of` for these samples (`SupportsPaths`), or none if it has no such ability."""
        if not isinstance(self.source, SupportsPaths):
            return []
        return self.source.paths_of([int(self.indices[index]) for index in indices])

    def sample_key(self, index: int) -> str:
        parent = int(self.indices[index])
        return (
            self.source.sample_key(parent)
            if isinstance(self.source, SupportsSampleKeys)
            else self.source.describe(parent)
        )

    @property
    def labels(self) -> np.ndarray | None:
        """The class index of each sample of the subset, where the source has them."""
        labels = _class_labels(self.source)
        return None if labels is None else labels[self.indices]


def _class_labels(source: object) -> np.ndarray | None:
    labels = getattr(source, "labels", None)
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        return labels
    return None


def split(source: Source, *, validation_split: float, seed: int | None = None) -> tuple[Subset, Subset]:
    """`(training, validation)` subsets of any source, by NOTE [ Validation splits ].

    Sources with class labels (`labels`: one int per sample) are split per class; others as one
    group. `seed=None` takes the first samples of each class in index order (Keras's rule);
    an int picks them by a keyed hash of each sample's key (its relative path or id).

    Returns:
        `(training, validation)`: disjoint `Subset`s that together hold every sample once.

    Raises:
        TypeError, ValueError: `validation_split` not in (0, 1), or a bad `seed`.

    Example:
        >>> train, val = split(ImageMaskFolder("images", "masks", image_size=(128, 128)),
        ...                    validation_split=0.2, seed=0)  # doctest: +SKIP
    """
    fraction = check_fraction(
        "validation_split", validation_split, " It is the fraction kept for validation, e.g. 0.2."
    )
    seed = check_split_seed(seed)
    key = source.sample_key if isinstance(source, SupportsSampleKeys) else source.describe
    keys = [key(i) for i in range(len(source))]
    in_validation = validation_mask(keys, _class_labels(source), fraction, seed)
    return Subset(source, np.flatnonzero(~in_validation)), Subset(source, np.flatnonzero(in_validation))
