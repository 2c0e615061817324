"""Packed shards: `xloader.pack` writes WebDataset tar shards, `TarShards` reads them back with the
batches of the packed source, bit for bit."""

from __future__ import annotations

import json
import os
import pickle
import re
import tarfile

import numpy as np
import pytest
from parity_data import augmentation

import xloader as xl
from xloader.cli import main
from xloader.shards._index import INDEX_NAME, key_width
from xloader.shards.pack import parse_size
from xloader.source import fuses_normalize, y_is_image

SIZE = (32, 40)


@pytest.fixture(scope="module")
def packed_classes(class_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("packed") / "classes")
    xl.pack(xl.ImageFolder(class_root, image_size=None), out, shard_size="60KB", progress=False)
    return out


@pytest.fixture(scope="module")
def packed_seg(seg_dirs, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("packed") / "seg")
    xl.pack(xl.ImageMaskFolder(*seg_dirs, image_size=None), out, shard_size="50KB", progress=False)
    return out


def _shard_files(out: str) -> list[str]:
    return sorted(os.path.join(out, name) for name in os.listdir(out) if name.endswith(".tar"))


def _assert_same_batches(expected: xl.Batches, batches, epoch: int) -> None:
    """Every batch of `batches` (an iterable of (x, y) arrays or tensors) equals `expected`'s."""
    count = 0
    for b, got in enumerate(batches):
        for want, have in zip(expected.get_batch(epoch, b), got, strict=True):
            np.testing.assert_array_equal(np.asarray(have), want)
        count += 1
    assert count == len(expected)


# --- what pack writes -----------------------------------------------------------------------------


def test_webdataset_reads_every_sample_with_key_bytes_and_label(class_root, packed_classes):
    import webdataset as wds

    folder = xl.ImageFolder(class_root, image_size=None)
    samples = list(wds.WebDataset(_shard_files(packed_classes), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:06d}" for i in range(len(folder))]
    for sample, path, label in zip(samples, folder.filepaths, folder.labels, strict=True):
        with open(path, "rb") as file:
            assert sample["jpg"] == file.read()  # the original bytes, not re-encoded
        assert int(sample["cls"]) == label


def test_webdataset_reads_masks_as_a_field_of_the_key(seg_dirs, packed_seg):
    import webdataset as wds

    folder = xl.ImageMaskFolder(*seg_dirs, image_size=None)
    samples = list(wds.WebDataset(_shard_files(packed_seg), shardshuffle=False))
    assert len(samples) == len(folder) == 22
    for sample, name in zip(samples, folder.mask_files, strict=True):
        assert sorted(k for k in sample if not k.startswith("__")) == ["jpg", "mask.png"]
        with open(os.path.join(seg_dirs[1], name), "rb") as file:
            assert sample["mask.png"] == file.read()


def test_shards_roll_over_at_shard_size_and_keep_members_together(packed_classes):
    shards = _shard_files(packed_classes)
    with np.load(os.path.join(packed_classes, INDEX_NAME)) as index:
        per_shard = np.bincount(index["shard"]).tolist()
    assert len(shards) == len(per_shard) > 1
    for path, count in zip(shards, per_shard, strict=True):
        with tarfile.open(path) as tar:
            names = tar.getnames()
        assert len(names) == 2 * count  # <key>.jpg and <key>.cls of each sample
        assert {name.split(".")[0] for name in names[::2]} == {name.split(".")[0] for name in names[1::2]}


@pytest.mark.parametrize(
    ("text", "expected"), [("256MB", 256_000_000), ("1GiB", 2**30), ("1.5 KB", 1500), (4096, 4096)]
)
def test_shard_size_units(text, expected):
    assert parse_size(text) == expected


def test_shard_size_errors():
    with pytest.raises(ValueError, match=re.escape("shard_size '3 pages' has an unknown unit 'pages'; use B, KB")):
        parse_size("3 pages")
    with pytest.raises(TypeError, match=re.escape("shard_size must be a number of bytes or a string such as")):
        parse_size(None)
    with pytest.raises(ValueError, match=re.escape("shard_size must be positive, got 0.")):
        parse_size(0)


def test_pack_refuses_an_existing_pack_and_other_sources(class_root, packed_classes):
    with pytest.raises(FileExistsError, match=re.escape(f"{packed_classes!r} already holds a packed dataset.")):
        xl.pack(xl.ImageFolder(class_root, image_size=None), packed_classes, progress=False)
    arrays = xl.ArrayDataset(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2, np.int64))
    with pytest.raises(
        TypeError,
        match=re.escape(
            "pack takes an ImageFolder, ImageManifest, ImageMaskFolder, MultiMaskFolder or RLEMasks, got ArrayDataset. "
            "Other sources are not file-backed in a way pack can copy yet."
        ),
    ):
        xl.pack(arrays, "unused", progress=False)


