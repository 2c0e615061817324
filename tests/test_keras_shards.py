"""`xloader.keras.PyDataset` under a `keras.distribution` (one process, the distribution stubbed):
the data shard comes from the distribution, and Keras 3.16's batch striding is cooperated with."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xloader as xl

N, BATCH = 26, 4


class Keras315DataParallel:
    """What `PyDataset` reads of Keras 3.15's `DataParallel` on process 1 of 2 (one device each)."""

    data_shard_id = 1
    num_model_replicas = 2
    num_processes = 2
    auto_shard_dataset = False


class Keras316DataParallel(Keras315DataParallel):
    """Keras 3.16 adds `num_data_shards` and strides PyDataset batches with `auto_shard_dataset=True`."""

    num_data_shards = 2
    auto_shard_dataset = True


def dataset(**options):
    from xloader.keras import PyDataset

    return PyDataset(xl.ArrayDataset(np.arange(N, dtype=np.int64)), batch_size=BATCH, shuffle=True, seed=3, **options)


def own_shard(epoch: int) -> list[list[int]]:
    batches = xl.Batches(
        xl.ArrayDataset(np.arange(N, dtype=np.int64)), batch_size=BATCH, shuffle=True, seed=3, rank=1, world_size=2
    )
    return [batches.batch_indices(epoch, b).tolist() for b in range(len(batches))]


def keras_316_reads(ds, shard_id: int, num_shards: int) -> list[list[int]]:
    """Keras 3.16's `PyDatasetAdapter._finite_generator` with `fit(shuffle=False)`, then its `on_epoch_end`."""
    got = [ds[i].tolist() for i in range(shard_id, len(ds), num_shards)]
    ds.on_epoch_end()
    return got


@pytest.fixture
def distribution(monkeypatch):
    import keras

    def use(stub):
        monkeypatch.setattr(keras.distribution, "distribution", lambda: stub)

    return use


def test_keras_315_data_parallel_gives_the_shard_and_keras_reads_every_batch(distribution):
    distribution(Keras315DataParallel())
    with dataset() as ds:
        assert (ds.batches.options.rank, ds.batches.options.world_size, len(ds)) == (1, 2, 4)
        for epoch in range(3):
            assert [ds[i].tolist() for i in range(len(ds))] == own_shard(epoch)
            ds.on_epoch_end()


def test_keras_316_striding_is_cooperated_with_not_sharded_twice(distribution):
    distribution(Keras316DataParallel())
    with dataset() as ds, warnings.catch_warnings():
        warnings.simplefilter("error")  # no "pass shuffle=False": the requests are in order
        assert (ds.batches.options.rank, ds.batches.options.world_size, len(ds)) == (1, 2, 8)
        num_batches = (len(ds) - 1 + 2 - 1) // 2  # Keras 3.16's PyDatasetAdapter.num_batches
        assert num_batches == len(ds.batches) == 4  # the same step count on both processes
        for epoch in range(3):
            assert keras_316_reads(ds, 1, 2) == own_shard(epoch)
            assert ds.epoch == epoch + 1


def test_a_rank_other_than_kerass_shard_is_refused_when_keras_strides(distribution):
    distribution(Keras316DataParallel())
    with pytest.raises(ValueError) as raised:
        dataset(rank=0, world_size=2)
    assert str(raised.value) == (
        "rank=0, world_size=2 differ from the keras.distribution data shard 1 of 2, over which Keras already "
        "splits this PyDataset's batches (auto_shard_dataset=True). Leave rank and world_size out, or set "
        "distribution.auto_shard_dataset = False."
    )
