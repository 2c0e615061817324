"""Worker threads or processes that compute batches ahead of the requests, keyed by (epoch, batch).

# NOTE [ Keyed prefetch ]
A prefetched result is stored under the (epoch, batch) it was computed for, and a request only
ever takes the result of its own key. A wrong guess about what comes next (a build pass, an
out-of-order request, an epoch that did not advance) wastes work; it never serves a stale batch.
This is what Keras's own enqueuer gets wrong (it serves whatever it queued last epoch first).
Workers are started once and live until `close()`: no re-fork (and re-import) every epoch.
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

import numpy as np

from xloader import _opencv, _slots
from xloader.batching import Batch, Batches
from xloader.errors import WorkerDiedError

Key = tuple[int, int]

# Process workers return batches through shared memory: NOTE [ Shared-memory slots ] in _slots.py.

_worker_batches: Batches | None = None
_worker_slots: list | None = None


def _init_process(batches: Batches, slots: list, pin_opencv: bool) -> None:
    global _worker_batches, _worker_slots
    _worker_batches, _worker_slots = batches, slots
    if pin_opencv:  # NOTE [ OpenCV threads in workers ] (xloader/_opencv.py)
        _opencv.pin_one_thread()


def _compute_in_process(epoch: int, batch: int, slot: int | None) -> tuple[str, object]:
    assert _worker_batches is not None and _worker_slots is not None, "worker process was not initialised"
    if slot is None:
        return "inline", _worker_batches.get_batch(epoch, batch)
    writer = _slots.SlotWriter(_worker_slots[slot])  # the batch is built in the slot
    result = _worker_batches.get_batch(epoch, batch, allocate=writer.allocate)
    if writer.overflow:
        return "inline", tuple(np.array(a) for a in result) if isinstance(result, tuple) else np.array(result)
    return "slot", writer.layout(isinstance(result, tuple))


def default_start_method() -> str:
    """forkserver where available (no fork of a process that may run JAX/TF/CUDA threads), else spawn."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _retire(executor: ProcessPoolExecutor, slots: list) -> None:
    """Stop `executor` now (pending tasks cancelled), and keep `slots` allocated until its
    workers have exited: they still run the tasks already in the call queue, writing into the
    slots, and multiprocessing's heap would hand that memory to the next allocation. The
    executor's manager thread joins the workers before it ends, so it carries the slots."""
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    if manager is not None:
        manager.xloader_slots = slots


def _release_if_alive(prefetcher: weakref.ref[Prefetcher], slot: int, generation: int) -> None:
    alive = prefetcher()
    if alive is not None:
        alive._release_slot(slot, generation)