def test_a_file_that_cannot_be_read_stops_pack_and_leaves_no_shards(class_root, tmp_path):
    import shutil

    root = shutil.copytree(class_root, tmp_path / "tree")
    folder = xl.ImageFolder(root, image_size=None)
    missing = folder.filepaths[20]
    os.remove(missing)
    out = tmp_path / "p"
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {missing}: file not found")):
        xl.pack(folder, out, shard_size="20KB", progress=False)
    assert os.listdir(out) == []  # so packing again into `out` can start
    result = xl.pack(xl.ImageFolder(root, image_size=None), out, progress=False)
    assert result.samples == 27


def test_key_width_grows_past_a_million():
    assert [key_width(n) for n in (1, 1_000_000, 1_000_001)] == [6, 6, 7]


# --- TarShards gives the packed source's batches ----------------------------------------------------


def test_class_folder_batches_are_bit_identical_in_the_core(class_root, packed_classes):
    transform = augmentation("classification")
    folder = xl.ImageFolder(class_root, image_size=SIZE, transform=transform)
    shards = xl.TarShards(packed_classes, image_size=SIZE, transform=transform)
    assert shards.class_names == folder.class_names and shards.filenames == folder.filenames
    np.testing.assert_array_equal(shards.labels, folder.labels)
    assert fuses_normalize(shards) and fuses_normalize(folder)  # the trailing Normalize is fused in both
    assert [shards.sample_key(i) for i in range(len(shards))] == [folder.sample_key(i) for i in range(len(folder))]
    expected = xl.Batches(folder, batch_size=8, shuffle=True, seed=5)
    for epoch in range(2):
        _assert_same_batches(
            expected,
            (xl.Batches(shards, batch_size=8, shuffle=True, seed=5).get_batch(epoch, b) for b in range(len(expected))),
            epoch,
        )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_class_folder_batches_are_bit_identical_through_torch(class_root, packed_classes, num_workers):
    from xloader.torch import DataLoader

    transform = augmentation("classification")
    expected = xl.Batches(
        xl.ImageFolder(class_root, image_size=SIZE, transform=transform), batch_size=8, shuffle=True, seed=7
    )
    shards = xl.TarShards(packed_classes, image_size=SIZE, transform=transform)
    loader = DataLoader(shards, batch_size=8, shuffle=True, seed=7, num_workers=num_workers, layout="NHWC")
    for epoch in range(2):
        _assert_same_batches(expected, loader, epoch)


@pytest.mark.parametrize("workers", [1, 2])
def test_class_folder_batches_are_bit_identical_through_keras(class_root, packed_classes, workers):
    from xloader.keras import PyDataset

    transform = augmentation("classification")
    expected = xl.Batches(
        xl.ImageFolder(class_root, image_size=SIZE, transform=transform), batch_size=8, shuffle=True, seed=7
    )
    shards = xl.TarShards(packed_classes, image_size=SIZE, transform=transform)
    with PyDataset(shards, batch_size=8, shuffle=True, seed=7, workers=workers, use_multiprocessing=workers > 1) as ds:
        for epoch in range(2):
            _assert_same_batches(expected, (ds[b] for b in range(len(ds))), epoch)
            ds.on_epoch_end()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_image_mask_batches_are_bit_identical_through_torch(seg_dirs, packed_seg, num_workers):
    from xloader.torch import DataLoader

    transform = augmentation("segmentation")
    folder = xl.ImageMaskFolder(*seg_dirs, image_size=SIZE, transform=transform, num_classes=3, mask_mode="one_hot")
    expected = xl.Batches(folder, batch_size=4, shuffle=True, seed=2)
    shards = xl.TarShards(packed_seg, image_size=SIZE, transform=transform, num_classes=3, mask_mode="one_hot")
    loader = DataLoader(shards, batch_size=4, shuffle=True, seed=2, num_workers=num_workers, layout="NHWC")
    for epoch in range(2):
        _assert_same_batches(expected, loader, epoch)


