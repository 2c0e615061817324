"""How the Keras and torch adapters behave around the batches: epochs, warnings, errors, options."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

import xloader as xl


def tiny_arrays(n: int = 20) -> xl.ArrayDataset:
    x = np.arange(n * 4 * 4 * 3, dtype=np.uint8).reshape(n, 4, 4, 3)
    return xl.ArrayDataset(x, np.arange(n, dtype=np.int64))


@pytest.fixture
def folder_with_bad_file(tmp_path, class_root) -> str:
    root = tmp_path / "train"
    shutil.copytree(class_root, root)
    (root / "cat" / "broken.jpg").write_bytes(b"this is not a jpeg")
    return str(root)


# --- Keras --------------------------------------------------------------------------------------


def test_keras_pydataset_is_a_pydataset_that_shows_keras_one_worker():
    import keras

    from xloader.keras import PyDataset

    ds = PyDataset(tiny_arrays(), batch_size=8, workers=2, use_multiprocessing=True)
    assert isinstance(ds, keras.utils.PyDataset)
    assert (ds.workers, ds.use_multiprocessing) == (1, False), "Keras's own enqueuer must stay off"
    assert (ds.loader_workers, ds.loader_use_multiprocessing) == (2, True)
    assert len(ds) == 3 and ds.num_batches == 3
    ds.close()


def test_keras_epoch_advances_only_after_every_batch_was_served():
    from xloader.keras import PyDataset

    ds = PyDataset(tiny_arrays(), batch_size=8, shuffle=True, seed=1)
    expected = xl.Batches(tiny_arrays(), batch_size=8, shuffle=True, seed=1)
    ds.on_epoch_end()  # Keras calls this before the first epoch
    ds[0]  # a build pass pulls one batch...
    ds.on_epoch_end()  # ...and ends
    assert ds.epoch == 0
    for b in range(len(ds)):
        np.testing.assert_array_equal(ds[b][0], expected.get_batch(0, b)[0])
    ds.on_epoch_end()
    ds.on_epoch_end()  # an extra call (e.g. after validation) changes nothing
    assert ds.epoch == 1
    np.testing.assert_array_equal(ds[0][0], expected.get_batch(1, 0)[0])
    ds.set_epoch(5)
    np.testing.assert_array_equal(ds[2][1], expected.get_batch(5, 2)[1])
    with pytest.raises(IndexError, match="batch 3 is out of range"):
        ds[3]


def test_keras_warns_when_fit_shuffles_the_batch_order():
    import keras

    from xloader.keras import PyDataset

    x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
    ds = PyDataset(xl.ArrayDataset(x, (x.sum(1) > 1.5).astype(np.int64)), batch_size=4, shuffle=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(ds, epochs=1, verbose=0)  # shuffle=False forgotten
    messages = [str(w.message) for w in caught if "xloader" in str(w.message)]
    assert len(messages) == 1 and "model.fit(..., shuffle=False)" in messages[0]
    assert ds.epoch == 1, "the epoch still advances: every batch was served once"


def test_keras_predict_with_to_fit_false_gets_inputs_only():
    import keras

    from xloader.keras import PyDataset

    ds = PyDataset(tiny_arrays(), batch_size=8, to_fit=False)
    assert isinstance(ds[0], np.ndarray) and ds[2].shape == (4, 4, 4, 3)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    assert model.predict(ds, verbose=0).shape == (20, 1)


@pytest.mark.parametrize(
    ("workers", "processes"), [(1, False), (2, False), (2, True)], ids=["sync", "threads", "processes"]
)
def test_keras_worker_errors_name_the_file(folder_with_bad_file, workers, processes):
    from xloader.keras import PyDataset

    source = xl.ImageFolder(folder_with_bad_file, image_size=(16, 16))
    with PyDataset(source, batch_size=8, workers=workers, use_multiprocessing=processes) as ds:
        with pytest.raises(xl.BadImageError, match=r"broken\.jpg: not a decodable image") as raised:
            for b in range(len(ds)):
                ds[b]
    assert raised.value.path == os.path.join(folder_with_bad_file, "cat", "broken.jpg")
    assert any("batch" in note and "epoch 0" in note for note in raised.value.__notes__)


def test_keras_process_workers_live_across_epochs():
    from xloader.keras import PyDataset

    with PyDataset(tiny_arrays(), batch_size=8, workers=2, use_multiprocessing=True) as ds:
        for _ in range(2):
            for b in range(len(ds)):
                ds[b]
            ds.on_epoch_end()
        pids = {p.pid for p in ds._prefetcher._executor._processes.values()}
        for b in range(len(ds)):
            ds[b]
        assert {p.pid for p in ds._prefetcher._executor._processes.values()} == pids


# --- torch --------------------------------------------------------------------------------------


def test_torch_loader_epochs_layout_and_length():
    import torch

    from xloader.torch import DataLoader

    loader = DataLoader(tiny_arrays(), batch_size=8, shuffle=True, seed=3, layout="NHWC")
    assert isinstance(loader, torch.utils.data.DataLoader) and len(loader) == 3
    expected = xl.Batches(tiny_arrays(), batch_size=8, shuffle=True, seed=3)
    for epoch in range(2):
        assert loader.epoch == epoch
        for b, (x, y) in enumerate(loader):
            assert x.shape[1:] == (4, 4, 3) and x.dtype == torch.uint8 and y.dtype == torch.int64
            np.testing.assert_array_equal(y.numpy(), expected.get_batch(epoch, b)[1])
    loader.set_epoch(7)
    np.testing.assert_array_equal(next(iter(loader))[1].numpy(), expected.get_batch(7, 0)[1])
    assert loader.epoch == 8


def test_torch_loader_rejects_options_it_decides():
    from xloader.torch import DataLoader

    with pytest.raises(TypeError, match="decides sampler itself"):
        DataLoader(tiny_arrays(), batch_size=8, sampler=[0, 1])
    with pytest.raises(ValueError, match="layout must be"):
        DataLoader(tiny_arrays(), batch_size=8, layout="CHW")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torch_worker_errors_name_the_file(folder_with_bad_file, num_workers):
    from xloader.torch import DataLoader

    loader = DataLoader(
        xl.ImageFolder(folder_with_bad_file, image_size=(16, 16)), batch_size=8, num_workers=num_workers
    )
    with pytest.raises(xl.BadImageError, match=r"broken\.jpg"):
        for _ in loader:
            pass
