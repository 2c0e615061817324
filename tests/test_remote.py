"""Sources over object storage: a real S3 server (moto's, on 127.0.0.1) and a local HTTP server,
compared bit for bit with the same files on local disk (NOTE [ Remote storage ] in xloader/storage/__init__.py)."""

from __future__ import annotations

import contextlib
import csv
import functools
import http.client
import http.server
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings

import fsspec
import numpy as np
import pytest

import xloader as xl
from xloader import storage

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def s3_options(endpoint: str) -> dict:
    # Credentials in the options, not only the environment: a forkserver started earlier in the
    # session does not see environment variables set now.
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}


@contextlib.contextmanager
def moto_server():
    """A moto S3 server on a free loopback port: yields (server, endpoint URL)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield server, f"http://{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def s3_with(pairs: list[tuple[str, str]]):
    """A moto server holding `pairs` (local folder, bucket/prefix), the test credentials in the
    environment meanwhile: yields the endpoint URL."""
    with pytest.MonkeyPatch.context() as patch, moto_server() as (_, endpoint):
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        upload(endpoint, pairs)
        yield endpoint


def upload(endpoint: str, pairs: list[tuple[str, str]]) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options(endpoint))
    if not fs.exists("bucket"):
        fs.mkdir("bucket")
    for local, remote in pairs:
        fs.put(local.rstrip("/") + "/", remote + "/", recursive=True)


def write_manifest(folder: str, files: list[str]) -> str:
    path = os.path.join(folder, "train.csv")
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["filename", "class"])
        for name in files:
            writer.writerow([name, name.split("/")[0]])
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fault_proxy(
    target: str,
    faults: dict[str, list[str]],
    seen: list[str],
    methods: tuple[str, ...] = ("GET",),
    gets: list[str] | None = None,
) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler forwarding every request to `target` (host:port), except that the first
    requests (of `methods`) of a path ending with a key of `faults` get, in turn, its faults:
    "500" (an error response) or "drop" (the connection closed without an answer). Each fault
    applied is appended to `seen`; with `gets`, the path of every GET forwarded to `gets`."""

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            if self.command in methods:
                for suffix, pending in faults.items():
                    if self.path.split("?")[0].endswith(suffix) and pending:
                        fault = pending.pop(0)
                        seen.append(f"{fault} {suffix}")
                        if fault == "drop":
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        self.send_response(500)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
            if gets is not None and self.command == "GET":
                gets.append(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            upstream = http.client.HTTPConnection(target, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    return Proxy


@pytest.fixture(scope="module")
def s3(class_root, seg_dirs, tmp_path_factory):
    """The moto endpoint, with bucket/train (class_root), bucket/seg/{images,masks} (seg_dirs)
    and bucket/manifest (class_root and its train.csv)."""
    manifest_dir = str(tmp_path_factory.mktemp("manifest") / "data")
    shutil.copytree(class_root, manifest_dir)
    files = xl.ImageFolder(class_root, image_size=None).filenames
    write_manifest(manifest_dir, files[::2])
    images, masks = seg_dirs
    pairs = [
        (class_root, "bucket/train"),
        (images, "bucket/seg/images"),
        (masks, "bucket/seg/masks"),
        (manifest_dir, "bucket/manifest"),
    ]
    with s3_with(pairs) as endpoint:
        yield {"endpoint": endpoint, "options": s3_options(endpoint), "manifest_dir": manifest_dir}


def _assert_same_batches(got, reference: xl.Batches, epoch: int, *, nchw: bool = False) -> None:
    assert len(got) == len(reference)
    for b, batch in enumerate(got):
        expected = reference.get_batch(epoch, b)
        for actual, wanted in zip(batch, expected, strict=True):
            actual = np.asarray(actual)
            if nchw and actual.ndim == 4:
                wanted = wanted.transpose(0, 3, 1, 2)
            np.testing.assert_array_equal(actual, wanted)


# --- in process -----------------------------------------------------------------------------------


def test_image_folder_over_s3_indexes_and_batches_as_the_local_copy(s3, class_root):
    remote = xl.ImageFolder("s3://bucket/train", image_size=(24, 24), storage_options=s3["options"])
    local = xl.ImageFolder(class_root, image_size=(24, 24))
    assert remote.filenames == local.filenames
    assert remote.class_names == local.class_names == ["astronaut", "cat", "coffee", "rocket"]
    assert remote.describe(0) == "s3://bucket/train/" + local.filenames[0]
    assert [m.root for m in remote._mounts] == ["s3://bucket/train"]
    size, etag = storage.identity(remote.describe(0))
    assert size == os.path.getsize(os.path.join(class_root, local.filenames[0])) and etag.startswith('"')
    reference = xl.Batches(local, batch_size=5, shuffle=True, seed=3)
    batches = xl.Batches(remote, batch_size=5, shuffle=True, seed=3)
    _assert_same_batches([batches.get_batch(1, b) for b in range(len(batches))], reference, 1)


def test_image_folder_subset_and_class_names_over_s3(s3, class_root):
    options = {"image_size": (8, 8), "validation_split": 0.3, "subset": "validation", "class_names": ["rocket", "cat"]}
    remote = xl.ImageFolder("s3://bucket/train", storage_options=s3["options"], **options)
    assert remote.filenames == xl.ImageFolder(class_root, **options).filenames
    with pytest.raises(xl.DatasetError, match=r"class_names \['dog'\] have no folder in 's3://bucket/train'"):
        xl.ImageFolder("s3://bucket/train", image_size=None, class_names=["dog"], storage_options=s3["options"])


def test_a_missing_root_is_named(s3):
    for root in ("s3://bucket/nothing", "s3://no-such-bucket/train"):
        with pytest.raises(FileNotFoundError, match=rf"^ImageFolder root '{root}' does not exist\.$"):
            xl.ImageFolder(root, image_size=None, storage_options=s3["options"])


def test_an_unreachable_endpoint_fails_the_listing_with_the_url_and_cause(monkeypatch):
    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "1")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        options = s3_options(f"http://127.0.0.1:{probe.getsockname()[1]}")
    pattern = (
        r"^cannot list s3://bucket/train: EndpointConnectionError: .* \(after \d+ attempts? over [\d.]+ s\); "
        r"check the endpoint and network, or wait longer \(XLOADER_STORAGE_RETRY_SECONDS\)\.$"
    )
    with pytest.raises(storage.StorageError, match=pattern):
        xl.ImageFolder("s3://bucket/train", image_size=None, storage_options=options)


def test_storage_options_with_a_local_path_are_refused(class_root):
    with pytest.raises(TypeError, match=r"storage_options=\{'anon': True\} is for fsspec URLs"):
        xl.ImageFolder(class_root, image_size=None, storage_options={"anon": True})


def test_file_and_memory_urls_give_the_local_batches(class_root):
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.put(class_root + "/", "/xloader-test/train/", recursive=True)
    memory.pipe("/xloader-test/train/cat/.hidden.jpg", b"not an image")  # hidden: never listed
    local = xl.ImageFolder(class_root, image_size=(16, 16))
    reference = xl.Batches(local, batch_size=7)
    for url in ("file://" + class_root, "memory://xloader-test/train"):
        remote = xl.ImageFolder(url, image_size=(16, 16))
        assert remote.filenames == local.filenames
        batches = xl.Batches(remote, batch_size=7)
        _assert_same_batches([batches.get_batch(0, b) for b in range(len(batches))], reference, 0)


def test_listing_order_matches_the_local_walk(tmp_path):
    import fsspec

    from xloader.index._walk import list_image_files

    names = ["b/z.jpg", "a b/1.png", "a/x/2.jpg", "a/1.JPG", "a/.git/3.jpg", "a-b/c.jpg", "top.jpg", "a/notes.txt"]
    memory = fsspec.filesystem("memory")
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        memory.pipe(f"/order/{name}", b"x")
    expected = list_image_files(str(tmp_path), follow_links=False, prefix="p/")
    assert expected == ["p/top.jpg", "p/a/1.JPG", "p/a b/1.png", "p/a-b/c.jpg", "p/a/x/2.jpg", "p/b/z.jpg"]
    assert list_image_files("memory://order", follow_links=False, prefix="p/") == expected


def test_image_mask_folder_over_s3_matches_local(s3, seg_dirs):
    images, masks = seg_dirs
    remote = xl.ImageMaskFolder(
        "s3://bucket/seg/images", "s3://bucket/seg/masks", image_size=(20, 20), storage_options=s3["options"]
    )
    local = xl.ImageMaskFolder(images, masks, image_size=(20, 20))
    assert remote.image_files == local.image_files and remote.mask_files == local.mask_files
    assert remote.paths_of([0]) == ["s3://bucket/seg/images/0000.jpg", "s3://bucket/seg/masks/0000.png"]
    reference = xl.Batches(local, batch_size=6, shuffle=True, seed=2)
    batches = xl.Batches(remote, batch_size=6, shuffle=True, seed=2)
    _assert_same_batches([batches.get_batch(0, b) for b in range(len(batches))], reference, 0)


def test_manifest_over_s3_and_http_matches_local(s3):
    local = xl.ImageManifest(os.path.join(s3["manifest_dir"], "train.csv"), image_size=(16, 16))
    reference = xl.Batches(local, batch_size=4, shuffle=True, seed=5)
    remote = xl.ImageManifest("s3://bucket/manifest/train.csv", image_size=(16, 16), storage_options=s3["options"])
    assert remote.base_dir == "s3://bucket/manifest"
    assert remote.filenames == local.filenames and remote.class_names == local.class_names
    batches = xl.Batches(remote, batch_size=4, shuffle=True, seed=5)
    _assert_same_batches([batches.get_batch(0, b) for b in range(len(batches))], reference, 0)
    handler = functools.partial(_Quiet, directory=s3["manifest_dir"])
    with http_server(handler) as url:
        remote = xl.ImageManifest(f"{url}/train.csv", image_size=(16, 16))
        assert remote.describe(0) == f"{url}/{local.filenames[0]}"
        batches = xl.Batches(remote, batch_size=4, shuffle=True, seed=5)
        _assert_same_batches([batches.get_batch(0, b) for b in range(len(batches))], reference, 0)


def test_manifest_rows_whose_object_is_missing_are_skipped_by_name(s3, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["options"])
    fs.pipe("bucket/gone/train.csv", b"filename,class\ncat/cat.0.jpg,cat\ncat/none.jpg,cat\n")
    fs.copy("bucket/train/cat/cat.0.jpg", "bucket/gone/cat/cat.0.jpg")
    with pytest.raises(xl.DatasetError, match=r"1 listed image not found under base_dir 's3://bucket/gone'"):
        xl.ImageManifest("s3://bucket/gone/train.csv", image_size=None, storage_options=s3["options"])
    with pytest.warns(UserWarning, match="left out"):
        kept = xl.ImageManifest(
            "s3://bucket/gone/train.csv", image_size=None, missing_files="skip", storage_options=s3["options"]
        )
    assert kept.filenames == ["cat/cat.0.jpg"]
    assert kept.skipped == [("s3://bucket/gone/cat/none.jpg", "not found (line 3)")]


def test_an_object_deleted_after_indexing_is_a_storage_error_naming_it(s3):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["options"])
    fs.copy("bucket/train/cat/cat.0.jpg", "bucket/deleted/cat/cat.0.jpg")
    source = xl.ImageFolder("s3://bucket/deleted", image_size=None, storage_options=s3["options"])
    fs.rm("bucket/deleted/cat/cat.0.jpg")
    start = time.monotonic()
    with pytest.raises(
        storage.StorageError, match=r"^cannot read s3://bucket/deleted/cat/cat\.0\.jpg: object not found"
    ):
        source.load(0, seed=0, epoch=0, with_targets=False)
    assert time.monotonic() - start < 5  # not retried