@pytest.mark.parametrize("workers", [1, 2])
def test_image_mask_batches_are_bit_identical_through_keras(seg_dirs, packed_seg, workers):
    from xloader.keras import PyDataset

    transform = augmentation("segmentation")
    expected = xl.Batches(xl.ImageMaskFolder(*seg_dirs, image_size=SIZE, transform=transform), batch_size=4, seed=4)
    shards = xl.TarShards(packed_seg, image_size=SIZE, transform=transform)
    with PyDataset(shards, batch_size=4, seed=4, workers=workers, use_multiprocessing=workers > 1) as ds:
        _assert_same_batches(expected, (ds[b] for b in range(len(ds))), 0)


def test_reduced_size_decode_is_packed(class_root, tmp_path):
    folder = xl.ImageFolder(class_root, image_size=(24, 32), downscale_on_decode=True)
    xl.pack(folder, tmp_path / "p", progress=False)
    shards = xl.TarShards(tmp_path / "p")
    assert shards.downscale_on_decode is True
    full = xl.ImageFolder(class_root, image_size=(24, 32)).load(5, seed=0, epoch=0, with_targets=False)[0]
    reduced = folder.load(5, seed=0, epoch=0, with_targets=False)[0]
    assert not np.array_equal(reduced, full)  # so the next line tests the reduced decode
    np.testing.assert_array_equal(shards.load(5, seed=0, epoch=0, with_targets=False)[0], reduced)


def test_mask_values_are_packed_and_applied(seg_dirs, tmp_path):
    folder = xl.ImageMaskFolder(*seg_dirs, image_size=SIZE, mask_values={0: 0, 1: 2, 2: 1}, num_classes=3)
    xl.pack(folder, tmp_path / "p", progress=False)
    shards = xl.TarShards(tmp_path / "p")
    assert shards.mask_values.mapping == {0: 0, 1: 2, 2: 1} and shards.num_classes == 3
    for index in range(len(folder)):
        for want, have in zip(
            folder.load(index, seed=1, epoch=0, with_targets=True),
            shards.load(index, seed=1, epoch=0, with_targets=True),
            strict=True,
        ):
            np.testing.assert_array_equal(have, want)


def test_options_default_to_the_packed_sources(class_root, tmp_path):
    folder = xl.ImageFolder(
        class_root,
        image_size=(24, 24),
        label_mode="categorical",
        color_mode="grayscale",
        keep_aspect_ratio=True,
        interpolation="nearest",
    )
    xl.pack(folder, tmp_path / "p", progress=False)
    shards = xl.TarShards(tmp_path / "p")
    assert (shards.image_size, shards.label_mode, shards.color_mode, shards.keep_aspect_ratio) == (
        (24, 24),
        "categorical",
        "grayscale",
        True,
    )
    for index in (0, 13, 27):
        for want, have in zip(
            folder.load(index, seed=0, epoch=0, with_targets=True),
            shards.load(index, seed=0, epoch=0, with_targets=True),
            strict=True,
        ):
            np.testing.assert_array_equal(have, want)
    override = xl.TarShards(tmp_path / "p", label_mode="int", color_mode="rgb")
    assert override.load(13, seed=0, epoch=0, with_targets=True)[0].shape == (24, 24, 3)
    np.testing.assert_array_equal(override.load(13, seed=0, epoch=0, with_targets=True)[1], folder.labels[13])


