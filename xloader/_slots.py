"""Batches handed from worker processes to the main process through reusable shared memory.

# NOTE [ Shared-memory slots ]
Pickling a float32 224x224 batch through a pipe (Keras's process pool) or letting torch move a
fresh tensor into new shared memory (`share_memory_`, 0.74 ms per image here) costs about as
much as decoding the images. Instead the main process allocates a few slots up front as
`multiprocessing` RawArrays, whose backing file is unlinked at creation and whose descriptor
reaches each worker when it starts (fork inherits it; spawn/forkserver pass it), so no segment
can outlive the processes, even after SIGKILL. A worker writes its batch into the slot named in
its task and returns only the layout; the main process copies the batch out and frees the slot.
Who may use which slot when is the caller's job (Keras: a free list; torch: batch % slots).
A batch that does not fit its slot (e.g. images of varying size) is returned as it is.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any

import numpy as np

Layout = tuple[bool, tuple[tuple[tuple[int, ...], str, int], ...]]
"""(was the batch a tuple, ((shape, dtype, byte offset) per array))."""


def allocate(count: int, nbytes: int, start_method: str | None = None) -> list[Any]:
    context = multiprocessing.get_context(start_method)
    return [context.RawArray("B", max(nbytes, 1)) for _ in range(count)]


def batch_nbytes(batch: Any) -> int:
    arrays = batch if isinstance(batch, tuple) else (batch,)
    return sum(np.asarray(a).nbytes for a in arrays)


def write(slot: Any, batch: Any, transforms: Sequence[Any] | None = None) -> Layout | None:
    """Write `batch` (an array or tuple of arrays) into `slot`; None if it does not fit.

    `transforms[i]`, if given, maps array i to the view actually stored (e.g. a transpose); the
    copy into the slot is then the only copy made.
    """
    arrays = batch if isinstance(batch, tuple) else (batch,)
    if transforms is not None:
        arrays = tuple(t(a) if t is not None else a for t, a in zip(transforms, arrays, strict=False))
    if sum(a.nbytes for a in arrays) > len(slot):
        return None
    buffer = np.frombuffer(slot, dtype=np.uint8)
    layout = []
    offset = 0
    for array in arrays:
        target = buffer[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)
        np.copyto(target, array)
        layout.append((tuple(array.shape), array.dtype.str, offset))
        offset += array.nbytes
    return isinstance(batch, tuple), tuple(layout)


def read(slot: Any, layout: Layout) -> Any:
    """Copies of the arrays described by `layout`, as the batch structure that was written."""
    is_tuple, entries = layout
    buffer = np.frombuffer(slot, dtype=np.uint8)
    arrays = []
    for shape, dtype, offset in entries:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        arrays.append(buffer[offset : offset + size].view(dtype).reshape(shape).copy())
    return tuple(arrays) if is_tuple else arrays[0]
