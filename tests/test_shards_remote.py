"""Packed shards on object storage (moto's S3 server on 127.0.0.1): ranged GETs give the batches of
the local folder, bit for bit, and the block order makes one request per block."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from parity_data import augmentation
from test_remote import moto_server, s3_options, upload

import xloader as xl
from xloader.cli import main

SIZE = (32, 40)


@pytest.fixture(scope="module")
def s3_packed(class_root, tmp_path_factory):
    """(endpoint, URL of the packed class folder on the server)."""
    out = tmp_path_factory.mktemp("packed") / "classes"
    xl.pack(xl.ImageFolder(class_root, image_size=None), out, shard_size="60KB", progress=False)
    with moto_server() as (_, endpoint):
        upload(endpoint, [(str(out), "bucket/packed")])
        yield endpoint, "s3://bucket/packed"


@pytest.mark.parametrize("num_workers", [0, 2])
def test_remote_shards_give_the_folder_batches(class_root, s3_packed, num_workers):
    from xloader.torch import DataLoader

    endpoint, url = s3_packed
    transform = augmentation("classification")
    expected = xl.Batches(
        xl.ImageFolder(class_root, image_size=SIZE, transform=transform), batch_size=8, shuffle=True, seed=7
    )
    shards = xl.TarShards(url, image_size=SIZE, transform=transform, storage_options=s3_options(endpoint))
    assert shards.shards[0] == f"{url}/shard-000000.tar"
    loader = DataLoader(
        shards,
        batch_size=8,
        shuffle=True,
        seed=7,
        num_workers=num_workers,
        layout="NHWC",
        timeout=60 if num_workers else 0,
    )
    for epoch in range(2):
        for b, (x, y) in enumerate(loader):
            want = expected.get_batch(epoch, b)
            np.testing.assert_array_equal(np.asarray(x), want[0])
            np.testing.assert_array_equal(np.asarray(y), want[1])


def test_remote_block_order_makes_one_request_per_block(s3_packed):
    endpoint, url = s3_packed
    counts = {}
    for order in ("random", "block"):
        shards = xl.TarShards(
            url, image_size=SIZE, order=order, block_size="16KB", storage_options=s3_options(endpoint)
        )
        batches = xl.Batches(shards, batch_size=8, shuffle=True, seed=2)
        for b in range(len(batches)):
            batches.get_batch(0, b)
        counts[order] = (shards.reads, shards.blocks)
    assert counts == {"random": (28, 0), "block": (12, 12)}  # 16 KB stretches of the 3 shards


def test_a_missing_remote_index_says_what_to_do(s3_packed):
    endpoint, url = s3_packed
    with pytest.raises(FileNotFoundError, match=re.escape("'s3://bucket/nothing' has no xloader-index.npz")):
        xl.TarShards("s3://bucket/nothing", storage_options=s3_options(endpoint))


# --- pack into a URL ---------------------------------------------------------------------------


def test_pack_into_a_url_writes_the_local_files_bytes(class_root, tmp_path):
    import fsspec

    local = xl.pack(xl.ImageFolder(class_root, image_size=None), tmp_path / "local", shard_size="60KB", progress=False)
    remote = xl.pack(
        xl.ImageFolder(class_root, image_size=None), "memory://xl-pack/a", shard_size="60KB", progress=False
    )
    assert (remote.out, remote.samples, remote.shards, remote.bytes) == ("memory://xl-pack/a", 28, 3, local.bytes)
    fs = fsspec.filesystem("memory")
    names = sorted(os.listdir(local.out))
    assert [name.rsplit("/", 1)[-1] for name in sorted(fs.ls("/xl-pack/a", detail=False))] == names
    for name in names:
        with open(os.path.join(local.out, name), "rb") as file:
            assert fs.cat_file(f"memory://xl-pack/a/{name}") == file.read(), name
    with pytest.raises(FileExistsError, match=re.escape("'memory://xl-pack/a' already holds a packed dataset.")):
        xl.pack(xl.ImageFolder(class_root, image_size=None), "memory://xl-pack/a", progress=False)
    # a remote source, packed into a URL: the same bytes again
    fs.put(class_root.rstrip("/") + "/", "/xl-pack/source/", recursive=True)
    xl.pack(
        xl.ImageFolder("memory://xl-pack/source", image_size=None),
        "memory://xl-pack/b",
        shard_size="60KB",
        progress=False,
    )
    for name in names:
        assert fs.cat_file(f"memory://xl-pack/b/{name}") == fs.cat_file(f"memory://xl-pack/a/{name}"), name


def test_a_failed_pack_into_a_url_leaves_no_shards(class_root, tmp_path):
    import shutil

    import fsspec

    root = shutil.copytree(class_root, tmp_path / "copy")
    source = xl.ImageFolder(root, image_size=None)
    os.remove(source.filepaths[20])  # listed, then gone: the pack fails after writing shards
    with pytest.raises(xl.BadImageError, match=re.escape(os.path.basename(source.filepaths[20]))):
        xl.pack(source, "memory://xl-pack/failed", shard_size="60KB", progress=False)
    assert fsspec.filesystem("memory").find("/xl-pack/failed") == []


def test_pack_into_s3_gives_the_folder_batches(class_root):
    with moto_server() as (_, endpoint):
        upload(endpoint, [])  # the bucket
        options = s3_options(endpoint)
        result = xl.pack(
            xl.ImageFolder(class_root, image_size=None),
            "s3://bucket/direct",
            shard_size="60KB",
            progress=False,
            storage_options=options,
        )
        assert (result.samples, result.shards) == (28, 3)
        transform = augmentation("classification")
        shards = xl.TarShards(
            "s3://bucket/direct", image_size=SIZE, transform=transform, order="block", storage_options=options
        )
        folder = xl.ImageFolder(class_root, image_size=SIZE, transform=transform)
        got = xl.Batches(shards, batch_size=8, shuffle=True, seed=5)
        order = shards.epoch_order(5, 1)
        for b in range(len(got)):
            x, y = got.get_batch(1, b)
            indices = order[b * 8 : (b + 1) * 8]
            np.testing.assert_array_equal(
                x, np.stack([folder.load(int(i), seed=5, epoch=1, with_targets=False)[0] for i in indices])
            )
            np.testing.assert_array_equal(y, folder.labels[indices])
        assert shards.reads == shards.blocks == 3  # 60 KB shards, 4 MB blocks: one GET per shard
        # the command line: OUT a URL, its options from --storage-options
        argv = ["pack", class_root, "s3://bucket/cli", "--shard-size", "60KB", "--storage-options", json.dumps(options)]
        assert main([*argv, "-q"]) == 0
        cli = xl.TarShards("s3://bucket/cli", storage_options=options)
        assert (len(cli), cli.shards[-1], cli.filenames) == (28, "s3://bucket/cli/shard-000002.tar", folder.filenames)


def test_threads_of_a_process_fetch_each_remote_block_once(class_root, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from xloader.storage import _mount

    url = "memory://xl-shards-threads/classes"
    xl.pack(xl.ImageFolder(class_root, image_size=None), url, shard_size="60KB", progress=False)
    fetched: list[str] = []
    fetch = _mount.Mount.fetch
    monkeypatch.setattr(_mount.Mount, "fetch", lambda self, u: fetched.append(u) or fetch(self, u))
    shards = xl.TarShards(url, image_size=SIZE, order="block", block_size="16KB", window=50)
    batches = xl.Batches(shards, batch_size=4, shuffle=True, seed=3)
    with ThreadPoolExecutor(4) as pool:  # four batches at once, each needing most blocks
        list(pool.map(lambda b: batches.get_batch(0, b), range(len(batches))))
    ranges = [u for u in fetched if "#bytes=" in u]  # not the index
    assert (len(ranges), len(set(ranges)), shards.reads, shards.blocks) == (12, 12, 12, 12)


def test_two_torch_workers_fetch_each_block_about_once_each(class_root, tmp_path, monkeypatch):
    """The issue's request budget: an epoch's GETs are at most blocks x worker processes (+1 in
    the parent), counted in every process through a log file (forked workers keep the patch)."""
    from xloader.storage import _mount
    from xloader.torch import DataLoader

    url, log = "memory://xl-shards-workers/classes", tmp_path / "gets.log"
    xl.pack(xl.ImageFolder(class_root, image_size=None), url, shard_size="60KB", progress=False)
    fetch = _mount.Mount.fetch

    def logged(self, u):
        with open(log, "a") as file:
            file.write(f"{os.getpid()} {u}\n")
        return fetch(self, u)

    monkeypatch.setattr(_mount.Mount, "fetch", logged)
    shards = xl.TarShards(url, image_size=SIZE, order="block", block_size="16KB", window=3)
    loader = DataLoader(
        shards, batch_size=4, shuffle=True, seed=5, num_workers=2, multiprocessing_context="fork", timeout=60
    )
    gets = []
    for _ in range(2):
        log.write_text("")
        assert sum(len(x) for x, _ in loader) == 28
        gets.append([line.split() for line in log.read_text().splitlines() if "#bytes=" in line])
    assert shards.blocks == 12
    assert [len(epoch) for epoch in gets] == GETS_PER_EPOCH
    # no block twice in one process, every block read in each epoch
    assert all(len({(pid, u) for pid, u in epoch}) == len(epoch) for epoch in gets)
    assert [len({u for _, u in epoch}) for epoch in gets] == [12, 12]
    assert all(len(epoch) <= 2 * 12 + 1 for epoch in gets)


GETS_PER_EPOCH = [17, 20]  # deterministic: torch hands batch b to worker b % 2, each worker its own LRU;
# each worker also fetches the blocks of its next batch (b + 2) ahead (`Batches.fetch_ahead`)


@pytest.mark.parametrize("use_multiprocessing", [False, True])
def test_keras_block_order_from_s3_gives_the_folder_batches(class_root, s3_packed, use_multiprocessing):
    """Keras's adapter, 2 thread or process workers, the block order over ranged GETs: the
    folder's samples in the block order's sequence, bit for bit."""
    from xloader.keras import PyDataset

    endpoint, url = s3_packed
    transform = augmentation("classification")
    folder = xl.ImageFolder(class_root, image_size=SIZE, transform=transform)
    shards = xl.TarShards(
        url,
        image_size=SIZE,
        transform=transform,
        order="block",
        block_size="16KB",
        window=2,
        storage_options=s3_options(endpoint),
    )
    with PyDataset(
        shards, batch_size=8, shuffle=True, seed=7, workers=2, use_multiprocessing=use_multiprocessing
    ) as dataset:
        for epoch in range(2):
            order = shards.epoch_order(7, epoch)
            for b in range(len(dataset)):
                x, y = dataset[b]
                indices = order[b * 8 : (b + 1) * 8]
                want = [folder.load(int(i), seed=7, epoch=epoch, with_targets=True) for i in indices]
                np.testing.assert_array_equal(np.asarray(x), np.stack([w[0] for w in want]))
                np.testing.assert_array_equal(np.asarray(y), np.stack([w[1] for w in want]))
            dataset.on_epoch_end()