def test_on_bad_file_skip_leaves_out_an_unreadable_object_by_url(s3):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["options"])
    fs.copy("bucket/train/cat/cat.0.jpg", "bucket/bad/cat/cat.0.jpg")
    fs.pipe("bucket/bad/cat/broken.jpg", b"not a jpeg")
    with pytest.warns(UserWarning, match=r"1 of 2 files cannot be read"):
        source = xl.ImageFolder("s3://bucket/bad", image_size=None, on_bad_file="skip", storage_options=s3["options"])
    assert source.filenames == ["cat/cat.0.jpg"]
    assert [path for path, _ in source.skipped] == ["s3://bucket/bad/cat/broken.jpg"]


def test_one_500_and_one_dropped_connection_are_retried_with_the_same_batches(s3):
    local = xl.ImageManifest(os.path.join(s3["manifest_dir"], "train.csv"), image_size=(16, 16))
    reference = xl.Batches(local, batch_size=4)
    first, second = local.filenames[1], local.filenames[6]
    seen: list[str] = []
    origin = functools.partial(_Quiet, directory=s3["manifest_dir"])
    with http_server(origin) as origin_url:
        proxy = fault_proxy(origin_url.removeprefix("http://"), {first: ["500"], second: ["drop"]}, seen)
        with http_server(proxy) as url:
            remote = xl.ImageManifest(f"{url}/train.csv", image_size=(16, 16))
            batches = xl.Batches(remote, batch_size=4)
            _assert_same_batches([batches.get_batch(0, b) for b in range(len(batches))], reference, 0)
    assert seen == [f"500 {first}", f"drop {second}"]