class Prefetcher:
    """Computes `batches.get_batch(epoch, b)` on `workers` threads or processes, ahead of time.

    With `workers <= 1` and no processes, batches are computed in the calling thread.
    `get(key, upcoming)` returns the batch of `key` and keeps up to `queue_size` of the
    `upcoming` keys in flight. Thread-safe. Process workers return batches through shared
    memory (NOTE [ Shared-memory slots ]); the first requested batch is computed in the calling
    process while they start, and sizes the slots.
    """

    def __init__(
        self,
        batches: Batches,
        *,
        workers: int,
        use_processes: bool,
        queue_size: int,
        start_method: str | Callable[[], str | None] | None = None,
    ):
        self.batches = batches
        self.workers = workers
        self.use_processes = use_processes
        self.queue_size = max(queue_size, 0)
        self._start_method_choice = start_method
        self.start_method: str | None = None  # decided when the processes start
        self._executor: Executor | None = None
        self._pending: dict[Key, tuple[Future, int | None]] = {}
        self._slots: list = []
        self._free_slots: list[int] = []
        self._lock = threading.RLock()  # RLock: a done-callback may release a slot while we hold it
        self._generation = 0  # bumped when the pool is discarded, so late releases are ignored

    @property
    def synchronous(self) -> bool:
        return self.workers <= 1 and not self.use_processes

    def _start_processes(self, first_batch: Batch) -> Executor:
        # Decided now, not at construction: e.g. torch.distributed may have started since.
        choice = self._start_method_choice
        self.start_method = (choice() if callable(choice) else choice) or default_start_method()
        context = multiprocessing.get_context(self.start_method)
        # The batches in flight, plus two lent out: the one the consumer holds while it asks
        # for the next, and that next one.
        count = self.queue_size + max(self.workers, 1) + 2
        # Sized for a full batch even when the first one computed is the short last batch.
        samples = len(first_batch[0] if isinstance(first_batch, tuple) else first_batch)
        nbytes = -(-_slots.batch_nbytes(first_batch) // samples) * self.batches.options.batch_size
        self._slots = _slots.allocate(count, nbytes)
        self._free_slots = list(range(len(self._slots)))
        executor = ProcessPoolExecutor(
            max_workers=max(self.workers, 1),
            mp_context=context,
            initializer=_init_process,
            initargs=(self.batches, self._slots, self.start_method != "fork"),
        )
        if self.start_method == "fork":
            # The pool forks every worker at its first submit: do it now, OpenCV on one thread.
            with _opencv.single_threaded_for_fork():
                executor.submit(int)
        return executor

    def _submit(self, executor: Executor, key: Key, *, required: bool) -> tuple[Future, int | None] | None:
        if not self.use_processes:
            return executor.submit(self.batches.get_batch, *key), None
        slot = self._free_slots.pop() if self._free_slots else None
        if slot is None and not required:
            return None  # every slot is busy: prefetch less rather than fall back to pickling
        return executor.submit(_compute_in_process, *key, slot), slot

    def _release_slot(self, slot: int | None, generation: int) -> None:
        with self._lock:
            if slot is not None and generation == self._generation:
                self._free_slots.append(slot)

    def _drop(self, future: Future, slot: int | None, generation: int) -> None:
        if future.cancel():
            self._release_slot(slot, generation)
        elif slot is not None:  # still running (or done): its slot is free once it finishes
            future.add_done_callback(lambda _future: self._release_slot(slot, generation))

    def get(self, key: Key, upcoming: Iterable[Key] = ()) -> Batch:
        """The batch of `key` = (epoch, batch); starts work on the next `queue_size` of `upcoming`."""
        if self.synchronous:
            return self.batches.get_batch(*key)
        first_batch = None
        if self.use_processes and self._executor is None:
            first_batch = self.batches.get_batch(*key)  # serve it while the workers start
        with self._lock:
            if self._executor is None:
                if self.use_processes:
                    self._executor = self._start_processes(first_batch)
                else:
                    self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="xloader")
            executor = self._executor
            wanted = list(islice((k for k in upcoming if k != key), self.queue_size))
            if first_batch is None:
                wanted.insert(0, key)
            wanted_set = set(wanted)
            for stale in [k for k in self._pending if k not in wanted_set]:
                self._drop(*self._pending.pop(stale), self._generation)
            for k in wanted:
                if k not in self._pending:
                    submitted = self._submit(executor, k, required=k == key)
                    if submitted is not None:
                        self._pending[k] = submitted
            if first_batch is not None:
                return first_batch
            future, slot = self._pending.pop(key)
            generation, slots = self._generation, self._slots
        try:
            kind, payload = future.result() if self.use_processes else ("inline", future.result())
        except BrokenProcessPool as error:
            self._discard_executor()
            raise WorkerDiedError(
                f"an xloader worker process died while computing batch {key[1]} of epoch {key[0]} "
                "(killed by a signal, e.g. the out-of-memory killer?). Reduce workers or max_queue_size, "
                "or use threads (use_multiprocessing=False)."
            ) from error
        except BaseException:
            # e.g. KeyboardInterrupt while waiting: the worker may still be writing the slot.
            self._drop(future, slot, generation)
            raise
        if kind == "inline":
            self._release_slot(slot, generation)
            return payload  # type: ignore[return-value]
        # Lent, not copied: the slot is free again once the consumer drops the batch. The release
        # holds this object weakly: a batch kept after the dataset is gone must not keep the workers.
        release = functools.partial(_release_if_alive, weakref.ref(self), slot, generation)
        return _slots.lease(slots[slot], payload, release)  # type: ignore[index,arg-type]

    def _discard_executor(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
            slots = self._slots
            self._pending.clear()
            self._slots, self._free_slots = [], []
            self._generation += 1
        if executor is not None:
            _retire(executor, slots)

    def close(self) -> None:
        """Stop the workers (idempotent). A later `get` starts new ones."""
        self._discard_executor()

    def __del__(self) -> None:
        try:
            if self._executor is not None:
                _retire(self._executor, self._slots)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
