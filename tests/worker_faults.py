"""Load functions that misbehave on purpose, importable by worker processes (module level)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np


def load_or_die(path: str) -> np.ndarray:
    """Kills its own process (as the out-of-memory killer would) for ids named 'die', in a worker."""
    if os.path.basename(path) == "die" and multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return np.full((4, 4, 3), len(path) % 251, dtype=np.uint8)


def load_slowly(path: str) -> np.ndarray:
    time.sleep(0.05)
    return np.full((8, 8, 3), len(path) % 251, dtype=np.uint8)


def private_dirty_kib() -> int:
    """Memory this process has written to itself (copy-on-write copies included), in KiB."""
    with open("/proc/self/smaps_rollup") as file:
        for line in file:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    raise RuntimeError("no Private_Dirty in /proc/self/smaps_rollup")


def load_and_report_memory(path: str) -> np.ndarray:
    """(pid, private dirty KiB) for ids ending in '000' (a probe every 1,000 samples), else zeros."""
    if path.endswith("000"):
        return np.array([os.getpid(), private_dirty_kib()], dtype=np.int64)
    return np.zeros(2, dtype=np.int64)


def load_sleeping(path: str, seconds: float = 1.5) -> np.ndarray:
    """Takes `seconds` per sample (a slow network read), then a 4x4x3 image of its id's length."""
    time.sleep(seconds)
    return np.full((4, 4, 3), len(path) % 251, dtype=np.uint8)


def load_stalling(path: str) -> np.ndarray:
    """Stalls for 60 s on ids named 'stall' (a dead mount), in a worker."""
    if os.path.basename(path) == "stall" and multiprocessing.parent_process() is not None:
        time.sleep(60)
    return np.full((4, 4, 3), len(path) % 251, dtype=np.uint8)


def shm_names_in_use() -> list[str]:
    """Named /dev/shm entries (semaphores, segments) that this process and its descendants map or
    hold open: the ones a leak would leave behind (a slot's file is deleted at creation)."""
    from xloader.cli._proc import process_tree

    names = set()
    for pid in process_tree():
        try:
            with open(f"/proc/{pid}/maps") as file:
                mapped = [line.split(maxsplit=5)[-1].strip() for line in file if "/dev/shm/" in line]
            opened = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for path in mapped + opened:
            if path.startswith("/dev/shm/") and not path.endswith("(deleted)"):
                names.add(path)
    return sorted(names)
