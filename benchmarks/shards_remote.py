"""Packed shards on S3 (moto's server on loopback) against the same files one object each.

    python benchmarks/shards_remote.py [--images-per-class 500] [--workers 2] [--epochs 2]
        [--block-size 4MB] [--window 16] [--only files,random,block]

Data and loader as `benchmarks/remote.py` (2,000 JPEG crops, long side 350-500 px, uploaded to a
moto S3 server in its own process; `xloader.torch.DataLoader(..., image_size=(224, 224),
batch_size=32, shuffle=True, num_workers=2, persistent_workers=True)`, or with `--loader keras`
`xloader.keras.PyDataset(..., workers=2)` (thread workers), no augmentation). Three
sources of the same samples: `ImageFolder("s3://bucket/train")` (one GET per file, a batch's
GETs concurrent), and the folder packed into shards of `--shard-size` (4 MB: moto's server copies the whole object
for every ranged GET, a cost S3 does not have, so large shards measure moto) read with `TarShards("s3://bucket/packed")`
in `order="random"` (one ranged GET per sample) and `order="block"` (one per block of
`--block-size` bytes and worker process, NOTE [ Block reads ]). Reported: each epoch's images/s
and GETs, counted in the server's log (the parent's reads before the workers start count in the
first epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from remote import CREDENTIALS, MotoServer  # noqa: E402


def _epochs(source, args):
    """(images, seconds) of each epoch through the chosen loader, `--workers` workers."""
    if args.loader == "keras":
        from xloader.keras import PyDataset

        with PyDataset(source, batch_size=32, shuffle=True, seed=0, workers=args.workers) as dataset:
            for _ in range(args.epochs):
                begin = time.perf_counter()
                images = sum(len(dataset[b][0]) for b in range(len(dataset)))
                yield images, time.perf_counter() - begin
                dataset.on_epoch_end()
        return
    from xloader.torch import DataLoader

    loader = DataLoader(source, batch_size=32, shuffle=True, seed=0, num_workers=args.workers, persistent_workers=True)
    for _ in range(args.epochs):
        begin = time.perf_counter()
        images = sum(len(x) for x, _ in loader)
        yield images, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--shard-size", default="4MB", help="moto reads a whole object for each ranged GET")
    parser.add_argument("--block-size", default="4MB", help="TarShards(order='block', block_size=...)")
    parser.add_argument("--window", type=int, default=16, help="TarShards(order='block', window=...)")
    parser.add_argument("--only", default="files,random,block", help="which sources to run, comma-separated")
    parser.add_argument(
        "--loader", choices=["torch", "keras"], default="torch", help="keras: PyDataset with thread workers"
    )
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)

    import s3fs

    import xloader as xl
    from xloader.synthetic import make_image_folder

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        root = make_image_folder(
            os.path.join(folder, "train"), images_per_class=args.images_per_class, long_side=(350, 500)
        )
        packed = xl.pack(
            xl.ImageFolder(root, image_size=None),
            os.path.join(folder, "packed"),
            shard_size=args.shard_size,
            progress=False,
        )
        server = MotoServer()
        try:
            options = {"endpoint_url": server.endpoint, "key": "testing", "secret": "testing"}
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
            fs.mkdir("bucket")
            fs.put(root + "/", "bucket/train/", recursive=True)
            fs.put(packed.out + "/", "bucket/packed/", recursive=True)
            server.take_gets()
            block = {"order": "block", "block_size": args.block_size, "window": args.window}
            sources = {
                "files": lambda: xl.ImageFolder("s3://bucket/train", image_size=(224, 224), storage_options=options),
                "random": lambda: xl.TarShards("s3://bucket/packed", image_size=(224, 224), storage_options=options),
                "block": lambda: xl.TarShards(
                    "s3://bucket/packed", image_size=(224, 224), storage_options=options, **block
                ),
            }
            for name in args.only.split(","):
                make = sources[name]
                source = make()
                server.take_gets()  # the index reads
                speeds, gets = [], []
                for images, seconds in _epochs(source, args):
                    speeds.append(round(images / seconds, 1))
                    gets.append(len(server.take_gets()))
                results[name] = {"images_per_s": speeds, "gets_per_epoch": gets}
                if name == "block":
                    results[name].update(block, blocks=source.blocks)
        finally:
            server.stop()
    summary = {
        "loader": args.loader,
        "images": packed.samples,
        "shards": packed.shards,
        "batches": -(-packed.samples // 32),
        **results,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