def test_packed_golden_data_gives_the_golden_digests(tmp_path):
    import json

    from golden import DATA, DIGESTS, augmentation, digest

    with open(DIGESTS) as file:
        golden = json.load(file)["digests"]
    size = (24, 32)
    for name, source in (
        ("classes", xl.ImageFolder(f"{DATA}/classes", image_size=None)),
        ("seg", xl.ImageMaskFolder(f"{DATA}/images", f"{DATA}/masks", image_size=None)),
        ("manifest", xl.ImageManifest(f"{DATA}/manifest.csv", image_size=None)),
    ):
        xl.pack(source, tmp_path / name, shard_size="8KB", progress=False)
    packed = {
        "image_folder_augmented": xl.TarShards(tmp_path / "classes", image_size=size, transform=augmentation(True)),
        "image_folder_nearest_aspect": xl.TarShards(
            tmp_path / "classes",
            image_size=size,
            interpolation="nearest",
            keep_aspect_ratio=True,
            label_mode="categorical",
        ),
        "image_mask_folder_one_hot": xl.TarShards(
            tmp_path / "seg", image_size=size, transform=augmentation(False), num_classes=3, mask_mode="one_hot"
        ),
        "manifest_grayscale": xl.TarShards(tmp_path / "manifest", image_size=size, color_mode="grayscale"),
    }
    assert len(xl.TarShards(tmp_path / "classes").shards) > 1
    for name, source in packed.items():
        assert digest(xl.Batches(source, batch_size=5, shuffle=True, seed=11)) == golden[name], name


def test_a_split_of_the_shards_is_the_split_of_the_folder(class_root, packed_classes):
    transform = augmentation("classification")
    folder = xl.split(xl.ImageFolder(class_root, image_size=SIZE, transform=transform), validation_split=0.25, seed=3)
    shards = xl.split(xl.TarShards(packed_classes, image_size=SIZE, transform=transform), validation_split=0.25, seed=3)
    for want, have in zip(folder, shards, strict=True):
        np.testing.assert_array_equal(have.indices, want.indices)  # the same sample keys and labels
        expected = xl.Batches(want, batch_size=4, shuffle=True, seed=0)
        got = xl.Batches(have, batch_size=4, shuffle=True, seed=0)
        _assert_same_batches(expected, (got.get_batch(1, b) for b in range(len(got))), 1)


def test_input_targets_are_laid_out_as_images(class_root, packed_classes):
    shards = xl.TarShards(packed_classes, image_size=SIZE, label_mode="input")
    assert y_is_image(shards) and not y_is_image(xl.TarShards(packed_classes, image_size=SIZE))
    x, y = shards.load(4, seed=0, epoch=0, with_targets=True)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(
        x, xl.ImageFolder(class_root, image_size=SIZE).load(4, seed=0, epoch=0, with_targets=False)[0]
    )


def test_manifest_packs_with_its_labels(class_root, tmp_path):
    folder = xl.ImageFolder(class_root, image_size=None)
    rows = ["filename,class"] + [
        f"{name},{folder.class_names[label]}" for name, label in zip(folder.filenames, folder.labels, strict=True)
    ][::-1]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    manifest = xl.ImageManifest(tmp_path / "m.csv", base_dir=class_root, image_size=SIZE)
    xl.pack(manifest, tmp_path / "p", progress=False)
    shards = xl.TarShards(tmp_path / "p")
    assert shards.packed_from == "ImageManifest" and shards.filenames == manifest.filenames
    expected = xl.Batches(manifest, batch_size=10, shuffle=True, seed=1)
    _assert_same_batches(
        expected,
        (xl.Batches(shards, batch_size=10, shuffle=True, seed=1).get_batch(0, b) for b in range(len(expected))),
        0,
    )


def test_a_pickled_source_reopens_its_shards(packed_classes):
    shards = xl.TarShards(packed_classes, image_size=SIZE)
    first = shards.load(3, seed=0, epoch=0, with_targets=True)
    copy = pickle.loads(pickle.dumps(shards))  # as a spawned worker gets it: no file descriptors
    for want, have in zip(first, copy.load(3, seed=0, epoch=0, with_targets=True), strict=True):
        np.testing.assert_array_equal(have, want)
    shards.close()
    copy.close()


# --- the block order ---------------------------------------------------------------------------------


