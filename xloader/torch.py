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

import multiprocessing
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.utils.data

from xloader import _slots
from xloader.batching import Batches
from xloader.sources._base import Source

__all__ = ["DataLoader"]


class _EpochBatchSampler(torch.utils.data.Sampler):
    """Yields (epoch, batch, slot) keys; `slot` is None unless shared-memory slots are in use."""

    def __init__(self, num_batches: int):
        self.num_batches = num_batches
        self.epoch = 0
        self.slot_count = 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[int, int, int | None]]:
        epoch, slot_count = self.epoch, self.slot_count  # read at the first next(): NOTE [ Epochs in torch workers ]
        for batch in range(self.num_batches):
            yield epoch, batch, (batch % slot_count if slot_count else None)


class _InSlot(NamedTuple):
    """What a worker returns when the batch is in shared-memory slot `slot`."""

    slot: int
    layout: Any


class _BatchDataset(torch.utils.data.Dataset):
    """Map-style view of `Batches` keyed by (epoch, batch, slot), returning tensors or `_InSlot`."""

    def __init__(self, batches: Batches, layout: str):
        self.batches = batches
        self.layout = layout
        self.slots: list[Any] | None = None  # set by DataLoader before its workers start

    def __len__(self) -> int:
        return len(self.batches)

    def _to_layout(self, x: np.ndarray) -> np.ndarray:
        is_image = self.batches.dataset.x_is_image
        if is_image is None:
            is_image = x.ndim == 4
        if self.layout == "NCHW" and is_image and x.ndim == 4:
            return x.transpose(0, 3, 1, 2)
        return x

    def __getitem__(self, key: tuple[int, int, int | None]) -> Any:
        epoch, batch, slot = key
        out = self.batches.get_batch(epoch, batch)
        if slot is not None and self.slots is not None:
            layout = _slots.write(self.slots[slot], out, (self._to_layout, None))
            if layout is not None:
                return _InSlot(slot, layout)
        if isinstance(out, tuple):
            x, y = out
            return _tensor(self._to_layout(x)), _tensor(y)
        return _tensor(self._to_layout(out))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


class _SlotReader:
    """Wraps torch's iterator: copies batches out of their slot before the slot can be reused.

    torch keeps at most `num_workers * prefetch_factor` tasks ahead, in order, and dispatches
    the next one only when a batch is returned; with more slots than that, the slot of batch j
    is not written again before batch j has been copied out here.
    """

    def __init__(self, iterator: Any, slots: list[Any]):
        self.iterator = iterator
        self.slots = slots

    def __iter__(self) -> _SlotReader:
        return self

    def __len__(self) -> int:
        return len(self.iterator)

    def __next__(self) -> Any:
        item = next(self.iterator)
        if not isinstance(item, _InSlot):
            return item
        out = _slots.read(self.slots[item.slot], item.layout)
        return tuple(torch.from_numpy(a) for a in out) if isinstance(out, tuple) else torch.from_numpy(out)


def _identity(batch: Any) -> Any:
    return batch


# NOTE [ OpenCV threads in workers ]
# Each worker process already keeps a core busy; OpenCV's own thread pool inside each of them
# oversubscribes the cores (measured: 2 forked workers barely beat 0). Calling
# cv2.setNumThreads(1) inside a *forked* worker deadlocks when the parent had used the pool,
# so forked workers are started while the parent is set to one thread (restored right after),
# and workers started by spawn/forkserver pin themselves in their init function.


class _WorkerInit:
    """Pins OpenCV to one thread in a spawn/forkserver worker, then runs the user's
    `worker_init_fn`. A class rather than a closure so spawn can pickle it."""

    def __init__(self, user_fn: Any, pin_opencv: bool):
        self.user_fn = user_fn
        self.pin_opencv = pin_opencv

    def __call__(self, worker_id: int) -> None:
        if self.pin_opencv:
            import cv2

            cv2.setNumThreads(1)
        if self.user_fn is not None:
            self.user_fn(worker_id)


def _start_method(context: Any) -> str:
    if context is None:
        return multiprocessing.get_start_method()
    return context if isinstance(context, str) else context.get_start_method()


