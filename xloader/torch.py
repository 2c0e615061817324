"""`xloader.torch.DataLoader`: xloader batches as a real `torch.utils.data.DataLoader`.

# NOTE [ Epochs in torch workers ]
The sampler yields `(epoch, batch)` keys and each worker computes `Batches.get_batch(epoch, b)`,
so the epoch travels with the work: persistent workers, which keep the dataset copy they were
started with, still compute the right epoch. The sampler reads the epoch lazily, when its
iterator is first advanced, because a multi-process `DataLoader` calls `iter()` on it twice for
the first epoch. Auto-batching is off (`batch_size=None`): the core returns whole batches, so
torch's `default_collate` (tuple -> list, float64 promotion) never touches them.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import torch
import torch.utils.data
from torch._utils import ExceptionWrapper

from xloader import _opencv, _slots
from xloader.batching import Batches, BatchTransform, loader_keywords
from xloader.source import Source, y_is_image
from xloader.torch_options import (
    OptionView,
    WorkerInit,
    check_torch_kwargs,
    distributed_is_running,
    distributed_shard,
    identity_collate,
    loader_seed,
    refuse_keras_iteration,
    start_method,
)
from xloader.torch_workers import WorkersIterator

__all__ = ["DataLoader"]


class _SlotPool(_slots.SlotPool):
    """The one slot pool (`_slots.SlotPool`), registered under a `key` by which a worker's reply
    names it for torch's pin-memory thread, and receiving torch's replies (`_InSlot`)."""

    def __init__(self, count: int, nbytes: int):
        super().__init__(count, nbytes)
        self.key = next(_pool_keys)
        _pools[self.key] = self

    def received_reply(self, item: _InSlot) -> Any:
        """The batch of a worker's `_InSlot` reply: lent from its slot, or the batch it carries
        (one that did not fit, or the pinned copy); raises the worker's error."""
        lent = self.received(item.slot, item.layout)
        if lent is not None:
            return _as_tensors(lent)
        if isinstance(item.batch, ExceptionWrapper):
            item.batch.reraise()
        return item.batch


class _EpochBatchSampler(torch.utils.data.Sampler):
    """Yields (epoch, batch, slot) keys from `start_batch` on; `slot` is None unless a free
    shared-memory slot of `pool` is named for the batch. `set_epoch` is the loader's, for
    code that looks for it on `loader.sampler` (Accelerate, Lightning, torchvision's scripts)."""

    def __init__(self, num_batches: int, set_epoch: Any = None):
        self.num_batches = num_batches
        self.epoch = 0
        self.start_batch = 0
        self.pool: _SlotPool | None = None
        self._set_epoch = weakref.WeakMethod(set_epoch) if set_epoch is not None else None

    def set_epoch(self, epoch: int) -> None:
        """`loader.set_epoch(epoch)`: the next pass over the loader is epoch `epoch`."""
        loader_set_epoch = self._set_epoch() if self._set_epoch is not None else None
        if loader_set_epoch is None:
            raise RuntimeError("this sampler's xloader.torch.DataLoader no longer exists.")
        loader_set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[int, int, int | None]]:
        # Read at the first next(): NOTE [ Epochs in torch workers ].
        epoch, start_batch, pool = self.epoch, self.start_batch, self.pool
        if pool is not None:
            pool.reclaim_dispatched()
        for batch in range(start_batch, self.num_batches):
            yield epoch, batch, (pool.take() if pool is not None else None)


# Pools by key, for `_InSlot.pin_memory` (torch calls it with no way to pass the pool). Keys are
# never reused, so a late reply of a replaced pool finds nothing rather than another pool's slot.
_pools: weakref.WeakValueDictionary[int, _SlotPool] = weakref.WeakValueDictionary()
_pool_keys = itertools.count()


