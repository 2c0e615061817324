"""Checks that can fail: memory flat in dataset size, and indexing cost against a bare walk.

    python benchmarks/memory_and_index.py [--repeats 5]

1. Indexing: `ImageFolder(root)` over 100,000 files (10 classes x 10,000 hard links to one
   JPEG) against a bare recursive `os.scandir` walk of the same tree that only counts files.
   Target: at most 1.5x the walk (median of the repeats). Also printed, for context: the same
   with the Python listing (the fallback where xloader's C listing was not built) and Keras's own
   indexing.
2. Memory flat in dataset size: the peak memory (`loaders.tree_memory_mib`: the main process
   and its workers, shared memory counted once) of `xloader.torch.DataLoader(num_workers=2)` over 2,000 and over 20,000 files, each
   reading its first 60 batches of 32 float32 224x224 images. Target: within 10%.
Prints PASS or FAIL per check and exits 1 if any failed. (Worker memory over a whole epoch is
checked by tests/test_reliability.py: it fails if a worker's private memory grows over 1 MiB.)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loaders import BATCH, SIZE, augment, start_memory_baseline, tree_memory_mib  # noqa: E402


def linked_tree(root: str, sources: list[str], classes: int, per_class: int) -> str:
    """root/c<k>/<i>.jpg as hard links to `sources` (round robin): many files, little disk."""
    for k in range(classes):
        folder = os.path.join(root, f"c{k}")
        os.makedirs(folder)
        for i in range(per_class):
            os.link(sources[(k * per_class + i) % len(sources)], os.path.join(folder, f"{i:06d}.jpg"))
    return root


def bare_walk(root: str) -> int:
    count, pending = 0, [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    pending.append(entry.path)
                else:
                    count += 1
    return count


def check_indexing(work: str, source_files: list[str], repeats: int) -> bool:
    import xloader as xl
    from xloader.index import _walk

    root = linked_tree(os.path.join(work, "index100k"), source_files, classes=10, per_class=10_000)
    listing = "C listing" if _walk._c_listing_applies(_walk.IMAGE_EXTENSIONS) else "Python listing: C one not built"
    built = _walk._fastlist
    walk, index, python_index = [], [], []
    for _ in range(repeats):  # interleaved, so drift in the machine's speed hits each alike
        start = time.perf_counter()
        assert bare_walk(root) == 100_000
        walk.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert len(xl.ImageFolder(root, image_size=None)) == 100_000
        index.append(time.perf_counter() - start)
        _walk._fastlist = None  # the fallback, for context: what a machine without a C compiler gets
        start = time.perf_counter()
        assert len(xl.ImageFolder(root, image_size=None)) == 100_000
        python_index.append(time.perf_counter() - start)
        _walk._fastlist = built
    ratio = statistics.median(index) / statistics.median(walk)
    ok = ratio <= 1.5
    print(
        f"{'PASS' if ok else 'FAIL'} indexing 100,000 files: ImageFolder {statistics.median(index):.3f} s ({listing}), "
        f"bare os.scandir walk {statistics.median(walk):.3f} s: {ratio:.2f}x (target <= 1.5x)"
    )
    print(
        f"     for comparison, ImageFolder with the Python listing: {statistics.median(python_index):.3f} s "
        f"({statistics.median(python_index) / statistics.median(walk):.2f}x); "
        f"Keras's own indexing of the same tree: {keras_indexing_seconds(root)}"
    )
    return ok


def keras_indexing_seconds(root: str) -> str:
    """flow_from_directory's and image_dataset_from_directory's listing of `root` (median of 3)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
        from keras.src.utils.dataset_utils import index_directory
    except ImportError as error:
        return f"not measured ({error})"
    timings = {}
    for name, run in [
        ("flow_from_directory", lambda: ImageDataGenerator().flow_from_directory(root, shuffle=False)),
        ("image_dataset_from_directory", lambda: index_directory(root, "inferred", formats=(".jpg",), shuffle=False)),
    ]:
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Found N images ..."
                run()
            runs.append(time.perf_counter() - start)
        timings[name] = statistics.median(runs)
    return ", ".join(f"{name} {seconds:.3f} s" for name, seconds in timings.items())


def peak_memory_child(root: str, batches: int) -> None:
    import xloader as xl
    from xloader.torch import DataLoader

    start_memory_baseline()
    folder = xl.ImageFolder(root, image_size=(SIZE, SIZE), transform=augment(resize=False))
    loader = DataLoader(folder, batch_size=BATCH, shuffle=True, seed=0, num_workers=2, persistent_workers=True)
    peak = 0.0
    for step, _ in enumerate(loader):
        peak = max(peak, tree_memory_mib())
        if step + 1 == batches:
            break
    print(json.dumps({"files": len(folder), "peak_mib": peak}))


def check_memory_flat(work: str, source_files: list[str], repeats: int) -> bool:
    peaks = {}
    for files in (2_000, 20_000):
        root = linked_tree(os.path.join(work, f"mem{files}"), source_files, classes=4, per_class=files // 4)
        runs = []
        for _ in range(repeats):
            done = subprocess.run(
                [sys.executable, __file__, "--_child", root], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])
        peaks[files] = statistics.median(runs)
    growth = peaks[20_000] / peaks[2_000] - 1
    ok = abs(growth) <= 0.10
    print(
        f"{'PASS' if ok else 'FAIL'} peak memory, torch adapter, 2 workers: {peaks[2_000]:.0f} MiB with 2,000 files, "
        f"{peaks[20_000]:.0f} MiB with 20,000 files: {growth:+.1%} (target within 10%)"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        peak_memory_child(args._child, batches=60)
        return
    from xloader.synthetic import make_image_folder

    with tempfile.TemporaryDirectory(prefix="xloader-bench-") as work:
        photos = make_image_folder(os.path.join(work, "photos"), images_per_class=200, long_side=(350, 500))
        sources = sorted(os.path.join(d, f) for d, _, names in os.walk(photos) for f in names)
        results = [
            check_indexing(work, sources, args.repeats),
            check_memory_flat(work, sources, max(args.repeats // 2, 1)),
        ]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
