"""A real two-process DDP run under torchrun (gloo, CPU, loopback): shards and sharded evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import xloader as xl

pytest.importorskip("torch")

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        os.path.join(HERE, "ddp_run.py"),
        str(out),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    if result.returncode != 0:
        reached = {log.name: log.read_text() for log in sorted(out.glob("progress-rank*.log"))}
        pytest.fail(f"torchrun exited {result.returncode}; stages reached: {reached}\n{result.stderr[-3000:]}")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_ranks_read_their_place_from_torch_distributed(ranks):
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]


def test_training_shards_are_disjoint_and_together_are_the_single_process_epoch(ranks):
    sys.path.insert(0, HERE)
    from ddp_run import TRAIN_SAMPLES, dataset

    single = xl.Batches(dataset(TRAIN_SAMPLES), batch_size=4, shuffle=True, seed=7)
    for epoch in range(2):
        per_rank = [r["trained_on"][epoch] for r in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == 5  # equal steps: DDP never waits on a missing rank
        ids = [i for batches in per_rank for batch in batches for i in batch]
        assert len(ids) == len(set(ids)) == TRAIN_SAMPLES
        # rank r's batch b is global batch r + 2b of the single-process epoch
        for rank, batches in enumerate(per_rank):
            assert batches == [single.batch_indices(epoch, rank + 2 * b).tolist() for b in range(5)]


def test_exact_evaluation_has_no_duplicates_no_losses_and_the_single_process_metric(ranks):
    sys.path.insert(0, HERE)
    from ddp_run import EVAL_SAMPLES

    evaluated = [r["evaluated"] for r in ranks]
    assert [len(e) for e in evaluated] == [4, 3]  # 7 batches of 6 (the last has 1): uneven, none padded
    ids = [i for batches in evaluated for batch in batches for i in batch]
    assert sorted(ids) == list(range(EVAL_SAMPLES))
    assert ranks[0]["sharded_metric"] == ranks[1]["sharded_metric"] == ranks[0]["single_process_metric"]
    assert ranks[0]["sharded_metric"][1] == EVAL_SAMPLES


def test_unseeded_ranks_with_different_global_seeds_are_disjoint_and_covering(ranks):
    sys.path.insert(0, HERE)
    from ddp_run import TRAIN_SAMPLES

    assert [r["unseeded"]["seed"] for r in ranks] == [0, 0]  # NOTE [ Unseeded loaders ]
    ids = ranks[0]["unseeded"]["ids"] + ranks[1]["unseeded"]["ids"]
    assert sorted(ids) == list(range(TRAIN_SAMPLES))