def test_blocks_are_cut_by_bytes_within_a_shard():
    from xloader.shards._block_order import block_bounds

    shard = np.array([0, 0, 0, 0, 1, 1, 1])
    start = np.array([0, 100, 250, 420, 0, 300, 310])
    sizes = np.array([600, 400])
    # shard 0: bytes 0-199 | 200-399 | 400-599; shard 1 starts a block: 0-199 | 200-399
    assert block_bounds(shard, start, sizes, 200).tolist() == [0, 2, 3, 4, 5, 7]
    # 600 / 250 rounds to 2 stretches of 300 bytes, 400 / 250 to 2 of 200
    assert block_bounds(shard, start, sizes, 250).tolist() == [0, 3, 4, 5, 7]
    assert block_bounds(shard, start, sizes, 1000).tolist() == [0, 4, 7]  # a shard smaller than a block is one
    assert block_bounds(shard[:0], start[:0], sizes, 200).tolist() == [0]


def test_block_order_golden_and_windows():
    from xloader.shards._block_order import block_order

    bounds = np.array([0, 3, 6, 9, 10])
    assert block_order(0, 0, bounds, window=2).tolist() == GOLDEN_BLOCK_ORDER
    bounds = np.array([0, 4, 9, 12, 20, 21, 30, 34])
    order = block_order(7, 1, bounds, window=3)
    np.testing.assert_array_equal(np.sort(order), np.arange(34))
    block_of = np.searchsorted(bounds, order, side="right") - 1
    picked = list(dict.fromkeys(block_of.tolist()))  # the shuffled blocks, in order of first use
    lengths = np.diff(bounds)[picked]
    ends = np.cumsum([lengths[0:3].sum(), lengths[3:6].sum(), lengths[6:].sum()])
    windows = np.split(block_of, ends[:-1])
    assert [sorted(set(w.tolist())) for w in windows] == [sorted(picked[0:3]), sorted(picked[3:6]), picked[6:]]
    assert not np.array_equal(order, block_order(7, 2, bounds, window=3))


GOLDEN_BLOCK_ORDER = [6, 9, 7, 8, 4, 1, 2, 5, 0, 3]  # blocks 6-8 and 9, then 0-2 and 3-5


def _bounds(path: str, block_size: int) -> np.ndarray:
    from xloader.shards._block_order import block_bounds

    index = np.load(os.path.join(path, INDEX_NAME))
    sizes = [shard["bytes"] for shard in json.loads(index["meta"].tobytes())["shards"]]
    return block_bounds(index["shard"], index["offset"], np.array(sizes), block_size)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_block_order_batches_are_the_same_for_any_worker_count(class_root, packed_classes, num_workers):
    from xloader.shards._block_order import block_order
    from xloader.torch import DataLoader

    folder = xl.ImageFolder(class_root, image_size=SIZE)
    shards = xl.TarShards(packed_classes, image_size=SIZE, order="block", block_size="16KB", window=2)
    bounds = _bounds(packed_classes, 16_000)
    assert bounds.tolist() == [0, 3, 5, 7, 9, 11, 13, 16, 18, 20, 22, 26, 28]  # shards of 82, 82, 31 KB: 5, 5, 2
    batches = xl.Batches(shards, batch_size=8, shuffle=True, seed=3)
    loader = DataLoader(shards, batch_size=8, shuffle=True, seed=3, num_workers=num_workers, layout="NHWC")
    for epoch in range(2):
        order = block_order(3, epoch, bounds, window=2)
        for b, (x, y) in enumerate(loader):
            indices = order[b * 8 : (b + 1) * 8]
            np.testing.assert_array_equal(batches.batch_indices(epoch, b), indices)
            np.testing.assert_array_equal(
                np.asarray(x),
                np.stack([folder.load(int(i), seed=3, epoch=epoch, with_targets=False)[0] for i in indices]),
            )
            np.testing.assert_array_equal(np.asarray(y), folder.labels[indices])


def _reads_in_one_epoch(path: str, order: str, *, window: int = 2, threads: int = 1) -> tuple[int, int]:
    """(reads of shard bytes, blocks) of one epoch in batches of 4, on `threads` threads."""
    from concurrent.futures import ThreadPoolExecutor

    shards = xl.TarShards(path, image_size=SIZE, order=order, block_size="16KB", window=window)
    batches = xl.Batches(shards, batch_size=4, shuffle=True, seed=1)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda b: batches.get_batch(0, b), range(len(batches))))
    return shards.reads, shards.blocks


