"""Sharding and exact resume in the framework-free core (`EpochPlan`, `Batches`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xloader import ArrayDataset, Batches, EpochPlan


def ids(n: int) -> ArrayDataset:
    return ArrayDataset(np.arange(n, dtype=np.int64) * 10, np.arange(n, dtype=np.int64))


def shard_batches(num_samples, batch_size, world_size, mode, *, drop_last=False, epoch=0):
    """{rank: [sample ids of each local batch]} for one epoch."""
    plans = [
        EpochPlan(
            num_samples,
            batch_size=batch_size,
            shuffle=True,
            seed=4,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            shard_mode=mode,
        )
        for rank in range(world_size)
    ]
    return {rank: [plan.batch_indices(epoch, b).tolist() for b in range(len(plan))] for rank, plan in enumerate(plans)}


@pytest.mark.parametrize("num_samples", [1, 9, 10, 23, 40])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_exact_shards_are_disjoint_and_cover_the_epoch(num_samples, world_size, drop_last):
    single = EpochPlan(num_samples, batch_size=3, shuffle=True, seed=4, drop_last=drop_last)
    expected = sorted(i for b in range(len(single)) for i in single.batch_indices(0, b).tolist())
    shards = shard_batches(num_samples, 3, world_size, "exact", drop_last=drop_last)
    seen = [i for batches in shards.values() for batch in batches for i in batch]
    assert sorted(seen) == expected  # no duplicates, no losses
    counts = [len(batches) for batches in shards.values()]
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("num_samples", [1, 9, 10, 23, 40])
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_pad_gives_every_rank_the_same_count_and_repeats_only_the_first_batches(num_samples, world_size):
    shards = shard_batches(num_samples, 3, world_size, "pad")
    global_batches = -(-num_samples // 3)
    counts = {len(batches) for batches in shards.values()}
    assert counts == {-(-global_batches // world_size)}
    seen = [i for batches in shards.values() for batch in batches for i in batch]
    assert set(seen) == set(range(num_samples))  # nothing lost
    padding = counts.pop() * world_size - global_batches
    single = EpochPlan(num_samples, batch_size=3, shuffle=True, seed=4, drop_last=False)
    repeated = [i for g in range(padding) for i in single.batch_indices(0, g % global_batches).tolist()]
    assert sorted(seen) == sorted(list(range(num_samples)) + repeated)


@pytest.mark.parametrize("world_size", [2, 3])
def test_drop_gives_every_rank_the_same_count_and_loses_only_the_tail(world_size):
    shards = shard_batches(23, 3, world_size, "drop")  # 8 global batches
    assert {len(batches) for batches in shards.values()} == {8 // world_size}
    seen = [i for batches in shards.values() for batch in batches for i in batch]
    assert len(seen) == len(set(seen))
    single = EpochPlan(23, batch_size=3, shuffle=True, seed=4, drop_last=False)
    kept = [i for g in range(8 // world_size * world_size) for i in single.batch_indices(0, g).tolist()]
    assert sorted(seen) == sorted(kept)


def test_rank_takes_every_world_size_th_global_batch():
    assert shard_batches(12, 2, 3, "exact", epoch=0)[1] == [
        EpochPlan(12, batch_size=2, shuffle=True, seed=4, drop_last=False).batch_indices(0, g).tolist() for g in (1, 4)
    ]


def test_an_exact_evaluation_shard_may_be_empty_but_a_training_one_may_not():
    assert len(Batches(ids(2), batch_size=2, rank=1, world_size=2, shard_mode="exact")) == 0
    with pytest.raises(ValueError, match="leave no batch. Use a smaller batch_size, or shard_mode='pad'.$"):
        Batches(ids(2), batch_size=2, rank=1, world_size=2, shard_mode="drop")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"world_size": 0}, ValueError, "world_size must be an int >= 1, got 0"),
        ({"rank": -1}, ValueError, "rank must be an int >= 0, got -1"),
        ({"rank": 2, "world_size": 2}, ValueError, r"rank must be in range\(world_size=2\), got 2"),
        ({"rank": 1.0, "world_size": 2}, TypeError, "rank must be an int >= 0, got 1.0"),
        ({"shard_mode": "even"}, ValueError, "shard_mode must be one of 'pad', 'drop', 'exact'; got 'even'"),
    ],
)
def test_invalid_shard_options(options, error, message):
    with pytest.raises(error, match=message):
        Batches(ids(10), batch_size=2, **options)


# --- resume -------------------------------------------------------------------------------------


def labels_over_epochs(batches: Batches, epochs: int):
    """Yield each batch's sample ids, pass after pass, as a training loop consumes them."""
    for _ in range(epochs):
        for _, y in batches:
            yield y.tolist()


