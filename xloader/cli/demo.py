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

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.synthetic import make_image_folder  # noqa: E402


def augmentation() -> A.Compose:
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-20, 20), p=0.7),
            A.RandomBrightnessContrast(p=0.5),
            A.Normalize(),  # float32, ImageNet mean/std
        ]
    )


def run(args: argparse.Namespace) -> int:
    root = os.path.join(args.data, "train")
    if not os.path.isdir(root):
        make_image_folder(root, images_per_class=args.images_per_class)
    dataset = xl.ImageFolder(root, image_size=(args.image_size, args.image_size), transform=augmentation())
    print(f"{dataset}: classes {dataset.class_names}")

    from xloader.keras_demo import train_keras  # imports Keras, with the backend chosen above
    from xloader.torch_demo import train_torch

    options = {"batch_size": args.batch_size, "shuffle": True, "seed": args.seed}  # the same in both
    keras_seen, keras_seconds = train_keras(dataset, args, options)
    torch_seen, torch_seconds = train_torch(dataset, args, options)

    per_epoch = len(keras_seen) // args.epochs
    images = len(dataset) * args.epochs
    print(
        f"\nthroughput incl. training: keras {images / keras_seconds:.0f} img/s, torch {images / torch_seconds:.0f} img/s"
    )
    print("Keras and torch each start their model from different random weights, so loss and accuracy differ;")
    print("what must match is the batches each trained on:")
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
