"""Throughput of xloader's adapters against the loaders they replace, measured in one run.

    python benchmarks/loaders.py [--images-per-class 200] [--repeats 3] [--json out.json]

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
]


def augment(resize: bool):
    import albumentations as A

    steps = [A.Resize(SIZE, SIZE)] if resize else []
    steps += [
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(p=0.5),
        A.Affine(
            translate_percent=(-0.0625, 0.0625), scale=(0.9, 1.1), rotate=(-45, 45), border_mode=4, p=0.5
        ),  # ShiftScaleRotate's defaults, reflect-101
        A.Normalize(),
    ]
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


def keras_epochs(dataset, epochs):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(dataset, shuffle=False)
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        adapter.on_epoch_begin()
        for x, _y in adapter.get_numpy_iterator():
            count += len(x)
        adapter.on_epoch_end()
        yield count, time.perf_counter() - start


def torch_epochs(loader, epochs):
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for x, _y in loader:
            count += len(x)
        yield count, time.perf_counter() - start


def run_config(name: str, root: str, epochs: int) -> list[tuple[int, float]]:
    import xloader as xl

    folder = xl.ImageFolder(root, image_size=(SIZE, SIZE), transform=augment(resize=False))
    paths, labels = folder.filepaths, folder.labels.tolist()
    workers = 2 if "-w2" in name else (0 if name.endswith("w0") else 1)
    processes = name.endswith("processes")
    if name.startswith("keras-tutorial"):
        return list(keras_epochs(tutorial_pydataset(paths, labels, workers, processes), epochs))
    if name.startswith("xloader-keras"):
        from xloader.keras import PyDataset

        with PyDataset(
            folder, batch_size=BATCH, shuffle=True, seed=0, workers=workers, use_multiprocessing=processes
        ) as dataset:
            return list(keras_epochs(dataset, epochs))
    if name.startswith("torch-dataset"):
        return list(torch_epochs(torch_dataset_loader(paths, labels, workers), epochs))
    from xloader.torch import DataLoader

    loader = DataLoader(
        folder, batch_size=BATCH, shuffle=True, seed=0, num_workers=workers, persistent_workers=workers > 0
    )
    return list(torch_epochs(loader, epochs))


def main() -> None:
    parser = argparse.ArgumentParser(description="xloader vs peer loaders, images/s")
    parser.add_argument("--images-per-class", type=int, default=200)
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

    root = make_image_folder(
        os.path.join(tempfile.mkdtemp(prefix="xloader-bench-"), "train"),
        images_per_class=args.images_per_class,
        long_side=(350, 500),
    )
    for dirpath, _, files in os.walk(root):  # warm the page cache
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                fh.read()
    results: dict[str, list[list[float]]] = {name: [] for name in args.configs}
    for repeat in range(args.repeats):
        for name in args.configs:
            out = subprocess.run(
                [sys.executable, __file__, "--_child", name, root], capture_output=True, text=True, check=True
            )
            epochs = json.loads(out.stdout.strip().splitlines()[-1])
            results[name].append([count / seconds for count, seconds in epochs])
            print(
                f"repeat {repeat + 1}/{args.repeats} {name:30s} "
                + "  ".join(f"epoch {i + 1}: {rate:6.0f} img/s" for i, rate in enumerate(results[name][-1])),
                file=sys.stderr,
            )
    print(
        f"\n{args.images_per_class * 4} images/epoch, batch {BATCH}, {SIZE}x{SIZE} float32, "
        f"median of {args.repeats} repeats, {os.cpu_count()} CPUs"
    )
    print(f"{'configuration':30s} {'epoch 1 img/s':>14s} {'epoch 2 img/s':>14s}")
    medians = {name: [statistics.median(r[i] for r in runs) for i in range(2)] for name, runs in results.items()}
    for name, (first, second) in medians.items():
        print(f"{name:30s} {first:14.0f} {second:14.0f}")
    peers = [(v[1], k) for k, v in medians.items() if not k.startswith("xloader")]
    if not peers:
        return
    best_peer = max(peers)
    print(f"\nsteady-state ratios against the best peer, {best_peer[1]} ({best_peer[0]:.0f} img/s):")
    for name, (_, second) in medians.items():
        if name.startswith("xloader"):
            print(f"  {name:30s} {second / best_peer[0]:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "medians": medians}, fh, indent=1)


if __name__ == "__main__":
    main()
