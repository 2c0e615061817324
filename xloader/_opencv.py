"""OpenCV's thread pool and worker processes.

# NOTE [ OpenCV threads in workers ]
Each worker process already keeps a core busy; OpenCV's own thread pool inside each of them
oversubscribes the cores (measured: 2 forked workers barely beat 0). Calling
cv2.setNumThreads(1) inside a *forked* worker deadlocks when the parent had used the pool, so
forked workers are started while the parent is set to one thread (`single_threaded_for_fork`,
restored right after), and workers started by spawn/forkserver pin themselves when they start
(`pin_one_thread`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def single_threaded_for_fork() -> Iterator[None]:
    """OpenCV in this process on one thread for the duration: fork workers inside it."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def pin_one_thread() -> None:
    """One OpenCV thread in this (spawn/forkserver-started) worker. Never call it after fork."""
    import cv2

    cv2.setNumThreads(1)