class DataLoader(torch.utils.data.DataLoader):
    """A real `torch.utils.data.DataLoader` over an xloader source.

    Each pass (`for x, y in loader`) is the next epoch, starting at 0; `set_epoch(e)` makes the
    next pass epoch `e` (as `DistributedSampler.set_epoch`). Batch `b` of epoch `e` is
    `xloader.Batches.get_batch(e, b)` as tensors: `(x, y)` (or `x` alone with `to_fit=False`),
    images as (N, C, H, W) by default (`layout="NHWC"` keeps (N, H, W, C)), other arrays as they
    are; dtypes are kept (uint8 images unless the transform normalises, int64 class labels).
    The values are bit-identical to `xloader.keras.PyDataset`'s for the same dataset, options
    and epoch, for any `num_workers`, persistent or not.

    Args:
        dataset: an xloader source (`ImageFolder`, `ImageMaskFolder`, `FileList`, `ArrayDataset`).
        batch_size, shuffle, seed, drop_last, to_fit: see `xloader.Batches`.
        layout: "NCHW" (default, what `torch.nn.Conv2d` expects) or "NHWC".
        num_workers, pin_memory, persistent_workers, prefetch_factor, timeout,
        multiprocessing_context, worker_init_fn, pin_memory_device, in_order: as in torch.

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
        seed: int = 0,
        drop_last: bool = False,
        to_fit: bool = True,
        layout: Literal["NCHW", "NHWC"] = "NCHW",
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        timeout: float = 0,
        multiprocessing_context: Any = None,
        worker_init_fn: Any = None,
        **torch_kwargs: Any,
    ):
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}.")
        for reserved in ("sampler", "batch_sampler", "collate_fn", "generator"):
            if reserved in torch_kwargs:
                raise TypeError(f"xloader.torch.DataLoader decides {reserved} itself; do not pass it.")
        batches = Batches(
            dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, to_fit=to_fit
        )
        self.batches = batches
        self.layout = layout
        self._epoch_sampler = _EpochBatchSampler(len(batches))
        self._next_epoch = 0
        super().__init__(
            _BatchDataset(batches, layout),
            batch_size=None,
            sampler=self._epoch_sampler,
            collate_fn=_identity,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            timeout=timeout,
            multiprocessing_context=multiprocessing_context,
            worker_init_fn=_WorkerInit(worker_init_fn, _start_method(multiprocessing_context) != "fork"),
            **torch_kwargs,
        )

    @property
    def source(self) -> Source:
        """The xloader source (`loader.dataset` is torch's view of it, keyed by (epoch, batch))."""
        return self.batches.dataset

    @property
    def epoch(self) -> int:
        """The epoch the next pass over the loader will produce."""
        return self._next_epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch `epoch`; later passes continue from there."""
        self.batches.set_epoch(epoch)  # validates
        self._next_epoch = int(epoch)

    def _uses_slots(self) -> bool:
        # Slots need in-order delivery and no pin-memory thread between workers and us.
        return self.num_workers > 0 and not self.pin_memory and getattr(self, "in_order", True)

    def _allocate_slots(self) -> None:
        x, y = self.batches.dataset.load(
            0, seed=self.batches.options.seed, epoch=0, with_targets=self.batches.with_targets
        )
        nbytes = self.batches.options.batch_size * (
            np.asarray(x).nbytes + (np.asarray(y).nbytes if y is not None else 0)
        )
        count = self.num_workers * (self.prefetch_factor or 2) + 2
        self.dataset.slots = _slots.allocate(count, nbytes, _start_method(self.multiprocessing_context))
        self._epoch_sampler.slot_count = count

    def __iter__(self) -> Any:
        self._epoch_sampler.epoch = self._next_epoch
        self._next_epoch += 1
        starts_workers = self.num_workers > 0 and (self._iterator is None or not self.persistent_workers)
        if not starts_workers:
            iterator = super().__iter__()
        else:
            if self._uses_slots():
                self._allocate_slots()  # before the workers start: they inherit these slots
            import cv2

            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)  # see NOTE [ OpenCV threads in workers ]
            try:
                iterator = super().__iter__()
            finally:
                cv2.setNumThreads(threads)
        return _SlotReader(iterator, self.dataset.slots) if self._uses_slots() else iterator