def test_block_order_reads_each_block_once_per_epoch(packed_seg):
    index = np.load(os.path.join(packed_seg, INDEX_NAME))
    members = 22 + int(np.count_nonzero(index["mask_size"] >= 0))  # images and masks
    assert members == 44
    assert _reads_in_one_epoch(packed_seg, "random") == (members, 0)
    # 13 blocks: about 16 KB stretches of the 4 shards (a sample's image and mask are one span)
    assert _reads_in_one_epoch(packed_seg, "block") == (13, 13)


def test_threads_of_a_process_share_its_blocks(packed_seg):
    # a window wider than the data: every batch touches most blocks, four threads at once
    assert _reads_in_one_epoch(packed_seg, "block", window=50, threads=4) == (13, 13)


def test_a_small_cache_evicts_the_least_recently_used_block():
    from xloader.shards._reader import ShardReader

    reader = ShardReader(["/dev/null"], cache_bytes=13)
    reader.read = lambda shard, offset, size: bytes(size)  # type: ignore[method-assign]
    for key in (0, 1, 0, 2):  # 6 bytes each, two fit; 0 is used again after 1, so 1 goes first
        assert reader.block(key, 0, 0, 6) == (0, bytes(6))
    assert [reader.cached(key) for key in (0, 1, 2)] == [True, False, True]
    assert reader.reads == 0  # the stub above does not count
    reader.block(3, 0, 100, 120)  # larger than the cache: kept alone, as the newest
    assert [reader.cached(key) for key in (0, 1, 2, 3)] == [False, False, False, True]


def test_a_block_not_read_yet_is_never_evicted():
    """A block whose GET has started (for this batch or the next) stays over the bound until it
    is read: dropping it would lose the GET and make it again."""
    from xloader.shards._reader import ShardReader, _Block

    reader = ShardReader(["/dev/null"], cache_bytes=13)
    reader.read = lambda shard, offset, size: bytes(size)  # type: ignore[method-assign]
    with reader._lock:
        for key in (0, 1, 2):  # three started GETs, 18 bytes over a 13-byte bound
            reader._add(key, 0, 6, _Block(lambda: bytes(6)))
    assert [reader.cached(key) for key in (0, 1, 2)] == [True, True, True]
    for key in (0, 1, 2):
        assert reader.block(key, 0, 0, 6) == (0, bytes(6))
    reader.block(3, 0, 0, 6)  # now read, the least recently used go: 1, then 2 would fit
    assert [reader.cached(key) for key in (0, 1, 2, 3)] == [False, False, True, True]


def test_a_failed_block_read_is_not_kept():
    from xloader.shards._reader import ShardReader

    reader = ShardReader(["/nonexistent/shard.tar"], cache_bytes=100)
    for _ in range(2):  # each request reads again, and fails again
        with pytest.raises(FileNotFoundError):
            reader.block(0, 0, 0, 10)
        assert not reader.cached(0)
    assert reader.reads == 2


def test_block_order_options_are_checked(packed_classes):
    with pytest.raises(ValueError, match=re.escape("order must be one of 'random', 'block'; got 'buffer'.")):
        xl.TarShards(packed_classes, order="buffer")
    with pytest.raises(ValueError, match=re.escape("window must be an int >= 1, got 0.")):
        xl.TarShards(packed_classes, order="block", window=0)
    with pytest.raises(ValueError, match=re.escape("block_size '4XB' has an unknown unit 'XB'; use B, KB,")):
        xl.TarShards(packed_classes, order="block", block_size="4XB")
    # A subset cannot keep an order of all the shards' samples: it shuffles in random order, and says so.
    with pytest.warns(UserWarning, match=r"^a Subset of .* shuffles its samples in the usual random order"):
        blocked = xl.Subset(xl.TarShards(packed_classes, order="block"), [0, 1, 2])
    with pytest.warns(UserWarning, match="usual random order"):
        train, val = xl.split(xl.TarShards(packed_classes, order="block"), validation_split=0.25)
    assert len(train) + len(val) == 28
    for subset in (blocked, xl.Subset(xl.TarShards(packed_classes), [0, 1, 2])):
        plan = xl.Batches(subset, batch_size=2, shuffle=True, seed=0)
        assert sorted(np.concatenate([plan.batch_indices(0, b) for b in range(len(plan))]).tolist()) == [0, 1, 2]


