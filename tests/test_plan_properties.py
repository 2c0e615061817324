"""Property tests of the epoch plan: for any size, batch size, drop_last, seed, epoch and shard
count, every sample is served exactly once per epoch (minus the documented remainders)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from xloader import ArrayDataset, Batches, EpochPlan

plans = st.fixed_dictionaries(
    {
        "num_samples": st.integers(1, 300),
        "batch_size": st.integers(1, 70),
        "drop_last": st.booleans(),
        "shuffle": st.booleans(),
        "seed": st.integers(0, 2**63 - 1),
        "epoch": st.integers(0, 10**6),
        "world_size": st.integers(1, 9),
    }
)


def global_batches(p: dict) -> list[list[int]]:
    plan = EpochPlan(
        p["num_samples"], batch_size=p["batch_size"], shuffle=p["shuffle"], seed=p["seed"], drop_last=p["drop_last"]
    )
    return [plan.batch_indices(p["epoch"], b).tolist() for b in range(len(plan))]


def rank_batches(p: dict, mode: str) -> list[list[list[int]]]:
    out = []
    for rank in range(p["world_size"]):
        plan = EpochPlan(
            p["num_samples"],
            batch_size=p["batch_size"],
            shuffle=p["shuffle"],
            seed=p["seed"],
            drop_last=p["drop_last"],
            rank=rank,
            world_size=p["world_size"],
            shard_mode=mode,
        )
        out.append([plan.batch_indices(p["epoch"], b).tolist() for b in range(len(plan))])
    return out


@settings(max_examples=300, deadline=None)
@given(plans)
def test_one_process_serves_every_sample_once_minus_the_drop_last_remainder(p):
    batches = global_batches(p)
    served = [i for batch in batches for i in batch]
    assert len(served) == len(set(served))  # batches are disjoint, no sample twice
    n, size = p["num_samples"], p["batch_size"]
    expected_count = n - n % size if p["drop_last"] else n
    assert len(served) == expected_count
    assert set(served) <= set(range(n))
    assert all(len(batch) == size for batch in batches[:-1])
    if not p["shuffle"]:
        assert served == list(range(expected_count))


def distributed_sampler_batches(p: dict, mode: str, rank: int) -> list[list[int]]:
    """torch's `DistributedSampler` followed by a `DataLoader`'s batching, written out: the
    reference sample-level shards follow (pad and drop; exact splits the same way, unpadded)."""
    order = [i for batch in global_batches({**p, "drop_last": False}) for i in batch]
    n, world = len(order), p["world_size"]
    if mode == "drop":
        indices = order[: n // world * world]
    elif mode == "pad":
        total = -(-n // world) * world
        indices = (order * -(-total // n))[:total]
    else:
        indices = order
    mine = indices[rank::world]
    size = p["batch_size"]
    batches = [mine[i : i + size] for i in range(0, len(mine), size)]
    if p["drop_last"] and batches and len(batches[-1]) < size:
        batches.pop()
    return batches


@settings(max_examples=300, deadline=None)
@given(plans, st.sampled_from(["pad", "drop", "exact"]))
def test_shards_are_distributed_samplers_split_of_the_single_process_order(p, mode):
    assert rank_batches(p, mode) == [distributed_sampler_batches(p, mode, rank) for rank in range(p["world_size"])]


@settings(max_examples=200, deadline=None)
@given(plans)
def test_pad_repeats_and_drop_loses_at_most_world_size_minus_one_samples(p):
    if p["drop_last"]:
        return  # drop_last loses each rank's own tail on top: covered by the reference test above
    n, world = p["num_samples"], p["world_size"]
    pad, drop, exact = (
        [i for rank in rank_batches(p, mode) for batch in rank for i in batch] for mode in ("pad", "drop", "exact")
    )
    assert sorted(exact) == list(range(n))
    assert set(pad) == set(range(n)) and len(pad) - n == -n % world <= world - 1
    assert len(drop) == len(set(drop)) == n - n % world
    for mode in ("pad", "drop"):
        assert len({len(rank) for rank in rank_batches(p, mode)}) == 1  # same batch count on every rank


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 60), st.integers(1, 9), st.integers(0, 2**32), st.integers(1, 4))
def test_batches_do_not_depend_on_how_many_threads_compute_them(n, batch_size, seed, threads):
    data = ArrayDataset(np.arange(n, dtype=np.int64) * 3, np.arange(n, dtype=np.int64))
    batches = Batches(data, batch_size=batch_size, shuffle=True, seed=seed)
    keys = [(epoch, b) for epoch in range(2) for b in range(len(batches))]
    serial = [batches.get_batch(*key) for key in keys]
    with ThreadPoolExecutor(threads) as pool:
        parallel = list(pool.map(lambda key: batches.get_batch(*key), reversed(keys)))[::-1]
    for (x, y), (x_parallel, y_parallel) in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(x, x_parallel)
        np.testing.assert_array_equal(y, y_parallel)
