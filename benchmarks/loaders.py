"""Throughput, CPU and memory of xloader's adapters against the loaders they replace, in one run.

    python benchmarks/loaders.py [--images-per-class 500] [--repeats 3] [--json out.json]

Per configuration it reports images/s (epoch 1 includes starting workers; epoch 2 is the steady
state), the share of this machine's limit measured in the same run, CPU milliseconds per image
over the whole process tree (epoch 2), the peak memory of the process tree (`tree_memory_mib`:
PSS without shared memory summed over processes, plus the machine's shared-memory growth;
sampled every half second; the highest over the repeats), and the time to the first batch of epoch 1 (from
creating the loader, workers started included) and of epoch 2.

The limit ("limit"): the same decode (OpenCV, libjpeg-turbo), resize (cv2, bilinear) and
augmentation, in two forked processes that each take half of the files, nothing delivered.

Data: JPEG crops (long side 350-500 px, quality 90) of photos that ship with scikit-image,
written once to a temporary folder, page cache warmed. Every loader produces shuffled batches of
32 float32 224x224x3 images with the same albumentations pipeline (HorizontalFlip,
RandomBrightnessContrast, Affine with ShiftScaleRotate's defaults, Normalize), resized from the
file with OpenCV bilinear (`A.Resize` for the peers). Each (configuration, repeat) runs in a
fresh interpreter; repeats are interleaved. Two epochs are read: "epoch 1" includes starting the
workers, "epoch 2" is the steady state. Keras datasets are consumed the way `model.fit`
consumes them: through Keras's own `PyDatasetAdapter` (with its enqueuer when the peer asks for
workers), which is what decides threads/processes for the peers.

Peers:
- keras-tutorial: the classic hand-written `keras.utils.PyDataset` (PIL decode, albumentations,
  a float32 batch filled per sample), Keras workers 1 / 2 threads / 2 processes;
- torch-dataset: a map-style `torch.utils.data.Dataset` (PIL + the same albumentations) in a
  `torch.utils.data.DataLoader(batch_size=32, shuffle=True)`, num_workers 0 / 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")

BATCH = 32
SIZE = 224
CONFIGS = [
    "limit",
    "limit-uint8",
    "keras-imagedatagenerator",
    "keras-tutorial-w1",
    "keras-tutorial-w2-threads",
    "keras-tutorial-w2-processes",
    "xloader-keras-w1",
    "xloader-keras-w2-threads",
    "xloader-keras-w2-processes",
    "torch-dataset-w0",
    "torch-dataset-w2",
    "xloader-torch-w0",
    "xloader-torch-w2",
    "xloader-keras-w2-processes-uint8",
    "xloader-torch-w2-uint8",
]


def augment(resize: bool, normalize: bool = True):
    import albumentations as A

    steps = [A.Resize(SIZE, SIZE)] if resize else []
    steps += [
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(p=0.5),
        A.Affine(
            translate_percent=(-0.0625, 0.0625), scale=(0.9, 1.1), rotate=(-45, 45), border_mode=4, p=0.5
        ),  # ShiftScaleRotate's defaults, reflect-101
    ]
    if normalize:
        steps.append(A.Normalize())
    return A.Compose(steps)


def tutorial_pydataset(paths, labels, workers, processes):
    """The classic Keras data-generator tutorial, as a Keras 3 PyDataset."""
    import keras
    import numpy as np
    from PIL import Image

    class DataGenerator(keras.utils.PyDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transform = augment(resize=True)
            self.order = np.arange(len(paths))
            self.on_epoch_end()

        def __len__(self):
            return -(-len(paths) // BATCH)

        def __getitem__(self, index):
            chosen = self.order[index * BATCH : (index + 1) * BATCH]
            x = np.empty((len(chosen), SIZE, SIZE, 3), dtype=np.float32)
            for i, k in enumerate(chosen):
                image = np.asarray(Image.open(paths[k]).convert("RGB"))
                x[i] = self.transform(image=image)["image"]
            return x, np.asarray([labels[k] for k in chosen], dtype=np.int64)

        def on_epoch_end(self):
            np.random.shuffle(self.order)

    return DataGenerator(workers=workers, use_multiprocessing=processes)


def torch_dataset_loader(paths, labels, workers):
    import numpy as np
    import torch
    from PIL import Image

    class Photos(torch.utils.data.Dataset):
        def __init__(self):
            self.transform = augment(resize=True)

        def __len__(self):
            return len(paths)

        def __getitem__(self, k):
            image = np.asarray(Image.open(paths[k]).convert("RGB"))
            return torch.from_numpy(self.transform(image=image)["image"]).permute(2, 0, 1), labels[k]

    return torch.utils.data.DataLoader(
        Photos(), batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )


def imagedatagenerator_dataset(root):
    """Keras's legacy `ImageDataGenerator.flow_from_directory` with the closest augmentations."""
    import numpy as np
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(
        horizontal_flip=True,
        rotation_range=45,
        zoom_range=0.1,
        width_shift_range=0.0625,
        height_shift_range=0.0625,
        brightness_range=(0.8, 1.2),
        fill_mode="reflect",
        preprocessing_function=lambda x: (
            (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
        ),
    )
    return generator.flow_from_directory(
        root, target_size=(SIZE, SIZE), batch_size=BATCH, class_mode="sparse", interpolation="bilinear", seed=0
    )


# --- measuring the process tree -----------------------------------------------------------------


def tree_cpu_seconds() -> float:
    """CPU of this process and every descendant, alive (utime+stime) or reaped (cutime+cstime)."""
    from xloader.cli._proc import cpu_seconds, process_tree

    return sum(cpu_seconds(pid) for pid in process_tree())


_SHMEM_AT_START = [0.0]


def start_memory_baseline() -> None:
    """Call before building a loader: `tree_memory_mib` counts shared memory from here."""
    from xloader.cli._proc import system_shmem_mib

    _SHMEM_AT_START[0] = system_shmem_mib()


def tree_memory_mib() -> float:
    """Memory of the process tree: proportional set size (PSS) summed over the processes, so
    pages they share (libraries, pages a forked worker still shares with its parent) count once
    in total, not once per process as a sum of RSS would; plus the machine's shared memory
    (/proc/meminfo Shmem) above its level when the configuration started, in place of the
    processes' shared-memory pages. PSS alone misses a batch a torch worker wrote to /dev/shm
    and passed by file descriptor until someone touches it, and counts xloader's slots."""
    from xloader.cli._proc import process_tree, pss_without_shmem_mib, system_shmem_mib

    shared = max(system_shmem_mib() - _SHMEM_AT_START[0], 0.0)
    return sum(pss_without_shmem_mib(pid) for pid in process_tree()) + shared


def measured(batches, started: float) -> dict:
    """Consume one epoch of `batches` (an iterator of (x, y)); times start at `started`."""
    count, first, peak, sampled = 0, None, 0.0, 0.0
    cpu = tree_cpu_seconds()
    for x, _y in batches:
        count += len(x)
        now = time.perf_counter()
        if first is None:
            first = now - started
        # Reading smaps of every process costs milliseconds: sample twice a second, not per batch.
        if now - sampled > 0.5:
            peak, sampled = max(peak, tree_memory_mib()), now
    seconds = time.perf_counter() - started
    return {"images": count, "seconds": seconds, "first_batch": first, "cpu": tree_cpu_seconds() - cpu, "rss": peak}


def keras_epochs(dataset, epochs, started):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(dataset, shuffle=False)
    for _ in range(epochs):
        adapter.on_epoch_begin()
        yield measured(adapter.get_numpy_iterator(), started)
        adapter.on_epoch_end()
        started = time.perf_counter()


def torch_epochs(loader, epochs, started):
    for _ in range(epochs):
        yield measured(iter(loader), started)
        started = time.perf_counter()


def _limit_chunk(args):
    paths, normalize = args
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    transform = augment(resize=False, normalize=normalize)
    for path in paths:
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR_RGB)
        transform(image=cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR))
    return len(paths)


