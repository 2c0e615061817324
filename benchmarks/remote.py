"""Reading from S3 (moto's server on loopback) against reading the same files from local disk.

    python benchmarks/remote.py [--images-per-class 500] [--workers 2] [--epochs 2] [--json out.json]

Data: 4 x 500 = 2,000 JPEG crops (long side 350-500 px) of scikit-image photos, written to a
temporary folder and uploaded to a bucket of a moto S3 server started here, in its own process
(`python -m moto.server` on 127.0.0.1, a free port). The loader is the same in both runs:
`xloader.torch.DataLoader(ImageFolder(root, image_size=(224, 224)), batch_size=32, shuffle=True,
num_workers=2)`, uint8 batches, no augmentation (so the read path weighs most). Each run starts
its loader afresh and reads `--epochs` epochs; the reported speed is the last epoch's (the first
includes starting the workers), and "ratio" is remote / local images/s.

The server's ceiling is measured first: every object read once with plain s3fs `cat_file`, 16
at a time, in this process, no decoding (GET/s).

GETs per epoch are counted by the server (its request log: `GET /bucket/...` lines without a
query string, i.e. object reads, not listings); bytes read are the sizes (from the listing) of
the objects those GETs named. The listing is one paginated LIST per 1,000 objects, at index time.
With `--cache`, the remote source keeps decoded images in memory (`cache="memory"`): epoch 1
fetches and fills it, later epochs fetch nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
_GET = re.compile(r'"GET /bucket/([^ ?]+) HTTP')


class MotoServer:
    """`python -m moto.server` in a subprocess; counts the object GETs it logs."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.gets: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read_log, daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("moto.server did not start within 30 s")

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            match = _GET.search(line)
            if match:
                with self._lock:
                    self.gets.append(match.group(1))

    def take_gets(self) -> list[str]:
        time.sleep(0.5)  # the last log lines
        with self._lock:
            gets, self.gets = self.gets, []
        return gets

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def server_ceiling(fs, keys: list[str]) -> float:
    """GET/s of plain s3fs reads of every key, 16 at a time, no decode: what the server serves."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        for _ in pool.map(fs.cat_file, keys):
            pass
    return len(keys) / (time.perf_counter() - start)


def epoch_speeds(source, workers: int, epochs: int, after_epoch=lambda: None) -> list[float]:
    """images/s of each epoch of `source` through the torch adapter; `after_epoch()` after each."""
    from xloader.torch import DataLoader

    loader = DataLoader(source, batch_size=32, shuffle=True, seed=0, num_workers=workers, persistent_workers=True)
    speeds = []
    for _ in range(epochs):
        start, images = time.perf_counter(), 0
        for x, _ in loader:
            images += len(x)
        speeds.append(images / (time.perf_counter() - start))
        after_epoch()
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cache", action="store_true", help='the remote source with cache="memory"')
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)

    import s3fs

    import xloader as xl
    from xloader.synthetic import make_image_folder

    with tempfile.TemporaryDirectory() as folder:
        root = make_image_folder(folder, images_per_class=args.images_per_class, long_side=(350, 500))
        server = MotoServer()
        try:
            options = {"endpoint_url": server.endpoint, "key": "testing", "secret": "testing"}
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
            fs.mkdir("bucket")
            fs.put(root + "/", "bucket/train/", recursive=True)
            server.take_gets()
            ceiling = server_ceiling(fs, sorted(fs.find("bucket/train")))
            server.take_gets()
            local = xl.ImageFolder(root, image_size=(224, 224))
            local_speeds = epoch_speeds(local, args.workers, args.epochs)
            start = time.perf_counter()
            cache = {"cache": "memory"} if args.cache else {}
            remote = xl.ImageFolder("s3://bucket/train", image_size=(224, 224), storage_options=options, **cache)
            index_seconds = time.perf_counter() - start
            assert remote.filenames == local.filenames
            sizes = {f"train/{name}": os.path.getsize(os.path.join(root, name)) for name in local.filenames}
            gets: list[int] = []
            read: list[int] = []

            def count_gets() -> None:
                names = server.take_gets()
                gets.append(len(names))
                read.append(sum(sizes.get(name, 0) for name in names))

            remote_speeds = epoch_speeds(remote, args.workers, args.epochs, count_gets)
        finally:
            server.stop()
    result = {
        "images": len(local),
        "remote_cache": "memory" if args.cache else None,
        "workers": args.workers,
        "local_images_per_s": [round(s, 1) for s in local_speeds],
        "remote_images_per_s": [round(s, 1) for s in remote_speeds],
        "ratio_last_epoch": round(remote_speeds[-1] / local_speeds[-1], 3),
        "server_ceiling_gets_per_s": round(ceiling, 1),
        "gets_per_epoch": gets,
        "bytes_read_per_epoch": read,
        "dataset_bytes": sum(sizes.values()),
        "index_seconds": round(index_seconds, 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
