"""Batches handed from worker processes to the main process through reusable shared memory.

# NOTE [ Shared-memory slots ]
Pickling a float32 224x224 batch through a pipe (Keras's process pool) or letting torch move a
fresh tensor into new shared memory (`share_memory_`, 0.74 ms per image here) costs about as
much as decoding the images. Instead the main process allocates a few slots up front as
`multiprocessing` shared ctypes arrays, whose backing file is unlinked at creation and whose descriptor
reaches each worker when it starts (fork inherits it; spawn/forkserver pass it), so no segment
can outlive the processes, even after SIGKILL. A worker writes its batch into the slot named in
its task (`SlotWriter`: the batch is built in place, in the layout the consumer wants, so the
decoded samples are copied once) and returns only the layout.
The main process then lends the slot to the consumer (`lease`): the batch it hands out is
arrays viewing the slot, not a copy (a 19 MB copy per batch cost 0.06 ms of main-process CPU
per image), and the slot is free again only once every array, view or tensor made from them
is gone. A consumer that keeps batches keeps their slots; when no slot is free, a batch goes
the ordinary, slower way (Keras: pickled; torch: its own shared memory), never overwriting one.
With torch's `pin_memory=True`, its pin-memory thread copies the batch from the slot into
page-locked memory instead (`read`, no lease), and the slot is free once the batch is received.
Who may use which slot when is decided in the main process by one `SlotPool` (a free list,
filled by `lease`'s release callback), shared by both adapters, as are the one function a worker
builds a batch with (`compute_in_slot`) and the one sizing rule (`SlotSize`). A batch that does
not fit its slot (e.g. images of varying size) is returned as it is.

# NOTE [ Slot sizing ]
A slot holds one full batch: `Batches.full_batch_nbytes()`, the bytes of sample 0 stacked
`batch_size` times and put through the batch transform (MixUp turns labels into float one-hot
rows), so shapes and dtypes are those the workers write. Each adapter computes it once and keeps
it (`SlotSize`): later pools and passes, and restarted workers, allocate without decoding
anything in the main process. A batch that overflows its slot (images of varying size) goes the
ordinary way and raises the size for the next allocation.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import weakref
from collections.abc import Callable, Sequence
from multiprocessing import sharedctypes
from typing import Any

import numpy as np

# Each field starts on a 64-byte boundary, as NumPy's own allocations do for large arrays
# (SIMD loads, and TensorFlow's zero-copy of NumPy memory needs it); a batch is x or (x, y).
_ALIGNMENT = 64
_MAX_FIELDS = 2

Layout = tuple[bool, tuple[tuple[tuple[int, ...], str, int], ...]]
"""(was the batch a tuple, ((shape, dtype, byte offset) per array))."""


def allocate(count: int, nbytes: int) -> list[Any]:
    """`count` shared-memory slots of `nbytes` bytes each, as ctypes byte arrays.

    Like `multiprocessing.RawArray` without its zero fill, which costs 0.25 s for 14 float32
    224x224x3 batches and makes every page resident at once: a slot's pages then cost memory
    only once a worker writes them (and free slots are reused last-in first-out)."""
    size = nbytes + _MAX_FIELDS * _ALIGNMENT  # room to start each field on an aligned address
    new_value = getattr(sharedctypes, "_new_value", None)  # RawArray's allocator, before the fill
    if new_value is None:  # pragma: no cover - a Python without it
        return [multiprocessing.RawArray("B", size) for _ in range(count)]
    return [new_value(ctypes.c_uint8 * size) for _ in range(count)]


def batch_nbytes(batch: Any) -> int:
    arrays = batch if isinstance(batch, tuple) else (batch,)
    return sum(np.asarray(a).nbytes for a in arrays)


class SlotSize:
    """The slot size of one loader: NOTE [ Slot sizing ]. `nbytes` is None until first needed."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.nbytes: int | None = None

    def of(self, batches: Any) -> int:
        """The size for `batches` (an `xloader.Batches`): computed the first time, then kept."""
        if self.nbytes is None:
            self.nbytes = int(batches.full_batch_nbytes())
        return self.nbytes

    def measure(self, batch: Any) -> int:
        """Make room for full batches like `batch` (one that overflowed its slot; a short last
        batch counts per sample); never shrinks. Returns the size."""
        arrays = batch if isinstance(batch, tuple) else (batch,)
        per_sample = -(-batch_nbytes(batch) // max(len(arrays[0]), 1))
        self.nbytes = max(self.nbytes or 0, per_sample * self.batch_size)
        return self.nbytes


class SlotPool:
    """Shared-memory slots and the main process's record of which one a worker may write next.

    A slot is free, `dispatched` (named in a task whose reply was not yet `received`), or lent
    to the consumer until the batch it holds is garbage collected (`lend`'s lease then gives it
    back). Free slots are used last-in first-out, so a consumer that drops each batch keeps few
    slots' pages in use. Releases may come from any thread; deque append and pop are atomic.
    """

    def __init__(self, count: int, nbytes: int):
        self.slots = allocate(count, nbytes)
        self.free: collections.deque[int] = collections.deque(range(count))
        self.dispatched: set[int] = set()

    def take(self) -> int | None:
        """A free slot for the next task, or None if the consumer holds them all."""
        try:
            slot = self.free.pop()
        except IndexError:
            return None
        self.dispatched.add(slot)
        return slot

    def give_back(self, slot: int) -> None:
        self.free.append(slot)

    def received(self, slot: int, layout: Layout | None) -> Any:
        """The reply for `slot` arrived: the batch of `layout` lent from the slot (free again once
        that batch is garbage collected), or None, and the slot is free now (layout None: the
        batch came back some other way, or not at all)."""
        self.dispatched.discard(slot)
        if layout is None:
            self.give_back(slot)
            return None
        return lease(self.slots[slot], layout, _GiveBack(self, slot))

    def reclaim_dispatched(self) -> None:
        """Every dispatched slot is free again: its task was abandoned and has ended (torch drains
        an abandoned pass's tasks before its persistent workers start the next one)."""
        for slot in self.dispatched:
            self.free.append(slot)
        self.dispatched.clear()


class _GiveBack:
    """`pool.give_back(slot)` for a lease, holding the pool weakly: a batch kept after its loader
    is gone keeps its own slot's memory (the lease does), not the whole pool."""

    def __init__(self, pool: SlotPool, slot: int):
        self.pool = weakref.ref(pool)
        self.slot = slot

    def __call__(self) -> None:
        pool = self.pool()
        if pool is not None:
            pool.give_back(self.slot)


def compute_in_slot(
    batches: Any, epoch: int, batch: int, slot: Any, channels_first: Sequence[str] = ()
) -> tuple[Layout | None, Any]:
    """Worker side, for both adapters: batch `batch` of `epoch` (`batches.get_batch`) built in
    place in `slot`. Returns (its layout, None), or (None, the batch as fresh arrays) when it did
    not fit (then it goes the ordinary way). Raises what `get_batch` raises."""
    writer = SlotWriter(slot, channels_first)
    out = batches.get_batch(epoch, batch, allocate=writer.allocate)
    if not writer.overflow:
        return writer.layout(isinstance(out, tuple)), None
    # Parts may live in the slot: copy them out.
    return None, tuple(np.array(a) for a in out) if isinstance(out, tuple) else np.array(out)


class SlotWriter:
    """Hands out batch arrays carved from one slot, so a worker builds its batch in place.

    Fields in `channels_first` ("x", "y") with 4-D (N, H, W, C) batches are stored as
    (N, C, H, W): the array handed out is a transposed view, so writing a sample into it is the
    layout change and the only copy. `overflow` is True if a field did not fit (it is then
    built in a fresh array and the batch must go the ordinary way).
    """

    def __init__(self, slot: Any, channels_first: Sequence[str] = ()):
        self.buffer = np.frombuffer(slot, dtype=np.uint8)
        self.address = ctypes.addressof(slot)
        self.channels_first = frozenset(channels_first)
        self.entries: list[tuple[tuple[int, ...], str, int]] = []
        self.offset = 0
        self.overflow = False

    def allocate(self, field: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        dtype = np.dtype(dtype)
        transposed = field in self.channels_first and len(shape) == 4
        stored = (shape[0], shape[3], shape[1], shape[2]) if transposed else tuple(shape)
        nbytes = int(np.prod(stored, dtype=np.int64)) * dtype.itemsize
        start = self.offset + (-(self.address + self.offset) % _ALIGNMENT)
        if self.overflow or start + nbytes > len(self.buffer):
            self.overflow = True
            return None
        region = self.buffer[start : start + nbytes].view(dtype).reshape(stored)
        self.entries.append((stored, dtype.str, start))
        self.offset = start + nbytes
        return region.transpose(0, 2, 3, 1) if transposed else region

    def layout(self, is_tuple: bool) -> Layout:
        return is_tuple, tuple(self.entries)


class _Lease:
    """Exposes a slot to NumPy as one uint8 array (`__array_interface__`). Arrays made from it keep
    this object as their base, which NumPy never collapses past (it is not an ndarray), so it
    lives exactly as long as the last array, view or tensor that uses the slot's memory."""

    def __init__(self, slot: Any):
        self.slot = slot  # keeps the memory mapped while anything views it
        self.__array_interface__ = {
            "shape": (ctypes.sizeof(slot),),
            "typestr": "|u1",
            "data": (ctypes.addressof(slot), False),
            "version": 3,
        }


def lease(slot: Any, layout: Layout, release: Callable[[], None]) -> Any:
    """The batch described by `layout` as arrays viewing `slot` (no copy), in the structure that
    was written. `release()` is called once, when those arrays and everything made from them
    (views, `torch.from_numpy` tensors, ...) have been garbage collected; until then the caller
    must not hand the slot to a worker."""
    owner = _Lease(slot)
    weakref.finalize(owner, release)
    return _views(np.asarray(owner), layout)


def read(slot: Any, layout: Layout) -> Any:
    """The batch described by `layout` as arrays viewing `slot`, without a lease: for a caller
    that copies the batch out before it gives the slot back (torch's pin-memory thread)."""
    return _views(np.frombuffer(slot, dtype=np.uint8), layout)


def _views(buffer: np.ndarray, layout: Layout) -> Any:
    is_tuple, entries = layout
    arrays = []
    for shape, dtype, offset in entries:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        arrays.append(buffer[offset : offset + size].view(dtype).reshape(shape))
    return tuple(arrays) if is_tuple else arrays[0]