def test_an_http_store_that_keeps_failing_at_index_time_raises_naming_the_url(s3, monkeypatch):
    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "2")
    seen: list[str] = []
    origin = functools.partial(_Quiet, directory=s3["manifest_dir"])
    name = xl.ImageManifest(os.path.join(s3["manifest_dir"], "train.csv"), image_size=None).filenames[3]
    with http_server(origin) as origin_url:
        proxy = fault_proxy(origin_url.removeprefix("http://"), {name: ["500"] * 100}, seen, ("GET", "HEAD"))
        with http_server(proxy) as url:
            start = time.monotonic()
            with pytest.raises(storage.StorageError, match=rf"^cannot read {url}/{name}: ConnectionError: .*500"):
                xl.ImageManifest(f"{url}/train.csv", image_size=None)
    assert time.monotonic() - start < 10
    assert len(seen) > 2  # retried


def test_s3_through_a_faulty_proxy_gives_the_same_batches(s3, class_root):
    seen: list[str] = []
    faults = {"cat/cat.3.jpg": ["500"], "rocket/rocket.1.jpg": ["drop"]}
    proxy = fault_proxy(s3["endpoint"].removeprefix("http://"), faults, seen)
    with http_server(proxy) as url:
        remote = xl.ImageFolder("s3://bucket/train", image_size=(16, 16), storage_options=s3_options(url))
        batches = xl.Batches(remote, batch_size=8, shuffle=True, seed=0)
        reference = xl.Batches(xl.ImageFolder(class_root, image_size=(16, 16)), batch_size=8, shuffle=True, seed=0)
        _assert_same_batches([batches.get_batch(0, b) for b in range(len(batches))], reference, 0)
    assert sorted(seen) == ["500 cat/cat.3.jpg", "drop rocket/rocket.1.jpg"]


