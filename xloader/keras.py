"""`xloader.keras.PyDataset`: xloader batches for Keras 3 `model.fit` (TensorFlow, JAX or PyTorch backend).

# NOTE [ What model.fit trains on ]
Keras 3.15's `fit` reads batch 0 before the first epoch, even for a built model (to build the
compiled metrics; TensorFlow reads batches 0 and 1 to infer the output signature), then calls
`on_epoch_end`; it calls `on_epoch_end` again around each validation run, shuffles the batch
order unless `fit(shuffle=False)`, and its own worker pool serves batches prefetched in the
previous epoch. So this adapter:
- shows Keras `workers=1` (Keras calls `__getitem__` in order, in its own loop) and runs
  xloader's workers behind `__getitem__`, keyed by (epoch, batch) (NOTE [ Keyed prefetch ]);
- advances its epoch in `on_epoch_end` only once every batch of the current epoch has been
  requested, so extra hook calls and build passes change nothing, with one exception: with one
  batch per epoch (two on TensorFlow) the early reads cannot be told from a whole epoch, and only
  the `EpochSync` callback, which hears fit's epoch numbers, keeps the count right;
- warns if batches are requested out of order, which means `fit` was not given `shuffle=False`.
"""

from __future__ import annotations

import multiprocessing
import threading
import warnings
from collections.abc import Iterator
from itertools import islice
from typing import Any

import keras
import numpy as np

from xloader._prefetch import Prefetcher
from xloader.batching import Batch, Batches, BatchTransform, loader_keywords
from xloader.source import Source

__all__ = ["EpochSync", "PyDataset"]


# NOTE [ Shards under keras.distribution ]
# Under `keras.distribution`, a process's share of the data is its data shard: `data_shard_id`
# of `num_data_shards` (Keras 3.16+; on 3.15, `min(num_model_replicas, num_processes)`, the
# count `data_shard_id` is computed against), so processes that share a model replica get the
# same batches. Keras 3.15 refuses a PyDataset in a multi-process run unless the distribution
# has `auto_shard_dataset=False`; Keras 3.16 accepts it and, with `auto_shard_dataset=True`,
# asks process `k` of `W` only for batch indices `range(k, len(dataset), W)`. A PyDataset that
# also sharded itself would be sharded twice (each process a 1/W^2 of the epoch, which
# never completes). So, when Keras strides, this adapter keeps its own sample-level shard (equal
# batch counts on every process, at most W - 1 samples padded) and presents `len = L * W` for
# its `L` local batches: Keras's index `i` on process `k` is local batch `i // W`, Keras's count
# `(L * W - k + W - 1) // W` is `L` on every process, and prefetching follows the local batches.


