"""batch_transform=: MixUp and CutMix against a hand computation, the generator's stream, worker
independence in torch, the checks on what a transform returns, and Keras fit (3 backends) = torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from parity_data import build_source, loader_options

import xloader as xl
from xloader._random import batch_generator

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_CLASSES = 3


def images(n: int = 10, size: tuple[int, int] = (6, 8)) -> xl.ArrayDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)
    return xl.ArrayDataset(x, np.arange(n, dtype=np.int64) % NUM_CLASSES)


def test_the_batch_generator_stream_is_pinned():
    # seed 0, epoch 0, batch 0: a change of stream changes every user's MixUp and CutMix.
    generator = batch_generator(0, 0, 0)
    assert (generator.beta(1.0, 1.0), int(generator.integers(32)), int(generator.integers(24))) == (
        0.3144177863607126,
        19,
        13,
    )


def test_mixup_matches_a_hand_computation():
    plain = xl.Batches(images(), batch_size=4, shuffle=True, seed=5)
    mixed = xl.Batches(images(), batch_size=4, shuffle=True, seed=5, batch_transform=xl.MixUp(alpha=0.4, num_classes=3))
    for epoch, b in ((0, 0), (1, 2)):
        x, y = plain.get_batch(epoch, b)
        lam = batch_generator(5, epoch, b).beta(0.4, 0.4)
        want_x = np.empty(x.shape, np.float32)
        want_y = np.zeros((len(y), NUM_CLASSES), np.float32)
        for i in range(len(x)):
            j = i - 1  # the previous sample; the first one pairs with the last
            want_x[i] = x[i].astype(np.float32) * np.float32(lam) + x[j].astype(np.float32) * np.float32(1 - lam)
            want_y[i, y[i]] += np.float32(lam)
            want_y[i, y[j]] += np.float32(1 - lam)
        got_x, got_y = mixed.get_batch(epoch, b)
        assert (got_x.dtype, got_y.dtype) == (np.float32, np.float32)
        np.testing.assert_array_equal(got_x, want_x)
        np.testing.assert_allclose(got_y, want_y, rtol=0, atol=1e-7)  # two classes may coincide: a sum
        np.testing.assert_allclose(got_y.sum(1), 1, rtol=0, atol=1e-6)


def test_cutmix_matches_a_hand_computation():
    plain = xl.Batches(images(), batch_size=4, seed=6)
    cut = xl.Batches(images(), batch_size=4, seed=6, batch_transform=xl.CutMix(alpha=1.0, num_classes=3))
    x, y = plain.get_batch(3, 1)
    generator = batch_generator(6, 3, 1)
    lam = generator.beta(1.0, 1.0)
    cx, cy = int(generator.integers(8)), int(generator.integers(6))  # width first, as torchvision
    half_w, half_h = int(0.5 * np.sqrt(1 - lam) * 8), int(0.5 * np.sqrt(1 - lam) * 6)
    x1, x2, y1, y2 = max(cx - half_w, 0), min(cx + half_w, 8), max(cy - half_h, 0), min(cy + half_h, 6)
    want = x.copy()
    for i in range(len(x)):
        for row in range(y1, y2):
            for col in range(x1, x2):
                want[i, row, col] = x[i - 1, row, col]
    kept = 1 - (x2 - x1) * (y2 - y1) / 48
    got_x, got_y = cut.get_batch(3, 1)
    assert got_x.dtype == np.uint8 and 0 < (x2 - x1) * (y2 - y1) < 48, "this case must cut a proper box"
    np.testing.assert_array_equal(got_x, want)
    want_y = np.zeros((4, NUM_CLASSES), np.float32)
    for i in range(4):
        want_y[i, y[i]] += kept
        want_y[i, y[i - 1]] += 1 - kept
    np.testing.assert_allclose(got_y, want_y, rtol=0, atol=1e-7)


def test_random_choice_picks_with_the_batch_generator():
    mixup, cutmix = xl.MixUp(alpha=0.2, num_classes=3), xl.CutMix(alpha=1.0, num_classes=3)
    choice = xl.Batches(images(), batch_size=4, seed=1, batch_transform=xl.RandomChoice([mixup, cutmix]))
    for b in range(3):
        generator = batch_generator(1, 0, b)
        picked = [mixup, cutmix][int(generator.integers(2))]
        want = picked(xl.Batches(images(), batch_size=4, seed=1).get_batch(0, b), generator)
        got = choice.get_batch(0, b)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torch_batches_with_a_batch_transform_equal_the_core(num_workers):
    from xloader.torch import DataLoader

    recipe = xl.RandomChoice([xl.MixUp(alpha=0.2, num_classes=3), xl.CutMix(alpha=1.0, num_classes=3)])
    core = xl.Batches(images(), batch_size=4, shuffle=True, seed=9, batch_transform=recipe)
    loader = DataLoader(images(), batch_size=4, shuffle=True, seed=9, batch_transform=recipe, num_workers=num_workers)
    for epoch in range(2):
        got = [(x.numpy().transpose(0, 2, 3, 1), y.numpy()) for x, y in loader]
        assert len(got) == 3
        for b, (x, y) in enumerate(got):
            want_x, want_y = core.get_batch(epoch, b)
            np.testing.assert_array_equal(x, want_x)
            np.testing.assert_array_equal(y, want_y)


def test_what_a_batch_transform_returns_is_checked():
    def drops_y(batch, generator):
        return batch[0]

    def shrinks(batch, generator):
        return batch[0][:1], batch[1][:1]

    with pytest.raises(TypeError) as caught:
        xl.Batches(images(), batch_size=4, seed=0, batch_transform=drops_y).get_batch(0, 0)
    assert str(caught.value) == (
        f"batch_transform {drops_y!r} returned ndarray; it must return (x, y), a tuple of two NumPy arrays."
    )
    with pytest.raises(ValueError) as caught:
        xl.Batches(images(), batch_size=4, seed=0, batch_transform=shrinks).get_batch(0, 0)
    assert str(caught.value) == (
        f"batch_transform {shrinks!r} returned shapes (1, 6, 8, 3), (1,); each must keep the batch's 4 rows."
    )
    with pytest.raises(TypeError, match="batch_transform must be a callable"):
        xl.Batches(images(), batch_size=4, batch_transform="mixup")
    with pytest.raises(ValueError) as caught:
        xl.Batches(images(), batch_size=4, seed=0, batch_transform=xl.MixUp(num_classes=2)).get_batch(0, 0)
    assert str(caught.value) == (
        "MixUp(num_classes=2) got labels from 0 to 2; pass the dataset's number of classes (len(source.class_names))."
    )
    assert caught.value.__notes__ == [
        "while running batch_transform MixUp(alpha=1.0, num_classes=2) on batch 0, epoch 0"
    ]


KERAS_CONFIGS = [
    {"name": "workers1", "workers": 1, "processes": False},
    {"name": "threads2", "workers": 2, "processes": False},
]


@pytest.fixture(scope="module")
def mixed_datasets(class_root) -> list[dict]:
    # 28 images in batches of 8 (the last one partial), MixUp or CutMix picked per batch.
    return [
        {
            "name": "mixup_or_cutmix",
            "task": "classification",
            "root": class_root,
            "image_size": [24, 32],
            "num_classes": 4,
            "batch_transform": [["MixUp", 0.2], ["CutMix", 1.0]],
            "options": {"batch_size": 8, "shuffle": True, "seed": 1},
        }
    ]


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_fit_with_mixup_trains_on_the_torch_batches(tmp_path, mixed_datasets, backend):
    from xloader.torch import DataLoader

    spec_path, out_path = tmp_path / "spec.json", tmp_path / "out.npz"
    spec_path.write_text(json.dumps({"datasets": mixed_datasets, "keras_configs": KERAS_CONFIGS}))
    env = dict(os.environ, KERAS_BACKEND=backend, NO_ALBUMENTATIONS_UPDATE="1", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [
            "timeout",
            "-k",
            "10",
            "300",
            sys.executable,
            os.path.join(HERE, "keras_probe.py"),
            str(spec_path),
            str(out_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=320,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    recorded = np.load(out_path)
    for dataset in mixed_datasets:
        torch_batches = {}
        for num_workers in (0, 2):
            loader = DataLoader(
                build_source(dataset), layout="NHWC", num_workers=num_workers, **loader_options(dataset)
            )
            torch_batches[num_workers] = [(x.numpy(), y.numpy()) for _ in range(3) for x, y in loader]
        assert len(torch_batches[0]) == 3 * len(loader)
        for config in KERAS_CONFIGS:
            prefix = f"{dataset['name']}/{config['name']}/fit"
            steps = sorted({int(k.split("/")[3]) for k in recorded.files if k.startswith(prefix + "/")})
            assert steps == list(range(len(torch_batches[0]))), f"{backend} {prefix}: {len(steps)} batches"
            for step, (x, y) in enumerate(torch_batches[0]):
                assert y.dtype == np.float32 and y.shape[1] == 4, "mixed one-hot labels"
                for other in (recorded[f"{prefix}/{step}/x"], torch_batches[2][step][0]):
                    np.testing.assert_array_equal(other, x, err_msg=f"{backend} {prefix} step {step}: x")
                for other in (recorded[f"{prefix}/{step}/y"], torch_batches[2][step][1]):
                    np.testing.assert_array_equal(other, y, err_msg=f"{backend} {prefix} step {step}: y")


def test_shared_memory_slots_are_sized_for_the_transformed_batch():
    # MixUp turns uint8 images into float32 and labels into (N, K) weights: the torch adapter's
    # slots must hold that, or every batch would fall back to torch's slower path.
    for recipe in (None, xl.MixUp(num_classes=3), xl.CutMix(num_classes=3)):
        batches = xl.Batches(images(), batch_size=4, seed=0, batch_transform=recipe)
        x, y = batches.get_batch(0, 0)
        assert batches.full_batch_nbytes() == x.nbytes + y.nbytes
    assert xl.Batches(images(), batch_size=4, seed=0, batch_transform=xl.MixUp(num_classes=3)).full_batch_nbytes() == (
        4 * 6 * 8 * 3 * 4 + 4 * 3 * 4
    )
