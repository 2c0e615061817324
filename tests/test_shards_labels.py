"""Packing a manifest's multi-label and regression targets: `<key>.json` members that webdataset
reads, the targets in the index, and the manifest's batches bit for bit."""

from __future__ import annotations

import glob
import json
import re

import numpy as np
import pytest

import xloader as xl

SIZE = (24, 32)


def _manifests(class_root, tmp_path) -> dict[str, xl.ImageManifest]:
    folder = xl.ImageFolder(class_root, image_size=None)
    names = folder.filenames
    tags = [["a", "c"], [], ["b"], ["a", "b", "c"]]
    rows = ["filename,tags,age,score"] + [
        f"{name},{'|'.join(tags[i % 4])},{i * 0.7 - 3:.3f},{1 / (i + 3):.9f}" for i, name in enumerate(names)
    ]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "m.csv"
    return {
        "multi_hot": xl.ImageManifest(path, base_dir=class_root, image_size=None, y_col="tags", label_mode="multi_hot"),
        "scalar": xl.ImageManifest(path, base_dir=class_root, image_size=None, y_col="age", label_mode="regression"),
        "vector": xl.ImageManifest(
            path, base_dir=class_root, image_size=None, y_col=["age", "score"], label_mode="regression"
        ),
    }


@pytest.mark.parametrize("kind", ["multi_hot", "scalar", "vector"])
def test_multi_label_and_regression_manifests_pack_with_their_targets(class_root, tmp_path, kind):
    import webdataset as wds

    manifest = _manifests(class_root, tmp_path)[kind]
    out = tmp_path / "p"
    xl.pack(manifest, out, shard_size="60KB", progress=False)
    shards = xl.TarShards(out, image_size=SIZE)
    assert (shards.label_mode, shards.class_names) == (manifest.label_mode, manifest.class_names)
    if kind == "multi_hot":
        assert shards.labels == manifest.labels
        assert shards.labels[:4] == [[0, 2], [], [1], [0, 1, 2]]
    else:
        np.testing.assert_array_equal(shards.labels, manifest.labels)
        assert shards.labels.dtype == np.float32
    # the members: <key>.json, the class indices or the float32 numbers, exactly
    members = {
        s["__key__"]: json.loads(s["json"])
        for s in wds.WebDataset(sorted(glob.glob(f"{out}/*.tar")), shardshuffle=False)
    }
    assert len(members) == 28
    first = manifest.labels[0]
    assert members["000000"] == (first if kind == "multi_hot" else np.asarray(first).tolist())
    for key, value in members.items():
        np.testing.assert_array_equal(np.asarray(value, np.float32), np.asarray(manifest.labels[int(key)], np.float32))
    # the batches of the manifest, bit for bit
    manifest.image_size = SIZE
    want = xl.Batches(manifest, batch_size=8, shuffle=True, seed=4)
    got = xl.Batches(shards, batch_size=8, shuffle=True, seed=4)
    for b in range(len(want)):
        for have, expected in zip(got.get_batch(1, b), want.get_batch(1, b), strict=True):
            assert have.dtype == expected.dtype
            np.testing.assert_array_equal(have, expected)


def test_packed_regression_targets_through_torch_with_two_workers(class_root, tmp_path):
    from xloader.torch import DataLoader

    manifest = _manifests(class_root, tmp_path)["vector"]
    xl.pack(manifest, tmp_path / "p", shard_size="60KB", progress=False)
    manifest.image_size = SIZE
    want = xl.Batches(manifest, batch_size=8, shuffle=True, seed=4)
    loader = DataLoader(
        xl.TarShards(tmp_path / "p", image_size=SIZE),
        batch_size=8,
        shuffle=True,
        seed=4,
        num_workers=2,
        layout="NHWC",
        timeout=60,
    )
    for b, (x, y) in enumerate(loader):
        wx, wy = want.get_batch(0, b)
        np.testing.assert_array_equal(np.asarray(x), wx)
        np.testing.assert_array_equal(np.asarray(y), wy)
    assert b == 3


def test_label_modes_of_packed_targets_are_checked(class_root, tmp_path):
    manifest = _manifests(class_root, tmp_path)["multi_hot"]
    xl.pack(manifest, tmp_path / "p", progress=False)
    assert xl.TarShards(tmp_path / "p", label_mode=None).has_targets is False
    with pytest.raises(ValueError, match=re.escape("label_mode must be one of 'multi_hot', 'input', None; got 'int'.")):
        xl.TarShards(tmp_path / "p", label_mode="int")
