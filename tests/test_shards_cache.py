"""The decoded cache over packed shards: the same batches with and without it (torch, 0 and 2
workers), keyed by the member (shard identity, offset, size, CRC-32), so a re-packed shard is
decoded again and never serves the old pixels."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from parity_data import augmentation

import xloader as xl

SIZE = (24, 24)


@pytest.fixture(scope="module")
def packed(class_root, seg_dirs, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("packed")
    xl.pack(xl.ImageFolder(class_root, image_size=None), out / "classes", shard_size="60KB", progress=False)
    xl.pack(xl.ImageMaskFolder(*seg_dirs, image_size=None), out / "masks", shard_size="50KB", progress=False)
    return {"classes": str(out / "classes"), "masks": str(out / "masks")}


def _epochs(source, num_workers: int, epochs: int = 2) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    from xloader.torch import DataLoader

    loader = DataLoader(
        source, batch_size=4, shuffle=True, seed=7, num_workers=num_workers, layout="NHWC", timeout=60 * num_workers
    )
    out = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        out.append([(np.asarray(x).copy(), np.asarray(y).copy()) for x, y in loader])
    return out


@pytest.mark.parametrize("kind", ["classes", "masks"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_cached_shards_give_the_uncached_batches(packed, kind, num_workers):
    transform = augmentation("classification" if kind == "classes" else "segmentation")
    want = _epochs(xl.TarShards(packed[kind], image_size=SIZE, transform=transform), 0)
    cached = xl.TarShards(packed[kind], image_size=SIZE, transform=transform, cache="memory")
    got = _epochs(cached, num_workers)
    assert [len(epoch) for epoch in got] == [7, 7] if kind == "classes" else [6, 6]
    for got_epoch, want_epoch in zip(got, want, strict=True):
        for (x, y), (wx, wy) in zip(got_epoch, want_epoch, strict=True):
            np.testing.assert_array_equal(x, wx)
            np.testing.assert_array_equal(y, wy)
    # every sample is in the cache now (filled by the workers, seen by this process): no more reads
    before = cached.reads
    batches = xl.Batches(cached, batch_size=4, shuffle=True, seed=7)
    for b in range(len(batches)):
        batches.get_batch(2, b)
    assert cached.reads - before == 0


def test_a_repacked_shard_is_decoded_again(class_root, tmp_path):
    # the same file names, each with another image's bytes: same keys, same members, new pixels
    other = shutil.copytree(class_root, tmp_path / "other")
    files = xl.ImageFolder(other, image_size=None).filepaths
    contents = [open(path, "rb").read() for path in files]
    for path, data in zip(files, contents[1:] + contents[:1], strict=True):
        with open(path, "wb") as file:
            file.write(data)
    out, cache = str(tmp_path / "packed"), str(tmp_path / "cache")
    xl.pack(xl.ImageFolder(class_root, image_size=None), out, progress=False)  # one shard
    first = xl.TarShards(out, image_size=SIZE, cache=cache)
    np.testing.assert_array_equal(
        first.load(5, seed=0, epoch=0, with_targets=False)[0],
        xl.ImageFolder(class_root, image_size=SIZE).load(5, seed=0, epoch=0, with_targets=False)[0],
    )
    shutil.rmtree(out)
    xl.pack(xl.ImageFolder(other, image_size=None), out, progress=False)
    again = xl.TarShards(out, image_size=SIZE, cache=cache)
    assert [again.describe(i) for i in range(28)] == [first.describe(i) for i in range(28)]  # same cache file
    reference = xl.ImageFolder(other, image_size=SIZE)
    for index in range(28):
        np.testing.assert_array_equal(
            again.load(index, seed=0, epoch=0, with_targets=False)[0],
            reference.load(index, seed=0, epoch=0, with_targets=False)[0],
        )
    assert again.reads == 28  # none served from the first pack's entries


def test_remote_shards_fetch_nothing_the_cache_holds(class_root):
    url = "memory://xl-shards-cache/classes"
    xl.pack(xl.ImageFolder(class_root, image_size=None), url, shard_size="60KB", progress=False)
    shards = xl.TarShards(url, image_size=SIZE, cache="memory")
    assert shards.paths_of([0, 1]) == [
        f"{url}/shard-000000.tar#bytes=512-5860",
        f"{url}/shard-000000.tar#bytes=7680-13592",
    ]
    shards.load(0, seed=0, epoch=0, with_targets=True)
    assert shards.paths_of([0, 1]) == [f"{url}/shard-000000.tar#bytes=7680-13592"]
