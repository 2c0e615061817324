"""Worker threads or processes that compute batches ahead of the requests, keyed by (epoch, batch).

# NOTE [ Keyed prefetch ]
A prefetched result is stored under the (epoch, batch) it was computed for, and a request only
ever takes the result of its own key. A wrong guess about what comes next (a build pass, an
out-of-order request, an epoch that did not advance) wastes work; it never serves a stale batch.
This is what Keras's own enqueuer gets wrong (it serves whatever it queued last epoch first).
Workers are started once and live until `close()`: no re-fork (and re-import) every epoch.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

from xloader.batching import Batch, Batches
from xloader.errors import XLoaderError

Key = tuple[int, int]

_worker_batches: Batches | None = None


def _init_process(batches: Batches) -> None:
    global _worker_batches
    _worker_batches = batches
    try:  # one OpenCV thread per worker process: the processes already use the cores
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass


def _compute_in_process(epoch: int, batch: int) -> Batch:
    assert _worker_batches is not None, "worker process was not initialised"
    return _worker_batches.get_batch(epoch, batch)


def default_start_method() -> str:
    """forkserver where available (no fork of a process that may run JAX/TF/CUDA threads), else spawn."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class WorkerDiedError(XLoaderError, RuntimeError):
    """A worker process ended abruptly (killed by a signal, e.g. the out-of-memory killer)."""


class Prefetcher:
    """Computes `batches.get_batch(epoch, b)` on `workers` threads or processes, ahead of time.

    With `workers <= 1` and no processes, batches are computed in the calling thread.
    `get(key, upcoming)` returns the batch of `key` and keeps up to `queue_size` of the
    `upcoming` keys in flight. Thread-safe.
    """

    def __init__(
        self,
        batches: Batches,
        *,
        workers: int,
        use_processes: bool,
        queue_size: int,
        start_method: str | None = None,
    ):
        self.batches = batches
        self.workers = workers
        self.use_processes = use_processes
        self.queue_size = max(queue_size, 0)
        self.start_method = start_method or default_start_method()
        self._executor: Executor | None = None
        self._pending: dict[Key, Future[Batch]] = {}
        self._lock = threading.Lock()

    @property
    def synchronous(self) -> bool:
        return self.workers <= 1 and not self.use_processes

    def _start(self) -> Executor:
        if self._executor is None:
            if self.use_processes:
                self._executor = ProcessPoolExecutor(
                    max_workers=max(self.workers, 1),
                    mp_context=multiprocessing.get_context(self.start_method),
                    initializer=_init_process,
                    initargs=(self.batches,),
                )
            else:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="xloader")
        return self._executor

    def _submit(self, executor: Executor, key: Key) -> Future[Batch]:
        if self.use_processes:
            return executor.submit(_compute_in_process, *key)
        return executor.submit(self.batches.get_batch, *key)

    def get(self, key: Key, upcoming: Iterable[Key] = ()) -> Batch:
        """The batch of `key` = (epoch, batch); starts work on the next `queue_size` of `upcoming`."""
        if self.synchronous:
            return self.batches.get_batch(*key)
        with self._lock:
            executor = self._start()
            wanted = [key, *islice((k for k in upcoming if k != key), self.queue_size)]
            wanted_set = set(wanted)
            for stale in [k for k in self._pending if k not in wanted_set]:
                self._pending.pop(stale).cancel()
            for k in wanted:
                if k not in self._pending:
                    self._pending[k] = self._submit(executor, k)
            future = self._pending.pop(key)
        try:
            return future.result()
        except BrokenProcessPool as error:
            self._discard_executor()
            raise WorkerDiedError(
                f"an xloader worker process died while computing batch {key[1]} of epoch {key[0]} "
                "(killed by a signal, e.g. the out-of-memory killer?). Reduce workers or max_queue_size, "
                "or use threads (use_multiprocessing=False)."
            ) from error

    def _discard_executor(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
            self._pending.clear()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (idempotent). A later `get` starts new ones."""
        self._discard_executor()

    def __del__(self) -> None:
        try:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
