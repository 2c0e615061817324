"""How objects are read (NOTE [ Remote storage ] in xloader/storage/__init__.py): the next batch's
objects while a batch decodes (`Batches.fetch_ahead`), with the same batches and every object
still fetched once; an http manifest's HEADs all at once; `s3://` through botocore or s3fs."""

from __future__ import annotations

import collections
import functools
import http.server
import os
import re
import shutil
import tempfile
import threading
import time
import warnings

import fsspec
import numpy as np
import pytest
from test_remote import _Quiet, fault_proxy, http_server, s3_options, s3_with, write_manifest

import xloader as xl
from xloader import storage
from xloader.storage import StorageError


@pytest.fixture(scope="module")
def endpoint(class_root):
    with s3_with([(class_root, "bucket/train")]) as url:
        yield url


def _object_gets(gets: list[str]) -> collections.Counter:
    """GETs of objects (not listings, which carry a query) by key below bucket/train/."""
    return collections.Counter(path.removeprefix("/bucket/train/") for path in gets if "?" not in path)


def test_a_batch_starts_the_fetches_of_the_batch_fetch_ahead_after_it(endpoint, class_root):
    reference = xl.Batches(xl.ImageFolder(class_root, image_size=(16, 16)), batch_size=4, shuffle=True, seed=7)
    expected = {b: reference.get_batch(0, b) for b in (0, 2, 4, 6, 1)}  # first: another loader in this thread
    gets: list[str] = []  # drops this thread's pending fetches
    with http_server(fault_proxy(endpoint.removeprefix("http://"), {}, [], gets=gets)) as url:
        remote = xl.ImageFolder("s3://bucket/train", image_size=(16, 16), storage_options=s3_options(url))
        batches = xl.Batches(remote, batch_size=4, shuffle=True, seed=7)
        batches.fetch_ahead = 2
        got = {0: batches.get_batch(0, 0)}
        paths = remote.paths_of(batches.plan.batch_indices(0, 2).tolist())
        assert sorted(storage._pending_fetches()) == sorted(paths)  # batch 2's, all of them
        for b in (2, 4, 6):  # this caller's next batches
            got[b] = batches.get_batch(0, b)
        assert storage._pending_fetches() == {}  # batch 8 does not exist: nothing ahead of 6
        batches.fetch_ahead = -1  # off
        got[1] = batches.get_batch(0, 1)
        assert storage._pending_fetches() == {}
        storage.prefetch([])
    for b, batch in got.items():
        for actual, wanted in zip(batch, expected[b], strict=True):
            np.testing.assert_array_equal(actual, wanted)
    assert _object_gets(gets) == collections.Counter(
        remote.filenames[i] for b in got for i in batches.plan.batch_indices(0, b)
    )


def _holding_proxy(target: str, hold: str, wanted: set[str], waited: list[float]):
    """A recording proxy whose GET of a key ending with `hold` is answered only once GETs of
    every key in `wanted` have arrived (or 20 s passed); how long it waited goes to `waited`."""
    arrived: set[str] = set()
    ready = threading.Event()
    gets: list[str] = []
    base = fault_proxy(target, {}, [], gets=gets)

    class Holding(base):  # type: ignore[valid-type, misc]
        def do_GET(self) -> None:
            key = self.path.split("?")[0].removeprefix("/bucket/train/")
            arrived.add(key)
            if wanted <= arrived:
                ready.set()
            if key.endswith(hold):
                start = time.monotonic()
                ready.wait(20)
                waited.append(time.monotonic() - start)
            base.do_GET(self)

    return Holding, gets


def test_torch_workers_fetch_their_next_batch_while_decoding_and_each_object_once(endpoint, class_root):
    """Worker 0's batch 0 cannot finish until the GETs of its next batch (2) have arrived: only a
    worker that fetches ahead finishes it without waiting out the proxy's 20 s."""
    from xloader.torch import DataLoader

    local = xl.ImageFolder(class_root, image_size=(16, 16))
    reference = xl.Batches(local, batch_size=4, shuffle=True, seed=3)
    first = [local.filenames[i] for i in reference.plan.batch_indices(0, 0)]
    third = {local.filenames[i] for i in reference.plan.batch_indices(0, 2)}
    waited: list[float] = []
    handler, gets = _holding_proxy(endpoint.removeprefix("http://"), first[-1], third, waited)
    with http_server(handler) as url:
        remote = xl.ImageFolder("s3://bucket/train", image_size=(16, 16), storage_options=s3_options(url))
        loader = DataLoader(remote, batch_size=4, shuffle=True, seed=3, num_workers=2, persistent_workers=True)
        counts = []
        for epoch in range(2):
            gets.clear()
            got = list(loader)
            counts.append(_object_gets(gets))
            assert len(got) == len(reference) == 7
            for b, (x, y) in enumerate(got):
                want_x, want_y = reference.get_batch(epoch, b)
                np.testing.assert_array_equal(x.numpy(), want_x.transpose(0, 3, 1, 2))
                np.testing.assert_array_equal(y.numpy(), want_y)
        del loader
    assert len(waited) >= 1 and max(waited) < 15
    once = collections.Counter(local.filenames)
    # Epoch 0 also reads sample 0 in the parent, once, to size the shared-memory slots.
    assert counts[0] - once == collections.Counter([local.filenames[0]])
    assert counts[1] == once


