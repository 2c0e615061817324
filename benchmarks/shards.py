"""Packed shards: the cost of opening a large index, and local read speed against the folder.

    python benchmarks/shards.py [--samples 1000000] [--images 2000] [--rounds 5]

1. Index: writes a generated index of `--samples` samples (paths like `class_0123/img_0004567.jpg`,
   one class index each, spread over shards of 256 MB as 100 KB images would be; the shard files
   are sparse, so no data is written) and times `xl.TarShards(path)` (read the index, stat each
   shard), best of `--rounds`, in one process with the index in the page cache.
2. Shuffle quality of the block order (NOTE [ Block order ]) on a class-sorted dataset of 50,000
   samples (100 classes, as a packed ImageFolder is sorted; 100 KB images in 256 MB shards), per
   batch of 256, for a few block sizes and windows.
3. Reads: packs `--images` generated JPEGs (xloader.synthetic, 4 classes, 96-160 px) and times one
   pass of `load` over every sample, folder against shards (same decode, resize to 64x64, no
   transform), best of `--rounds`, one thread, files in the page cache. Checks the samples are equal.
   Then one epoch of the shards through `Batches` (batches of 32) in each order, with the number
   of reads of shard bytes it made (NOTE [ Block reads ]).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _best(function, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def generated_index(root: str, samples: int, image_bytes: int = 100_000, shard_bytes: int = 256_000_000) -> None:
    """A packed-dataset folder with `samples` rows whose shards are sparse files of the right size."""
    import numpy as np

    from xloader._strings import StringTable
    from xloader.shards._index import FORMAT, VERSION, key_width, shard_name, write_index

    per_shard = shard_bytes // (image_bytes + 2048)
    shard = (np.arange(samples) // per_shard).astype(np.int32)
    slot = np.arange(samples) % per_shard
    offset = slot * (image_bytes + 2048) + 512
    count = int(shard[-1]) + 1
    shards = []
    for number in range(count):
        size = int((np.count_nonzero(shard == number)) * (image_bytes + 2048) + 10240)
        with open(os.path.join(root, shard_name(number)), "wb") as file:
            file.truncate(size)
        shards.append({"name": shard_name(number), "samples": int(np.count_nonzero(shard == number)), "bytes": size})
    labels = (np.arange(samples) * 1000 // samples).astype(np.int64)
    names = StringTable(f"class_{label:04d}/img_{i:07d}.jpg" for i, label in enumerate(labels.tolist()))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "classes",
        "source": "ImageFolder",
        "options": {
            "image_size": [224, 224],
            "color_mode": "rgb",
            "interpolation": "bilinear",
            "max_pixels": None,
            "label_mode": "int",
            "keep_aspect_ratio": False,
        },
        "class_names": [f"class_{c:04d}" for c in range(1000)],
        "key_width": key_width(samples),
        "shards": shards,
    }
    columns = {
        "files": names,
        "shard": shard,
        "offset": offset.astype(np.int64),
        "size": np.full(samples, image_bytes, np.int64),
        "crc32": np.zeros(samples, np.uint32),
        "labels": labels,
    }
    write_index(root, meta, columns)


def shuffle_quality(classes: int, per_class: int, batch: int, settings: list[tuple[str, int]]) -> None:
    """Per batch of a class-sorted packed dataset (as a packed ImageFolder is) of 100 KB images in
    256 MB shards: distinct classes, the largest class's share, and the runs of neighbouring
    samples; and per block order, the blocks (reads per process and epoch) and the cache bound."""
    import numpy as np

    from xloader._random import epoch_permutation
    from xloader.shards._block_order import block_bounds, block_order
    from xloader.shards.pack import parse_size

    n = classes * per_class
    labels = np.arange(n) // per_class
    stride = 100_352 + 3 * 512  # a 100 KB member padded to 512-byte blocks, its header, and a .cls member
    per_shard = 256_000_000 // stride
    shard, start = np.arange(n) // per_shard, np.arange(n) % per_shard * stride
    sizes = np.bincount(shard) * stride
    orders = {"random": (epoch_permutation(0, 0, n), "")}
    for block_size, window in settings:
        bounds = block_bounds(shard, start, sizes, parse_size(block_size))
        cache = 2 * window * parse_size(block_size) / 1e6
        about = f" ({len(bounds) - 1} blocks, cache {cache:.0f} MB)"
        orders[f"block {block_size} x {window}"] = (block_order(0, 0, bounds, window=window), about)
    print(f"{classes} classes x {per_class} images, packed class by class, batches of {batch} (epoch 0, seed 0):")
    for name, (order, about) in orders.items():
        batches = order[: n // batch * batch].reshape(-1, batch)
        distinct = [len(np.unique(labels[b])) for b in batches]
        top = [np.bincount(labels[b]).max() / batch for b in batches]
        runs = [1 + int(np.count_nonzero(np.diff(np.sort(b)) > 1)) for b in batches]
        print(
            f"  {name:>15}: {np.mean(distinct):5.1f} classes per batch (min {min(distinct)}), largest class "
            f"{np.mean(top):5.1%} of a batch (max {max(top):.0%}), {np.mean(runs):5.1f} runs of neighbours per "
            f"batch{about}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quality-only", action="store_true", help="only part 2, the shuffle quality")
    args = parser.parse_args()
    settings = [("4MB", 16), ("2MB", 32), ("1MB", 64), ("4MB", 4), ("4MB", 64), ("16MB", 16)]
    shuffle_quality(100, 500, 256, settings)
    if args.quality_only:
        return

    import numpy as np

    import xloader as xl
    from xloader.shards._index import INDEX_NAME
    from xloader.synthetic import make_image_folder

    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "index")
        os.makedirs(root)
        start = time.perf_counter()
        generated_index(root, args.samples)
        written = time.perf_counter() - start
        size = os.path.getsize(os.path.join(root, INDEX_NAME))
        opened = _best(lambda: xl.TarShards(root), args.rounds)
        source = xl.TarShards(root)
        print(
            f"index of {len(source):,} samples in {len(source.shards)} shards: {size / 1e6:.1f} MB file, "
            f"generated and written in {written:.2f} s; TarShards(path) opens in {opened * 1000:.0f} ms "
            f"(best of {args.rounds})"
        )

        per_class = args.images // 4
        folder_root = make_image_folder(os.path.join(tmp, "images"), images_per_class=per_class)
        folder = xl.ImageFolder(folder_root, image_size=(64, 64))
        start = time.perf_counter()
        result = xl.pack(folder, os.path.join(tmp, "packed"), shard_size="4MB", progress=False)
        packed = time.perf_counter() - start
        shards = xl.TarShards(result.out)
        print(
            f"packed {result.samples} images into {result.shards} shards ({result.bytes / 1e6:.1f} MB) "
            f"in {packed:.2f} s"
        )
        for index in range(0, len(folder), 97):
            np.testing.assert_array_equal(
                shards.load(index, seed=0, epoch=0, with_targets=False)[0],
                folder.load(index, seed=0, epoch=0, with_targets=False)[0],
            )

        def one_pass(source) -> float:
            start = time.perf_counter()
            for i in range(len(source)):
                source.load(i, seed=0, epoch=0, with_targets=True)
            return time.perf_counter() - start

        times: dict[str, list[float]] = {"folder": [], "shards": []}
        for _ in range(args.rounds):  # interleaved, so a busy moment of the machine hits both
            times["folder"].append(one_pass(folder))
            times["shards"].append(one_pass(shards))
        for name, seconds in times.items():
            best = min(seconds)
            print(
                f"{name}: {result.samples / best:,.0f} samples/s ({best * 1e6 / result.samples:.0f} us each, "
                f"best of {args.rounds} interleaved passes)"
            )

        for order in ("random", "block"):  # one epoch through Batches: how many reads of shard bytes
            source = xl.TarShards(result.out, image_size=(64, 64), order=order)
            batches = xl.Batches(source, batch_size=32, shuffle=True, seed=0)
            start = time.perf_counter()
            for b in range(len(batches)):
                batches.get_batch(0, b)
            seconds = time.perf_counter() - start
            print(
                f"order={order!r}: one epoch of {len(source)} samples in {len(batches)} batches of 32 made "
                f"{source.reads} reads in {result.shards} shards ({seconds:.2f} s)"
            )


if __name__ == "__main__":
    main()