def test_a_decoded_cache_spares_the_gets_of_the_samples_it_holds(s3, seg_dirs):
    gets: list[str] = []
    with http_server(fault_proxy(s3["endpoint"].removeprefix("http://"), {}, [], gets=gets)) as url:
        options = s3_options(url)
        remote = xl.ImageMaskFolder(
            "s3://bucket/seg/images",
            "s3://bucket/seg/masks",
            image_size=(20, 20),
            cache="memory",
            storage_options=options,
        )
        reference = xl.Batches(xl.ImageMaskFolder(*seg_dirs, image_size=(20, 20)), batch_size=6, shuffle=True, seed=0)
        batches = xl.Batches(remote, batch_size=6, shuffle=True, seed=0)
        for epoch, expected_gets in [(0, 2 * len(remote)), (1, 0)]:
            gets.clear()
            _assert_same_batches([batches.get_batch(epoch, b) for b in range(len(batches))], reference, epoch)
            assert len([path for path in gets if "?" not in path]) == expected_gets


def test_transient_errors_are_told_from_permanent_ones():
    from xloader.storage._mount import _transient

    class Status(Exception):
        def __init__(self, status: int):
            self.status = status

    assert [_transient(Status(s)) for s in (500, 503, 429, 408, 404, 403)] == [True] * 4 + [False] * 2
    assert _transient(ConnectionResetError()) and _transient(TimeoutError())
    assert not _transient(ValueError("bad option"))


def test_is_url():
    assert [storage.is_url(p) for p in ("s3://b/k", "gs://b", "http://h/x", "file:///tmp", "memory://x")] == [True] * 5
    assert [storage.is_url(p) for p in ("/tmp/a", "a://", "data/s3://x", "C:\\x", b"s3://b", None)] == [False] * 6


# --- workers: threads, processes, fork and forkserver ---------------------------------------------


