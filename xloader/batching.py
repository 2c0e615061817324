"""`Batches`: the framework-free loader every adapter is built on.

# NOTE [ The one function ]
`Batches.get_batch(epoch, b)` is a pure function of the dataset, the options and (epoch, b):
it reads the plan (`EpochPlan`), loads each sample with the random state of
(seed, epoch, sample index) and stacks the results. Keras's `PyDataset` adapter and torch's
`DataLoader` adapter both call it, with the epoch passed explicitly, which is why their batches
are bit-identical whatever the worker count, the start method or the framework.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

import numpy as np

from xloader import storage
from xloader._checks import check_bool, check_int
from xloader._collate import Allocate, BatchWriter
from xloader._random import batch_generator, check_seed, resolve_seed
from xloader._state import check_state, make_state
from xloader.errors import DatasetError, SampleError, XLoaderError
from xloader.sampling import SHARD_MODES, EpochPlan, check_weights
from xloader.source import Source, SupportsEpochOrder, SupportsPaths, fuses_normalize, source_fingerprint

__all__ = ["Batch", "BatchTransform", "Batches", "LoaderOptions"]

Batch = tuple[np.ndarray, np.ndarray] | np.ndarray
"""`(x, y)` when fitting a source with targets, else `x` alone."""


class BatchTransform(Protocol):
    """What `batch_transform=` takes: `fn(batch, generator) -> batch` on a whole NumPy batch
    (`(x, y)` or `x`, images (N, H, W, C)), with a generator fixed by (seed, epoch, global batch).
    See NOTE [ Batch transforms ] in `xloader.Batches`; recipes: `xloader.MixUp`, `xloader.CutMix`."""

    def __call__(self, batch: Batch, generator: np.random.Generator, /) -> Batch: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LoaderOptions:
    """The loader options shared by `Batches` and both adapters, validated once and stored as
    plain Python types (a NumPy int or bool passed in is converted), so a state is JSON-ready.

    Attributes:
        batch_size: samples per batch (per rank), >= 1.
        shuffle: a new sample order every epoch, fixed by (seed, epoch).
        seed: non-negative int; fixes the order and every augmentation (`Batches` and the
            adapters draw it when given None: NOTE [ Unseeded loaders ] in `xloader/_random.py`).
        drop_last: drop each epoch's (each rank's) last incomplete batch.
        to_fit: batches are `(x, y)`; False gives `x` only (prediction).
        rank, world_size: this process's shard of each epoch (0 and 1: no sharding).
        shard_mode: "pad" (default), "drop" or "exact": how an uneven split is evened out,
            see `xloader.sampling` NOTE [ Batches and shards ].
        weights: None, or one non-negative weight per sample: each epoch is then `len(dataset)`
            draws fixed by (seed, epoch), as torch's `WeightedRandomSampler` (`shuffle` must be
            False). Stored as a read-only float64 array.
        replacement: with `weights`, draw with replacement (the default) or not.
    """

    batch_size: int
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    to_fit: bool = True
    rank: int = 0
    world_size: int = 1
    shard_mode: str = "pad"
    weights: np.ndarray | None = field(default=None, compare=False, repr=False)
    replacement: bool = True

    def __post_init__(self) -> None:
        plain = {
            "batch_size": check_int("batch_size", self.batch_size, 1),
            "seed": check_seed(self.seed),
            **{
                name: check_bool(name, getattr(self, name))
                for name in ("shuffle", "drop_last", "to_fit", "replacement")
            },
            "world_size": check_int("world_size", self.world_size, 1),
            "rank": check_int("rank", self.rank, 0),
        }
        for name, value in plain.items():
            object.__setattr__(self, name, value)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be in range(world_size={self.world_size}), got {self.rank}.")
        if self.shard_mode not in SHARD_MODES:
            raise ValueError(f"shard_mode must be one of {', '.join(map(repr, SHARD_MODES))}; got {self.shard_mode!r}.")
        if self.weights is not None:
            if self.shuffle:
                raise ValueError(
                    "weights= draws each epoch's samples at random already; shuffle=True cannot be combined "
                    "with it (as torch's sampler and shuffle options). Pass shuffle=False."
                )
            object.__setattr__(self, "weights", check_weights(self.weights, self.replacement))


def loader_keywords(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The `LoaderOptions` fields among a constructor's `arguments` (its `locals()`), by name.

    NOTE [ One list of loader keywords ]
    `Batches`, `xloader.keras.PyDataset` and `xloader.torch.DataLoader` spell the loader keywords
    out in their signatures (what users, `help()` and IDEs read) and hand them on with
    `loader_keywords(locals())`: once. tests/test_loader_keywords.py checks the three signatures
    agree. Sources hand their image options to `ImageDecoder` the same way (`_configure_images_from`).
    """
    return {option.name: arguments[option.name] for option in fields(LoaderOptions)}


