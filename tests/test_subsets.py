"""`xl.Subset` and `xl.split` on every source, mask value remapping, and fingerprints from sample keys."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import xloader as xl
from xloader.torch import DataLoader


def pets_tree(tmp_path, seg_dirs, count: int = 8) -> tuple[str, str]:
    """The Oxford-IIIT Pets layout: images/*.jpg, annotations/trimaps/*.png holding 1, 2, 3, and the
    `._*.png` AppleDouble files the real archive carries."""
    images_dir, masks_dir = seg_dirs
    images, trimaps = tmp_path / "pets" / "images", tmp_path / "pets" / "annotations" / "trimaps"
    images.mkdir(parents=True)
    trimaps.mkdir(parents=True)
    for name in sorted(os.listdir(images_dir))[:count]:
        stem = os.path.splitext(name)[0]
        shutil.copy(os.path.join(images_dir, name), images / f"Abyssinian_{stem}.jpg")
        mask = np.asarray(Image.open(os.path.join(masks_dir, stem + ".png"))).astype(np.uint8) + 1
        Image.fromarray(mask, mode="L").save(trimaps / f"Abyssinian_{stem}.png")
        (trimaps / f"._Abyssinian_{stem}.png").write_bytes(b"\x00\x05\x16\x07AppleDouble junk")
    return str(images), str(trimaps)


def every_source(class_root, seg_dirs, tmp_path) -> dict[str, object]:
    images_dir, masks_dir = seg_dirs
    rows = ["filename,class"] + [
        f"{name}/{file},{name}" for name in sorted(os.listdir(class_root)) for file in sorted(os.listdir(os.path.join(class_root, name)))
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    by_class = tmp_path / "by_class"
    rle_rows = ["image_id,class,rle"]
    for name in sorted(os.listdir(images_dir))[:10]:
        stem = os.path.splitext(name)[0]
        mask = np.asarray(Image.open(os.path.join(masks_dir, stem + ".png")))
        for k, cls in ((1, "leaf"), (2, "stem")):
            (by_class / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(((mask == k) * 255).astype(np.uint8)).save(by_class / cls / f"{stem}.png")
            rle_rows.append(f"{stem},{cls},{xl.rle_encode(mask == k)}")
    (tmp_path / "masks.csv").write_text("\n".join(rle_rows) + "\n")
    ids = [f"s{i}" for i in range(12)]
    for i, sample_id in enumerate(ids):
        np.save(tmp_path / f"{sample_id}.npy", np.full((4, 4, 1), i, np.uint8))
    size = (24, 32)
    return {
        "ImageMaskFolder": xl.ImageMaskFolder(images_dir, masks_dir, image_size=size, num_classes=3),
        "MultiMaskFolder": xl.MultiMaskFolder(images_dir, str(by_class), layout="by_class", image_size=size, unpaired="skip"),
        "RLEMasks": xl.RLEMasks(images_dir, str(tmp_path / "masks.csv"), image_size=size, unpaired="skip"),
        "ImageManifest": xl.ImageManifest(str(tmp_path / "train.csv"), base_dir=class_root, image_size=size),
        "FileList": xl.FileList(ids, list(range(12)), root=str(tmp_path), suffix=".npy"),
        "ArrayDataset": xl.ArrayDataset(np.arange(60, dtype=np.uint8).reshape(15, 2, 2, 1), np.arange(15)),
    }


@pytest.fixture(scope="module")
def sources(class_root, seg_dirs, tmp_path_factory):
    with pytest.warns(UserWarning):  # MultiMaskFolder and RLEMasks skip the images without masks
        return every_source(class_root, seg_dirs, tmp_path_factory.mktemp("every_source"))


@pytest.mark.parametrize(
    "name", ["ImageMaskFolder", "MultiMaskFolder", "RLEMasks", "ImageManifest", "FileList", "ArrayDataset"]
)
def test_split_is_disjoint_covering_and_batches_match_in_torch(sources, name):
    source = sources[name]
    train, val = xl.split(source, validation_split=0.25, seed=3)
    assert sorted([*train.indices.tolist(), *val.indices.tolist()]) == list(range(len(source)))
    assert len(val) == int(0.25 * len(source)) or getattr(source, "labels", None) is not None
    for part in (train, val):
        for i in range(len(part)):
            got = part.load(i, seed=1, epoch=2, with_targets=True)
            want = source.load(int(part.indices[i]), seed=1, epoch=2, with_targets=True)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
    core = xl.Batches(train, batch_size=3, shuffle=True, seed=5)
    loader = DataLoader(train, batch_size=3, shuffle=True, seed=5, num_workers=2, layout="NHWC")
    for epoch in range(2):
        for b, (x, y) in enumerate(loader):
            ex, ey = core.get_batch(epoch, b)
            np.testing.assert_array_equal(x.numpy(), ex)
            np.testing.assert_array_equal(y.numpy(), ey)


def test_split_of_an_image_folder_is_image_folder_split(class_root):
    for seed in (None, 7):
        train, val = xl.ImageFolder.split(class_root, validation_split=0.3, split_seed=seed, image_size=(8, 8))
        whole = xl.ImageFolder(class_root, image_size=(8, 8))
        sub_train, sub_val = xl.split(whole, validation_split=0.3, seed=seed)
        assert [whole.filenames[i] for i in sub_train.indices] == train.filenames
        assert [whole.filenames[i] for i in sub_val.indices] == val.filenames


def test_split_without_seed_takes_the_first_samples_of_each_class_as_keras():
    data = xl.ArrayDataset(np.zeros((10, 1)), np.zeros(10))
    train, val = xl.split(data, validation_split=0.3)
    assert val.indices.tolist() == [0, 1, 2] and train.indices.tolist() == list(range(3, 10))


@pytest.mark.parametrize(
    ("seed", "error", "message"),
    [
        (-1, ValueError, "seed must be a non-negative int, or None for Keras's split; got -1."),
        (1.5, TypeError, "seed must be a non-negative int, or None for Keras's split; got 1.5."),
        (True, TypeError, "seed must be a non-negative int, or None for Keras's split; got True."),
    ],
)
def test_split_checks_its_seed_with_image_folder_s_wording(seed, error, message):
    data = xl.ArrayDataset(np.arange(10).reshape(10, 1), np.arange(10))
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        xl.split(data, validation_split=0.2, seed=seed)


def test_subset_checks_its_indices_and_keeps_the_source_s_names(sources):
    folder = sources["ImageMaskFolder"]
    with pytest.raises(IndexError, match=re.escape(f"sample index {len(folder)} is out of range for a source of {len(folder)} samples.")):
        xl.Subset(folder, [0, len(folder)])
    with pytest.raises(TypeError, match="sample indices must be integers, got dtype float64."):
        xl.Subset(folder, [0.5])
    part = xl.Subset(folder, [3, 1])
    assert part.num_classes == 3 and part.describe(0) == folder.describe(3)
    assert repr(part) == f"Subset({folder!r}, 2 of {len(folder)} samples)"


def test_pets_trimaps_load_with_mask_values(tmp_path, seg_dirs):
    images, trimaps = pets_tree(tmp_path, seg_dirs)
    with pytest.raises(xl.BadImageError, match="mask value 3 .* is not a class index below num_classes=3"):
        xl.Batches(xl.ImageMaskFolder(images, trimaps, image_size=(24, 32), num_classes=3), batch_size=8).get_batch(0, 0)
    remap = {1: 0, 2: 1, 3: 2}
    index = xl.ImageMaskFolder(images, trimaps, image_size=(24, 32), num_classes=3, mask_values=remap)
    assert len(index) == 8  # the ._*.png files are hidden files: never paired, never read
    _, y = xl.Batches(index, batch_size=8).get_batch(0, 0)
    assert y.shape == (8, 24, 32) and y.dtype == np.uint8 and set(np.unique(y).tolist()) == {0, 1, 2}
    hot = xl.ImageMaskFolder(images, trimaps, image_size=(24, 32), num_classes=3, mask_values=remap, mask_mode="one_hot")
    _, y_hot = xl.Batches(hot, batch_size=8).get_batch(0, 0)
    assert y_hot.shape == (8, 24, 32, 3)
    np.testing.assert_array_equal(y_hot.argmax(-1), y)
    np.testing.assert_array_equal(y_hot.sum(-1), np.ones((8, 24, 32)))


def test_an_unmapped_mask_value_names_the_file_and_the_value(tmp_path, seg_dirs):
    images, trimaps = pets_tree(tmp_path, seg_dirs, count=2)
    source = xl.ImageMaskFolder(images, trimaps, image_size=None, mask_values={1: 0, 2: 1})
    first = os.path.join(trimaps, sorted(f for f in os.listdir(trimaps) if not f.startswith("."))[0])
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot use {first}: mask value 3 is not a key of mask_values")):
        source.load(0, seed=0, epoch=0, with_targets=True)
    with pytest.raises(ValueError, match="mask_values maps ints >= 0 to ints >= 0; class index -1 is not one."):
        xl.ImageMaskFolder(images, trimaps, image_size=None, mask_values={1: -1})


def test_fingerprints_come_from_sample_keys():
    a = xl.Batches(xl.ArrayDataset(np.zeros((6, 2))), batch_size=2)
    b = xl.Batches(xl.ArrayDataset(np.ones((6, 2))), batch_size=2)
    assert a.state_dict()["dataset"]["fingerprint"] != b.state_dict()["dataset"]["fingerprint"]
    with pytest.raises(ValueError, match="fingerprint"):
        b.load_state_dict(a.state_dict())


def test_declared_abilities_are_what_the_core_asks():
    data = xl.ArrayDataset(np.zeros((4, 2, 2, 3), np.uint8))
    assert isinstance(data, xl.Source) and isinstance(data, xl.SupportsSampleKeys)
    assert isinstance(data, xl.SupportsImageTargets) and not data.y_is_image
    assert isinstance(xl.Subset(data, [0]), xl.SupportsSampleKeys)
