"""The decoded cache: epochs 1..3 with and without it, both adapters, and its memory, in one run.

    python benchmarks/cache.py [--images-per-class 500] [--epochs 3] [--json out.json]

Data and pipeline as in benchmarks/loaders.py: 2,000 JPEG crops (long side 350-500 px) of the
scikit-image photos, batches of 32 float32 224x224x3 images, the same albumentations pipeline
(flip, brightness/contrast, affine, Normalize). Each configuration runs in a fresh interpreter,
one after the other:

- torch-* (`xloader.torch.DataLoader(num_workers=2, persistent_workers=True)`, fork) and
  keras-* (`xloader.keras.PyDataset(workers=2, use_multiprocessing=True)`, KERAS_BACKEND=torch,
  so fork too; consumed through Keras's own `PyDatasetAdapter` as `fit` does), each with
  `cache=None` ("none"), `cache="memory"` and a cache directory (a new one, so epoch 1 fills it).
- torch-forkserver-* (the same torch loader under forkserver), for memory under both start methods.

Reported per configuration and epoch: images/s; and, per configuration, the CPU of the whole
process tree per image in the later epochs (on a machine shared with other work, images/s
follow the other load; CPU per image much less), the peak memory of the
process tree (`loaders.tree_memory_mib`: PSS without shared memory summed over the processes,
plus the machine's shared-memory growth, so a page shared by the three processes counts once),
the sum of the processes' PSS of shared-memory pages (`Pss_Shmem`: each process's share of the
cache file's pages; the sum is the cache counted once) and the cache file's size on disk.
Targets (issue 18): epochs 2-3 with a cache at least 2x the same adapter's uncached epoch; the
cache counted once in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loaders import BATCH, SIZE, augment, keras_epochs, start_memory_baseline, torch_epochs  # noqa: E402

CONFIGS = [
    "torch-none",
    "torch-memory",
    "torch-directory",
    "torch-forkserver-none",
    "torch-forkserver-memory",
    "keras-none",
    "keras-memory",
    "keras-directory",
]


def shmem_pss_mib() -> float:
    """Sum over this process tree of each process's share of shared-memory pages (Pss_Shmem)."""
    from xloader.cli._proc import _rollup_kib, process_tree

    return sum(_rollup_kib(pid, ("Pss_Shmem",)).get("Pss_Shmem", 0) for pid in process_tree()) / 1024


def cache_file_mib(source) -> float:
    """Allocated size of the source's cache file (0 without a cache or before it exists)."""
    import glob

    cache = source.decoded_cache
    if cache is None:
        return 0.0
    files = glob.glob(os.path.join(cache.directory, cache.prefix + "*.cache"))
    return sum(os.stat(path).st_blocks * 512 for path in files) / 2**20


def run_config(name: str, root: str, cache_dir: str, epochs: int) -> dict:
    import xloader as xl

    adapter, *rest = name.split("-")
    kind = rest[-1]
    cache = {"none": None, "memory": "memory", "directory": cache_dir}[kind]
    start_memory_baseline()
    source = xl.ImageFolder(root, image_size=(SIZE, SIZE), transform=augment(resize=False), cache=cache)
    started = time.perf_counter()
    if adapter == "torch":
        from xloader.torch import DataLoader

        context = "forkserver" if "forkserver" in rest else None
        loader = DataLoader(
            source,
            batch_size=BATCH,
            shuffle=True,
            seed=0,
            num_workers=2,
            persistent_workers=True,
            multiprocessing_context=context,
        )
        runs = torch_epochs(loader, epochs, started)
    else:
        from xloader.keras import PyDataset

        dataset = PyDataset(source, batch_size=BATCH, shuffle=True, seed=0, workers=2, use_multiprocessing=True)
        runs = keras_epochs(dataset, epochs, started)
    result: dict = {"epochs": [], "shmem_pss": 0.0}
    for run in runs:
        result["epochs"].append(run)
        result["shmem_pss"] = max(result["shmem_pss"], shmem_pss_mib())  # workers still alive here
    result["cache_file"] = cache_file_mib(source)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="xloader's decoded cache: images/s per epoch and memory")
    parser.add_argument("--images-per-class", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=CONFIGS)
    parser.add_argument("--json", help="write raw results here")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        name, root, cache_dir = args._child
        print(json.dumps(run_config(name, root, cache_dir, args.epochs)))
        return

    from xloader.synthetic import make_image_folder

    results = {}
    with tempfile.TemporaryDirectory(prefix="xloader-cache-bench-") as work:
        root = make_image_folder(
            os.path.join(work, "train"), images_per_class=args.images_per_class, long_side=(350, 500)
        )
        for dirpath, _, files in os.walk(root):  # warm the page cache
            for file in files:
                with open(os.path.join(dirpath, file), "rb") as handle:
                    handle.read()
        for name in args.configs:
            cache_dir = os.path.join(work, "cache")
            shutil.rmtree(cache_dir, ignore_errors=True)  # every directory run starts empty
            command = [sys.executable, __file__, "--epochs", str(args.epochs), "--_child", name, root, cache_dir]
            output = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
            results[name] = json.loads(output.strip().splitlines()[-1])
            print(name, "done", file=sys.stderr)
    report(results)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


def _later(result: dict, key) -> float:
    """Mean of `key(run)` over the epochs after the first."""
    later = result["epochs"][1:]
    return sum(key(run) for run in later) / len(later)


def report(results: dict) -> None:
    epochs = max(len(r["epochs"]) for r in results.values())
    header = " ".join(f"{'epoch ' + str(e + 1):>8}" for e in range(epochs))
    print(
        f"{'configuration':<24}{header} {'x none':>7} {'CPU ms':>7} {'x none':>7}"
        f" {'peak MiB':>9} {'shm PSS':>8} {'cache MiB':>9}"
    )
    for name, result in results.items():
        rates = [run["images"] / run["seconds"] for run in result["epochs"]]
        cpu = _later(result, lambda run: run["cpu"] / run["images"] * 1000)
        base = results.get(name.rsplit("-", 1)[0] + "-none")
        speedup = cpu_gain = ""
        if base is not None and len(rates) > 1:
            speedup = f"{min(rates[1:]) / _later(base, lambda run: run['images'] / run['seconds']):.2f}"
            cpu_gain = f"{_later(base, lambda run: run['cpu'] / run['images'] * 1000) / cpu:.2f}"
        peak = max(run["rss"] for run in result["epochs"])
        cells = " ".join(f"{rate:8.0f}" for rate in rates)
        print(
            f"{name:<24}{cells} {speedup:>7} {cpu:7.2f} {cpu_gain:>7}"
            f" {peak:9.0f} {result['shmem_pss']:8.0f} {result['cache_file']:9.0f}"
        )
    print(
        "images/s per epoch; 'x none' (first): the slowest later epoch over the same adapter's uncached later "
        "epochs; CPU ms: CPU of the process tree per image, later epochs; 'x none' (second): uncached CPU over this"
    )


if __name__ == "__main__":
    main()
