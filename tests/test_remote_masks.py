"""`MultiMaskFolder` (both layouts and the sample-folder layout) and `RLEMasks` over moto's S3
server, bit for bit as their local copy (NOTE [ Remote storage ] in xloader/storage/__init__.py)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from test_remote import s3_options, s3_with

import xloader as xl
from xloader.sources.rle import rle_encode

CLASSES = ["road", "car"]  # the palette masks' values 1 and 2 of the seg_dirs fixture


def _save(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def layouts(seg_dirs, tmp_path_factory) -> str:
    """Under one folder, the seg_dirs annotation in every layout: images/, by_class/<class>/,
    by_image/<stem>/<class>.png (every image has at least its road file, possibly all zeros),
    samples/<stem>/{images,masks}/ and train.csv (one RLE row per image and class)."""
    images, masks = seg_dirs
    top = str(tmp_path_factory.mktemp("layouts"))
    rows = ["image_id,class,rle"]
    for name in sorted(os.listdir(images)):
        stem = os.path.splitext(name)[0]
        index = np.asarray(Image.open(os.path.join(masks, stem + ".png")))
        image = np.asarray(Image.open(os.path.join(images, name)))
        _save(os.path.join(top, "images", stem + ".png"), image)
        _save(os.path.join(top, "samples", stem, "images", stem + ".png"), image)
        for value, cls in enumerate(CLASSES, start=1):
            on = (index == value).astype(np.uint8) * 255
            if value == 1 or on.any():
                _save(os.path.join(top, "by_image", stem, f"{cls}.png"), on)
                _save(os.path.join(top, "samples", stem, "masks", f"{cls}.png"), on)
            if on.any():
                _save(os.path.join(top, "by_class", cls, stem + ".png"), on)
            rows.append(f"{stem},{cls},{rle_encode(on != 0)}")
    with open(os.path.join(top, "train.csv"), "w") as file:
        file.write("\n".join(rows) + "\n")
    return top


@pytest.fixture(scope="module")
def s3(layouts):
    with s3_with([(layouts, "bucket/layouts")]) as endpoint:
        yield s3_options(endpoint)


def _pairs(top: str, options: dict) -> dict[str, xl.Source]:
    """Each mask source on `top` (a local folder or a URL), 16 x 16, "multi_hot" where it can."""
    common = {"image_size": (16, 16), **options}
    return {
        "by_class": xl.MultiMaskFolder(
            f"{top}/images",
            f"{top}/by_class",
            layout="by_class",
            mask_mode="multi_hot",
            unpaired="background",
            **common,
        ),
        "by_image": xl.MultiMaskFolder(
            f"{top}/images", f"{top}/by_image", layout="by_image", class_names=CLASSES, **common
        ),
        "sample_folders": xl.MultiMaskFolder.from_sample_folders(f"{top}/samples", class_names=CLASSES, **common),
        "rle": xl.RLEMasks(f"{top}/images", f"{top}/train.csv", class_names=CLASSES, mask_mode="one_hot", **common),
    }


def _assert_torch_batches(loader, reference: xl.Batches, epoch: int) -> None:
    """The torch loader's (x NCHW, y as built) against the core's batches of the local copy."""
    got = list(loader)
    assert len(got) == len(reference)
    for b, (x, y) in enumerate(got):
        want_x, want_y = reference.get_batch(epoch, b)
        np.testing.assert_array_equal(x.numpy(), want_x.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(y.numpy(), want_y)


def test_mask_sources_over_s3_index_as_the_local_copy(s3, layouts):
    remote = _pairs("s3://bucket/layouts", {"storage_options": s3})
    local = _pairs(layouts, {})
    for name, source in remote.items():
        assert source.image_files == local[name].image_files, name
        assert source.class_names == local[name].class_names == (["car", "road"] if name == "by_class" else CLASSES)
        assert len(source) == 22, name
    # Both mask sources list their bucket folder once: the CSV's folder holds the images.
    assert [m.root for m in remote["rle"]._mounts] == ["s3://bucket/layouts"]
    assert remote["by_image"].paths_of([1]) == [
        "s3://bucket/layouts/images/0001.png",
        "s3://bucket/layouts/by_image/0001/road.png",
        "s3://bucket/layouts/by_image/0001/car.png",
    ]


def test_mask_sources_over_s3_give_the_local_batches_through_torch_with_2_workers(s3, layouts):
    from xloader.torch import DataLoader

    remote = _pairs("s3://bucket/layouts", {"storage_options": s3})
    local = _pairs(layouts, {})
    for name, source in remote.items():
        reference = xl.Batches(local[name], batch_size=5, shuffle=True, seed=4)
        loader = DataLoader(source, batch_size=5, shuffle=True, seed=4, num_workers=2, timeout=60)
        loader.set_epoch(1)
        _assert_torch_batches(loader, reference, 1)


def test_a_missing_csv_or_mask_folder_is_named(s3):
    with pytest.raises(FileNotFoundError, match=r"^csv_path 's3://bucket/layouts/none\.csv' does not exist"):
        xl.RLEMasks("s3://bucket/layouts/images", "s3://bucket/layouts/none.csv", image_size=None, storage_options=s3)
    with pytest.raises(FileNotFoundError, match=r"^masks_dir 's3://bucket/layouts/nothing' does not exist\.$"):
        xl.MultiMaskFolder(
            "s3://bucket/layouts/images",
            "s3://bucket/layouts/nothing",
            layout="by_class",
            image_size=None,
            storage_options=s3,
        )


def test_an_empty_mask_folder_does_not_exist_in_a_store_so_unpaired_background_keeps_its_image(layouts):
    """by_image: an empty folder is "no objects" on disk; a store has no empty folders."""
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.put(f"{layouts}/images/", "/empty/images/", recursive=True)
    memory.put(f"{layouts}/by_image/", "/empty/by_image/", recursive=True)
    memory.rm("/empty/by_image/0003", recursive=True)  # 0003's folder, now empty on disk:
    local_masks = shutil.copytree(f"{layouts}/by_image", f"{layouts}/../empty_by_image", dirs_exist_ok=True)
    shutil.rmtree(os.path.join(local_masks, "0003"))
    os.mkdir(os.path.join(local_masks, "0003"))
    options = {"layout": "by_image", "class_names": CLASSES, "image_size": (16, 16)}
    local = xl.MultiMaskFolder(f"{layouts}/images", local_masks, **options)
    with pytest.raises(xl.DatasetError, match=r"^1 image has no mask in 'memory://empty/by_image'"):
        xl.MultiMaskFolder("memory://empty/images", "memory://empty/by_image", **options)
    remote = xl.MultiMaskFolder("memory://empty/images", "memory://empty/by_image", unpaired="background", **options)
    assert remote.image_files == local.image_files and remote.mask_files(3) == local.mask_files(3) == []
    reference, batches = xl.Batches(local, batch_size=8), xl.Batches(remote, batch_size=8)
    for b in range(len(batches)):
        for actual, wanted in zip(batches.get_batch(0, b), reference.get_batch(0, b), strict=True):
            np.testing.assert_array_equal(actual, wanted)