def _distribution_shard() -> tuple[int, int, bool] | None:
    """(data shard id, data shard count, whether Keras strides PyDataset batch indices) of the
    active `keras.distribution`, or None without one: NOTE [ Shards under keras.distribution ]."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    try:
        shard = distribution.data_shard_id
        count = getattr(distribution, "num_data_shards", None)  # Keras >= 3.16
        strides = count is not None and bool(getattr(distribution, "auto_shard_dataset", False))
        if count is None:  # Keras 3.15: the count data_shard_id is computed against
            count = min(distribution.num_model_replicas, distribution.num_processes)
    except NotImplementedError:  # a Distribution subclass without num_model_replicas
        return None
    return int(shard), int(count), strides and count > 1


def _process_shard(rank: int | None, world_size: int | None) -> tuple[int, int, int]:
    """(rank, world_size, keras_stride): as given, else the active `keras.distribution`'s data
    shard, else this process's place in a multi-process run of the Keras backend (JAX's process
    index and count; torch.distributed when initialised), else (0, 1). `keras_stride` is the
    world size when Keras itself strides batch indices over processes, else 1."""
    from_distribution = _distribution_shard()
    if from_distribution is not None and from_distribution[2]:
        shard, count, _ = from_distribution
        if (rank, world_size) not in ((None, None), (shard, count)):
            raise ValueError(
                f"rank={rank}, world_size={world_size} differ from the keras.distribution data shard "
                f"{shard} of {count}, over which Keras already splits this PyDataset's batches "
                "(auto_shard_dataset=True). Leave rank and world_size out, or set "
                "distribution.auto_shard_dataset = False."
            )
        return shard, count, count
    if rank is not None and world_size is not None:
        return rank, world_size, 1
    backend = keras.backend.backend()
    found = (0, 1)
    if from_distribution is not None:
        found = from_distribution[:2]
    elif backend == "jax":
        import jax

        found = (jax.process_index(), jax.process_count())
    elif backend == "torch":
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            found = (torch.distributed.get_rank(), torch.distributed.get_world_size())
    if found[1] == 1 and (rank is not None or world_size is not None):
        raise ValueError(
            f"pass both rank and world_size, or neither (read from the {backend} backend's processes); "
            f"got rank={rank}, world_size={world_size} in a single-process run."
        )
    return (found[0] if rank is None else rank, found[1] if world_size is None else world_size, 1)


def _default_start_method() -> str | None:
    """How process workers start when the user does not say. On the torch backend: Python's
    default start method, as torch's DataLoader uses (fork on Linux up to Python 3.13: the
    workers share the parent's imports instead of importing albumentations and torch again,
    measured 0.2 s less to the first batch and about 380 MiB less memory with 2 workers),
    unless a torch.distributed process group runs (see `xloader.torch.DataLoader`). Otherwise
    None, i.e. forkserver: JAX and TensorFlow run threads that a fork breaks."""
    if keras.backend.backend() != "torch":
        return None
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return None
    # The one set by set_start_method, else the platform's default (listed first), without
    # fixing it the way get_start_method() would.
    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]


class EpochSync(keras.callbacks.Callback):
    """Keeps xloader datasets on the epoch `model.fit` is running, for resumed runs.

    `fit(initial_epoch=e)` and `keras.callbacks.BackupAndRestore` restart training at epoch
    `e`, but a new `PyDataset` starts at epoch 0. With this callback, each epoch `k` of `fit`
    trains on the dataset's epoch `k` (its order and augmentations), exactly as in an
    uninterrupted run. Without a resume it changes nothing.

    Example:
        >>> model.fit(train, epochs=10, shuffle=False,  # doctest: +SKIP
        ...           callbacks=[keras.callbacks.BackupAndRestore("backup"), EpochSync(train)])
    """

    def __init__(self, *datasets: PyDataset):
        super().__init__()
        for dataset in datasets:
            if not isinstance(dataset, PyDataset):
                raise TypeError(f"EpochSync takes xloader.keras.PyDataset objects, got {type(dataset).__name__}.")
        self.datasets = datasets
        self._warned = False

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        steps = self.params.get("steps") if self.params else None
        for dataset in self.datasets:
            if steps is not None and steps != len(dataset.batches):
                # fit's epochs are not passes over this dataset (steps_per_epoch): leave it alone.
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"EpochSync does nothing: fit runs {steps} steps per epoch but the dataset has "
                        f"{len(dataset.batches)} batches, so fit's epoch numbers are not the dataset's epochs.",
                        stacklevel=2,
                    )
                continue
            if dataset.epoch != epoch:
                dataset.set_epoch(epoch)


class PyDataset(keras.utils.PyDataset):
    """A real `keras.utils.PyDataset` over an xloader source.

    Use it with `model.fit(dataset, shuffle=False, ...)`: xloader shuffles the *samples*
    itself (`shuffle=True` here), and Keras's batch-order shuffle would break parity with torch.
    Batch `b` of epoch `e` is `Batches.get_batch(e, b)`: `(x, y)` NumPy arrays (or `x` alone with
    `to_fit=False`), images as (N, H, W, C), bit-identical to `xloader.torch.DataLoader`'s batch
    for the same dataset, options and epoch (after its NCHW transpose).

    Epochs: the first pass is epoch 0; the epoch advances at `on_epoch_end` once every batch of
    the current epoch has been served, so it counts full passes over the data whatever extra
    hook calls Keras makes. `set_epoch(e)` sets it; the `EpochSync` callback sets it from `fit`.

    Args:
        dataset: an xloader source (`ImageFolder`, `ImageMaskFolder`, `FileList`, `ArrayDataset`).
        batch_size, shuffle, drop_last, to_fit: see `xloader.Batches`.
        seed: a non-negative int, or None (default) to draw one once, here, from Python's
            global `random`, the generator `keras.utils.set_random_seed` seeds (so seeded
            programs repeat); 0 when sharded. Recorded in `repr` and `state_dict()`.
        batch_transform: `fn(batch, generator) -> batch` on each whole batch, run in xloader's
            workers: `xloader.MixUp`, `xloader.CutMix` (NOTE [ Batch transforms ]).
        workers: xloader workers computing batches ahead of `model.fit` (threads, or processes
            with `use_multiprocessing=True`). They live as long as this object (`close()` stops
            them). Keras itself is shown `workers=1`: its own pool is bypassed.
        use_multiprocessing: use worker processes (started with `multiprocessing_context`).
            With forkserver or spawn the dataset must be picklable and scripts need the
            `if __name__ == "__main__":` guard, as for torch's workers.
        max_queue_size: how many batches are computed ahead.
        timeout: as torch's DataLoader `timeout`: if > 0, a batch that xloader's workers have not
            produced within that many seconds raises `TimeoutError` naming the batch and its
            files, and the workers are stopped (the next request starts new ones). 0 waits
            forever; only worker threads or processes (workers > 1, or processes) are timed.
        multiprocessing_context: "forkserver", "spawn" or "fork". Default: on the torch backend,
            Python's default, as torch's DataLoader uses (fork on Linux up to Python 3.13;
            forkserver under torch.distributed); on JAX and TensorFlow, whose threads make fork
            unsafe, forkserver (spawn where it does not exist).
        rank, world_size: this process's shard of every epoch (`xloader.Batches`); None reads
            them from the backend's multi-process setup (JAX process index/count, or
            `torch.distributed` when initialised), else no sharding.
        shard_mode: "pad" (default), "drop" or "exact" (evaluation), see `xloader.Batches`.
        weights, replacement: weighted sampling, see `xloader.LoaderOptions`.

    Exact resume: `state_dict()` / `load_state_dict()` (the format `xloader.torch.DataLoader`
    and `xloader.Batches` use); with `model.fit`, add `EpochSync(dataset)` to the callbacks when
    resuming with `initial_epoch` or `BackupAndRestore`.

    Example:
        >>> train = PyDataset(ImageFolder("data/train", image_size=(224, 224)),  # doctest: +SKIP
        ...                   batch_size=32, shuffle=True, seed=0, workers=2)
        >>> model.fit(train, epochs=5, shuffle=False)  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Source,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        to_fit: bool = True,
        batch_transform: BatchTransform | None = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        multiprocessing_context: str | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shard_mode: str = "pad",
        weights: Any = None,
        replacement: bool = True,
        timeout: float = 0,
    ):
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 (0: wait forever), got {timeout!r}.")
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int >= 0, got {value!r}.")
            if value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value}.")
        # Keras's enqueuer must stay off: see NOTE [ What model.fit trains on ].
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=max_queue_size)
        rank, world_size, self._keras_stride = _process_shard(rank, world_size)
        self.batches = Batches(dataset, batch_transform=batch_transform, **loader_keywords(locals()))
        self.loader_workers = workers
        # As in Keras: workers=0 means "in the main thread", whatever use_multiprocessing says.
        self.loader_use_multiprocessing = bool(use_multiprocessing) and workers > 0
        self._prefetcher = Prefetcher(
            self.batches,
            workers=workers,
            use_processes=self.loader_use_multiprocessing,
            queue_size=max_queue_size,
            start_method=multiprocessing_context or _default_start_method,
            timeout=float(timeout),
        )
        self._lock = threading.Lock()
        self._epoch = 0
        self._served = np.zeros(len(self.batches), dtype=bool)
        self._next_expected = 0
        self._warned_order = False

    @property
    def dataset(self) -> Source:
        return self.batches.dataset

    @property
    def epoch(self) -> int:
        """The epoch the next batches are served from."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Serve epoch `epoch` from now on (forgetting which batches of the current one were served)."""
        self.batches.set_epoch(epoch)  # validates
        self._move_to(int(epoch), 0)

    def _move_to(self, epoch: int, next_batch: int) -> None:
        with self._lock:
            self._epoch = epoch
            self._served[:] = False
            self._served[:next_batch] = True
            self._next_expected = next_batch

    def state_dict(self) -> dict[str, Any]:
        """The epoch being served and the next batch (the number served in order so far), with
        the options and a dataset fingerprint: the format of `xloader.Batches.state_dict`, so a
        state saved here resumes in `xloader.torch.DataLoader` or `Batches`, and back."""
        with self._lock:
            return self.batches.make_state(self._epoch, self._next_expected)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where the saved loader stopped. Iterating this object (`for x, y in ds`)
        resumes mid-epoch; `model.fit` always starts an epoch at its batch 0, so with `fit`
        resume at an epoch boundary (see `EpochSync`). Raises `ValueError` if the state was
        saved with other options or on other data (the message shows both sides)."""
        self._move_to(*self.batches.read_state(state))

    def __iter__(self) -> Iterator[Batch]:
        """The rest of the current epoch (from the next batch), then the epoch advances: the
        same iteration contract as `xloader.Batches` and `xloader.torch.DataLoader`."""
        for batch in range(self._next_expected, len(self.batches)):
            yield self._local(batch)
        self.on_epoch_end()

    def __len__(self) -> int:
        """Batches per epoch on this process; times the process count when Keras strides batch
        indices over processes (NOTE [ Shards under keras.distribution ])."""
        return len(self.batches) * self._keras_stride

    def _upcoming(self, epoch: int, batch: int):
        count = len(self.batches)
        yield from ((epoch, b) for b in range(batch + 1, count))
        yield from ((epoch + 1, b) for b in range(count))

    def __getitem__(self, index: int) -> Batch:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"batch index must be an int, got {index!r}.")
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} is out of range: this PyDataset has {len(self)} batches.")
        # NOTE [ Shards under keras.distribution ]: Keras asks this process for every stride-th index.
        return self._local(int(index) // self._keras_stride)

    def _local(self, index: int) -> Batch:
        with self._lock:
            epoch = self._epoch
            if index not in (0, self._next_expected) and not self._warned_order:
                self._warned_order = True
                previous = f"after batch {self._next_expected - 1}" if self._next_expected else "first"
                warnings.warn(
                    f"xloader.keras.PyDataset: batch {index} was requested {previous} in epoch {epoch}. "
                    "model.fit shuffles the batch order unless given shuffle=False, which breaks the "
                    "batch order shared with torch; xloader already shuffles the samples each epoch "
                    "(PyDataset(shuffle=True)), so call model.fit(..., shuffle=False). "
                    "(Reading batches out of order yourself is fine: each index still gives its batch.)",
                    stacklevel=3,  # the caller of __getitem__ or __iter__
                )
            self._next_expected = index + 1
            self._served[index] = True
        upcoming = islice(self._upcoming(epoch, index), self._prefetcher.queue_size)
        return self._prefetcher.get((epoch, index), upcoming)

    def on_epoch_end(self) -> None:
        """Advance to the next epoch if every batch of this one was served; otherwise do nothing."""
        with self._lock:
            if self._served.all():
                self._epoch += 1
                self._served[:] = False
                self._next_expected = 0

    def close(self) -> None:
        """Stop xloader's worker threads or processes (they restart if more batches are asked for)."""
        self._prefetcher.close()

    def __enter__(self) -> PyDataset:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "processes" if self.loader_use_multiprocessing else "threads"
        return f"xloader.keras.PyDataset({self.batches!r}, workers={self.loader_workers} {mode}, epoch={self._epoch})"
