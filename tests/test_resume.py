"""Exact resume through the adapters: across worker counts, across frameworks, and in `model.fit`."""

from __future__ import annotations

import numpy as np
import pytest

import xloader as xl

N, BATCH, SEED = 22, 4, 3  # 6 batches per epoch, the last one partial


def augmented() -> xl.ArrayDataset:
    import albumentations as A

    images = np.random.default_rng(0).integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)
    transform = A.Compose([A.RandomBrightnessContrast(p=1.0), A.HorizontalFlip(p=0.5)])
    return xl.ArrayDataset(images, np.arange(N, dtype=np.int64), transform=transform)


def expected(epoch: int, batches: range) -> list[tuple[np.ndarray, np.ndarray]]:
    reference = xl.Batches(augmented(), batch_size=BATCH, shuffle=True, seed=SEED)
    return [reference.get_batch(epoch, b) for b in batches]


def assert_batches(got, want):
    assert len(got) == len(want)
    for (x, y), (x_want, y_want) in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(y), y_want)
        np.testing.assert_array_equal(np.asarray(x), x_want)


def torch_loader(num_workers: int, **options):
    from xloader.torch import DataLoader

    return DataLoader(
        augmented(), batch_size=BATCH, shuffle=True, seed=SEED, layout="NHWC", num_workers=num_workers, **options
    )


def keras_dataset(workers: int, use_multiprocessing: bool = False):
    from xloader.keras import PyDataset

    return PyDataset(
        augmented(), batch_size=BATCH, shuffle=True, seed=SEED, workers=workers, use_multiprocessing=use_multiprocessing
    )


def stop_torch_after(loader, epoch_passes: int, batches_in_last: int) -> dict:
    """Run full passes, then `batches_in_last` batches of the next one, and save the state."""
    for _ in range(epoch_passes):
        for _ in loader:
            pass
    iterator = iter(loader)
    for _ in range(batches_in_last):
        next(iterator)
    state = loader.state_dict()
    del iterator
    return state


@pytest.mark.parametrize(
    ("saved_with", "resumed_with"),
    [(2, {"num_workers": 0}), (0, {"num_workers": 2, "persistent_workers": True}), (2, {"num_workers": 1})],
)
def test_torch_resumes_mid_epoch_with_another_worker_count(saved_with, resumed_with):
    state = stop_torch_after(torch_loader(saved_with), epoch_passes=1, batches_in_last=2)
    assert (state["epoch"], state["next_batch"]) == (1, 2)
    resumed = torch_loader(**resumed_with)
    resumed.load_state_dict(state)
    rest_of_epoch_1 = list(resumed)
    epoch_2 = list(resumed)
    assert_batches(rest_of_epoch_1, expected(1, range(2, 6)))
    assert_batches(epoch_2, expected(2, range(6)))


def test_torch_state_between_passes_points_at_the_next_epoch():
    loader = torch_loader(0)
    assert (loader.state_dict()["epoch"], loader.state_dict()["next_batch"]) == (0, 0)
    list(loader)
    assert (loader.state_dict()["epoch"], loader.state_dict()["next_batch"]) == (1, 0)
    loader.set_epoch(4)
    assert loader.state_dict()["epoch"] == 4


def test_torch_state_resumes_in_keras_and_keras_state_in_torch():
    state = stop_torch_after(torch_loader(2), epoch_passes=0, batches_in_last=3)
    with keras_dataset(workers=2) as ds:
        ds.load_state_dict(state)
        assert_batches(list(ds), expected(0, range(3, 6)))
        assert ds.epoch == 1
        iterator = iter(ds)
        next(iterator)
        keras_state = ds.state_dict()
    assert (keras_state["epoch"], keras_state["next_batch"]) == (1, 1)
    loader = torch_loader(0)
    loader.load_state_dict(keras_state)
    assert_batches(list(loader), expected(1, range(1, 6)))


def test_keras_process_workers_resume_from_a_core_state():
    core = xl.Batches(augmented(), batch_size=BATCH, shuffle=True, seed=SEED)
    core.set_epoch(2)
    iterator = iter(core)
    next(iterator)
    with keras_dataset(workers=2, use_multiprocessing=True) as ds:
        ds.load_state_dict(core.state_dict())
        assert_batches(list(ds), expected(2, range(1, 6)))


def test_state_of_another_loader_is_refused_by_both_adapters():
    state = xl.Batches(augmented(), batch_size=BATCH + 1, shuffle=True, seed=SEED).state_dict()
    with pytest.raises(ValueError, match="batch_size: saved 5, here 4"):
        torch_loader(0).load_state_dict(state)
    with keras_dataset(workers=0) as ds, pytest.raises(ValueError, match="batch_size: saved 5, here 4"):
        ds.load_state_dict(state)


# --- model.fit ----------------------------------------------------------------------------------


def recording_model():
    import keras

    class RecordingModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.head = keras.layers.Dense(N)
            self.recorded: list[np.ndarray] = []

        def call(self, x, training=False):
            return self.head(self.flatten(keras.ops.cast(x, "float32") / 255.0))

        def train_step(self, *args):
            self.recorded.append(keras.ops.convert_to_numpy(args[-1][1]))
            return super().train_step(*args)

    model = RecordingModel()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model(np.zeros((1, 8, 8, 3), np.uint8))  # built: BackupAndRestore needs it
    return model


def labels_of_epochs(epochs: range) -> list[list[int]]:
    return [y.tolist() for epoch in epochs for _, y in expected(epoch, range(6))]


