"""Packing `RLEMasks`: each sample's run-length rows in `<key>.json` and in the index, decoded by
`TarShards` with the source's own rule into the same masks, bit for bit."""

from __future__ import annotations

import glob
import json
import re

import numpy as np
import pytest
from test_mask_layouts import CAR, CLASSES, ROAD, SIGN, image_pattern, images_dir, rle_csv, save_png, write_csv  # noqa: F401

import xloader as xl
from xloader.sources.rle import RLEMasks, rle_encode


@pytest.mark.parametrize("mask_mode", ["index", "multi_hot", "one_hot"])
def test_packed_rle_masks_give_the_sources_batches(rle_csv, tmp_path, mask_mode):  # noqa: F811
    import albumentations as A

    aug = A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-30, 30), p=0.7)])
    whole = RLEMasks(*rle_csv, image_size=None, class_names=CLASSES, mask_mode=mask_mode)
    xl.pack(whole, tmp_path / "p", progress=False)
    shards = xl.TarShards(tmp_path / "p", image_size=(8, 10), transform=aug)
    source = RLEMasks(*rle_csv, image_size=(8, 10), class_names=CLASSES, mask_mode=mask_mode, transform=aug)
    assert (shards.mask_format, shards.class_names, shards.packed_from) == (source.mask_format, CLASSES, "RLEMasks")
    want = xl.Batches(source, batch_size=2, shuffle=True, seed=3)
    got = xl.Batches(shards, batch_size=2, shuffle=True, seed=3)
    for epoch in range(3):
        for have, expected in zip(got.get_batch(epoch, 0), want.get_batch(epoch, 0), strict=True):
            assert have.dtype == expected.dtype
            np.testing.assert_array_equal(have, expected)


def test_rle_rows_are_a_json_member(rle_csv, tmp_path):  # noqa: F811
    import webdataset as wds

    source = RLEMasks(*rle_csv, image_size=None, class_names=CLASSES)
    assert source.mask_rows(0) == [(1, rle_encode(CAR)), (2, rle_encode(ROAD)), (3, rle_encode(SIGN))]
    xl.pack(source, tmp_path / "p", progress=False)
    samples = list(wds.WebDataset(sorted(glob.glob(f"{tmp_path}/p/*.tar")), shardshuffle=False))
    assert [json.loads(s["json"]) for s in samples] == [
        {"classes": [1, 2, 3], "rle": [rle_encode(CAR), rle_encode(ROAD), rle_encode(SIGN)], "order": "F"},
        {"classes": [2], "rle": [""], "order": "F"},  # b's one row: a road with no runs
    ]


def test_a_packed_run_past_its_image_names_the_member(images_dir, tmp_path):  # noqa: F811
    csv = write_csv(tmp_path / "bad.csv", [("a", "car", "20 10"), ("b", "car", "")])  # a has 24 pixels
    xl.pack(RLEMasks(images_dir, csv, image_size=None), tmp_path / "p", progress=False)
    shards = xl.TarShards(tmp_path / "p")
    member = f"{tmp_path}/p/shard-000000.tar:000000.json"
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {member}: a run ends at pixel 29, past the 24")):
        shards.load(0, seed=0, epoch=0, with_targets=True)