def limit_epochs(paths, epochs, normalize, started):
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        for _ in range(epochs):
            cpu = tree_cpu_seconds()
            halves = [(paths[0::2], normalize), (paths[1::2], normalize)]
            count = sum(pool.map(_limit_chunk, halves))
            seconds = time.perf_counter() - started
            yield {
                "images": count,
                "seconds": seconds,
                "first_batch": None,
                "cpu": tree_cpu_seconds() - cpu,
                "rss": tree_memory_mib(),
            }
            started = time.perf_counter()


def run_config(name: str, root: str, epochs: int) -> list[dict]:
    import xloader as xl

    # Frameworks are imported before the clock starts: "first batch" is the loader's own cost.
    if "keras" in name:
        import keras  # noqa: F401
    if "torch" in name:
        import torch  # noqa: F401

    start_memory_baseline()
    normalize = not name.endswith("uint8")
    folder = xl.ImageFolder(root, image_size=(SIZE, SIZE), transform=augment(resize=False, normalize=normalize))
    paths, labels = folder.filepaths, folder.labels.tolist()
    started = time.perf_counter()
    if name.startswith("limit"):
        return list(limit_epochs(paths, epochs, normalize, started))
    workers = 2 if "-w2" in name else (0 if name.endswith("w0") else 1)
    processes = "processes" in name
    if name == "keras-imagedatagenerator":
        return list(keras_epochs(_Sequence(imagedatagenerator_dataset(root)), epochs, started))
    if name.startswith("keras-tutorial"):
        return list(keras_epochs(tutorial_pydataset(paths, labels, workers, processes), epochs, started))
    if name.startswith("xloader-keras"):
        from xloader.keras import PyDataset

        with PyDataset(
            folder, batch_size=BATCH, shuffle=True, seed=0, workers=workers, use_multiprocessing=processes
        ) as dataset:
            return list(keras_epochs(dataset, epochs, started))
    if name.startswith("torch-dataset"):
        return list(torch_epochs(torch_dataset_loader(paths, labels, workers), epochs, started))
    from xloader.torch import DataLoader

    loader = DataLoader(
        folder, batch_size=BATCH, shuffle=True, seed=0, num_workers=workers, persistent_workers=workers > 0
    )
    return list(torch_epochs(loader, epochs, started))


