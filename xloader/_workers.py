"""xloader's own worker processes (`xloader.keras.PyDataset(use_multiprocessing=True)`).

# NOTE [ Worker processes that fail safely ]
`concurrent.futures.ProcessPoolExecutor` breaks for good when one worker dies, lets Ctrl-C reach
its workers, waits for queued work at exit and leaves its workers running when the main process
is killed. These workers keep the promises torch's DataLoader workers keep:
- They ignore SIGINT (Ctrl-C in a terminal or Jupyter reaches the whole process group): only
  the main process is interrupted, so no `KeyboardInterrupt` ends up in a prefetched batch.
  SIGINT is blocked around the start, so it cannot land before the worker ignores it.
- A worker that dies (SIGKILL from the out-of-memory killer, a crash in native code) fails the
  tasks it held with `WorkerDiedError`, naming the exit code or signal and the likely cause;
  one that dies while starting says so, with its own traceback when it got that far
  (wording: _worker_errors.py).
- The owner stops workers with SIGKILL after a short grace (`stop`), and at interpreter exit.
  Ctrl-C kills them at once wherever it lands (in `fit`'s training step as well as while a batch
  is awaited): the main thread's SIGINT handler is wrapped by one that
  SIGKILLs them (no lock taken: it may run inside any code) before it calls the handler it
  wraps; the next request starts new workers. Nothing of the pool outlives the interrupt.
  A Ctrl-C that lands inside a finalizer (the one freeing a batch's slot runs every batch), where
  Python would print and drop the KeyboardInterrupt, is raised by the next batch request instead.
- Each worker watches its parent (a lifeline pipe whose only writer is the main process, and
  its parent pid for fork) and exits within a second of the main process's death, whatever
  killed it, forkserver included.
- Tasks and replies travel through one pipe per worker: no queue, so no semaphore to leak.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
import weakref
from concurrent.futures import Future
from multiprocessing import connection
from typing import Any

from xloader import _opencv, _slots
from xloader._worker_errors import death_message
from xloader.errors import WorkerDiedError

_QUEUED_PER_WORKER = 2  # one computing, one waiting in its pipe; the rest wait in the main process
_STOP_GRACE_SECONDS = 0.5
_WATCH_INTERVAL_SECONDS = 0.5


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, chained as the re-raised error's cause."""

    def __str__(self) -> str:
        return str(self.args[0])


