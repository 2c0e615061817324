"""Run as a script by test_reliability.py: trains forever with worker processes until interrupted.

Usage: python interrupt_run.py {keras,torch} START_METHOD {wait,raise}
Prints "READY <pid> <pid> ..." (every descendant process) once batches flow, then loops until
interrupted ("wait") or raises an exception in the training loop ("raise").
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from worker_faults import load_slowly  # noqa: E402

import xloader as xl  # noqa: E402


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    parent = int(file.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def batches(framework: str, start_method: str):
    data = xl.FileList([f"s{i}" for i in range(400)], np.arange(400), load=load_slowly)
    if framework == "keras":
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
    framework, start_method, mode = sys.argv[1:4]
    for step, _ in enumerate(batches(framework, start_method)):
        if step == 3:
            print("READY", *descendants(os.getpid()), flush=True)
        if step == 6 and mode == "raise":
            raise RuntimeError("a bug in the training loop")