@pytest.mark.parametrize("stop_after", [0, 2, 5, 7])
def test_resume_mid_epoch_continues_with_exactly_the_remaining_batches(stop_after):
    expected = list(labels_over_epochs(Batches(ids(23), batch_size=5, shuffle=True, seed=9), 2))
    assert len(expected) == 10
    first = Batches(ids(23), batch_size=5, shuffle=True, seed=9)
    stream = labels_over_epochs(first, 2)
    done = [next(stream) for _ in range(stop_after)]
    state = json.loads(json.dumps(first.state_dict()))  # survives JSON
    resumed = Batches(ids(23), batch_size=5, shuffle=True, seed=9)
    resumed.load_state_dict(state)
    rest = list(labels_over_epochs(resumed, 2 - state["epoch"]))
    assert done + rest == expected


def test_state_after_a_full_epoch_points_at_the_next_one():
    batches = Batches(ids(23), batch_size=5, shuffle=True, seed=9)
    list(batches)
    assert (batches.state_dict()["epoch"], batches.state_dict()["next_batch"]) == (1, 0)


def test_state_records_options_and_dataset():
    state = Batches(ids(23), batch_size=5, shuffle=True, seed=9).state_dict()
    assert state["options"] == {
        "batch_size": 5,
        "shuffle": True,
        "seed": 9,
        "drop_last": False,
        "world_size": 1,
        "shard_mode": "pad",
        "to_fit": True,
        "rank": 0,
    }
    assert state["dataset"]["num_samples"] == 23
    assert len(state["dataset"]["fingerprint"]) == 32


def test_any_rank_loads_the_state_rank_0_saved():
    rank0 = Batches(ids(23), batch_size=5, shuffle=True, seed=9, world_size=2)
    next(iter(rank0))
    rank1 = Batches(ids(23), batch_size=5, shuffle=True, seed=9, rank=1, world_size=2)
    rank1.load_state_dict(rank0.state_dict())
    assert [y.tolist() for _, y in rank1] == [rank1.get_batch(0, b)[1].tolist() for b in (1, 2)]


@pytest.mark.parametrize(
    ("other", "difference"),
    [
        ({"batch_size": 4}, "batch_size: saved 5, here 4"),
        ({"seed": 1}, "seed: saved 9, here 1"),
        ({"shuffle": False}, "shuffle: saved True, here False"),
        ({"world_size": 2}, "world_size: saved 1, here 2"),
    ],
)
def test_loading_a_state_of_other_options_names_the_difference(other, difference):
    state = Batches(ids(23), batch_size=5, shuffle=True, seed=9).state_dict()
    options = {"batch_size": 5, "shuffle": True, "seed": 9} | other
    with pytest.raises(ValueError, match=f"other options or data.*{difference}"):
        Batches(ids(23), **options).load_state_dict(state)


def test_loading_a_state_of_other_data_names_the_difference():
    state = Batches(ids(23), batch_size=5).state_dict()
    with pytest.raises(ValueError, match="dataset num_samples: saved 23, here 24"):
        Batches(ids(24), batch_size=5).load_state_dict(state)


def test_loading_a_state_of_same_sized_other_files_is_refused(tmp_path):
    from xloader import FileList

    a = FileList(["a", "b", "c"], [0, 1, 2], root=str(tmp_path))
    b = FileList(["a", "b", "x"], [0, 1, 2], root=str(tmp_path))
    with pytest.raises(ValueError, match="dataset fingerprint: saved '[0-9a-f]{32}', here '[0-9a-f]{32}'"):
        Batches(b, batch_size=2).load_state_dict(Batches(a, batch_size=2).state_dict())


@pytest.mark.parametrize(
    "state", [None, {}, {"version": 99, "epoch": 0, "next_batch": 0, "options": {}, "dataset": {}}]
)
def test_loading_something_that_is_not_a_state_is_refused(state):
    with pytest.raises((TypeError, ValueError), match="state"):
        Batches(ids(23), batch_size=5).load_state_dict(state)
