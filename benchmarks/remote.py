"""Reading from S3 (moto's server on loopback) against reading the same files from local disk.

    python benchmarks/remote.py [--images-per-class 500] [--workers 2] [--epochs 2]
                                [--clients botocore,s3fs] [--cache] [--json out.json]

Data: 4 x 500 = 2,000 JPEG crops (long side 350-500 px) of scikit-image photos, written to a
temporary folder and uploaded to a bucket of a moto S3 server started here, in its own process
(`python -m moto.server` on 127.0.0.1, a free port). The loader is the same in every run:
`xloader.torch.DataLoader(ImageFolder(root, image_size=(224, 224)), batch_size=32, shuffle=True,
num_workers=2)`, uint8 batches, no augmentation (so the read path weighs most). Each run starts
its loader afresh and reads `--epochs` epochs; the reported speed is the last epoch's (the first
includes starting the workers). The remote loader runs once per read client of `s3://` objects
(`XLOADER_S3_CLIENT`: NOTE [ The S3 read path ] in xloader/storage/_s3.py).

Measured in the same run, before each client's loader:
- the server's ceiling: every object read once through `xloader.storage` (`Mount.fetch`, the
  loader's own read), 16 at a time, in this process, no decoding (GETs/s);
- CPU per GET, the first 300 objects read one after another: this process's CPU
  (`time.process_time`) and the server's (`/proc/<pid>/stat`), in ms.
The report gives each loader's images/s as a fraction of the local loader's and of that
client's ceiling, and the load average at the start and the end.

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


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_costs(mount, urls: list[str], server_pid: int) -> dict[str, float]:
    """Through `mount` (xloader's read of an object): GETs/s reading every URL 16 at a time, and
    client and server CPU ms per GET reading the first 300 one after another; no decoding."""
    from concurrent.futures import ThreadPoolExecutor

    mount.fetch(urls[0])  # the client and its connections
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        for _ in pool.map(mount.fetch, urls):
            pass
    ceiling = len(urls) / (time.perf_counter() - start)
    few = urls[:300]
    cpu, server = time.process_time(), server_cpu_seconds(server_pid)
    for url in few:
        mount.fetch(url)
    return {
        "ceiling_gets_per_s": round(ceiling, 1),
        "client_cpu_ms_per_get": round(1000 * (time.process_time() - cpu) / len(few), 2),
        "server_cpu_ms_per_get": round(1000 * (server_cpu_seconds(server_pid) - server) / len(few), 2),
    }


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
    parser.add_argument("--clients", default="botocore,s3fs", help="read clients for s3:// (XLOADER_S3_CLIENT)")
    parser.add_argument("--cache", action="store_true", help='the remote source with cache="memory"')
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    load_before = os.getloadavg()

    import s3fs

    import xloader as xl
    from xloader import storage
    from xloader.synthetic import make_image_folder

    result: dict = {"workers": args.workers, "remote_cache": "memory" if args.cache else None}
    with tempfile.TemporaryDirectory() as folder:
        root = make_image_folder(folder, images_per_class=args.images_per_class, long_side=(350, 500))
        server = MotoServer()
        try:
            options = {"endpoint_url": server.endpoint, "key": "testing", "secret": "testing"}
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
            fs.mkdir("bucket")
            fs.put(root + "/", "bucket/train/", recursive=True)
            local = xl.ImageFolder(root, image_size=(224, 224))
            sizes = {f"train/{name}": os.path.getsize(os.path.join(root, name)) for name in local.filenames}
            urls = [f"s3://bucket/{key}" for key in sizes]
            server.take_gets()
            local_speeds = epoch_speeds(local, args.workers, args.epochs)
            result["images"] = len(local)
            result["dataset_bytes"] = sum(sizes.values())
            result["local_images_per_s"] = [round(s, 1) for s in local_speeds]
            for client in args.clients.split(","):
                # Built just before its loader: the last source built on a root is the one whose
                # mount (and client) this process reads that root with.
                os.environ[storage.S3_CLIENT_ENV] = client  # read when the source is built; travels with it
                start = time.perf_counter()
                cache = {"cache": "memory"} if args.cache else {}
                remote = xl.ImageFolder("s3://bucket/train", image_size=(224, 224), storage_options=options, **cache)
                os.environ.pop(storage.S3_CLIENT_ENV)
                result[f"index_seconds_{client}"] = round(time.perf_counter() - start, 2)
                assert remote.filenames == local.filenames
                costs = read_costs(remote._mounts[0], urls, server.process.pid)
                server.take_gets()
                gets: list[int] = []
                read: list[int] = []

                def count_gets(gets: list[int] = gets, read: list[int] = read) -> None:
                    names = server.take_gets()
                    gets.append(len(names))
                    read.append(sum(sizes.get(name, 0) for name in names))

                speeds = epoch_speeds(remote, args.workers, args.epochs, count_gets)
                result[client] = dict(
                    costs,
                    remote_images_per_s=[round(s, 1) for s in speeds],
                    fraction_of_local=round(speeds[-1] / local_speeds[-1], 3),
                    fraction_of_ceiling=round(speeds[-1] / costs["ceiling_gets_per_s"], 3),
                    gets_per_epoch=gets,
                    bytes_read_per_epoch=read,
                )
        finally:
            server.stop()
    result["load_average_1min"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