def test_fit_with_initial_epoch_and_epoch_sync_trains_on_the_resumed_epochs():
    from xloader.keras import EpochSync

    model = recording_model()
    with keras_dataset(workers=2) as ds:
        model.fit(ds, epochs=4, initial_epoch=2, shuffle=False, verbose=0, callbacks=[EpochSync(ds)])
    assert [y.tolist() for y in model.recorded] == labels_of_epochs(range(2, 4))


def test_fit_resumed_by_backup_and_restore_trains_on_the_epochs_it_missed(tmp_path):
    import keras

    from xloader.keras import EpochSync

    class Preempted(Exception):
        pass

    class PreemptAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise Preempted

    first = recording_model()
    with keras_dataset(workers=2) as ds, pytest.raises(Preempted):
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        first.fit(ds, epochs=4, shuffle=False, verbose=0, callbacks=[backup, EpochSync(ds), PreemptAt()])
    assert [y.tolist() for y in first.recorded] == labels_of_epochs(range(0, 2))

    second = recording_model()
    with keras_dataset(workers=2, use_multiprocessing=True) as ds:
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        second.fit(ds, epochs=4, shuffle=False, verbose=0, callbacks=[backup, EpochSync(ds)])
    assert [y.tolist() for y in second.recorded] == labels_of_epochs(range(2, 4))


def test_epoch_sync_refuses_other_datasets():
    from xloader.keras import EpochSync

    with pytest.raises(TypeError, match="EpochSync takes xloader.keras.PyDataset objects, got list"):
        EpochSync([1, 2])


# --- sharding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shard_mode", ["pad", "drop", "exact"])
def test_the_same_rank_gets_the_same_batches_in_keras_and_torch(shard_mode):
    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    shard = {"rank": 1, "world_size": 4, "shard_mode": shard_mode}
    loader = DataLoader(augmented(), batch_size=BATCH, shuffle=True, seed=SEED, layout="NHWC", **shard)
    core = xl.Batches(augmented(), batch_size=BATCH, shuffle=True, seed=SEED, **shard)
    with PyDataset(augmented(), batch_size=BATCH, shuffle=True, seed=SEED, workers=2, **shard) as ds:
        assert len(ds) == len(loader) == len(core) == {"pad": 2, "drop": 2, "exact": 2}[shard_mode]
        for epoch in range(2):
            want = [core.get_batch(epoch, b) for b in range(len(core))]
            assert_batches(list(ds), want)
            assert_batches(list(loader), want)


@pytest.mark.parametrize("num_samples", [160, 23])
@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize(("shard_mode", "drop_last"), [("pad", False), ("drop", True)])
def test_shards_are_torchs_distributed_sampler_then_batching(num_samples, world_size, shard_mode, drop_last):
    from torch.utils.data import DataLoader, DistributedSampler

    for rank in range(world_size):
        sampler = DistributedSampler(range(num_samples), world_size, rank, shuffle=False, drop_last=drop_last)
        want = [batch.tolist() for batch in DataLoader(range(num_samples), batch_size=BATCH, sampler=sampler)]
        ours = xl.Batches(
            xl.ArrayDataset(np.arange(num_samples)),
            batch_size=BATCH,
            rank=rank,
            world_size=world_size,
            shard_mode=shard_mode,
        )
        assert [ours.batch_indices(0, b).tolist() for b in range(len(ours))] == want


def test_half_given_shard_is_refused_outside_a_distributed_run():
    with pytest.raises(ValueError, match="pass both rank and world_size, or neither"):
        torch_loader(0, rank=1)
    from xloader.keras import PyDataset

    with pytest.raises(ValueError, match="pass both rank and world_size, or neither"):
        PyDataset(augmented(), batch_size=BATCH, world_size=2)


@pytest.mark.parametrize("batch_size", [N, N // 2 + 1])  # one and two batches per epoch
def test_fit_with_epoch_sync_counts_epochs_right_for_tiny_datasets(batch_size):
    # fit reads batch 0 (TensorFlow: 0 and 1) before the first epoch: with so few batches that
    # looks like a whole epoch, and only EpochSync, which hears fit's epoch number, can tell.
    from xloader.keras import EpochSync, PyDataset

    model = recording_model()
    with PyDataset(augmented(), batch_size=batch_size, shuffle=True, seed=SEED) as ds:
        model.fit(ds, epochs=3, shuffle=False, verbose=0, callbacks=[EpochSync(ds)])
    reference = xl.Batches(augmented(), batch_size=batch_size, shuffle=True, seed=SEED)
    want = [reference.get_batch(e, b)[1].tolist() for e in range(3) for b in range(len(reference))]
    assert [y.tolist() for y in model.recorded] == want


def test_epoch_sync_stands_aside_when_fit_epochs_are_not_dataset_passes():
    import keras

    from xloader.keras import EpochSync, PyDataset

    model = recording_model()
    with (
        PyDataset(augmented(), batch_size=BATCH, shuffle=True, seed=SEED) as ds,
        pytest.warns(
            UserWarning, match="EpochSync does nothing: fit runs 3 steps per epoch but the dataset has 6 batches"
        ),
    ):
        model.fit(ds, epochs=4, steps_per_epoch=3, shuffle=False, verbose=0, callbacks=[EpochSync(ds)])
    assert [y.tolist() for y in model.recorded] == labels_of_epochs(range(0, 2))
    assert isinstance(EpochSync(ds), keras.callbacks.Callback)
