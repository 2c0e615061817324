"""Packing a `MultiMaskFolder`: one `<key>.mask<k>.<ext>` member per binary mask file and their
classes in `<key>.json`, merged by `TarShards` into the folder's masks, bit for bit."""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest
from test_mask_layouts import CLASSES, binary, by_class, by_image, image_pattern, images_dir, save_png  # noqa: F401

import xloader as xl
from xloader.sources.multi_mask import MultiMaskFolder


@pytest.fixture
def nuclei(tmp_path) -> tuple[str, str]:
    """Three JPEG-free 12x16 images with 0 to 3 overlapping object masks each (one class)."""
    rng = np.random.default_rng(0)
    for i in range(3):
        save_png(tmp_path / "n_images" / f"s{i}.png", (rng.random((12, 16, 3)) * 255).astype(np.uint8))
        (tmp_path / "n_masks" / f"s{i}").mkdir(parents=True)
        for k in range(i + 1 if i < 2 else 0):
            save_png(tmp_path / "n_masks" / f"s{i}" / f"obj{k}.png", binary(rng.random((12, 16)) < 0.3))
    return str(tmp_path / "n_images"), str(tmp_path / "n_masks")


def _sources(by_image, by_class, nuclei, **options) -> dict[str, MultiMaskFolder]:  # noqa: F811
    options = {"image_size": None, **options}
    return {
        "by_image": MultiMaskFolder(*by_image, layout="by_image", class_names=CLASSES, **options),
        "by_class": MultiMaskFolder(*by_class, layout="by_class", **options),
        "nuclei": MultiMaskFolder(*nuclei, layout="by_image", **options),
    }


@pytest.mark.parametrize("mask_mode", ["index", "multi_hot", "one_hot"])
def test_packed_multi_masks_give_the_folders_batches(by_image, by_class, nuclei, tmp_path, mask_mode):  # noqa: F811
    import albumentations as A

    aug = A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-30, 30), p=0.7)])
    resized = _sources(by_image, by_class, nuclei, mask_mode=mask_mode, image_size=(8, 10), transform=aug)
    for name, whole in _sources(by_image, by_class, nuclei, mask_mode=mask_mode).items():
        out = tmp_path / f"packed-{name}-{mask_mode}"
        xl.pack(whole, out, progress=False)
        shards = xl.TarShards(out, image_size=(8, 10), transform=aug)
        folder = resized[name]
        assert (shards.mask_format, shards.class_names) == (folder.mask_format, folder.class_names), name
        want = xl.Batches(folder, batch_size=2, shuffle=True, seed=3)
        got = xl.Batches(shards, batch_size=2, shuffle=True, seed=3)
        for epoch in range(2):
            for b in range(len(want)):
                for have, expected in zip(got.get_batch(epoch, b), want.get_batch(epoch, b), strict=True):
                    assert have.dtype == expected.dtype, name
                    np.testing.assert_array_equal(have, expected, err_msg=name)


def test_multi_mask_members_are_webdataset_fields(by_image, by_class, nuclei, tmp_path):  # noqa: F811
    import webdataset as wds

    folder = _sources(by_image, by_class, nuclei)["by_image"]
    xl.pack(folder, tmp_path / "p", progress=False)
    samples = list(wds.WebDataset(sorted(glob.glob(f"{tmp_path}/p/*.tar")), shardshuffle=False))
    assert [sorted(s) for s in samples] == [
        ["__key__", "__local_path__", "__url__", "json", "mask0.png", "mask1.png", "mask2.png", "png"],
        ["__key__", "__local_path__", "__url__", "json", "png"],  # b: no objects
    ]
    assert [json.loads(s["json"]) for s in samples] == [[1, 2, 3], []]  # car, road, sign (0 is background)
    with open(f"{folder.masks_dir}/{folder.mask_files(0)[1]}", "rb") as file:
        assert samples[0]["mask1.png"] == file.read()  # road.png, as it was


def test_packed_multi_masks_through_torch_with_two_workers_and_a_cache(nuclei, tmp_path):
    from xloader.torch import DataLoader

    folder = MultiMaskFolder(*nuclei, layout="by_image", image_size=(8, 10))
    xl.pack(folder, tmp_path / "p", shard_size="1KB", progress=False)  # a shard per sample
    shards = xl.TarShards(tmp_path / "p", cache="memory", order="block", block_size="1KB")
    assert (len(shards.shards), shards.blocks) == (3, 3)
    loader = DataLoader(shards, batch_size=2, shuffle=True, seed=1, num_workers=2, layout="NHWC", timeout=60)
    order = shards.epoch_order(1, 0)
    for b, (x, y) in enumerate(loader):
        indices = order[b * 2 : (b + 1) * 2]
        want = [folder.load(int(i), seed=1, epoch=0, with_targets=True) for i in indices]
        np.testing.assert_array_equal(np.asarray(x), np.stack([w[0] for w in want]))
        np.testing.assert_array_equal(np.asarray(y), np.stack([w[1] for w in want]))
    assert b == 1


def test_mask_values_are_refused_for_packed_multi_masks(nuclei, tmp_path):
    xl.pack(MultiMaskFolder(*nuclei, layout="by_image", image_size=None), tmp_path / "p", progress=False)
    with pytest.raises(ValueError, match="mask_values is for one class-index mask file per image; "):
        xl.TarShards(tmp_path / "p", mask_values={1: 1})
