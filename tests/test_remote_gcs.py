"""`gs://` against a GCS emulator on 127.0.0.1 (the pure-Python `gcp-storage-emulator`, through
`gcsfs`), bit for bit as the local copy. Both are dev dependencies; the test is skipped
only where either is missing (a user's own environment)."""

from __future__ import annotations

import os
import socket

# gcsfs otherwise asks a gRPC endpoint for the bucket's type first (60 s against an emulator).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import numpy as np
import pytest

import xloader as xl
from xloader import storage

gcsfs = pytest.importorskip("gcsfs")
emulator = pytest.importorskip("gcp_storage_emulator.server")


@pytest.fixture(scope="module")
def gcs(class_root):
    """The emulator's storage options, with bucket/train holding class_root."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="bucket")
    server.start()
    try:
        options = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon"}
        fs = gcsfs.GCSFileSystem(skip_instance_cache=True, **options)
        fs.put(class_root + "/", "bucket/train/", recursive=True)
        yield options
    finally:
        server.stop()


def test_image_folder_over_gcs_gives_the_local_batches_through_torch(gcs, class_root):
    from xloader.torch import DataLoader

    remote = xl.ImageFolder("gs://bucket/train", image_size=(16, 16), storage_options=gcs)
    local = xl.ImageFolder(class_root, image_size=(16, 16))
    assert remote.filenames == local.filenames and remote.class_names == local.class_names
    size, _ = storage.identity(remote.describe(3))
    assert size == os.path.getsize(os.path.join(class_root, local.filenames[3]))
    reference = xl.Batches(local, batch_size=8, shuffle=True, seed=6)
    loader = DataLoader(remote, batch_size=8, shuffle=True, seed=6, num_workers=2, multiprocessing_context="fork")
    got = list(loader)
    assert len(got) == len(reference) == 4
    for b, (x, y) in enumerate(got):
        want_x, want_y = reference.get_batch(0, b)
        np.testing.assert_array_equal(x.numpy(), want_x.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(y.numpy(), want_y)


def test_a_missing_gcs_object_is_a_storage_error_naming_it(gcs):
    fs = gcsfs.GCSFileSystem(skip_instance_cache=True, **gcs)
    fs.copy("bucket/train/cat/cat.0.jpg", "bucket/gone/cat/cat.0.jpg")
    source = xl.ImageFolder("gs://bucket/gone", image_size=None, storage_options=gcs)
    fs.rm("bucket/gone/cat/cat.0.jpg")
    with pytest.raises(storage.StorageError, match=r"^cannot read gs://bucket/gone/cat/cat\.0\.jpg: object not found"):
        source.load(0, seed=0, epoch=0, with_targets=False)
