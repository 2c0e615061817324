"""Dying workers, Ctrl-C, and worker memory: failures surface fast and leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import xloader as xl

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
from worker_faults import load_and_report_memory, load_or_die  # noqa: E402


def dying_dataset() -> xl.FileList:
    ids = [f"s{i}" for i in range(12)] + ["die"] + [f"t{i}" for i in range(11)]
    return xl.FileList(ids, np.arange(24), load=load_or_die)


def test_keras_process_worker_killed_by_a_signal_raises_within_seconds():
    from xloader.keras import PyDataset

    with PyDataset(dying_dataset(), batch_size=4, workers=2, use_multiprocessing=True) as ds:
        start = time.monotonic()
        with pytest.raises(xl.WorkerDiedError, match="an xloader worker process died while computing batch"):
            for b in range(len(ds)):
                ds[b]
        assert time.monotonic() - start < 30
        # the pool is discarded; the next request starts a new one (and meets the same fate)
        np.testing.assert_array_equal(ds[0][1], [0, 1, 2, 3])


def test_torch_worker_killed_by_a_signal_raises_within_seconds():
    from xloader.torch import DataLoader

    loader = DataLoader(dying_dataset(), batch_size=4, num_workers=2)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader worker .* exited unexpectedly|killed by signal"):
        for _ in loader:
            pass
    assert time.monotonic() - start < 30


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left for a parent to read


def _shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.parametrize(
    ("framework", "start_method", "mode"),
    [
        ("keras", "forkserver", "wait"),
        ("keras", "fork", "wait"),  # the default on the torch backend
        ("keras", "spawn", "raise"),
        ("torch", "fork", "wait"),
        ("torch", "spawn", "raise"),
    ],
)
def test_ctrl_c_or_an_error_stops_every_worker_and_leaves_no_shared_memory(framework, start_method, mode):
    shm_before = _shm_entries()
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "interrupt_run.py"), framework, start_method, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        line = ""
        while not line.startswith("READY") and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
        assert line.startswith("READY"), process.stderr.read()[-3000:]
        workers = [int(pid) for pid in line.split()[1:]]
        assert len(workers) >= 2  # two workers (plus the forkserver for Keras)
        if mode == "wait":
            process.send_signal(signal.SIGINT)
        start = time.monotonic()
        process.wait(timeout=20)
        stopped_after = time.monotonic() - start
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert (
        "KeyboardInterrupt" if mode == "wait" else "RuntimeError: a bug in the training loop"
    ) in process.stderr.read()
    assert stopped_after < 10
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in workers if _alive(pid)] == []
    # Other processes on the machine may hold semaphores for a moment; a leak stays.
    deadline = time.monotonic() + 10
    while _shm_entries() - shm_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _shm_entries() - shm_before == set()


@pytest.mark.parametrize("adapter", ["torch", "keras"])
def test_worker_memory_does_not_grow_with_the_samples_read(adapter):
    # 200,000 ids: as Python strings in a list, each worker copies the pages holding them as it
    # reads (reference counts are writes): measured +6.5 MiB per worker over the epoch. The index
    # lives in numpy buffers: measured +0.09 MiB.
    count = 200_000
    data = xl.FileList([f"{i:06d}" for i in range(count)], np.arange(count), load=load_and_report_memory)
    if adapter == "torch":
        from xloader.torch import DataLoader

        # Each batch is dropped after reading, as a training loop does, so its slot is reused.
        loader = DataLoader(data, batch_size=2000, num_workers=2, multiprocessing_context="fork")
        probes = np.concatenate([x.numpy().copy() for x, _ in loader])
    else:
        from xloader.keras import PyDataset

        with PyDataset(
            data, batch_size=2000, workers=2, use_multiprocessing=True, multiprocessing_context="fork"
        ) as ds:
            probes = np.concatenate([ds[b][0].copy() for b in range(len(ds))])
    probes = probes[probes[:, 0] != 0]
    by_worker: dict[int, list[int]] = {}
    for pid, kib in probes.tolist():
        by_worker.setdefault(pid, []).append(kib)
    workers = [values for pid, values in by_worker.items() if pid != os.getpid() and len(values) >= 10]
    assert workers, "no worker served enough batches to measure"
    for values in workers:
        growth_kib = values[-1] - values[2]  # after warm-up, to the end of the epoch
        assert growth_kib < 1024, f"worker private memory grew by {growth_kib} KiB over the epoch: {values}"
