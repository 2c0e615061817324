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
        pids = {w.process.pid for w in ds._prefetcher._pool.workers}
        for b in range(len(ds)):
            ds[b]
        assert {w.process.pid for w in ds._prefetcher._pool.workers} == pids


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


# --- batches lent from shared-memory slots ------------------------------------------------------


def test_a_lent_slot_is_released_only_when_every_view_of_its_batch_is_gone():
    import gc

    import torch

    from xloader import _slots

    slot = _slots.allocate(1, 64)[0]
    writer = _slots.SlotWriter(slot)
    writer.allocate("x", (2, 4), np.float32)[...] = 1.5
    writer.allocate("y", (2,), np.int64)[...] = 7
    released = []
    x, y = _slots.lease(slot, writer.layout(True), lambda: released.append(True))
    np.testing.assert_array_equal(x, np.full((2, 4), 1.5, np.float32))
    np.testing.assert_array_equal(y, [7, 7])
    row = torch.from_numpy(x)[1]  # a tensor view of a NumPy view: holds the slot too
    numpy_view = y[::2]
    del x, y
    gc.collect()
    assert not released
    del row
    gc.collect()
    assert not released
    del numpy_view
    gc.collect()
    assert released == [True]


def _assert_epoch(batches, reference, epoch, nchw):
    assert len(batches) == len(reference)
    for b, (x, y) in enumerate(batches):
        ex, ey = reference.get_batch(epoch, b)
        np.testing.assert_array_equal(np.asarray(x), ex.transpose(0, 3, 1, 2) if nchw else ex)
        np.testing.assert_array_equal(np.asarray(y), ey)


@pytest.mark.parametrize("persistent", [False, True])
def test_torch_batches_the_consumer_keeps_are_never_overwritten(class_root, persistent):
    from xloader.torch import DataLoader

    source = xl.ImageFolder(class_root, image_size=(16, 16))
    reference = xl.Batches(source, batch_size=2, shuffle=True, seed=1)
    loader = DataLoader(source, batch_size=2, shuffle=True, seed=1, num_workers=2, persistent_workers=persistent)
    for epoch in range(2):
        kept = list(loader)  # 14 batches held at once: more than there are slots
        _assert_epoch(kept, reference, epoch, nchw=True)
    pool = loader._epoch_sampler.pool
    assert len(pool.slots) < len(reference)
    del kept
    assert sorted(pool.free) == list(range(len(pool.slots)))  # every slot came back


def test_torch_slots_of_an_abandoned_pass_are_reclaimed(class_root):
    from xloader.torch import DataLoader

    source = xl.ImageFolder(class_root, image_size=(16, 16))
    reference = xl.Batches(source, batch_size=2, shuffle=True, seed=1)
    loader = DataLoader(source, batch_size=2, shuffle=True, seed=1, num_workers=2, persistent_workers=True)
    for _ in range(3):
        for b, _batch in enumerate(loader):
            if b == 2:
                break  # the tasks in flight finish in the workers and are dropped by torch
    del _batch  # the last batch we took holds its slot
    loader.set_epoch(5)
    _assert_epoch(list(loader), reference, 5, nchw=True)
    pool = loader._epoch_sampler.pool
    assert sorted(pool.free) == list(range(len(pool.slots)))


def test_keras_process_batches_the_consumer_keeps_are_never_overwritten(class_root):
    from xloader.keras import PyDataset

    source = xl.ImageFolder(class_root, image_size=(16, 16))
    reference = xl.Batches(source, batch_size=2, shuffle=True, seed=1)
    with PyDataset(
        source, batch_size=2, shuffle=True, seed=1, workers=2, use_multiprocessing=True, max_queue_size=2
    ) as ds:
        for epoch in range(2):
            kept = [ds[b] for b in range(len(ds))]
            _assert_epoch(kept, reference, epoch, nchw=False)
            ds.on_epoch_end()
        assert len(ds._prefetcher._slot_pool.slots) < len(reference)


class _SlowSource:
    """x[i] = epoch * 100 + i (4x4x3 float32); every sample of `slow_epoch` takes `delay` s."""

    has_targets = True
    x_is_image = True
    y_is_image = False

    def __init__(self, n: int = 16, slow_epoch: int = 0, delay: float = 0.5, fail: tuple[int, ...] = ()):
        self.n, self.slow_epoch, self.delay, self.fail = n, slow_epoch, delay, fail

    def __len__(self) -> int:
        return self.n

    def describe(self, index: int) -> str:
        return f"sample {index}"

    def load(self, index, *, seed, epoch, with_targets):
        import time

        if index in self.fail:
            raise ValueError(f"sample {index} is bad")
        if epoch == self.slow_epoch:
            time.sleep(self.delay)
        return np.full((4, 4, 3), epoch * 100 + index, np.float32), np.int64(index)


