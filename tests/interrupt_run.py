"""Run as a script by test_reliability.py: trains forever with worker processes until interrupted.

Usage: python interrupt_run.py {keras,torch,core} START_METHOD {wait,raise,orphan}
Prints "READY <pid> <pid> ..." (every descendant process) and "SHM <name> ..." (the named
/dev/shm entries they use) once batches flow, then loops until
interrupted ("wait"), raises an exception in the training loop ("raise"), or sleeps until it is
killed ("orphan"). "core" is the worker pool behind `xloader.keras.PyDataset` (`Prefetcher`)
without Keras, whose import would cost each forkserver worker seconds.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from worker_faults import load_slowly, shm_names_in_use  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.cli._proc import process_tree  # noqa: E402


def batches(framework: str, start_method: str):
    data = xl.FileList([f"s{i}" for i in range(400)], np.arange(400), load=load_slowly)
    if framework == "core":
        from xloader._prefetch import Prefetcher

        plan = xl.Batches(data, batch_size=8)
        prefetcher = Prefetcher(plan, workers=2, use_processes=True, queue_size=4, start_method=start_method)
        for epoch in range(1000):
            for b in range(len(plan)):
                yield prefetcher.get((epoch, b), [(epoch, k) for k in range(b + 1, len(plan))])
    elif framework == "keras":
        from xloader.keras import PyDataset

        ds = PyDataset(
            data, batch_size=8, shuffle=True, workers=2, use_multiprocessing=True, multiprocessing_context=start_method
        )
        while True:
            yield from ds
    else:
        from xloader.torch import DataLoader

        loader = DataLoader(
            data,
            batch_size=8,
            shuffle=True,
            num_workers=2,
            persistent_workers=True,
            multiprocessing_context=start_method,
        )
        while True:
            yield from loader


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for every stack if this hangs
    # As in a terminal: Ctrl-C raises KeyboardInterrupt, even if the test run was started with SIGINT
    # ignored (a shell's background job, as some CI runners start it, passes SIG_IGN on to every child).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    framework, start_method, mode = sys.argv[1:4]
    for step, _ in enumerate(batches(framework, start_method)):
        if step == 3:
            print("READY", *process_tree()[1:], flush=True)
            print("SHM", *shm_names_in_use(), flush=True)
        if step == 6 and mode == "raise":
            raise RuntimeError("a bug in the training loop")
        while step == 3 and mode == "orphan":
            time.sleep(1)
