"""What fetching the next batch ahead buys when every GET waits: an http server that answers each
image GET after `--delay` seconds, read through an `ImageManifest` by the torch adapter.

    python benchmarks/remote_latency.py [--images-per-class 100] [--delay 0.05] [--epochs 3]

Data: 4 x 100 = 400 JPEG crops (long side 350-500 px) in a temporary folder with a manifest,
served by Python's `http.server` in its own process on 127.0.0.1 (each GET of an image sleeps
`--delay` first: a store that is far away, not one that is busy). Three loaders, each
`xloader.torch.DataLoader(source, batch_size=32, shuffle=True, num_workers=2,
persistent_workers=True)` with `image_size=(224, 224)`, `--epochs` epochs each: the local folder,
the manifest over http as xloader reads it (a worker fetches its next batch, b + 2, while it
decodes b), and the same with that turned off (`loader.batches.fetch_ahead = -1`).
Prints images/s per epoch as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

SERVER = r"""
import functools, http.server, sys, time
folder, delay, port = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
class Slow(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_GET(self):
        if not self.path.endswith(".csv"):
            time.sleep(delay)
        super().do_GET()
http.server.ThreadingHTTPServer.request_queue_size = 128  # no SYN dropped (and retried 1 s later)
http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Slow, directory=folder)).serve_forever()
"""


@contextlib.contextmanager
def slow_manifest_server(root: str, filenames: list[str], delay: float) -> Iterator[str]:
    """Serves `root` (with a `train.csv` manifest of `filenames`, class = first folder) over http
    on 127.0.0.1, each image GET answered after `delay` seconds; yields the base URL."""
    with open(os.path.join(root, "train.csv"), "w") as file:
        file.write("filename,class\n" + "".join(f"{name},{name.split('/')[0]}\n" for name in filenames))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, root, str(delay), str(port)])
    try:
        time.sleep(1.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def speeds(source, epochs: int, fetch_ahead: int = 0) -> list[float]:
    """images/s of each epoch through the torch adapter (2 workers)."""
    from xloader.torch import DataLoader

    loader = DataLoader(source, batch_size=32, shuffle=True, seed=0, num_workers=2, persistent_workers=True)
    loader.batches.fetch_ahead = fetch_ahead
    result = []
    for _ in range(epochs):
        start, images = time.perf_counter(), 0
        for x, _ in loader:
            images += len(x)
        result.append(round(images / (time.perf_counter() - start), 1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import xloader as xl
    from xloader.synthetic import make_image_folder

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        root = make_image_folder(folder, images_per_class=args.images_per_class, long_side=(350, 500))
        local = xl.ImageFolder(root, image_size=(224, 224))
        with slow_manifest_server(root, local.filenames, args.delay) as base:
            remote = xl.ImageManifest(f"{base}/train.csv", image_size=(224, 224))
            result = {
                "images": len(local),
                "delay_s": args.delay,
                "local_images_per_s": speeds(local, args.epochs),
                "remote_fetch_ahead_images_per_s": speeds(remote, args.epochs),
                "remote_no_fetch_ahead_images_per_s": speeds(remote, args.epochs, fetch_ahead=-1),
                "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