class _InSlot(NamedTuple):
    """What a worker returns for a task naming shared-memory slot `slot` of pool `pool` (a
    `_SlotPool.key`): the batch's `layout` in the slot, or (layout None) the `batch` itself as
    tensors when it did not fit or was copied out by `pin_memory`, or the worker's error as
    torch's `ExceptionWrapper`."""

    slot: int
    layout: Any
    batch: Any = None
    pool: int = -1

    def pin_memory(self, device: Any = None) -> _InSlot:
        """Called by torch's pin-memory thread (`pin_memory=True` with an accelerator), which
        runs in the main process between the workers and the consumer: the batch is copied from
        its slot into page-locked memory (the one copy torch's own pinning makes of any batch)
        and the reply no longer needs the slot, which the main thread gives back on receipt."""
        if isinstance(self.batch, ExceptionWrapper):
            return self
        try:
            if self.layout is None:
                batch = self.batch
            else:
                pool = _pools.get(self.pool)
                if pool is None:  # a reply to a pass whose loader is gone: nobody will read it
                    return self
                batch = _as_tensors(_slots.read(pool.slots[self.slot], self.layout))
            pinned = tuple(_pinned(t) for t in batch) if isinstance(batch, tuple) else _pinned(batch)
        except Exception:  # raised by `received`, once the slot is back (torch would drop the reply)
            return _InSlot(self.slot, None, ExceptionWrapper(where="in pin memory thread"), self.pool)
        return _InSlot(self.slot, None, pinned, self.pool)