@pytest.mark.parametrize("context", ["fork", "forkserver"])
def test_torch_loader_over_s3_with_2_workers_listed_in_the_parent(s3, class_root, context):
    """The bucket is listed (and read) in the parent, then workers start: no hang (s3fs#914)."""
    from xloader.torch import DataLoader

    remote = xl.ImageFolder("s3://bucket/train", image_size=(16, 16), storage_options=s3["options"])
    remote.load(0, seed=0, epoch=0, with_targets=True)  # the parent's client is in use before the fork
    reference = xl.Batches(xl.ImageFolder(class_root, image_size=(16, 16)), batch_size=4, shuffle=True, seed=1)
    loader = DataLoader(
        remote, batch_size=4, shuffle=True, seed=1, num_workers=2, multiprocessing_context=context, timeout=60
    )
    epoch = 0 if context == "fork" else 1
    loader.set_epoch(epoch)
    _assert_same_batches(list(loader), reference, epoch, nchw=True)


def _remote_and_local_pairs(s3, class_root, seg_dirs) -> list[tuple[xl.Source, xl.Source]]:
    """(over S3, on local disk) for ImageMaskFolder and ImageManifest."""
    options = s3["options"]
    return [
        (
            xl.ImageMaskFolder(
                "s3://bucket/seg/images", "s3://bucket/seg/masks", image_size=(20, 20), storage_options=options
            ),
            xl.ImageMaskFolder(*seg_dirs, image_size=(20, 20)),
        ),
        (
            xl.ImageManifest("s3://bucket/manifest/train.csv", image_size=(16, 16), storage_options=options),
            xl.ImageManifest(os.path.join(s3["manifest_dir"], "train.csv"), image_size=(16, 16)),
        ),
    ]


def test_torch_loader_over_s3_image_mask_pairs_and_manifest(s3, class_root, seg_dirs):
    """Spawned workers here (the other torch test covers fork and forkserver)."""
    from xloader.torch import DataLoader

    for remote, local in _remote_and_local_pairs(s3, class_root, seg_dirs):
        reference = xl.Batches(local, batch_size=6, shuffle=True, seed=0)
        loader = DataLoader(
            remote, batch_size=6, shuffle=True, seed=0, num_workers=2, multiprocessing_context="spawn", timeout=60
        )
        _assert_same_batches(list(loader), reference, 0, nchw=True)


@pytest.mark.parametrize("use_multiprocessing", [True, False], ids=["processes", "threads"])
def test_keras_pydataset_over_s3_with_2_workers(s3, class_root, seg_dirs, use_multiprocessing):
    from xloader.keras import PyDataset

    folder = (
        xl.ImageFolder("s3://bucket/train", image_size=(16, 16), storage_options=s3["options"]),
        xl.ImageFolder(class_root, image_size=(16, 16)),
    )
    for remote, local in [folder, *_remote_and_local_pairs(s3, class_root, seg_dirs)]:
        reference = xl.Batches(local, batch_size=4, shuffle=True, seed=2)
        options = {"multiprocessing_context": "forkserver"} if use_multiprocessing else {}
        with PyDataset(
            remote, batch_size=4, shuffle=True, seed=2, workers=2, use_multiprocessing=use_multiprocessing, **options
        ) as dataset:
            for epoch in range(2):
                _assert_same_batches([dataset[b] for b in range(len(dataset))], reference, epoch)
                dataset.on_epoch_end()


def test_stopping_the_server_mid_epoch_ends_the_loop_with_the_url(class_root, monkeypatch):
    from xloader.torch import DataLoader

    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "3")  # read when the source is built; travels with it
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with moto_server() as (server, endpoint):
        upload(endpoint, [(class_root, "bucket/train")])
        remote = xl.ImageFolder("s3://bucket/train", image_size=(16, 16), storage_options=s3_options(endpoint))
        loader = DataLoader(remote, batch_size=2, num_workers=2, multiprocessing_context="forkserver", timeout=60)
        served = 0
        with pytest.raises(xl.BadImageError, match=r"cannot read s3://bucket/train/\w+/\w+\.\d+\.jpg: ") as caught:
            for _ in loader:
                served += 1
                if served == 1:
                    server.stop()
                    start = time.monotonic()
    elapsed = time.monotonic() - start
    assert served < len(loader)  # not a silent truncation: the epoch did not end quietly
    assert elapsed < 60
    assert isinstance(caught.value, storage.StorageError)
    assert re.search(
        r"Could not connect to the endpoint URL.* \(after \d+ attempts? over [\d.]+ s\)", str(caught.value)
    )


