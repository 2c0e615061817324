"""`xloader demo`: one xloader dataset, trained on with Keras `model.fit` and with a torch loop.

It writes a small dataset of real photos to disk (crops of pictures that ship with
scikit-image, 4 classes), trains a small CNN for two epochs with Keras (backend from
KERAS_BACKEND, "torch" by default) and the same CNN with plain PyTorch, and checks that both
trained on the same batches, bit for bit, epoch by epoch, with augmentation on.

    xloader demo                      # or: scripts/demo, python -m xloader demo --workers 2 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import keras  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.synthetic import make_image_folder  # noqa: E402
from xloader.testing import fingerprint  # noqa: E402


def augmentation() -> A.Compose:
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-20, 20), p=0.7),
            A.RandomBrightnessContrast(p=0.5),
            A.Normalize(),  # float32, ImageNet mean/std
        ]
    )


class KerasCNN(keras.Model):
    """A small CNN whose train_step also notes a fingerprint of every batch it trains on."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = [
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),
        ]
        self.seen: list[str] = []

    def call(self, x):
        for layer in self.body:
            x = layer(x)
        return x

    def train_step(self, *args):
        x, y = args[-1]  # jax passes (state, data); tensorflow and torch pass (data)
        self.seen.append(fingerprint((keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))))
        return super().train_step(*args)


def train_keras(dataset, args) -> tuple[list[str], float]:
    from xloader.keras import EpochSync, PyDataset

    train = PyDataset(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        workers=args.workers,
        use_multiprocessing=args.processes,
    )
    model = KerasCNN(len(dataset.class_names))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=True,
    )  # eager only so train_step can fingerprint
    start = time.perf_counter()
    # shuffle=False: xloader shuffles the samples; Keras must keep the batch order.
    verbose = 0 if args.quiet else 2
    history = model.fit(train, epochs=args.epochs, shuffle=False, verbose=verbose, callbacks=[EpochSync(train)])
    seconds = time.perf_counter() - start
    train.close()
    print(f"keras ({keras.backend.backend()}): final accuracy {history.history['accuracy'][-1]:.2f}")
    return model.seen, seconds


def train_torch(dataset, args) -> tuple[list[str], float]:
    from xloader.torch import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, len(dataset.class_names)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen: list[str] = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        correct = total = 0
        batches = tqdm(loader, desc=f"torch epoch {epoch + 1}/{args.epochs}", leave=False, disable=args.quiet)
        for x, y in batches:  # x: float32 (N, 3, H, W), y: int64 (N,)
            seen.append(fingerprint((x.permute(0, 2, 3, 1).contiguous(), y)))
            optimizer.zero_grad()
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
        print(f"torch epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}, accuracy {correct / total:.2f}")
    return seen, time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    root = os.path.join(args.data, "train")
    if not os.path.isdir(root):
        make_image_folder(root, images_per_class=args.images_per_class)
    dataset = xl.ImageFolder(root, image_size=(args.image_size, args.image_size), transform=augmentation())
    print(f"{dataset}: classes {dataset.class_names}")

    keras_seen, keras_seconds = train_keras(dataset, args)
    torch_seen, torch_seconds = train_torch(dataset, args)

    per_epoch = len(keras_seen) // args.epochs
    images = len(dataset) * args.epochs
    print(
        f"\nthroughput incl. training: keras {images / keras_seconds:.0f} img/s, torch {images / torch_seconds:.0f} img/s"
    )
    matched = keras_seen == torch_seen
    for epoch in range(args.epochs):
        k = keras_seen[epoch * per_epoch : (epoch + 1) * per_epoch]
        t = torch_seen[epoch * per_epoch : (epoch + 1) * per_epoch]
        same = sum(a == b for a, b in zip(k, t, strict=True))
        print(f"epoch {epoch}: {same}/{len(t)} batches identical (first: keras {k[0]} torch {t[0]})")
    if matched:
        print(f"PASS: Keras model.fit and the torch loop trained on the same {len(torch_seen)} batches, bit for bit.")
        return 0
    print("FAIL: the batches differ.", file=sys.stderr)
    return 1