def _Sequence(iterator):
    """A DirectoryIterator is already a Keras Sequence (a PyDataset); keep it as Keras sees it."""
    return iterator


def main() -> None:
    parser = argparse.ArgumentParser(description="xloader vs peer loaders: images/s, CPU, memory")
    # 4 classes x 500 = 2,000 images per epoch, the size of the baseline the targets come from.
    parser.add_argument("--images-per-class", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=CONFIGS)
    parser.add_argument("--json", help="write raw results here")
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        name, root = args._child
        print(json.dumps(run_config(name, root, epochs=2)))
        return

    from xloader.synthetic import make_image_folder

    with tempfile.TemporaryDirectory(prefix="xloader-bench-") as work:
        root = make_image_folder(
            os.path.join(work, "train"), images_per_class=args.images_per_class, long_side=(350, 500)
        )
        results = run_all(root, args)
    report(results, args)


def run_all(root: str, args) -> dict[str, list[list[dict]]]:
    for dirpath, _, files in os.walk(root):  # warm the page cache
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                fh.read()
    results: dict[str, list[list[dict]]] = {name: [] for name in args.configs}
    for repeat in range(args.repeats):
        for name in args.configs:
            out = subprocess.run([sys.executable, __file__, "--_child", name, root], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            epochs = json.loads(out.stdout.strip().splitlines()[-1])
            results[name].append(epochs)
            print(
                f"repeat {repeat + 1}/{args.repeats} {name:34s} "
                + "  ".join(f"epoch {i + 1}: {e['images'] / e['seconds']:6.0f} img/s" for i, e in enumerate(epochs)),
                file=sys.stderr,
            )
    return results


def _median(runs: list[list[dict]], epoch: int, key) -> float:
    values = [key(run[epoch]) for run in runs if key(run[epoch]) is not None]
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, list[list[dict]]], args) -> None:
    rate = lambda e: e["images"] / e["seconds"]  # noqa: E731
    rows = {
        name: {
            "epoch1": _median(runs, 0, rate),
            "epoch2": _median(runs, 1, rate),
            "cpu_ms": _median(runs, 1, lambda e: e["cpu"] / e["images"] * 1000),
            "rss": max(max(e["rss"] for e in run) for run in runs),
            "first1": _median(runs, 0, lambda e: e["first_batch"]),
            "first2": _median(runs, 1, lambda e: e["first_batch"]),
        }
        for name, runs in results.items()
    }
    limit = rows.get("limit", {}).get("epoch2")
    limit_uint8 = rows.get("limit-uint8", {}).get("epoch2")
    peers = [(row["epoch2"], name) for name, row in rows.items() if not name.startswith(("xloader", "limit"))]
    best_rate, best_name = max(peers) if peers else (float("nan"), "none")
    print(
        f"\n{args.images_per_class * 4} images/epoch, batch {BATCH}, {SIZE}x{SIZE} float32 (uint8 where named), "
        f"median of {args.repeats} repeats, {os.cpu_count()} CPUs; best peer: {best_name}"
    )
    print(
        f"{'configuration':34s} {'ep1 img/s':>9s} {'ep2 img/s':>9s} {'of limit':>8s} {'vs peer':>7s} "
        f"{'CPU ms/img':>10s} {'peak MiB':>12s} {'1st batch ep1/ep2 s':>20s}"
    )
    for name, row in rows.items():
        yardstick = limit_uint8 if name.endswith("uint8") else limit
        share = row["epoch2"] / yardstick if yardstick else float("nan")
        print(
            f"{name:34s} {row['epoch1']:9.0f} {row['epoch2']:9.0f} {share:8.2f} {row['epoch2'] / best_rate:7.2f} "
            f"{row['cpu_ms']:10.2f} {row['rss']:12.0f} {row['first1']:9.2f} / {row['first2']:.2f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
