"""What a source is, and the optional abilities a source may declare.

A source knows which samples exist (its index) and how to turn sample `i` into arrays.
Everything about order, batching and epochs belongs to `xloader.Batches`.

`Source` is all `Batches` and both adapters need. A source may also declare abilities, each a
small protocol (as Grain's `Supports...`), that the core asks about with `isinstance` instead of
probing attributes:

- `SupportsFusedNormalize`: `load(..., defer_normalize=True)` may return a `NormalizedImage`
  that `Batches` normalises while writing it into the batch (NOTE [ Normalize fused into the
  batch write ] in xloader/_fused_normalize.py);
- `SupportsImageTargets`: `y` is an (H, W, C) image like `x` (an autoencoder's target), so the
  torch adapter lays `y` out like `x`;
- `SupportsSampleKeys`: a stable key per sample (a relative path, a content digest) that the
  resume fingerprint is made of, so two sources with other samples never share a fingerprint;
- `SupportsPaths`: the files a batch's samples read, so `Batches` starts fetching remote
  objects together before decoding them (NOTE [ Remote storage ] in xloader/storage/__init__.py).
- `SupportsEpochOrder`: the source chooses its own shuffled order (packed shards' block order,
  NOTE [ Block order ] in xloader/shards/_block_order.py), still a pure function of (seed, epoch).

A user's own class needs none of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NoReturn, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Source",
    "SupportsEpochOrder",
    "SupportsFusedNormalize",
    "SupportsImageTargets",
    "SupportsPaths",
    "SupportsSampleKeys",
    "fuses_normalize",
    "source_fingerprint",
    "y_is_image",
]


@runtime_checkable
class Source(Protocol):
    """The protocol `Batches` and both adapters rely on.

    Attributes:
        has_targets: whether `load(..., with_targets=True)` returns a target (`y`).
        x_is_image: True if `x` is an (H, W, C) image (the torch adapter moves C first),
            False if not, None to decide from the batch (4-D batches are images).

    Example:
        >>> class Squares:
        ...     has_targets, x_is_image = True, False
        ...     def __len__(self): return 4
        ...     def load(self, index, *, seed, epoch, with_targets):
        ...         return np.array([index]), (np.array(index * index) if with_targets else None)
        ...     def describe(self, index): return f"square {index}"
        >>> isinstance(Squares(), Source)
        True
    """

    @property
    def has_targets(self) -> bool: ...

    @property
    def x_is_image(self) -> bool | None: ...

    def __len__(self) -> int: ...

    def load(self, index: int, *, seed: int, epoch: int, with_targets: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Sample `index` as `(x, y)` (`y` None without targets), transformed with the
        per-sample random state of (seed, epoch, index)."""
        ...

    def describe(self, index: int) -> str:
        """Where sample `index` comes from (a path or an id), for error messages."""
        ...


@runtime_checkable
class SupportsFusedNormalize(Protocol):
    """A source whose `load` can leave a trailing `A.Normalize` to the batch write."""

    @property
    def fuses_normalize(self) -> bool:
        """True if this instance's transform ends in a Normalize that can be fused."""
        ...

    def load(
        self, index: int, *, seed: int, epoch: int, with_targets: bool, defer_normalize: bool = False
    ) -> tuple[object, np.ndarray | None]: ...


@runtime_checkable
class SupportsImageTargets(Protocol):
    """A source whose `y` may be an (H, W, C) image laid out like `x` (`y_is_image`)."""

    @property
    def y_is_image(self) -> bool: ...


@runtime_checkable
class SupportsSampleKeys(Protocol):
    """A source with a stable key per sample: what the resume fingerprint is made of."""

    def sample_key(self, index: int) -> str:
        """Sample `index`'s identity in this source: the same sample, the same key, in any process."""
        ...


@runtime_checkable
class SupportsPaths(Protocol):
    """A source that can name the files its samples read."""

    def paths_of(self, indices: Sequence[int]) -> list[str]:
        """Every file (image, mask) the samples at `indices` read, in any order."""
        ...


@runtime_checkable
class SupportsEpochOrder(Protocol):
    """A source that chooses its own order for `shuffle=True` (`EpochPlan` asks it each epoch)."""

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray | None:
        """A permutation of the source's indices (int64), a pure function of (seed, epoch); None
        for the usual random permutation."""
        ...


def fuses_normalize(source: object) -> bool:
    """Whether `Batches` should call `source.load(..., defer_normalize=True)`."""
    return isinstance(source, SupportsFusedNormalize) and bool(source.fuses_normalize)


def y_is_image(source: object) -> bool:
    """Whether the torch adapter should lay out `y` like the image `x`."""
    return isinstance(source, SupportsImageTargets) and bool(source.y_is_image)


def source_fingerprint(source: Source) -> str:
    """A digest of the source's index: its type, length and every sample's key.

    The key is `sample_key(i)` where the source declares it, else `describe(i)` (a user's own
    source: two of them that describe their samples alike share a fingerprint).
    """
    key = source.sample_key if isinstance(source, SupportsSampleKeys) else source.describe
    digest = hashlib.sha256(f"{type(source).__qualname__}\0{len(source)}\0".encode())
    for index in range(len(source)):
        digest.update(key(index).encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def refuse_indexing(source: object) -> NoReturn:
    """What `source[i]` raises: reached when a source is given to torch's `DataLoader`
    (torchvision's class has the same name as `xl.ImageFolder`)."""
    name = type(source).__name__
    raise TypeError(
        f"{name} is an xloader source, not a torch Dataset: it has no [index]. "
        f"Use xloader.torch.DataLoader({name}(...), batch_size=..., shuffle=...) in place of "
        "torch.utils.data.DataLoader (or xloader.keras.PyDataset for Keras); one sample is source.load(index, ...)."
    )
