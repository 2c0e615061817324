"""A trailing A.Normalize is applied as the batch is written (NOTE [ Normalize fused into the
batch write ]): batches must equal the samples the full pipeline gives, bit for bit."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

import xloader as xl
from xloader import _slots

GEOMETRY = [A.HorizontalFlip(p=0.5), A.Affine(rotate=(-30, 30), scale=(0.9, 1.1), p=0.5)]
FUSED = {
    "default Normalize": A.Compose([*GEOMETRY, A.RandomBrightnessContrast(p=0.5), A.Normalize()]),
    "own mean and std": A.Compose([*GEOMETRY, A.Normalize(mean=0.5, std=0.25, max_pixel_value=200.0)]),
    "Normalize alone": A.Compose([A.Normalize(mean=0.3, std=0.6)]),
}
NOT_FUSED = {
    "Normalize not last": A.Compose([A.Normalize(), A.HorizontalFlip(p=0.5)]),
    "Normalize sometimes": A.Compose([A.HorizontalFlip(p=0.5), A.Normalize(p=0.5)]),
    "per-image statistics": A.Compose([A.HorizontalFlip(p=0.5), A.Normalize(normalization="image")]),
    "Compose sometimes": A.Compose([A.HorizontalFlip(p=0.5), A.Normalize()], p=0.5),
}


def _samples(source: xl.ImageFolder, batches: xl.Batches, epoch: int, batch: int) -> np.ndarray:
    """The batch stacked from `load`, which runs the whole pipeline on each sample."""
    indices = batches.plan.batch_indices(epoch, batch).tolist()
    return np.stack([source.load(i, seed=batches.options.seed, epoch=epoch, with_targets=False)[0] for i in indices])


def _channels_first_batch(batches: xl.Batches, epoch: int, batch: int) -> np.ndarray:
    """The batch as the torch adapter's workers write it: (N, C, H, W) planes in shared memory."""
    slot = _slots.allocate(1, 4 * batches.options.batch_size * 16 * 16 * 4 + 64)[0]
    writer = _slots.SlotWriter(slot, ("x",))
    batches.get_batch(epoch, batch, allocate=writer.allocate)
    assert not writer.overflow
    return np.array(_slots.read(slot, writer.layout(True))[0])


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale", "rgba"])
@pytest.mark.parametrize("name", list(FUSED))
def test_fused_batches_equal_the_full_pipeline(class_root, name, color_mode):
    source = xl.ImageFolder(
        class_root, image_size=(16, 16), color_mode=color_mode, transform=FUSED[name], label_mode=None
    )
    assert source.fuses_normalize
    batches = xl.Batches(source, batch_size=5, shuffle=True, seed=7)
    for epoch, batch in [(0, 0), (1, 3), (2, len(batches) - 1)]:
        expected = _samples(source, batches, epoch, batch)
        assert expected.dtype == np.float32
        got = batches.get_batch(epoch, batch)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
        nchw = _channels_first_batch(batches, epoch, batch)
        assert np.array_equal(nchw, expected.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("name", list(NOT_FUSED))
def test_other_pipelines_run_whole(class_root, name):
    source = xl.ImageFolder(class_root, image_size=(16, 16), transform=NOT_FUSED[name], label_mode=None)
    assert not source.fuses_normalize
    batches = xl.Batches(source, batch_size=5, shuffle=True, seed=7)
    if "sometimes" not in name:  # otherwise float32 and uint8 samples do not batch together
        assert np.array_equal(batches.get_batch(1, 2), _samples(source, batches, 1, 2))


def test_a_float_image_before_normalize_gets_the_normalize_step_itself(class_root):
    # ToFloat makes the image float32: no lookup table applies, Normalize runs as usual.
    transform = A.Compose([A.HorizontalFlip(p=0.5), A.ToFloat(max_value=255.0), A.Normalize(max_pixel_value=1.0)])
    source = xl.ImageFolder(class_root, image_size=(16, 16), transform=transform, label_mode="input")
    assert source.fuses_normalize
    batches = xl.Batches(source, batch_size=5, shuffle=True, seed=7)
    x, y = batches.get_batch(0, 1)
    expected = _samples(source, batches, 0, 1)
    assert np.array_equal(x, expected) and np.array_equal(y, expected)


def test_label_mode_input_normalizes_x_and_y_alike(class_root):
    source = xl.ImageFolder(class_root, image_size=(16, 16), transform=FUSED["default Normalize"], label_mode="input")
    batches = xl.Batches(source, batch_size=5, shuffle=True, seed=7)
    x, y = batches.get_batch(0, 2)
    expected = _samples(source, batches, 0, 2)
    assert np.array_equal(x, expected) and np.array_equal(y, expected)


class _Mirrored(xl.ImageFolder):
    """A user's subclass overriding `load` with the `Source` protocol's signature."""

    def load(self, index, *, seed, epoch, with_targets):
        x, y = super().load(index, seed=seed, epoch=epoch, with_targets=with_targets)
        return x[:, ::-1], y


def test_a_subclass_overriding_load_gets_the_whole_pipeline(class_root):
    source = _Mirrored(class_root, image_size=(16, 16), transform=FUSED["default Normalize"], label_mode=None)
    assert not source.fuses_normalize  # its load does not take defer_normalize
    batches = xl.Batches(source, batch_size=5, shuffle=True, seed=7)
    assert np.array_equal(batches.get_batch(0, 1), _samples(source, batches, 0, 1))


def test_a_pipeline_changed_after_the_dataset_was_built_is_run_as_it_is_now(class_root):
    transform = A.Compose([A.HorizontalFlip(p=0.5), A.Normalize()])
    source = xl.ImageFolder(class_root, image_size=(16, 16), transform=transform, label_mode=None)
    transform.transforms.append(A.VerticalFlip(p=0.5))  # Normalize is no longer last
    batches = xl.Batches(source, batch_size=5, shuffle=True, seed=7)
    first = batches.get_batch(0, 1)
    assert np.array_equal(first, batches.get_batch(0, 1))
    assert np.array_equal(first, _samples(source, batches, 0, 1))


def _pairs(source, batches: xl.Batches, epoch: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    indices = batches.plan.batch_indices(epoch, batch).tolist()
    samples = [source.load(i, seed=batches.options.seed, epoch=epoch, with_targets=True) for i in indices]
    return np.stack([x for x, _ in samples]), np.stack([y for _, y in samples])


@pytest.mark.parametrize("mask_mode", ["index", "one_hot"])
def test_segmentation_batches_equal_the_full_pipeline(seg_dirs, mask_mode):
    images, masks = seg_dirs
    source = xl.ImageMaskFolder(
        images, masks, image_size=(16, 16), transform=FUSED["default Normalize"], mask_mode=mask_mode, num_classes=3
    )
    assert source.fuses_normalize
    batches = xl.Batches(source, batch_size=4, shuffle=True, seed=2)
    for epoch, batch in [(0, 0), (1, 2)]:
        x, y = batches.get_batch(epoch, batch)
        expected_x, expected_y = _pairs(source, batches, epoch, batch)
        assert x.dtype == np.float32 and np.array_equal(x, expected_x) and np.array_equal(y, expected_y)
    predict = xl.Batches(source, batch_size=4, to_fit=False)
    indices = predict.plan.batch_indices(0, 1).tolist()
    alone = [source.load(i, seed=predict.options.seed, epoch=0, with_targets=False)[0] for i in indices]
    assert np.array_equal(predict.get_batch(0, 1), np.stack(alone))


def test_manifest_batches_equal_the_full_pipeline(class_root, tmp_path):
    import csv
    import os

    rows = [
        (f"{name}/{file}", name)
        for name in sorted(os.listdir(class_root))
        for file in os.listdir(f"{class_root}/{name}")
    ]
    with open(tmp_path / "train.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("filename", "class"), *sorted(rows)])
    source = xl.ImageManifest(
        tmp_path / "train.csv", base_dir=class_root, image_size=(16, 16), transform=FUSED["own mean and std"]
    )
    assert source.fuses_normalize
    batches = xl.Batches(source, batch_size=5, shuffle=True, seed=4)
    x, y = batches.get_batch(1, 1)
    expected_x, expected_y = _pairs(source, batches, 1, 1)
    assert np.array_equal(x, expected_x) and np.array_equal(y, expected_y)
