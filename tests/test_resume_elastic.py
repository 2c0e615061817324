"""Elastic resume in the core: a state saved by W ranks continues on W' ranks (NOTE [ Elastic resume ])."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xloader import Batches
from xloader.sampling import PartialEpoch
from xloader.sources import ArrayDataset


def make(n, world_size, mode, batch_size=4, drop_last=False):
    data = ArrayDataset(np.arange(n, dtype=np.int64))
    return [
        Batches(
            data,
            batch_size=batch_size,
            shuffle=True,
            seed=7,
            drop_last=drop_last,
            rank=r,
            world_size=world_size,
            shard_mode=mode,
        )
        for r in range(world_size)
    ]


def rest_of_epoch(loaders: list[Batches], epoch: int) -> list[list[int]]:
    """What each rank reads of `epoch` (nothing if it is past it already): sample ids per rank."""
    out = []
    for loader in loaders:
        out.append([i for x in loader for i in x.tolist()] if loader.epoch == epoch else [])
        assert loader.epoch == epoch + 1
    return out


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 90),
    batch_size=st.integers(1, 9),
    old=st.integers(1, 5),
    new=st.integers(1, 5),
    steps=st.integers(0, 12),
    mode=st.sampled_from(["pad", "exact"]),
)
def test_the_rest_of_the_epoch_is_each_unseen_sample_once_then_the_new_world_sizes_epochs(
    n, batch_size, old, new, steps, mode
):
    saved = make(n, old, mode, batch_size)
    iterators = [iter(loader) for loader in saved]
    steps = min(steps, min(len(loader) for loader in saved))
    seen = [i for _ in range(steps) for it in iterators for i in next(it).tolist()]
    state = json.loads(json.dumps(saved[0].state_dict()))
    resumed = make(n, new, mode, batch_size)
    for loader in resumed:
        loader.load_state_dict(state)
    unseen = sorted(set(range(n)) - set(seen))
    rest = [i for rank in rest_of_epoch(resumed, 0) for i in rank]
    if mode == "exact":
        assert sorted(rest) == unseen  # each unseen sample exactly once, nothing seen again
    else:
        assert set(rest) >= set(unseen)  # pad: every unseen sample...
        assert len(rest) - len(unseen) <= new - 1  # ...plus at most new - 1 repeats
    uninterrupted = make(n, new, mode, batch_size)
    for loader in uninterrupted:
        loader.set_epoch(1)
    assert rest_of_epoch(resumed, 1) == rest_of_epoch(uninterrupted, 1)


def test_same_world_size_resumes_the_same_batches_as_before():
    saved = make(50, 2, "pad")
    iterators = [iter(loader) for loader in saved]
    for _ in range(3):
        for it in iterators:
            next(it)
    state = saved[1].state_dict()
    assert (state["epoch"], state["next_batch"], state["position"]) == (0, 3, 24)
    resumed = make(50, 2, "pad")
    for loader in resumed:
        loader.load_state_dict(state)
    assert [(loader.epoch, type(loader.epoch)) for loader in resumed] == [(0, int), (0, int)]
    for it, loader in zip(iterators, resumed, strict=True):
        np.testing.assert_array_equal(np.concatenate(list(it)), np.concatenate(list(loader)))


def test_two_ranks_stopped_mid_epoch_resume_on_three_as_a_partial_epoch():
    saved = make(50, 2, "pad")  # 25 samples a rank: 7 batches of 4
    for loader in saved:
        it = iter(loader)
        next(it)
    state = saved[0].state_dict()
    assert state["position"] == 8
    three = make(50, 3, "pad")  # 17 samples a rank, 5 batches; the rest (42 samples) is 14 a rank, 4 batches
    three[2].load_state_dict(state)
    assert (three[2]._epoch, three[2].epoch, three[2].state_dict()["next_batch"]) == (PartialEpoch(0, 8), 0, 1)
    with pytest.raises(
        IndexError,
        match=r"^batch 0 of epoch 0 was read before the resume at position 8: this resumed epoch has batches 1 to 4 only",
    ):
        three[2].get_batch(PartialEpoch(0, 8), 0)
    mid = three[2].state_dict()
    assert (mid["epoch"], mid["next_batch"], mid["position"]) == (0, 1, 8)
    assert repr(three[2]._epoch) == "PartialEpoch(0, start=8)" and type(three[2]._epoch + 1) is int


def test_both_adapters_resume_a_two_rank_state_on_three_ranks_with_the_cores_batches():
    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    saved = make(50, 2, "pad")
    for loader in saved:
        next(iter(loader))
    state = saved[0].state_dict()  # position 8: on 3 ranks the rest is a PartialEpoch
    data = ArrayDataset(np.arange(50, dtype=np.int64))
    shard = {"batch_size": 4, "shuffle": True, "seed": 7, "rank": 1, "world_size": 3}
    core = Batches(data, **shard)
    core.load_state_dict(state)
    want = [x.tolist() for x in core] + [x.tolist() for x in core]  # the rest, then epoch 1
    loader = DataLoader(data, num_workers=1, **shard)  # the PartialEpoch travels to a worker process
    loader.load_state_dict(state)
    rest = iter(loader)
    assert len(rest) == 4
    assert [x.tolist() for x in rest] + [x.tolist() for x in loader] == want
    with PyDataset(data, workers=2, **shard) as ds:
        ds.load_state_dict(state)
        assert [x.tolist() for x in ds] + [x.tolist() for x in ds] == want