# --- damaged shards ------------------------------------------------------------------------------


def _copy(packed: str, tmp_path) -> str:
    import shutil

    return shutil.copytree(packed, tmp_path / "copy")


def test_a_truncated_shard_names_the_shard_and_the_first_cut_key(packed_classes, tmp_path):
    out = _copy(packed_classes, tmp_path)
    shard = _shard_files(out)[1]
    index = np.load(os.path.join(out, INDEX_NAME))
    in_shard = np.flatnonzero(index["shard"] == 1)
    last = in_shard[-1]
    cut_at = int(index["offset"][last]) + 10
    os.truncate(shard, cut_at)
    with pytest.raises(xl.DatasetError) as raised:
        xl.TarShards(out)
    packed_bytes = f"{os.path.getsize(_shard_files(packed_classes)[1]):,}"
    assert str(raised.value) == (
        f"shard {shard} is truncated: {cut_at:,} bytes, but {packed_bytes} were packed; sample key {last:06d} "
        "and 0 more after it are cut. Copy the shard again or pack again, or pass on_bad_file='skip' to leave "
        "those samples out."
    )
    with pytest.warns(UserWarning, match="1 of 28 files cannot be read and are left out"):
        kept = xl.TarShards(out, on_bad_file="skip")
    assert len(kept) == 27 and kept.skipped[0][0] == f"{shard}:{last:06d}.jpg"
    assert kept.key(last) == f"{last + 1:06d}"  # keys stay those of the packed positions
    size = int(index["size"][last])
    assert kept.skipped[0][1] == (
        f"the shard is truncated: the member is bytes {cut_at - 10:,} to {cut_at - 10 + size:,}, but only 10 of its "
        f"{size:,} bytes are in the file. Copy the shard again or pack again"
    )


def test_a_corrupted_member_names_the_shard_and_key(packed_classes, tmp_path):
    out = _copy(packed_classes, tmp_path)
    index = np.load(os.path.join(out, INDEX_NAME))
    sample = 9
    shard = _shard_files(out)[int(index["shard"][sample])]
    with open(shard, "r+b") as file:  # flip one byte in the middle of the JPEG data: it would still decode
        position = int(index["offset"][sample]) + int(index["size"][sample]) // 2
        file.seek(position)
        byte = file.read(1)
        file.seek(position)
        file.write(bytes([byte[0] ^ 0x01]))
    shards = xl.TarShards(out)
    with pytest.raises(xl.BadImageError) as raised:
        shards.load(sample, seed=0, epoch=0, with_targets=True)
    assert str(raised.value) == (
        f"cannot read {shard}:{sample:06d}.jpg: the shard is corrupted: the member's CRC-32 differs from the one "
        "packed. Pack again."
    )
    assert raised.value.path == f"{shard}:{sample:06d}.jpg"


def test_missing_index_and_missing_shard(packed_classes, tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{str(tmp_path)!r} has no {INDEX_NAME}, so it is not")):
        xl.TarShards(tmp_path)
    out = _copy(packed_classes, tmp_path)
    os.remove(_shard_files(out)[0])
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"shard {out}/shard-000000.tar of a packed dataset does not exist.")
    ):
        xl.TarShards(out)


# --- command line --------------------------------------------------------------------------------


def test_cli_pack_then_inspect(class_root, tmp_path, capsys):
    out = str(tmp_path / "p")
    assert main(["pack", class_root, out, "--shard-size", "100KB", "-q"]) == 0
    printed = capsys.readouterr().out
    assert re.fullmatch(
        rf"packed 28 samples of {re.escape(class_root)} \(class_folders\) into \d+ shards, "
        rf"[0-9.]+ MB, in {re.escape(out)}\n",
        printed,
    )
    assert main(["inspect", out, "-q"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[:3] == [
        f"{out}: tar shards written by xloader pack (xloader-index.npz)",
        "28 samples checked: 0 bad files, 0 skipped by the source.",
        "per class: astronaut 7, cat 7, coffee 7, rocket 7",
    ]
