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


@settings(max_examples=200, deadline=None)
@given(plans)
def test_exact_shards_partition_the_single_process_epoch(p):
    shards = rank_batches(p, "exact")
    union = sorted(i for rank in shards for batch in rank for i in batch)
    assert union == sorted(i for batch in global_batches(p) for i in batch)
    counts = [len(rank) for rank in shards]
    assert max(counts) - min(counts) <= 1


@settings(max_examples=200, deadline=None)
@given(plans)
def test_pad_and_drop_give_equal_counts_and_only_the_documented_repeats_or_losses(p):
    single = global_batches(p)
    if not single:
        return
    pad, drop = rank_batches(p, "pad"), rank_batches(p, "drop")
    world = p["world_size"]
    assert {len(rank) for rank in pad} == {-(-len(single) // world)}
    assert {len(rank) for rank in drop} == {len(single) // world}
    pad_batches = [batch for rank in pad for batch in rank]
    # every global batch appears; the extra ones are the epoch's first global batches again
    extra = len(pad_batches) - len(single)
    assert sorted(map(tuple, pad_batches)) == sorted(
        map(tuple, single + [single[g % len(single)] for g in range(extra)])
    )
    drop_batches = [batch for rank in drop for batch in rank]
    assert sorted(map(tuple, drop_batches)) == sorted(map(tuple, single[: len(single) // world * world]))


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
