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


@pytest.mark.parametrize(
    ("world_size", "mode", "batches_per_rank", "samples_per_rank", "repeated", "lost"),
    [
        # 160 samples, batch 32: the figures docs/resume-and-distributed.md quotes.
        (2, "pad", 3, 80, 0, 0),
        (2, "drop", 3, 80, 0, 0),
        (2, "exact", 3, 80, 0, 0),
        (3, "pad", 2, 54, 2, 0),
        (3, "drop", 2, 53, 0, 1),
        (3, "exact", 2, None, 0, 0),
    ],
)
def test_sample_level_shards_of_160_samples_in_batches_of_32(
    world_size, mode, batches_per_rank, samples_per_rank, repeated, lost
):
    shards = shard_batches(160, 32, world_size, mode)
    assert [len(batches) for batches in shards.values()] == [batches_per_rank] * world_size
    sizes = [sum(map(len, batches)) for batches in shards.values()]
    assert sizes == ([samples_per_rank] * world_size if samples_per_rank else [54, 53, 53])
    seen = [i for batches in shards.values() for batch in batches for i in batch]
    assert len(seen) - len(set(seen)) == repeated
    assert 160 - len(set(seen)) == lost


def test_rank_takes_every_world_size_th_sample_as_distributed_sampler():
    order = EpochPlan(12, batch_size=12, shuffle=True, seed=4, drop_last=False).batch_indices(0, 0).tolist()
    assert shard_batches(12, 2, 3, "exact")[1] == [order[1:12:3][:2], order[1:12:3][2:]]


def test_an_exact_evaluation_shard_may_be_empty_but_a_training_one_may_not():
    assert len(Batches(ids(2), batch_size=2, rank=2, world_size=3, shard_mode="exact")) == 0
    with pytest.raises(ValueError, match="leave no batch. Use a smaller batch_size, or shard_mode='pad'.$"):
        Batches(ids(2), batch_size=2, rank=2, world_size=3, shard_mode="drop")


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
        "weights": None,
        "replacement": True,
        "to_fit": True,
        "rank": 0,
        "world_size": 1,
        "shard_mode": "pad",
    }
    assert state["dataset"]["num_samples"] == 23
    assert len(state["dataset"]["fingerprint"]) == 32


def test_any_rank_loads_the_state_rank_0_saved():
    rank0 = Batches(ids(23), batch_size=5, shuffle=True, seed=9, world_size=2)
    next(iter(rank0))
    rank1 = Batches(ids(23), batch_size=5, shuffle=True, seed=9, rank=1, world_size=2)
    rank1.load_state_dict(rank0.state_dict())
    assert [y.tolist() for _, y in rank1] == [rank1.get_batch(0, b)[1].tolist() for b in (1, 2)]


def test_options_and_state_are_plain_python_types_whatever_was_passed():
    batches = Batches(ids(23), batch_size=np.int64(5), seed=np.uint32(9), shuffle=np.bool_(True), world_size=np.int8(1))
    state = batches.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert [type(getattr(batches.options, name)) for name in ("batch_size", "seed", "shuffle", "world_size")] == [
        int,
        int,
        bool,
        int,
    ]


@pytest.mark.parametrize(
    ("other", "difference"),
    [
        ({"batch_size": 4}, "batch_size: saved 5, here 4"),
        ({"seed": 1}, "seed: saved 9, here 1"),
        ({"shuffle": False}, "shuffle: saved True, here False"),
        ({"drop_last": True}, "drop_last: saved False, here True"),
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


def good_state() -> dict:
    return Batches(ids(23), batch_size=5).state_dict()


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (None, TypeError, "state must be a dict from state_dict(), got NoneType."),
        (
            {},
            ValueError,
            "state is missing version, epoch, next_batch, options, dataset: it was not made by an xloader state_dict().",
        ),
        ({"version": 99}, ValueError, "state has version 99; this xloader reads versions (1, 2)."),
        (
            {"version": "2"},
            TypeError,
            "state['version'] must be an int, got '2' (str). Pass the dict state_dict() returned (or its JSON round trip).",
        ),
        (
            {"options": None},
            TypeError,
            "state['options'] must be a dict, got None (NoneType). Pass the dict state_dict() returned (or its JSON round trip).",
        ),
        (
            {"dataset": []},
            TypeError,
            "state['dataset'] must be a dict, got [] (list). Pass the dict state_dict() returned (or its JSON round trip).",
        ),
        (
            {"epoch": 1.0},
            TypeError,
            "state['epoch'] must be an int >= 0, got 1.0 (float). Pass the dict state_dict() returned (or its JSON round trip).",
        ),
        ({"epoch": -1}, ValueError, "state['epoch'] must be an int >= 0, got -1."),
        (
            {"next_batch": True},
            TypeError,
            "state['next_batch'] must be an int >= 0, got True (bool). Pass the dict state_dict() returned (or its JSON round trip).",
        ),
        (
            {"position": 24},
            ValueError,
            "state has position 24; expected an int from 0 to 23 (the samples of the epoch read so far).",
        ),
        (
            {"position": "3"},
            TypeError,
            "state['position'] must be an int >= 0, got '3' (str). Pass the dict state_dict() returned (or its JSON round trip).",
        ),
    ],
)
def test_each_state_field_is_checked_with_a_message_naming_it(change, error, message):
    state = None if change is None else ({} if change == {} else good_state() | change)
    with pytest.raises(error) as raised:
        Batches(ids(23), batch_size=5).load_state_dict(state)
    assert str(raised.value) == message


def test_a_numpy_int_epoch_in_a_state_is_read_as_an_int():
    batches = Batches(ids(23), batch_size=5)
    batches.load_state_dict(good_state() | {"epoch": np.int64(3), "position": np.int32(10), "next_batch": np.int64(2)})
    assert (batches.epoch, batches.state_dict()["next_batch"]) == (3, 2)
    assert type(batches.epoch) is int


def test_a_version_1_state_resumes_one_rank_and_is_refused_for_several():
    old = good_state() | {"version": 1, "next_batch": 2}
    del old["position"]
    old["options"] = {k: v for k, v in old["options"].items() if k not in ("weights", "replacement")}
    batches = Batches(ids(23), batch_size=5)
    batches.load_state_dict(old)
    assert batches.state_dict()["next_batch"] == 2
    old["options"]["world_size"] = 2
    with pytest.raises(
        ValueError,
        match=r"^the state was saved by an older xloader on world_size=2 ranks, .* with set_epoch\(state\['epoch'\] \+ 1\)\.$",
    ):
        Batches(ids(23), batch_size=5, world_size=2).load_state_dict(old)