def _watch_parent(lifeline: Any, parent_pid: int) -> None:
    """Exit this worker when the main process is gone: EOF on the lifeline, or a new parent
    (the main process for fork and spawn, the forkserver for forkserver)."""
    while True:
        try:
            if lifeline.poll(_WATCH_INTERVAL_SECONDS):
                lifeline.recv()  # the main process never writes: readable means end of file
        except (EOFError, OSError):
            os._exit(0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _worker_main(
    index: int,
    conn: Any,
    lifeline: Any,
    inherited_writer: Any,
    batches: Any,
    slots: list[Any],
    channels_first: tuple[str, ...],
    pin_opencv: bool,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if inherited_writer is not None:  # fork: the main process's end, which must not keep us alive
        inherited_writer.close()
    threading.Thread(target=_watch_parent, args=(lifeline, os.getppid()), daemon=True).start()
    try:
        if isinstance(batches, bytes):
            batches = pickle.loads(batches)
        if pin_opencv:  # NOTE [ OpenCV threads in workers ] (xloader/_opencv.py)
            _opencv.pin_one_thread()
    except BaseException:
        conn.send(("failed", traceback.format_exc()))
        sys.exit(1)
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the main process closed our pipe: nothing more will come
            return
        if task is None:
            return
        task_id, epoch, batch, slot = task
        reply: tuple[Any, Any]
        try:
            if slot is None:
                reply = (None, batches.get_batch(epoch, batch))
            else:
                reply = _slots.compute_in_slot(batches, epoch, batch, slots[slot], channels_first)
            conn.send((task_id, reply, None))
        except Exception as error:  # noqa: BLE001 - every failure goes back to the main process
            conn.send((task_id, None, _picklable(error)))


def _picklable(error: BaseException) -> tuple[BaseException, str]:
    text = "".join(traceback.format_exception(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - e.g. an exception class that takes other arguments
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return error, text


class _Worker:
    def __init__(self, index: int, process: Any, conn: Any):
        self.index = index
        self.process = process
        self.conn = conn
        self.ready = False
        self.dead = False
        self.startup_traceback: str | None = None
        self.tasks: dict[int, tuple[Future, tuple[int, int]]] = {}  # sent, not yet answered


_live_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
_wrapped_sigint: Any = None  # the SIGINT handler `_on_sigint` wraps, while it is installed


@atexit.register
def _kill_at_exit() -> None:
    # Runs before multiprocessing's own exit handler (atexit runs last-registered first), which
    # would SIGTERM and wait: a worker that handles SIGTERM (JAX does) would hang the exit.
    for pool in list(_live_pools):
        pool.kill()


_deferred_sigint = False  # a Ctrl-C that came inside a finalizer, for the next batch request
_FINALIZE_CALL = weakref.finalize.__call__.__code__


def _inside_finalizer(frame: Any) -> bool:
    """Whether `frame` runs inside a finalizer (a `weakref.finalize` callback, such as the one that
    frees a batch's shared-memory slot, or a `__del__`): Python prints and drops any exception
    raised there, KeyboardInterrupt included, and the loop would go on."""
    while frame is not None:
        if frame.f_code is _FINALIZE_CALL or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: Any) -> None:
    global _deferred_sigint
    for pool in list(_live_pools):
        pool.interrupt()
    if not callable(_wrapped_sigint):
        return
    if _inside_finalizer(frame):
        _deferred_sigint = True  # delivered by the next batch request: deliver_deferred_sigint()
        return
    _wrapped_sigint(signum, frame)


def deliver_deferred_sigint() -> None:
    """Send the Ctrl-C again now if one came while a finalizer ran, where its KeyboardInterrupt
    would have been dropped (measured: about 1 Ctrl-C in 30 landed in the slot finalizer that runs
    once per batch). Called before each batch request, from any thread: the signal goes to the
    process, so the main thread's handler raises it there, as for the first one."""
    global _deferred_sigint
    if _deferred_sigint:
        _deferred_sigint = False
        os.kill(os.getpid(), signal.SIGINT)


def install_sigint_handler() -> None:
    """Wrap the main thread's SIGINT handler (NOTE [ Worker processes that fail safely ]) when it
    is Python's or another callable; SIG_IGN and SIG_DFL are left alone (the watchdog covers a
    main process that SIG_DFL ends). Called from the main thread when a dataset with process
    workers is made (Keras's TensorFlow backend requests batches from another thread, where no
    handler can be set), and again when a pool starts. It stays: with no pool it only calls the
    handler it wraps."""
    global _wrapped_sigint
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if current is _on_sigint or not callable(current):
        return
    _wrapped_sigint = current
    signal.signal(signal.SIGINT, _on_sigint)


class WorkerPool:
    """`workers` processes computing `batches.get_batch(epoch, b)`, built in place in
    `slots[slot]` when a task names a slot (`_slots.compute_in_slot`; fields in
    `channels_first` stored NCHW): NOTE [ Worker processes that fail safely ].

    `submit` returns a `concurrent.futures.Future` of `(layout, batch)` (see
    `_slots.compute_in_slot`): it raises the worker's exception, or `WorkerDiedError` when the
    worker computing it died (then every later `submit` fails alike: start a new pool).
    """

    def __init__(
        self,
        batches: Any,
        slots: list[Any],
        *,
        workers: int,
        start_method: str,
        channels_first: tuple[str, ...] = (),
    ):
        self.start_method = start_method
        context: Any = multiprocessing.get_context(start_method)
        payload = batches if start_method == "fork" else _pickled(batches, start_method)
        self._lifeline, lifeline_writer = context.Pipe(duplex=False)
        self._lifeline_writer = lifeline_writer
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[int, int, int, int | None, Future]] = collections.deque()
        self._task_ids = itertools.count()
        self.broken: WorkerDiedError | None = None
        self.interrupted = False  # Ctrl-C killed the workers: the pool is done, not broken
        self._closing = False
        self.workers: list[_Worker] = []
        self._slots = slots  # kept until the workers are gone: they may still write them
        self._reader: threading.Thread | None = None
        wake_reader, self._wake = os.pipe()
        self._wake_reader = wake_reader
        pin_opencv = start_method != "fork"
        # SIGINT blocked while starting: a fork or spawn child inherits the mask until it ignores SIGINT.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with _opencv.single_threaded_for_fork() if start_method == "fork" else contextlib.nullcontext():
                for index in range(workers):
                    ours, theirs = context.Pipe()
                    process = context.Process(
                        target=_worker_main,
                        args=(
                            index,
                            theirs,
                            self._lifeline,
                            lifeline_writer if start_method == "fork" else None,
                            payload,
                            slots,
                            channels_first,
                            pin_opencv,
                        ),
                        name=f"xloader-worker-{index}",
                        daemon=True,
                    )
                    self.workers.append(_Worker(index, process, ours))
                    process.start()
                    theirs.close()
            # Before SIGINT is unblocked: a Ctrl-C that came while starting kills these workers.
            _live_pools.add(self)
            install_sigint_handler()
            self._reader = threading.Thread(target=self._read_replies, name="xloader-replies", daemon=True)
            self._reader.start()
        except BaseException:
            self.kill()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def submit(self, epoch: int, batch: int, slot: int | None) -> Future:
        future: Future = Future()
        with self._lock:
            if self.broken is not None:
                future.set_exception(self.broken)
                return future
            self._queue.append((next(self._task_ids), epoch, batch, slot, future))
            self._dispatch()
        return future

    def _dispatch(self) -> None:
        """Send queued tasks to the live workers with room, least busy first (lock held)."""
        while self._queue:
            room = [w for w in self.workers if not w.dead and len(w.tasks) < _QUEUED_PER_WORKER]
            if not room:
                return
            task_id, epoch, batch, slot, future = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued: its done-callbacks have run
            worker = min(room, key=lambda w: len(w.tasks))
            worker.tasks[task_id] = (future, (epoch, batch))
            try:
                worker.conn.send((task_id, epoch, batch, slot))
            except OSError:
                pass  # the worker is gone: its sentinel fails the task

    def _read_replies(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                waiting = {w.conn: w for w in self.workers if not w.dead}
                sentinels = {w.process.sentinel: w for w in self.workers if not w.dead}
            try:
                ready = connection.wait([*waiting, *sentinels, self._wake_reader])
            except (OSError, ValueError):  # closed under us: only `_shut_down` does that
                return
            with self._lock:
                if self._closing:
                    return
                for item in ready:
                    if item in waiting:
                        self._receive(waiting[item])
                for item in ready:
                    if item in sentinels:
                        self._worker_died(sentinels[item])
                self._dispatch()

    def _receive(self, worker: _Worker) -> bool:
        """Handle one message from `worker`; False at end of file (it died: its sentinel says how)."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return False
        if message[0] == "ready":
            worker.ready = True
        elif message[0] == "failed":
            worker.startup_traceback = message[1]
        else:
            task_id, reply, error = message
            future, _key = worker.tasks.pop(task_id)
            if error is None:
                future.set_result(reply)
            else:
                exception, text = error
                exception.__cause__ = _RemoteTraceback(text)
                future.set_exception(exception)
        return True

    def _worker_died(self, worker: _Worker) -> None:
        worker.process.join(1)
        while worker.conn.poll() and self._receive(worker):  # replies it sent before it died
            pass
        worker.dead = True
        key = next(iter(worker.tasks.values()))[1] if worker.tasks else None
        if self.interrupted:
            self.broken = WorkerDiedError("the xloader worker processes were stopped by Ctrl-C.")
        else:
            self.broken = WorkerDiedError(
                death_message(
                    worker.index, worker.process, self.start_method, worker.ready, key, worker.startup_traceback
                )
            )
        _fail(worker.tasks, self._queue, self.broken)

    def interrupt(self) -> None:
        """Ctrl-C: SIGKILL every worker now, taking no lock (this runs in a signal handler, maybe
        inside this pool's own code). The owner must discard the pool (`interrupted` is True)."""
        self.interrupted = True
        for worker in self.workers:
            if worker.process.pid is not None:
                try:
                    os.kill(worker.process.pid, signal.SIGKILL)
                except OSError:
                    pass

    def kill(self) -> None:
        """Stop every worker now (SIGKILL) and wait for them (idempotent); fails pending tasks."""
        self._shut_down(grace=0.0)

    def stop(self) -> None:
        """Ask the workers to stop, wait up to half a second, then kill the rest (idempotent)."""
        self._shut_down(grace=_STOP_GRACE_SECONDS)

    def _shut_down(self, grace: float) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self.broken is None:
                self.broken = WorkerDiedError("the xloader worker processes were stopped.")
            running = {task: item for w in self.workers for task, item in w.tasks.items()}
            queued = collections.deque(self._queue)
            self._queue.clear()
        os.write(self._wake, b"x")
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5)
        if grace > 0:
            for worker in self.workers:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            connection.wait([w.process.sentinel for w in self.workers if w.process.pid], timeout=grace)
        for worker in self.workers:
            if worker.process.pid is not None and worker.process.exitcode is None:
                worker.process.kill()
        for worker in self.workers:
            if worker.process.pid is not None:
                worker.process.join(5)
            worker.conn.close()
        _fail(running, queued, self.broken)
        if all(w.process.exitcode is not None for w in self.workers if w.process.pid is not None):
            self._slots = []  # nobody writes them any more
        self._lifeline_writer.close()
        self._lifeline.close()
        for descriptor in (self._wake, self._wake_reader):
            try:
                os.close(descriptor)
            except OSError:
                pass
        _live_pools.discard(self)


def _fail(running: dict[int, tuple[Future, Any]], queued: collections.deque, error: BaseException) -> None:
    """Fail the futures of tasks sent to a worker (running) and of tasks not sent yet (queued)."""
    for future, _key in running.values():
        if not future.done():
            future.set_exception(error)
    running.clear()
    for *_task, future in queued:
        if future.set_running_or_notify_cancel():
            future.set_exception(error)
    queued.clear()


def _pickled(batches: Any, start_method: str) -> bytes:
    try:
        return pickle.dumps(batches)
    except Exception as error:
        raise TypeError(
            f"the dataset cannot be sent to {start_method} worker processes: {type(error).__name__}: {error}. "
            "Define load functions and transforms at module level (not lambdas or local functions), "
            "or use threads (use_multiprocessing=False) or multiprocessing_context='fork'."
        ) from error
