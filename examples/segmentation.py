"""Segmentation: images + palette-PNG masks paired by name, augmented together, Keras and torch.

Writes 48 photo crops with 3-class masks to ./demo-data/seg, trains a tiny fully-convolutional
model with Keras `model.fit` and the same model with a torch loop for one epoch, and checks that
the (image, mask) batches were the same in both.

    python examples/segmentation.py [--data demo-data]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import keras  # noqa: E402
import torch  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.keras import EpochSync, PyDataset  # noqa: E402
from xloader.synthetic import make_segmentation_folders  # noqa: E402
from xloader.testing import assert_same_batches  # noqa: E402
from xloader.torch import DataLoader  # noqa: E402

NUM_CLASSES = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data")
    args = parser.parse_args()

    root = os.path.join(args.data, "seg")
    if not os.path.isdir(root):
        make_segmentation_folders(root, count=48, num_classes=NUM_CLASSES)
    # Geometric steps move image and mask together (the mask with nearest-neighbour);
    # pixel steps (brightness/contrast) touch the image only.
    aug = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-20, 20), scale=(0.9, 1.1), p=0.7),
            A.RandomBrightnessContrast(p=0.5),
        ]
    )
    seg = xl.ImageMaskFolder(
        os.path.join(root, "images"),
        os.path.join(root, "masks"),
        image_size=(64, 64),
        transform=aug,
        mask_dtype="int64",
    )
    print(seg)
    options = dict(batch_size=8, shuffle=True, seed=0)

    # Keras: x uint8 (8, 64, 64, 3), y int64 (8, 64, 64) class indices.
    keras_batches = []

    class Segmenter(keras.Model):
        def __init__(self):
            super().__init__()
            self.rescale = keras.layers.Rescaling(1 / 255)
            self.conv = keras.layers.Conv2D(16, 3, padding="same", activation="relu")
            self.head = keras.layers.Conv2D(NUM_CLASSES, 1)

        def call(self, x):
            return self.head(self.conv(self.rescale(x)))

        def train_step(self, *args):
            x, y = args[-1]
            keras_batches.append((keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)))
            return super().train_step(*args)

    model = Segmenter()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    with PyDataset(seg, **options, workers=2) as train:
        model.fit(train, epochs=1, shuffle=False, verbose=2, callbacks=[EpochSync(train)])

    # torch: x uint8 (8, 3, 64, 64), y int64 (8, 64, 64), what nn.CrossEntropyLoss takes.
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, NUM_CLASSES, 1)
    )
    optimizer = torch.optim.Adam(net.parameters())
    torch_batches = []
    for x, y in DataLoader(seg, **options, num_workers=2):
        torch_batches.append((x.permute(0, 2, 3, 1).numpy(), y.numpy()))
        loss = torch.nn.functional.cross_entropy(net(x.float() / 255), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"torch: last loss {loss.item():.3f}")

    assert_same_batches(keras_batches, torch_batches)
    print(f"PASS: {len(torch_batches)} image+mask batches identical in Keras and torch.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
