"""What `xloader.pack` gains from concurrent GETs when every GET waits: packing a manifest
served over http (each image GET answered after `--delay` seconds) into local tar shards.

    python benchmarks/pack_remote.py [--images-per-class 100] [--delay 0.05]

Data: 4 x 100 = 400 JPEG crops (long side 350-500 px) with a manifest, served by Python's
`http.server` in its own process on 127.0.0.1 (the server of benchmarks/remote_latency.py).
Two packers, each writing 256 MB WebDataset shards of the same 400 images to a temporary folder:
- `xloader.pack(xl.ImageManifest(url, image_size=None), out)`: fetches 16 samples' files at once
  and the next 16 ahead (NOTE [ Remote storage ]);
- the named peer, WebDataset's `ShardWriter` fed by `fsspec` reads one file after the other,
  as a hand-written packing script does.
Prints seconds per packer and the ratio as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from remote_latency import slow_manifest_server  # noqa: E402


def pack_with_webdataset(rows: list[tuple[str, int]], pattern: str) -> None:
    import fsspec
    import webdataset as wds

    fs = fsspec.filesystem("http")
    with wds.ShardWriter(pattern, maxsize=256 * 10**6, verbose=0) as sink:
        for i, (url, label) in enumerate(rows):
            sink.write({"__key__": f"{i:06d}", "jpg": fs.cat_file(url), "cls": label})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    import xloader as xl
    from xloader.synthetic import make_image_folder

    with tempfile.TemporaryDirectory() as folder:
        root = make_image_folder(
            os.path.join(folder, "train"), images_per_class=args.images_per_class, long_side=(350, 500)
        )
        local = xl.ImageFolder(root, image_size=None)
        with slow_manifest_server(root, local.filenames, args.delay) as base:
            start = time.perf_counter()
            packed = xl.pack(xl.ImageManifest(f"{base}/train.csv", image_size=None), f"{folder}/xl", progress=False)
            xloader_s = time.perf_counter() - start
            rows = [(f"{base}/{name}", int(label)) for name, label in zip(local.filenames, local.labels, strict=True)]
            os.makedirs(f"{folder}/wds")
            start = time.perf_counter()
            pack_with_webdataset(rows, f"{folder}/wds/shard-%06d.tar")
            peer_s = time.perf_counter() - start
    result = {
        "images": packed.samples,
        "delay_s": args.delay,
        "xloader_pack_s": round(xloader_s, 2),
        "webdataset_shardwriter_fsspec_s": round(peer_s, 2),
        "speedup": round(peer_s / xloader_s, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
