"""Worker threads or processes that compute batches ahead of the requests, keyed by (epoch, batch).

# NOTE [ Keyed prefetch ]
A prefetched result is stored under the (epoch, batch) it was computed for, and a request only
ever takes the result of its own key. A wrong guess about what comes next (a build pass, an
out-of-order request, an epoch that did not advance) wastes work; it never serves a stale batch.
This is what Keras's own enqueuer gets wrong (it serves whatever it queued last epoch first).
Workers are started once and live until `close()`: no re-fork (and re-import) every epoch.
Process workers are xloader's own (NOTE [ Worker processes that fail safely ] in _workers.py):
one that dies, Ctrl-C and `timeout` end the pool at once, and the next request starts a new one.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from itertools import islice

from xloader import _slots
from xloader._workers import WorkerPool, deliver_deferred_sigint, install_sigint_handler
from xloader.batching import Batch, Batches
from xloader.errors import WorkerDiedError

Key = tuple[int, int]

# Process workers return batches through shared memory: NOTE [ Shared-memory slots ] in _slots.py.


def default_start_method() -> str:
    """forkserver where available (no fork of a process that may run JAX/TF/CUDA threads), else spawn."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class Prefetcher:
    """Computes `batches.get_batch(epoch, b)` on `workers` threads or processes, ahead of time.

    With `workers <= 1` and no processes, batches are computed in the calling thread.
    `get(key, upcoming)` returns the batch of `key` and keeps up to `queue_size` of the
    `upcoming` keys in flight. Thread-safe. Process workers return batches through shared
    memory (NOTE [ Shared-memory slots ]); the first batch requested from a new pool is
    computed in the calling process while the workers start.

    `get` raises what `get_batch` raises; `WorkerDiedError` if a worker process died (the next
    `get` starts new ones); `TimeoutError` if `timeout` > 0 seconds passed without the batch.
    """

    def __init__(
        self,
        batches: Batches,
        *,
        workers: int,
        use_processes: bool,
        queue_size: int,
        start_method: str | Callable[[], str | None] | None = None,
        timeout: float = 0,
    ):
        self.batches = batches
        self.workers = workers
        self.use_processes = use_processes
        self.queue_size = max(queue_size, 0)
        self.timeout = timeout
        self._start_method_choice = start_method
        self.start_method: str | None = None  # decided when the processes start
        self._pool: WorkerPool | ThreadPoolExecutor | None = None
        self._slot_pool: _slots.SlotPool | None = None
        self._size = _slots.SlotSize(batches.options.batch_size)
        self._pending: dict[Key, tuple[Future, int | None]] = {}
        self._lock = threading.RLock()  # RLock: a done-callback may run while we hold it
        if use_processes:
            install_sigint_handler()

    @property
    def synchronous(self) -> bool:
        return self.workers <= 1 and not self.use_processes

    def _start(self) -> WorkerPool | ThreadPoolExecutor:
        if not self.use_processes:
            return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="xloader")
        # Decided now, not at construction: e.g. torch.distributed may have started since.
        choice = self._start_method_choice
        self.start_method = (choice() if callable(choice) else choice) or default_start_method()
        # The batches in flight, plus two lent out: the one the consumer holds while it asks
        # for the next, and that next one.
        # Sized once per dataset: NOTE [ Slot sizing ].
        self._slot_pool = _slots.SlotPool(self.queue_size + max(self.workers, 1) + 2, self._size.of(self.batches))
        return WorkerPool(
            self.batches, self._slot_pool.slots, workers=max(self.workers, 1), start_method=self.start_method
        )

    def _submit(
        self, pool: WorkerPool | ThreadPoolExecutor, key: Key, *, required: bool
    ) -> tuple[Future, int | None] | None:
        if isinstance(pool, ThreadPoolExecutor):
            return pool.submit(self.batches.get_batch, *key), None
        assert self._slot_pool is not None
        slot = self._slot_pool.take()
        if slot is None and not required:
            return None  # every slot is busy: prefetch less rather than fall back to pickling
        return pool.submit(*key, slot), slot

    def _drop(self, future: Future, slot: int | None, slot_pool: _slots.SlotPool | None) -> None:
        if slot is None or slot_pool is None:
            future.cancel()
        elif future.cancel():
            slot_pool.received(slot, None)
        else:  # still running (or done): its slot is free once it finishes
            future.add_done_callback(lambda _future: slot_pool.received(slot, None))

    def get(self, key: Key, upcoming: Iterable[Key] = ()) -> Batch:
        """The batch of `key` = (epoch, batch); starts work on the next `queue_size` of `upcoming`."""
        deliver_deferred_sigint()  # a Ctrl-C that came inside a finalizer (NOTE [ Worker processes that fail safely ])
        if self.synchronous:
            return self.batches.get_batch(*key)
        first_batch = None
        if isinstance(self._pool, WorkerPool) and self._pool.interrupted:
            self._discard(self._pool, kill=True)  # Ctrl-C killed its workers: start new ones
        if self.use_processes and self._pool is None:
            first_batch = self.batches.get_batch(*key)  # serve it while the workers start
        with self._lock:
            if self._pool is None:
                self._pool = self._start()
            pool, slot_pool = self._pool, self._slot_pool
            wanted = list(islice((k for k in upcoming if k != key), self.queue_size))
            if first_batch is None:
                wanted.insert(0, key)
            wanted_set = set(wanted)
            for stale in [k for k in self._pending if k not in wanted_set]:
                self._drop(*self._pending.pop(stale), slot_pool)
            for k in wanted:
                if k not in self._pending:
                    submitted = self._submit(pool, k, required=k == key)
                    if submitted is not None:
                        self._pending[k] = submitted
            if first_batch is not None:
                return first_batch
            future, slot = self._pending.pop(key)
        try:
            result = future.result(timeout=self.timeout or None)
        except WorkerDiedError:
            self._discard(pool, kill=True)
            raise
        except FutureTimeout:
            self._discard(pool, kill=True)
            raise TimeoutError(self._timeout_message(key)) from None
        except BaseException as error:
            # A worker's error (its slot is free), or Ctrl-C while waiting: the processes are
            # stopped at once rather than left to finish what is queued (threads cannot be).
            self._drop(future, slot, slot_pool)
            if not isinstance(error, Exception):
                self._discard(pool, kill=True)
            raise
        if isinstance(pool, ThreadPoolExecutor):
            return result
        layout, batch = result
        if slot is None or slot_pool is None:
            return batch
        if layout is None:
            self._size.measure(batch)  # it overflowed its slot: the next pool's are larger
        lent = slot_pool.received(slot, layout)
        return batch if lent is None else lent

    def _timeout_message(self, key: Key) -> str:
        epoch, batch = key
        indices = self.batches.batch_indices(epoch, batch).tolist()
        files = ", ".join(self.batches.dataset.describe(i) for i in indices[:8])
        more = f" and {len(indices) - 8} more" if len(indices) > 8 else ""
        return (
            f"batch {batch} of epoch {epoch} was not ready within timeout={self.timeout} seconds; its files: "
            f"{files}{more}. A read may be stalled (a network file system, a dead mount): check those files, "
            "or raise timeout. The next request starts new workers."
        )

    def _discard(self, pool: WorkerPool | ThreadPoolExecutor | None, *, kill: bool) -> None:
        """Forget `pool` (if it is still the current one) and stop it."""
        with self._lock:
            if pool is None or self._pool is not pool:
                return
            self._pool, self._slot_pool = None, None
            self._pending.clear()
        if isinstance(pool, ThreadPoolExecutor):
            pool.shutdown(wait=False, cancel_futures=True)
        elif kill:
            pool.kill()
        else:
            pool.stop()

    def close(self) -> None:
        """Stop the workers (idempotent). A later `get` starts new ones."""
        self._discard(self._pool, kill=False)

    def __del__(self) -> None:
        try:
            self._discard(self._pool, kill=True)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