# --- the command line -----------------------------------------------------------------------------


def _xloader(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", **CREDENTIALS)
    command = [sys.executable, "-m", "xloader", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_inspect_and_bench_take_urls(s3):
    options = json.dumps(s3["options"])
    done = _xloader("inspect", "s3://bucket/seg", "--storage-options", options, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["path"], report["layout"], report["bad_files"]) == ("s3://bucket/seg", "image_mask_pairs", [])
    done = _xloader(
        "bench", "s3://bucket/train", "--storage-options", options, "--loader", "core", "--epochs", "1", "--quiet"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("s3://bucket/train: 28 samples, loader core workers=2\nepoch 0: ")


def test_file_list_over_a_url_root_reads_npy_and_images(class_root):
    import fsspec

    memory = fsspec.filesystem("memory")
    arrays = [np.arange(12, dtype=np.int16).reshape(3, 4) * i for i in range(5)]
    for i, array in enumerate(arrays):
        buffer = io.BytesIO()
        np.save(buffer, array)
        memory.pipe(f"/filelist/{i}.npy", buffer.getvalue())
    remote = xl.FileList([str(i) for i in range(5)], list(range(5)), root="memory://filelist", suffix=".npy")
    assert remote.paths_of([4, 0]) == ["memory://filelist/4.npy", "memory://filelist/0.npy"]
    x, y = xl.Batches(remote, batch_size=5).get_batch(0, 0)
    np.testing.assert_array_equal(x, np.stack(arrays))
    np.testing.assert_array_equal(y, np.arange(5))
    with pytest.raises(storage.StorageError, match=r"^cannot read memory://filelist/9\.npy: object not found"):
        xl.FileList(["9"], root="memory://filelist", suffix=".npy").load(0, seed=0, epoch=0, with_targets=False)


def test_fetches_left_pending_before_a_fork_are_not_waited_for_in_the_child(class_root, monkeypatch):
    from concurrent.futures import Future

    import fsspec

    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "1")  # a wait for the parent's fetch fails in 2 s
    memory = fsspec.filesystem("memory")
    memory.put(class_root + "/", "/forked/train/", recursive=True)
    source = xl.ImageFolder("memory://forked/train", image_size=(8, 8))
    paths = source.paths_of([0, 1])
    storage.prefetch([])  # this thread's pending fetches are then the parent's, which never finish:
    storage._pending.futures.update({path: Future() for path in paths})
    child = os.fork()
    if child == 0:
        code = 1
        try:
            code = 0 if [storage.read_url(p) for p in paths] == [memory.cat_file(p) for p in paths] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    storage.prefetch([])
    assert os.waitstatus_to_exitcode(status) == 0


def test_mounting_a_root_again_with_other_options_warns_naming_the_keys_not_the_values():
    # The registry holds one set of options per root (NOTE [ Remote storage ]): the later one wins.
    fs = fsspec.filesystem("memory")
    fs.pipe("memory://xl-remount/a.txt", b"x")
    storage.mount("memory://xl-remount", storage_options={"token": "secret-1", "same": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        storage.mount("memory://xl-remount", storage_options={"token": "secret-1", "same": 1})  # same: silent
    with pytest.warns(
        UserWarning,
        match=r"^memory://xl-remount was mounted before with other storage_options \(differing: extra, token\)",
    ) as caught:
        storage.mount("memory://xl-remount", storage_options={"token": "secret-2", "same": 1, "extra": {"a": 1}})
    assert "secret" not in str(caught[0].message)
    assert storage.mount_for("memory://xl-remount/a.txt").storage_options["token"] == "secret-2"


class _Config:  # no __eq__, as botocore's Config; module level, so it pickles
    def __init__(self, retries: int):
        self.retries = retries


def test_options_that_pickle_alike_are_the_same_options():
    Config = _Config  # built twice with the same settings: the same options
    fs = fsspec.filesystem("memory")
    fs.pipe("memory://xl-remount-config/a.txt", b"x")
    storage.mount("memory://xl-remount-config", storage_options={"config": Config(3)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        storage.mount("memory://xl-remount-config", storage_options={"config": Config(3)})
    with pytest.warns(UserWarning, match=r"\(differing: config\)"):
        storage.mount("memory://xl-remount-config", storage_options={"config": Config(4)})
