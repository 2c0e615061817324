"""Real DDP runs under torchrun (gloo, CPU, loopback): shards, sharded evaluation, and a 2-rank
job stopped mid-epoch resumed on 1 and on 3 ranks (elastic resume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import xloader as xl

pytest.importorskip("torch")

HERE = os.path.dirname(__file__)


def torchrun(nproc: int, out, *args: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        os.path.join(HERE, "ddp_run.py"),
        str(out),
        *args,
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def wait(job: subprocess.Popen, out) -> None:
    try:
        _, stderr = job.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        job.kill()
        _, stderr = job.communicate()
    if job.returncode != 0:
        reached = {log.name: log.read_text() for log in sorted(out.glob("progress-rank*.log"))}
        pytest.fail(f"torchrun exited {job.returncode}; stages reached: {reached}\n{stderr[-3000:]}")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """The 2-rank job, then the 1-rank and 3-rank resumes of its state, side by side."""
    out = tmp_path_factory.mktemp("ddp")
    wait(torchrun(2, out), out)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    resumed = {}
    jobs = {}
    for world_size in (1, 3):
        (out / f"on{world_size}").mkdir()
        jobs[world_size] = torchrun(world_size, out / f"on{world_size}", "resume", str(out / "state-rank1.json"))
    for world_size, job in jobs.items():
        where = out / f"on{world_size}"
        wait(job, where)
        resumed[world_size] = [json.loads((where / f"resumed-rank{r}.json").read_text()) for r in range(world_size)]
    states = [json.loads((out / f"state-rank{r}.json").read_text()) for r in range(2)]
    return {"ranks": ranks, "resumed": resumed, "states": states}


@pytest.fixture(scope="module")
def ranks(run) -> list[dict]:
    return run["ranks"]


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
        # rank r's samples are every 2nd of the single-process epoch from r, as DistributedSampler's
        order = np.concatenate([single.batch_indices(epoch, b) for b in range(len(single))]).tolist()
        for rank, batches in enumerate(per_rank):
            assert batches == [order[rank::2][4 * b : 4 * b + 4] for b in range(5)]


def test_exact_evaluation_has_no_duplicates_no_losses_and_the_single_process_metric(ranks):
    sys.path.insert(0, HERE)
    from ddp_run import EVAL_SAMPLES

    evaluated = [r["evaluated"] for r in ranks]
    assert [len(e) for e in evaluated] == [4, 3]  # 19 and 18 samples in batches of 6: uneven, none padded
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


def test_a_two_rank_run_stopped_mid_epoch_resumes_on_one_and_on_three_ranks(run):
    sys.path.insert(0, HERE)
    from ddp_run import ELASTIC_SAMPLES, dataset

    read = [i for r in run["ranks"] for batch in r["elastic_read"] for i in batch]
    assert len(read) == len(set(read)) == 16
    unseen = sorted(set(range(ELASTIC_SAMPLES)) - set(read))
    assert run["states"][0] | {"options": None} == run["states"][1] | {"options": None}  # ranks agree
    assert (run["states"][0]["epoch"], run["states"][0]["position"]) == (0, 16)
    for world_size, repeats in ((1, 0), (3, 2)):  # the rest, 34 samples: 12 a rank on 3, 2 of them seen
        resumed = run["resumed"][world_size]
        assert [r["world_size"] for r in resumed] == [world_size] * world_size
        rest = [i for r in resumed for batch in r["rest"] for i in batch]
        assert sorted(i for i in rest if i not in read) == unseen  # each unseen sample exactly once
        assert len(rest) - len(unseen) == repeats <= world_size - 1  # pad's wrap: already-seen samples
        assert len({len(r["rest"]) for r in resumed}) == 1  # equal step counts: DDP never hangs
        uninterrupted = [
            xl.Batches(dataset(ELASTIC_SAMPLES), batch_size=4, shuffle=True, seed=11, rank=r, world_size=world_size)
            for r in range(world_size)
        ]
        for r, loader in enumerate(uninterrupted):
            loader.set_epoch(1)
            assert resumed[r]["next_epoch"] == [x[:, 0].astype(int).tolist() for x, _ in loader]
            assert resumed[r]["epoch"] == 2
