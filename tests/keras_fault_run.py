"""Run as a script by test_reliability.py: Keras `fit` (torch backend) with xloader process workers
that meet real signals. Prints one line per event, flushed, for the test to read.

Usage: python keras_fault_run.py START_METHOD (both parts, in one interpreter: Keras imports slowly)
1. kill-worker: a callback SIGKILLs a worker mid-fit; prints "DIED <message>", then fits again
   and prints "REFIT <batches trained>", the dataset's batches checked against `xloader.Batches`.
2. interrupt: three fits of 3 s batches; in each, "READY <round>" once a batch trained, then
   (after the test's SIGINT to the process group) "INTERRUPTED <round> <processes left>
   <named /dev/shm entries in use>" ("-" for none); finally "FIT <batches trained>" from a fit
   run to the end.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time

# As in a terminal: Ctrl-C raises KeyboardInterrupt, even if the test run was started with SIGINT
# ignored (a shell's background job, as some CI runners start it, passes SIG_IGN on to every child).
signal.signal(signal.SIGINT, signal.default_int_handler)
os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from worker_faults import load_sleeping, shm_names_in_use  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.cli._proc import process_tree  # noqa: E402
from xloader.keras import PyDataset  # noqa: E402


def say(*words: object) -> None:
    print(*words, flush=True)


def multiprocessing_helpers() -> set[int]:
    """Python's forkserver and resource tracker: one per interpreter, not xloader's to stop."""
    found = set()
    for pid in process_tree()[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read().decode(errors="replace")
        except OSError:
            continue
        if "multiprocessing.forkserver" in command or "multiprocessing.resource_tracker" in command:
            found.add(pid)
    return found


class Recorder(keras.callbacks.Callback):
    def __init__(self, on_batch):
        super().__init__()
        self.on_batch = on_batch

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch(batch)


def model() -> keras.Model:
    net = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    net.compile(optimizer="sgd", loss="mse")
    return net


def kill_worker(start_method: str) -> None:
    data = xl.FileList(
        [f"s{i:03d}" for i in range(32)], np.arange(32), load=functools.partial(load_sleeping, seconds=0.05)
    )
    ds = PyDataset(data, batch_size=4, workers=2, use_multiprocessing=True, multiprocessing_context=start_method)
    net = model()

    killed = []

    def kill_one(batch: int) -> None:
        if batch == 2 and not killed:  # once: the error may come in the next epoch
            killed.append(ds._prefetcher._pool.workers[0].process.pid)
            os.kill(killed[0], signal.SIGKILL)

    try:
        net.fit(ds, epochs=2, shuffle=False, verbose=0, callbacks=[Recorder(kill_one)])
        say("NO ERROR")
    except xl.WorkerDiedError as error:
        say("DIED", error)
    seen = []
    net.fit(ds, epochs=1, shuffle=False, verbose=0, callbacks=[Recorder(seen.append)])
    reference = xl.Batches(data, batch_size=4)
    served = [ds[b][1] for b in range(len(ds))]  # the dataset still serves, in order
    for b, labels in enumerate(served):
        np.testing.assert_array_equal(labels, reference.get_batch(ds.epoch, b)[1])
    say("REFIT", len(seen))
    ds.close()


def interrupt(start_method: str) -> None:
    data = xl.FileList([f"s{i}" for i in range(8)], np.arange(8), load=functools.partial(load_sleeping, seconds=1.5))
    ds = PyDataset(data, batch_size=2, workers=2, use_multiprocessing=True, multiprocessing_context=start_method)
    net = model()
    helpers: set[int] = set()
    for round_ in range(3):
        try:
            ready = Recorder(lambda b, r=round_: say("READY", r) if b == 0 else None)
            net.fit(ds, epochs=1, shuffle=False, verbose=0, callbacks=[ready])
            say("NOT INTERRUPTED", round_)
        except KeyboardInterrupt:
            helpers |= multiprocessing_helpers()
            deadline = time.monotonic() + 2  # killed workers are reaped by a thread: a moment
            while (left := [p for p in process_tree()[1:] if p not in helpers]) and time.monotonic() < deadline:
                time.sleep(0.01)
            say("INTERRUPTED", round_, ",".join(map(str, left)) or "-", ",".join(shm_names_in_use()) or "-")
    seen = []
    ds.set_epoch(0)
    net.fit(ds, epochs=1, shuffle=False, verbose=0, callbacks=[Recorder(seen.append)])
    say("FIT", len(seen))


if __name__ == "__main__":
    kill_worker(sys.argv[1])
    interrupt(sys.argv[1])
