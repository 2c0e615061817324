"""Two JAX processes train with `model.fit` under `keras.distribution.DataParallel`: each
`train_step` sees its own half of every epoch, disjoint, covering, epochs 0, 1, 2 in order."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import xloader as xl

HERE = os.path.dirname(__file__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_processes(out, *args: str) -> list[dict]:
    port = free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    # JAX catches SIGTERM: timeout -k sends SIGKILL 5 s after it.
    jobs = [
        subprocess.Popen(
            [
                "timeout",
                "-k",
                "5",
                "150",
                sys.executable,
                os.path.join(HERE, "keras_dist_run.py"),
                str(p),
                str(port),
                str(out),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for p in (0, 1)
    ]
    errors = [job.communicate(timeout=170)[1] for job in jobs]
    for job, error in zip(jobs, errors, strict=True):
        if job.returncode != 0:
            pytest.fail(f"a JAX process exited {job.returncode}:\n{error[-3000:]}")
    return [json.loads((out / f"process{p}.json").read_text()) for p in (0, 1)]


def expected_epoch(rank: int, epoch: int) -> list[list[int]]:
    from keras_dist_run import BATCH, SAMPLES

    data = xl.ArrayDataset(np.arange(SAMPLES, dtype=np.int64))
    batches = xl.Batches(data, batch_size=BATCH, shuffle=True, seed=3, rank=rank, world_size=2)
    return [batches.batch_indices(epoch, b).tolist() for b in range(len(batches))]


def keras_strides_py_datasets() -> bool:
    # keras.distribution exports Distribution on the JAX backend only; this test process runs torch.
    from keras.src.distribution.distribution_lib import Distribution

    return hasattr(Distribution, "num_data_shards")


@pytest.mark.parametrize("auto_shard", [False, True], ids=["auto_shard_dataset=False", "auto_shard_dataset=True"])
def test_each_process_trains_on_its_own_half_of_every_epoch_in_order(tmp_path, auto_shard):
    if auto_shard and not keras_strides_py_datasets():
        pytest.skip("this Keras refuses a PyDataset under a multi-process distribution with auto_shard_dataset=True")
    sys.path.insert(0, HERE)
    from keras_dist_run import EPOCHS, SAMPLES

    processes = run_two_processes(tmp_path, *(["auto_shard"] if auto_shard else []))
    assert [p["shard"] for p in processes] == [[0, 2], [1, 2]]  # from the distribution's data shards
    for epoch in range(EPOCHS):
        halves = [p["epochs"][epoch] for p in processes]
        for rank, half in enumerate(halves):
            assert half == expected_epoch(rank, epoch)  # epoch `epoch`, this process's shard, in order
        ids = [i for half in halves for batch in half for i in batch]
        assert len(ids) == len(set(ids)) == SAMPLES  # disjoint and covering (26 samples: no padding needed)
