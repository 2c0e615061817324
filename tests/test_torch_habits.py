"""Code written for torch and Keras gets right numbers: len(loader.dataset), batch_size,
sampler.set_epoch, unseeded loaders following the global seed, refusals that name the way."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import xloader as xl
from xloader.torch import DataLoader

N = 22


def arrays(n: int = N) -> xl.ArrayDataset:
    x = np.arange(n * 2 * 2 * 3, dtype=np.uint8).reshape(n, 2, 2, 3)
    return xl.ArrayDataset(x, np.arange(n, dtype=np.int64) % 3)


def first_sample_ids(loader) -> list[int]:
    # A sample's first pixel value identifies it (arange data): x[i, 0, 0, 0] == 12 * i.
    return [int(v) // 12 for x, _ in loader for v in x[:, 0, 0, 0]]


# --- torch's attributes ------------------------------------------------------------------------


def test_len_dataset_counts_samples_and_the_mnist_idiom_is_right():
    loader = DataLoader(arrays(), batch_size=4, seed=0)
    assert (len(loader), len(loader.dataset), loader.batch_size, loader.drop_last) == (6, 22, 4, False)
    correct = 0
    for _, y in loader:
        correct += int((y == 0).sum())  # a "model" that always predicts class 0
    assert 100.0 * correct / len(loader.dataset) == 100.0 * 8 / 22
    dropping = DataLoader(arrays(), batch_size=4, seed=0, drop_last=True)
    assert (len(dropping), len(dropping.dataset), dropping.batch_size, dropping.drop_last) == (5, 22, 4, True)


def torchvision_evaluate_check(loader, num_processed_samples: int) -> str:
    """torchvision's references/classification/train.py evaluate(), its length check verbatim
    (get_rank is only reached when the counts differ: it raises without a process group)."""
    if (
        hasattr(loader.dataset, "__len__")
        and len(loader.dataset) != num_processed_samples
        and torch.distributed.get_rank() == 0
    ):
        return "warned"
    return "ok"


def test_torchvision_evaluate_length_check_single_process_and_sharded():
    single = DataLoader(arrays(), batch_size=4, seed=0)
    assert torchvision_evaluate_check(single, sum(len(y) for _, y in single)) == "ok"
    # Each rank of an exact evaluation shard: the processed counts summed over ranks (torchvision
    # reduces them across processes) equal len(loader.dataset) on every rank.
    ranks = [DataLoader(arrays(), batch_size=4, seed=0, rank=r, world_size=3, shard_mode="exact") for r in range(3)]
    processed = [sum(len(y) for _, y in loader) for loader in ranks]
    assert processed == [8, 7, 7]  # sample-level shards: 22 samples over 3 ranks
    assert [torchvision_evaluate_check(loader, sum(processed)) for loader in ranks] == ["ok", "ok", "ok"]
    assert [len(loader.dataset) for loader in ranks] == [22, 22, 22]


def test_sampler_set_epoch_is_the_loader_set_epoch():
    loader = DataLoader(arrays(), batch_size=4, shuffle=True, seed=3)
    expected = xl.Batches(arrays(), batch_size=4, shuffle=True, seed=3)
    loader.sampler.set_epoch(5)
    assert loader.epoch == 5
    for b, (x, _) in enumerate(loader):
        np.testing.assert_array_equal(x.numpy().transpose(0, 2, 3, 1), expected.get_batch(5, b)[0])
    assert loader.state_dict()["epoch"] == 6


@pytest.mark.parametrize("make", [arrays, lambda: xl.Subset(arrays(), [0, 2, 4])], ids=["ArrayDataset", "Subset"])
def test_a_source_in_torchs_dataloader_names_xloaders(make):
    source = make()
    name = type(source).__name__
    with pytest.raises(TypeError) as caught:
        next(iter(torch.utils.data.DataLoader(source, batch_size=2)))
    assert str(caught.value) == (
        f"{name} is an xloader source, not a torch Dataset: it has no [index]. Use "
        f"xloader.torch.DataLoader({name}(...), batch_size=..., shuffle=...) in place of "
        "torch.utils.data.DataLoader (or xloader.keras.PyDataset for Keras); one sample is source.load(index, ...)."
    )


def test_collate_fn_refusal_names_batch_transform():
    with pytest.raises(TypeError) as caught:
        DataLoader(arrays(), batch_size=4, collate_fn=lambda batch: batch)
    assert str(caught.value) == (
        "xloader.torch.DataLoader decides collate_fn itself: batches are stacked by xloader; for batch-level "
        "augmentation (MixUp, CutMix) pass batch_transform=xloader.MixUp(...) (or any "
        "batch_transform(batch, generator) -> batch), which runs in the workers. Do not pass collate_fn=."
    )


# --- the seed convention -----------------------------------------------------------------------


def unseeded_torch_order(global_seed: int) -> tuple[list[int], int]:
    torch.manual_seed(global_seed)
    loader = DataLoader(arrays(), batch_size=4, shuffle=True)
    return first_sample_ids(loader), loader.state_dict()["options"]["seed"]


def test_unseeded_torch_loaders_follow_torch_manual_seed():
    order_1, seed_1 = unseeded_torch_order(1)
    again_1, again_seed_1 = unseeded_torch_order(1)
    order_2, seed_2 = unseeded_torch_order(2)
    assert (again_1, again_seed_1) == (order_1, seed_1)
    assert order_2 != order_1 and seed_2 != seed_1
    assert sorted(order_1) == sorted(order_2) == list(range(N))
    # The drawn seed is the one used: an explicit loader with it gives the same order.
    assert first_sample_ids(DataLoader(arrays(), batch_size=4, shuffle=True, seed=seed_1)) == order_1
    torch.manual_seed(1)
    assert f"seed={seed_1} (drawn)" in repr(DataLoader(arrays(), batch_size=4))


def test_an_unseeded_loader_resumes_with_the_saved_seed():
    torch.manual_seed(1)
    saved = DataLoader(arrays(), batch_size=4, shuffle=True)
    iterator = iter(saved)
    next(iterator)
    state = saved.state_dict()
    rest = [x.numpy() for x, _ in iterator]
    torch.manual_seed(2)  # another global seed: the resumed loader adopts the saved one
    resumed = DataLoader(arrays(), batch_size=4, shuffle=True)
    resumed.load_state_dict(state)
    assert resumed.seed == saved.seed
    got = [x.numpy() for x, _ in resumed]
    assert len(got) == len(rest) == 5
    for a, b in zip(got, rest, strict=True):
        np.testing.assert_array_equal(a, b)
    explicit = DataLoader(arrays(), batch_size=4, shuffle=True, seed=5)
    with pytest.raises(ValueError, match=f"seed: saved {saved.seed}, here 5"):
        explicit.load_state_dict(state)


def test_unseeded_shards_agree_on_seed_zero_whatever_each_rank_global_seed():
    shards = []
    for rank in range(2):
        torch.manual_seed(100 + rank)  # ranks seeded differently, as torchrun scripts often are
        loader = DataLoader(arrays(), batch_size=4, shuffle=True, rank=rank, world_size=2, shard_mode="exact")
        assert loader.seed == 0
        shards.append(first_sample_ids(loader))
    assert sorted(shards[0] + shards[1]) == list(range(N))


def test_unseeded_core_and_keras_follow_pythons_random():
    from xloader.keras import PyDataset

    random.seed(1)
    first = xl.Batches(arrays(), batch_size=4, shuffle=True).options.seed
    random.seed(1)
    assert xl.Batches(arrays(), batch_size=4, shuffle=True).options.seed == first
    random.seed(2)
    assert xl.Batches(arrays(), batch_size=4, shuffle=True).options.seed != first

    import keras

    keras.utils.set_random_seed(1)
    with PyDataset(arrays(), batch_size=4, shuffle=True) as ds:
        keras_seed = ds.state_dict()["options"]["seed"]
    keras.utils.set_random_seed(1)
    with PyDataset(arrays(), batch_size=4, shuffle=True) as ds:
        assert ds.state_dict()["options"]["seed"] == keras_seed
        np.testing.assert_array_equal(ds[0][0], xl.Batches(arrays(), batch_size=4, shuffle=True, seed=keras_seed)[0][0])
    keras.utils.set_random_seed(2)
    with PyDataset(arrays(), batch_size=4, shuffle=True) as ds:
        assert ds.state_dict()["options"]["seed"] != keras_seed


# --- Keras fit refuses the torch loader ----------------------------------------------------------


def test_keras_fit_on_the_torch_loader_is_refused_naming_pydataset(tmp_path):
    script = textwrap.dedent(
        """
        import keras, numpy as np, xloader as xl
        from xloader.torch import DataLoader
        data = xl.ArrayDataset(np.zeros((8, 2, 2, 3), np.float32), np.zeros(8, np.int64))
        model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(2)])
        model.compile(loss="sparse_categorical_crossentropy")
        try:
            model.fit(DataLoader(data, batch_size=4, layout="NHWC", seed=0), epochs=1, verbose=0)
        except TypeError as error:
            print("REFUSED", error)
        """
    )
    env = dict(os.environ, KERAS_BACKEND="torch", NO_ALBUMENTATIONS_UPDATE="1")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == (
        "REFUSED xloader.torch.DataLoader cannot be iterated by Keras (model.fit, evaluate, predict): Keras "
        "iterates a torch loader more than once per epoch, so fit epoch e would train on another xloader "
        "epoch. Pass xloader.keras.PyDataset(source, batch_size=..., shuffle=..., seed=...) instead, with "
        "model.fit(..., shuffle=False): the same batches, bit for bit."
    )