def test_keras_workers_still_writing_after_close_never_touch_new_batches():
    import gc
    import time

    from xloader._prefetch import Prefetcher

    prefetcher = Prefetcher(
        xl.Batches(_SlowSource(), batch_size=2), workers=2, use_processes=True, queue_size=4, start_method="fork"
    )
    prefetcher.get((1, 0))
    prefetcher.get((1, 1), upcoming=[(0, k) for k in range(8)])  # slow epoch-0 tasks now run in the workers
    prefetcher.close()  # they keep running: their slots must not be handed to the next pool
    gc.collect()
    kept = {k: prefetcher.get((1, k), upcoming=[(1, j) for j in range(k + 1, 8)]) for k in range(2, 8)}
    time.sleep(1.5)  # the old pool's tasks finish meanwhile
    for k, (x, y) in kept.items():
        np.testing.assert_array_equal(x[:, 0, 0, 0], [100 + 2 * k, 101 + 2 * k])
        np.testing.assert_array_equal(y, [2 * k, 2 * k + 1])
    prefetcher.close()


def _serve_pass(loader, error: type[Exception], words: tuple[str, ...]) -> tuple[int, int]:
    """(batches served, errors raised) over one pass; each error must contain all of `words`."""
    iterator, served, errors = iter(loader), 0, 0
    while True:
        try:
            next(iterator)
            served += 1
        except StopIteration:
            return served, errors
        except error as raised:
            assert all(word in str(raised) for word in words), raised
            errors += 1


def _assert_every_slot_free(loader) -> None:
    pool = loader._epoch_sampler.pool
    assert sorted(pool.free) == list(range(len(pool.slots))) and not pool.dispatched


@pytest.mark.parametrize("pin_memory", [False, True])
def test_torch_worker_errors_give_their_slot_back(pin_memory, request):
    from xloader.torch import DataLoader

    if pin_memory:
        request.getfixturevalue("pretend_accelerator")  # errors then pass through torch's pin thread
    loader = DataLoader(
        _SlowSource(slow_epoch=-1, fail=(2, 6)),
        batch_size=2,
        num_workers=2,
        persistent_workers=True,
        pin_memory=pin_memory,
    )
    # The user's ValueError arrives as a SampleError naming the sample and batch.
    assert _serve_pass(loader, xl.SampleError, ("is bad",)) == (6, 2)
    _assert_every_slot_free(loader)


@pytest.fixture
def pretend_accelerator(monkeypatch):
    """torch starts its pin-memory thread only with an accelerator: this machine has none, so
    torch is told it has one, and pinning (xloader.torch._pinned) becomes a plain copy."""
    import torch

    from xloader import _slots
    from xloader import torch as xtorch

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *args, **kwargs: torch.device("cpu"))
    monkeypatch.setattr(torch.accelerator, "current_device_index", lambda: 0)
    monkeypatch.setattr(torch.accelerator, "set_device_index", lambda index: None)
    calls = {"pinned": set(), "read_from_slot": 0}
    read = _slots.read

    def pinned(tensor):
        copy = tensor.clone()
        calls["pinned"].add(copy.data_ptr())
        return copy

    def counted_read(slot, layout):
        calls["read_from_slot"] += 1
        return read(slot, layout)

    monkeypatch.setattr(xtorch, "_pinned", pinned)
    monkeypatch.setattr(_slots, "read", counted_read)
    return calls


@pytest.mark.parametrize("persistent", [False, True])
def test_torch_pin_memory_copies_every_batch_out_of_its_slot(class_root, pretend_accelerator, persistent):
    from xloader.torch import DataLoader

    source = xl.ImageFolder(class_root, image_size=(16, 16))
    reference = xl.Batches(source, batch_size=2, shuffle=True, seed=1)
    loader = DataLoader(
        source, batch_size=2, shuffle=True, seed=1, num_workers=2, persistent_workers=persistent, pin_memory=True
    )
    for epoch in range(2):
        kept = list(loader)  # more batches than slots: pinned copies hold no slot
        _assert_epoch(kept, reference, epoch, nchw=True)
        assert {t.data_ptr() for batch in kept for t in batch} <= pretend_accelerator["pinned"]
    pool = loader._epoch_sampler.pool
    assert len(pool.slots) < len(reference)
    assert pretend_accelerator["read_from_slot"] == 2 * len(reference)  # none took torch's slower path
    assert sorted(pool.free) == list(range(len(pool.slots))) and not pool.dispatched


def test_torch_pin_memory_errors_give_their_slot_back(class_root, pretend_accelerator, monkeypatch):
    from xloader import torch as xtorch
    from xloader.torch import DataLoader

    pin, calls = xtorch._pinned, []

    def failing(tensor):  # e.g. page-locked memory cannot be allocated
        calls.append(None)
        if len(calls) in (3, 7):
            raise RuntimeError("cannot pin")
        return pin(tensor)

    monkeypatch.setattr(xtorch, "_pinned", failing)
    source = xl.ImageFolder(class_root, image_size=(16, 16), label_mode=None)
    loader = DataLoader(source, batch_size=2, num_workers=2, pin_memory=True, persistent_workers=True)
    assert _serve_pass(loader, RuntimeError, ("cannot pin", "pin memory thread")) == (len(loader) - 2, 2)
    _assert_every_slot_free(loader)