def _pinned(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of `tensor` in page-locked memory for the current accelerator."""
    return tensor.pin_memory()


def _as_tensors(arrays: Any) -> Any:
    return tuple(torch.from_numpy(a) for a in arrays) if isinstance(arrays, tuple) else torch.from_numpy(arrays)


class _BatchDataset(torch.utils.data.Dataset):
    """Map-style view of `Batches` keyed by (epoch, batch, slot), returning tensors or `_InSlot`."""

    def __init__(self, batches: Batches, layout: str):
        self.batches = batches
        self.layout = layout
        self.slots: list[Any] | None = None  # set by DataLoader before its workers start
        self.pool_key = -1  # the key of the `_SlotPool` of those slots

    def __len__(self) -> int:
        # Samples, as `len(loader.dataset)` is in torch (the whole dataset, even when each rank
        # reads a shard): `correct / len(loader.dataset)` idioms count right. Batches: len(loader).
        return len(self.batches.dataset)

    def _y_to_layout(self, y: np.ndarray) -> np.ndarray:
        # A target that is an image too (label_mode="input") is laid out like x.
        return self._to_layout(y) if y_is_image(self.batches.dataset) else y

    def _to_layout(self, x: np.ndarray) -> np.ndarray:
        is_image = self.batches.dataset.x_is_image
        if is_image is None:
            is_image = x.ndim == 4
        if self.layout == "NCHW" and is_image and x.ndim == 4:
            return x.transpose(0, 3, 1, 2)
        return x

    def _channels_first(self) -> tuple[str, ...]:
        if self.layout != "NCHW":
            return ()
        dataset = self.batches.dataset
        fields = ("x",) if dataset.x_is_image is not False else ()
        return fields + (("y",) if y_is_image(dataset) else ())

    def __getitem__(self, key: tuple[int, int, int | None]) -> Any:
        epoch, batch, slot = key
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self.batches.fetch_ahead == 0:  # NOTE [ Remote storage ]
            self.batches.fetch_ahead = worker.num_workers  # torch hands worker w batches w, w + W, ...
        if slot is not None and self.slots is not None:
            # Built in place in the slot, already NCHW: NOTE [ Shared-memory slots ].
            try:
                layout, out = _slots.compute_in_slot(
                    self.batches, epoch, batch, self.slots[slot], self._channels_first()
                )
            except Exception:  # raised in the main process once the slot is back in the pool
                worker = torch.utils.data.get_worker_info()
                where = f"in DataLoader worker process {worker.id if worker is not None else 0}"  # torch's words
                return _InSlot(slot, None, ExceptionWrapper(where=where), self.pool_key)
            # A batch that did not fit goes torch's way (and sizes the next pass's slots).
            return _InSlot(slot, layout, None if out is None else self._tensors(out), self.pool_key)
        return self._tensors(self.batches.get_batch(epoch, batch))

    def _tensors(self, out: Any) -> Any:
        if isinstance(out, tuple):
            x, y = out
            return _tensor(self._to_layout(x)), _tensor(self._y_to_layout(y))
        return _tensor(self._to_layout(out))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


class _PassIterator:
    """Wraps torch's iterator for one pass: counts the batches handed out (the resume position)
    and lends batches from their shared-memory slot (`_SlotPool.received_reply`)."""

    def __init__(
        self,
        iterator: Any,
        pool: _SlotPool | None,
        position: list[int],
        num_batches: int,
        size: _slots.SlotSize,
    ):
        self.iterator = iterator
        self.pool = pool
        self.size = size
        self.position = position  # [epoch, next batch], shared with the DataLoader
        self.num_batches = num_batches

    def __iter__(self) -> _PassIterator:
        return self

    def __len__(self) -> int:
        return self.num_batches - self.position[1]

    def __next__(self) -> Any:
        item = next(self.iterator)
        if isinstance(item, _InSlot):
            assert self.pool is not None
            overflowed = item.layout is None and not isinstance(item.batch, ExceptionWrapper)
            item = self.pool.received_reply(item)  # raises a worker's error: the batch was not handed out
            if overflowed:
                self.size.measure(item)  # NOTE [ Slot sizing ]
        self.position[1] += 1
        return item


class DataLoader(torch.utils.data.DataLoader):
    """A real `torch.utils.data.DataLoader` over an xloader source.

    Each pass (`for x, y in loader`) is the next epoch, starting at 0; `set_epoch(e)` makes the
    next pass epoch `e` (as `DistributedSampler.set_epoch`). Batch `b` of epoch `e` is
    `xloader.Batches.get_batch(e, b)` as tensors: `(x, y)` (or `x` alone with `to_fit=False`),
    images as (N, C, H, W) by default (`layout="NHWC"` keeps (N, H, W, C)), other arrays as they
    are; dtypes are kept (uint8 images unless the transform normalises, int64 class labels).
    The values are bit-identical to `xloader.keras.PyDataset`'s for the same dataset, options
    and epoch, for any `num_workers`, persistent or not.

    torch's attributes read as torch users expect: `len(loader)` is batches per epoch (this
    rank's); `len(loader.dataset)` is the number of samples in the source (all ranks', as with
    `DistributedSampler`); `loader.batch_size` and `loader.drop_last` are the options given
    (batching itself is xloader's: torch sees `batch_size=None`); `loader.sampler.set_epoch`
    is `loader.set_epoch`. Keras's `model.fit` cannot take this loader (it iterates it more
    than once per epoch): it raises `TypeError` naming `xloader.keras.PyDataset`.

    Args:
        dataset: an xloader source (`ImageFolder`, `ImageMaskFolder`, `FileList`, `ArrayDataset`).
        batch_size, shuffle, drop_last, to_fit: see `xloader.Batches`.
        seed: a non-negative int, or None (default) to draw one once, here, from torch's global
            RNG (as torch's DataLoader does: `torch.manual_seed` makes it repeat); 0 when
            sharded (`world_size > 1`), so every rank has the same order. Recorded in `repr`
            and `state_dict()`.
        batch_transform: `fn(batch, generator) -> batch` on each whole NumPy batch (NHWC),
            run in the worker: `xloader.MixUp`, `xloader.CutMix` (NOTE [ Batch transforms ]).
        layout: "NCHW" (default, what `torch.nn.Conv2d` expects) or "NHWC".
        num_workers, pin_memory, persistent_workers, prefetch_factor, timeout, multiprocessing_context, worker_init_fn: as in torch,
            except that worker processes start with "forkserver" (not fork) by default once a
            `torch.distributed` process group runs: a forked worker can abort the rank.
        rank, world_size, shard_mode: this process's shard of every epoch, as `DistributedSampler`
            (same `set_epoch` contract; see `xloader.LoaderOptions`); None reads rank and
            world_size from `torch.distributed` when it is initialised (under `torchrun`).
        weights, replacement: as torch's `WeightedRandomSampler`, see `xloader.LoaderOptions`.

    Exact resume: `state_dict()` / `load_state_dict()` save and restore the position (epoch and
    next batch) with the options and a dataset fingerprint; a state from any `num_workers`, from
    `xloader.keras.PyDataset` or from `xloader.Batches` resumes the same batches.

    Example:
        >>> loader = DataLoader(ImageFolder("data/train", image_size=(224, 224)),  # doctest: +SKIP
        ...                     batch_size=32, shuffle=True, seed=0, num_workers=2)
        >>> for epoch in range(5):  # doctest: +SKIP
        ...     for x, y in loader:
        ...         ...
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
        layout: Literal["NCHW", "NHWC"] = "NCHW",
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        timeout: float = 0,
        multiprocessing_context: Any = None,
        worker_init_fn: Any = None,
        rank: int | None = None,
        world_size: int | None = None,
        shard_mode: str = "pad",
        weights: Any = None,
        replacement: bool = True,
        **torch_kwargs: Any,
    ):
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}.")
        check_torch_kwargs(torch_kwargs)
        rank, world_size = distributed_shard(rank, world_size)
        seed, seed_drawn = loader_seed(seed, world_size)
        if multiprocessing_context is None and num_workers > 0 and distributed_is_running():
            # A worker forked from a rank whose process group runs (gloo/NCCL threads) can abort
            # the rank at exit (measured with gloo: about 1 run in 6). forkserver forks a clean server.
            multiprocessing_context = "forkserver"
        batches = Batches(dataset, batch_transform=batch_transform, **loader_keywords(locals()))
        batches.seed_drawn = seed_drawn
        self.batches = batches
        self.layout = layout
        self._epoch_sampler = _EpochBatchSampler(len(batches), self.set_epoch)
        self._next_epoch = 0
        self._start_batch = 0
        self._position: list[int] | None = None  # [epoch, next batch] of the pass in progress
        self._slot_size = _slots.SlotSize(batches.options.batch_size)
        super().__init__(
            _BatchDataset(batches, layout),
            batch_size=None,
            sampler=self._epoch_sampler,
            collate_fn=identity_collate,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            timeout=timeout,
            multiprocessing_context=multiprocessing_context,
            worker_init_fn=WorkerInit(worker_init_fn, start_method(multiprocessing_context) != "fork"),
            **torch_kwargs,
        )

    # The options as given (torch itself sees batch_size=None: batches come whole); `seed` is
    # the one in use, given or drawn.
    batch_size = OptionView("batch_size")
    drop_last = OptionView("drop_last")
    seed = OptionView("seed")

    def __repr__(self) -> str:
        return f"xloader.torch.DataLoader({self.batches!r}, num_workers={self.num_workers}, layout={self.layout!r})"

    @property
    def source(self) -> Source:
        """The xloader source (`loader.dataset` is torch's view of it, keyed by (epoch, batch))."""
        return self.batches.dataset

    @property
    def epoch(self) -> int:
        """The epoch the next pass over the loader will produce."""
        return int(self._next_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch `epoch`, from its first batch; later passes continue from there."""
        self.batches.set_epoch(epoch)  # validates
        self._next_epoch, self._start_batch, self._position = int(epoch), 0, None

    def state_dict(self) -> dict[str, Any]:
        """Where this loader stands: inside a pass, the epoch and the next batch to hand out;
        between passes, the next pass. See `xloader.Batches.state_dict` (the same format: a state
        saved here loads into `Batches`, `xloader.keras.PyDataset` or a loader with another
        `num_workers`)."""
        if self._position is not None:
            return self.batches.make_state(*self._position)
        return self.batches.make_state(self._next_epoch, self._start_batch)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next pass continue where the saved loader stopped: the rest of the saved
        epoch, then the following epochs. Raises `ValueError` if the state was saved with other
        options or on other data (the message shows both sides)."""
        self._next_epoch, self._start_batch = self.batches.read_state(state)
        self._position = None

    def _get_iterator(self) -> Any:
        if self.num_workers == 0:
            return super()._get_iterator()
        self.check_worker_number_rationality()
        return WorkersIterator(self)

    def _uses_slots(self) -> bool:
        return self.num_workers > 0

    def _allocate_slots(self) -> None:
        # torch keeps num_workers * prefetch_factor tasks in flight and dispatches the next one
        # while a plain for loop still holds the previous batch (lent from its slot): two more
        # slots than that keep such a loop off torch's slower transfer.
        count = self.num_workers * (self.prefetch_factor or 2) + 2
        pool = _SlotPool(count, self._slot_size.of(self.batches))  # NOTE [ Slot sizing ]
        dataset = cast(_BatchDataset, self.dataset)  # torch types it as any Dataset
        dataset.slots, dataset.pool_key = pool.slots, pool.key
        self._epoch_sampler.pool = pool

    def __iter__(self) -> Any:
        refuse_keras_iteration()
        epoch, start_batch = self._next_epoch, self._start_batch
        self._epoch_sampler.epoch, self._epoch_sampler.start_batch = epoch, start_batch
        self._next_epoch, self._start_batch = epoch + 1, 0
        self._position = [epoch, start_batch]
        starts_workers = self.num_workers > 0 and (self._iterator is None or not self.persistent_workers)
        if not starts_workers:
            iterator = super().__iter__()
        else:
            if self._uses_slots():
                self._allocate_slots()  # before the workers start: they inherit these slots
            with _opencv.single_threaded_for_fork():  # NOTE [ OpenCV threads in workers ]
                iterator = super().__iter__()
        pool = self._epoch_sampler.pool if self._uses_slots() else None
        return _PassIterator(iterator, pool, self._position, len(self.batches), self._slot_size)