def test_an_http_manifest_checks_its_files_with_concurrent_heads(class_root, tmp_path):
    """Each HEAD of an image is answered only once every image's HEAD has arrived (or 10 s
    passed): sequential checks would wait 10 s each; concurrent ones all meet at once."""
    files = xl.ImageFolder(class_root, image_size=None).filenames[::2]
    folder = str(tmp_path / "data")
    shutil.copytree(class_root, folder)
    write_manifest(folder, files)
    arrived: list[str] = []
    everyone = threading.Event()
    waits: list[float] = []

    class Meeting(_Quiet):
        def do_HEAD(self) -> None:
            if not self.path.endswith(".csv"):
                arrived.append(self.path)
                if len(arrived) == len(files):
                    everyone.set()
                start = time.monotonic()
                everyone.wait(10)
                waits.append(time.monotonic() - start)
            super().do_HEAD()

    with http_server(functools.partial(Meeting, directory=folder)) as url:
        start = time.monotonic()
        remote = xl.ImageManifest(f"{url}/train.csv", image_size=(16, 16))
        elapsed = time.monotonic() - start
        local = xl.ImageManifest(os.path.join(folder, "train.csv"), image_size=(16, 16))
        assert remote.filenames == local.filenames == files
        batches, reference = xl.Batches(remote, batch_size=5), xl.Batches(local, batch_size=5)
        for b in range(len(batches)):
            for actual, wanted in zip(batches.get_batch(0, b), reference.get_batch(0, b), strict=True):
                np.testing.assert_array_equal(actual, wanted)
    assert sorted(arrived) == sorted(f"/{name}" for name in files)  # one HEAD per file
    assert len(waits) == 14 and max(waits) < 9 and elapsed < 9


@pytest.mark.parametrize("client", ["botocore", "s3fs"])
def test_both_s3_read_clients_give_the_local_batches(endpoint, class_root, monkeypatch, client):
    """NOTE [ The S3 read path ]: botocore unless XLOADER_S3_CLIENT=s3fs or an option botocore has
    no word for (here `requester_pays`); the choice travels with the source to its workers."""
    from xloader.torch import DataLoader

    monkeypatch.setenv(storage.S3_CLIENT_ENV, client)
    options = s3_options(endpoint)
    with warnings.catch_warnings():  # one root, two sets of options on purpose: the warning is tested in test_remote.py
        warnings.simplefilter("ignore", UserWarning)
        plain = xl.ImageFolder("s3://bucket/train", image_size=(16, 16), storage_options=options)
        other = xl.ImageFolder(
            "s3://bucket/train", image_size=(16, 16), storage_options={**options, "requester_pays": False}
        )
    monkeypatch.delenv(storage.S3_CLIENT_ENV)
    reference = xl.Batches(xl.ImageFolder(class_root, image_size=(16, 16)), batch_size=8, shuffle=True, seed=1)
    for source, uses_botocore in [(plain, client == "botocore"), (other, False)]:
        mount = source._mounts[0]
        assert mount.s3_client == client
        mount.fs  # noqa: B018 - makes this process's client
        assert (mount._read is not None) == uses_botocore
        url, data = source.describe(0), open(os.path.join(class_root, source.filenames[0]), "rb").read()
        assert mount.fetch(storage.byte_range(url, 2, 5)) == data[2:7]
        assert mount.fetch(storage.byte_range(url, len(data) - 3, 10)) == data[-3:]  # cut where the object ends
        assert mount.fetch(storage.byte_range(url, 2, 0)) == b""
        loader = DataLoader(source, batch_size=8, shuffle=True, seed=1, num_workers=2, multiprocessing_context="spawn")
        for b, (x, y) in enumerate(loader):
            want_x, want_y = reference.get_batch(0, b)
            np.testing.assert_array_equal(x.numpy(), want_x.transpose(0, 3, 1, 2))
            np.testing.assert_array_equal(y.numpy(), want_y)


def test_a_wrong_s3_client_choice_is_named(monkeypatch):
    monkeypatch.setenv(storage.S3_CLIENT_ENV, "boto")
    with pytest.raises(ValueError, match=r"^XLOADER_S3_CLIENT must be 'botocore' or 's3fs', got 'boto'\. Unset it"):
        xl.ImageFolder("memory://nothing", image_size=None)


def test_a_read_queued_behind_others_is_not_timed_out_while_it_waits(monkeypatch):
    """The retry bound counts from when a fetch starts: reads queued behind slow but answering
    fetches on a small pool all complete (the bound once counted the queueing too)."""
    from xloader.storage import _mount

    monkeypatch.setenv("XLOADER_STORAGE_RETRY_SECONDS", "1")
    monkeypatch.setenv("XLOADER_STORAGE_THREADS", "2")
    fs = fsspec.filesystem("memory")
    for i in range(16):
        fs.pipe(f"/xl-queued/{i}.bin", bytes([i]) * 10)
    fetch = _mount.Mount.fetch

    def slow(self, url):
        time.sleep(0.4)
        return fetch(self, url)

    monkeypatch.setattr(_mount.Mount, "fetch", slow)
    urls = [f"memory://xl-queued/{i}.bin" for i in range(16)]
    storage.mount("memory://xl-queued")
    waits = [storage.fetch_async(url) for url in urls]  # 16 x 0.4 s on 2 threads: 3.2 s for the last
    # the last first: it waits 3 s in all, over its bound of 1 + 1 s, though its own GET takes 0.4 s
    assert [wait() for wait in reversed(waits)] == [bytes([i]) * 10 for i in reversed(range(16))]


def test_a_server_that_ignores_byte_ranges_is_named():
    """A server without Range support sends the whole object: an error saying so, not a
    garbled member or a misleading "truncated shard"."""
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "shard.bin"), "wb") as file:
        file.write(bytes(range(256)) * 4)

    class NoRanges(http.server.SimpleHTTPRequestHandler):  # the stdlib server ignores Range
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=folder, **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(NoRanges) as base:
        url = storage.byte_range(f"{base}/shard.bin", 10, 20)
        with pytest.raises(
            StorageError, match=re.escape("the server ignored the byte range (sent 1,024 bytes for 20)")
        ):
            storage.read_url(url)
