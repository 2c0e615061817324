"""Packed shards on object storage (moto's S3 server on 127.0.0.1): ranged GETs give the batches of
the local folder, bit for bit, and the block order makes one request per block."""

from __future__ import annotations

import re

import numpy as np
import pytest
from parity_data import augmentation
from test_remote import moto_server, s3_options, upload

import xloader as xl

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