class Batches:
    """Batches of a source, by (epoch, batch index), with no framework involved.

    `len(batches)` is the number of batches per epoch: `ceil(len(dataset) / batch_size)`, or
    `floor` with `drop_last` (per rank with `world_size > 1`: see `xloader.sampling`
    NOTE [ Batches and shards ]). Every sample appears exactly once per epoch (except, with
    `drop_last`, the last `len(dataset) % batch_size` of that epoch's order), unless `weights`
    are given: an epoch is then `len(dataset)` weighted draws.

    A batch is `(x, y)` (or `x` alone with `to_fit=False` or a source without targets): NumPy
    arrays with the batch on the first axis, images as (N, H, W, C), in the dtype the source (and
    its transform) produced. `get_batch(epoch, b)` returns the same bits for the same dataset,
    options and (epoch, b), in any process or thread, in any order of calls.

    Args:
        dataset: a source (`ImageFolder`, `ImageMaskFolder`, `FileList`, `ArrayDataset`, or
            anything following `xloader.sources.Source`).
        batch_size, shuffle, drop_last, to_fit, rank, world_size, shard_mode: see `LoaderOptions`.
        weights, replacement: weighted sampling, see `LoaderOptions`.
        seed: a non-negative int, or None (default) to draw one once from Python's global
            `random` (what `random.seed` and `keras.utils.set_random_seed` seed); 0 when
            `world_size > 1`. The seed used is `options.seed` and is in `state_dict()`.
        batch_transform: None, or `batch_transform(batch, generator) -> batch`, called on each
            whole batch after it is stacked (e.g. `xloader.MixUp`, `xloader.CutMix`):
            NOTE [ Batch transforms ].

    # NOTE [ Batch transforms ]
    A batch transform receives the stacked batch (`(x, y)` or `x`, NumPy, (N, H, W, C) images)
    and a fresh `numpy.random.Generator` fixed by (seed, epoch, global batch index), and returns
    a batch of the same structure (its arrays may change dtype and shape, e.g. one-hot mixed
    labels). It runs wherever the batch is computed (a torch worker, an xloader worker for
    Keras), so batch-level augmentation such as MixUp costs the training loop nothing, and the
    result is the same bits for any worker count, in Keras and in torch. It must be a pure
    function of its arguments and, for process workers, picklable (a class instance or a
    module-level function, not a lambda).

    Raises:
        TypeError, ValueError: invalid options, or `drop_last` leaving no batch at all.

    Example:
        >>> data = ArrayDataset(np.arange(10).reshape(10, 1), np.arange(10))
        >>> batches = Batches(data, batch_size=4, shuffle=True, seed=0)
        >>> len(batches)
        3
        >>> x, y = batches.get_batch(0, 2)   # the last, partial batch of epoch 0
        >>> x.shape
        (2, 1)
    """

    fetch_ahead = 0  # the caller computes b + fetch_ahead after b (0: unknown, -1: never): NOTE [ Remote storage ]

    def __init__(
        self,
        dataset: Source,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        to_fit: bool = True,
        rank: int = 0,
        world_size: int = 1,
        shard_mode: str = "pad",
        batch_transform: BatchTransform | None = None,
        weights: Any = None,
        replacement: bool = True,
    ):
        if not isinstance(dataset, Source):
            raise TypeError(
                f"dataset must be an xloader source (ImageFolder, ImageMaskFolder, FileList, ArrayDataset "
                f"or an object with __len__, load, describe), got {type(dataset).__name__}."
            )
        if batch_transform is not None and not callable(batch_transform):
            raise TypeError(
                f"batch_transform must be a callable batch_transform(batch, generator) -> batch, "
                f"got {batch_transform!r}."
            )
        self.batch_transform = batch_transform
        seed, self.seed_drawn = resolve_seed(seed, world_size)
        self.options = LoaderOptions(**loader_keywords(locals()))
        self.dataset = dataset
        self.plan = self._make_plan()
        self.with_targets = self.options.to_fit and dataset.has_targets
        self._epoch = 0
        self._next_batch = 0
        self._fingerprint: str | None = None

    def _make_plan(self) -> EpochPlan:
        num_samples = len(self.dataset)
        o = self.options
        if o.weights is not None and len(o.weights) != num_samples:
            raise ValueError(
                f"weights has {len(o.weights)} entries but the dataset has {num_samples} samples; give one per sample."
            )
        plan = EpochPlan(
            num_samples,
            batch_size=o.batch_size,
            shuffle=o.shuffle,
            seed=o.seed,
            drop_last=o.drop_last,
            rank=o.rank,
            world_size=o.world_size,
            shard_mode=o.shard_mode,
            weights=o.weights,
            replacement=o.replacement,
            source_order=self.dataset if isinstance(self.dataset, SupportsEpochOrder) else None,
        )
        # An evaluation shard may legitimately be empty; a training loader with no batch is a mistake.
        if len(plan) == 0 and o.shard_mode != "exact":
            shards = f" over world_size={o.world_size} ranks (shard_mode={o.shard_mode!r})" if o.world_size > 1 else ""
            raise ValueError(
                f"{num_samples} samples in batches of {o.batch_size} (drop_last={o.drop_last}){shards} leave no batch. "
                "Use a smaller batch_size"
                + (", or drop_last=False" if o.drop_last else "")
                + (", or shard_mode='pad'" if o.world_size > 1 else "")
                + "."
            )
        return plan

    def __len__(self) -> int:
        return len(self.plan)

    def __repr__(self) -> str:
        o = self.options
        shards = f", rank={o.rank}, world_size={o.world_size}, shard_mode={o.shard_mode!r}" if o.world_size > 1 else ""
        drawn = " (drawn)" if self.seed_drawn else ""
        transform = f", batch_transform={self.batch_transform!r}" if self.batch_transform is not None else ""
        return (
            f"Batches({self.dataset!r}, batch_size={o.batch_size}, shuffle={o.shuffle}, seed={o.seed}{drawn}, "
            f"drop_last={o.drop_last}, to_fit={o.to_fit}{shards}{transform})"
        )

    @property
    def epoch(self) -> int:
        """The epoch that `batches[b]` and iteration read (a plain int, also in a resumed
        `PartialEpoch`)."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make `epoch` the current epoch, its iteration starting at batch 0 (as `DistributedSampler.set_epoch`)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"epoch must be a non-negative int, got {epoch!r} ({type(epoch).__name__}).")
        if epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch}.")
        self._epoch = int(epoch)
        self._next_batch = 0

    def fingerprint(self) -> str:
        """A digest of the dataset index (type, length, each sample's path or id), computed once."""
        if self._fingerprint is None:
            self._fingerprint = source_fingerprint(self.dataset)
        return self._fingerprint

    def make_state(self, epoch: int, next_batch: int) -> dict[str, Any]:
        """The state of a loader over these batches positioned at (`epoch`, `next_batch`)."""
        if next_batch >= len(self):
            epoch, next_batch = epoch + 1, 0
        position = self.plan.position(epoch, next_batch)
        return make_state(self.options, self.fingerprint(), len(self.dataset), int(epoch), next_batch, position)

    def read_state(self, state: dict[str, Any]) -> tuple[int, int]:
        """(epoch, next_batch) on this loader that continue the run that saved `state`, after
        checking it belongs to a loader like this one. The saving run may have had another
        world size (NOTE [ Elastic resume ]): the rest of its epoch is then sharded over this
        run's ranks, and the returned epoch may be a `PartialEpoch`.

        A loader whose seed was drawn (`seed=None`) first adopts the state's seed, so an
        unseeded run resumes into the batches it saved (NOTE [ Unseeded loaders ]).

        Raises:
            TypeError: `state` or one of its fields has the wrong type (the message names it).
            ValueError: the state was saved with other options (batch_size, shuffle, seed,
                drop_last, weights, replacement) or on another dataset; the message shows both sides.
        """
        saved = state.get("options") if isinstance(state, dict) else None
        saved_seed = saved.get("seed") if isinstance(saved, dict) else None  # check_state names a bad field
        if self.seed_drawn and isinstance(saved_seed, int) and saved_seed != self.options.seed:
            self.options = replace(self.options, seed=check_seed(saved_seed))
            self.plan = self._make_plan()
        epoch, position = check_state(state, self.make_state(0, 0))
        return self.plan.resume_at(epoch, position)

    def state_dict(self) -> dict[str, Any]:
        """Where iteration stands: the epoch and the next batch, with the options and a dataset
        fingerprint. A plain dict of ints, strings and bools (JSON- and `torch.save`-friendly)."""
        return self.make_state(self._epoch, self._next_batch)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the loader that saved `state` stopped, whatever its framework
        or worker count. Raises `ValueError` if it was built on other data or options."""
        self._epoch, self._next_batch = self.read_state(state)

    def full_batch_nbytes(self) -> int:
        """Bytes of a full batch (all fields), after the `batch_transform`: sample 0 (epoch 0)
        stacked `batch_size` times, transformed. What a buffer for any batch needs when shapes
        and dtypes do not depend on the content (a batch that does not fit is the caller's to handle)."""
        x, y = self.dataset.load(0, seed=self.options.seed, epoch=0, with_targets=self.with_targets)
        size = self.options.batch_size
        if self.batch_transform is None:
            return size * (np.asarray(x).nbytes + (np.asarray(y).nbytes if y is not None else 0))
        stacked = tuple(np.repeat(np.asarray(a)[None], size, axis=0) for a in (x, y) if a is not None)
        out = self.batch_transform(
            stacked if len(stacked) == 2 else stacked[0], batch_generator(self.options.seed, 0, 0)
        )
        return sum(np.asarray(a).nbytes for a in (out if isinstance(out, tuple) else (out,)))

    def batch_indices(self, epoch: int, batch: int) -> np.ndarray:
        """Dataset indices of the samples in `batch` of `epoch`, in batch order (int64, read-only)."""
        return self.plan.batch_indices(epoch, batch)

    def get_batch(self, epoch: int, batch: int, *, allocate: Allocate | None = None) -> Batch:
        """Batch `batch` of `epoch`: `(x, y)` or `x`, see the class docstring, after the
        `batch_transform` if there is one.

        `allocate(field, shape, dtype)` may supply the array each field ("x", "y") is built in
        (the adapters pass views of shared memory, so a batch is written once, or copied in once
        after a `batch_transform`); the values are the same either way.

        Raises:
            IndexError: `batch` is not in `range(len(self))`.
            BadImageError: a file cannot be read (the message names it; a note adds the
                epoch, batch and sample index).
            SampleError: any other failure while loading or transforming a sample, chained to
                the original exception.
            Exception: whatever the `batch_transform` raises, with a note naming the batch and epoch.
        """
        if self.batch_transform is None:
            return self._stack(epoch, batch, allocate)
        out = self._stack(epoch, batch, None)
        generator = batch_generator(self.options.seed, int(epoch), self.plan.global_batch(batch))
        try:
            transformed = self.batch_transform(out, generator)
        except Exception as error:
            error.add_note(f"while running batch_transform {self.batch_transform!r} on batch {batch}, epoch {epoch}")
            raise
        return _check_transformed(transformed, out, self.batch_transform, allocate)

    def _stack(self, epoch: int, batch: int, allocate: Allocate | None) -> Batch:
        """The samples of (epoch, batch), loaded and stacked: the batch before its `batch_transform`."""
        indices = self.plan.batch_indices(epoch, batch)
        if storage.active() and isinstance(self.dataset, SupportsPaths):  # NOTE [ Remote storage ]
            after = batch + self.fetch_ahead if self.fetch_ahead > 0 else len(self)
            upcoming = self.plan.batch_indices(epoch, after).tolist() if after < len(self) else []
            storage.prefetch(self.dataset.paths_of(indices.tolist()), self.dataset.paths_of(upcoming))
        xs = BatchWriter(len(indices), "x", allocate)
        ys = BatchWriter(len(indices), "y", allocate) if self.with_targets else None
        # NOTE [ Normalize fused into the batch write ] (xloader/_fused_normalize.py)
        deferred = {"defer_normalize": True} if fuses_normalize(self.dataset) else {}
        # Repeated weighted draws get their own seeds: NOTE [ Where randomness comes from ].
        seeds = self.plan.batch_seeds(epoch, batch)
        for position, (index, seed) in enumerate(zip(indices.tolist(), seeds, strict=True)):
            where = lambda index=index: self._where(epoch, batch, index)  # noqa: E731 - built only on error
            try:
                x, y = self.dataset.load(index, seed=seed, epoch=int(epoch), with_targets=self.with_targets, **deferred)
                xs.put(position, x, where)
                if ys is not None:
                    if y is None:
                        raise DatasetError(f"{where()} returned no target.")
                    ys.put(position, y, where)
            except XLoaderError as error:
                if isinstance(error, SampleError) and error.epoch is None:
                    error.epoch, error.batch, error.index = epoch, batch, index
                    error.path = error.path or self.dataset.describe(index)
                error.add_note(f"while loading {where()}")
                raise
            except Exception as error:
                raise SampleError(
                    f"{where()} failed: {type(error).__name__}: {error}",
                    epoch=epoch,
                    batch=batch,
                    index=index,
                    path=self.dataset.describe(index),
                ) from error
        assert xs.array is not None  # a batch has at least one sample
        if ys is None:
            return xs.array
        assert ys.array is not None
        return xs.array, ys.array

    def _where(self, epoch: int, batch: int, index: int) -> str:
        return f"sample {index} ({self.dataset.describe(index)}) of batch {batch}, epoch {epoch}"

    def __getitem__(self, batch: int) -> Batch:
        """Batch `batch` of the current epoch."""
        return self.get_batch(self._epoch, batch)

    def __iter__(self) -> Iterator[Batch]:
        """The rest of the current epoch's batches in order (all of them unless a state was
        loaded mid-epoch); when they are all read, the next epoch becomes current (each full
        pass is a new epoch, as with the torch adapter)."""
        epoch = self._epoch
        for batch in range(self._next_batch, len(self)):
            self._next_batch = batch + 1  # before the yield: a state saved now resumes after it
            yield self.get_batch(epoch, batch)
        self._epoch, self._next_batch = epoch + 1, 0


def _check_transformed(transformed: Any, before: Batch, transform: Any, allocate: Allocate | None) -> Batch:
    """`transformed` if it is a batch of the structure and length of `before`, written into
    `allocate`'s arrays where given; else `TypeError`/`ValueError` naming `transform`."""
    is_tuple = isinstance(before, tuple)
    fields = transformed if is_tuple else (transformed,)
    expected = "(x, y), a tuple of two NumPy arrays" if is_tuple else "x, one NumPy array"
    if (
        isinstance(transformed, tuple) != is_tuple
        or len(fields) != (2 if is_tuple else 1)
        or not all(isinstance(a, np.ndarray) for a in fields)
    ):
        raise TypeError(
            f"batch_transform {transform!r} returned {type(transformed).__name__}; it must return {expected}."
        )
    count = len(before[0] if is_tuple else before)
    if any(a.ndim == 0 or len(a) != count for a in fields):
        shapes = ", ".join(str(a.shape) for a in fields)
        raise ValueError(
            f"batch_transform {transform!r} returned shapes {shapes}; each must keep the batch's {count} rows."
        )
    if allocate is None:
        return transformed
    written = []
    for name, array in zip(("x", "y"), fields, strict=False):
        target = allocate(name, array.shape, array.dtype)
        if target is not None:
            target[...] = array
        written.append(array if target is None else target)
    return (written[0], written[1]) if is_tuple else written[0]
