"""Check, on this machine, that your pipeline gives the same batches in Keras and in torch.

Put your own dataset and augmentation in `make_source`, run this script, and it compares three
epochs of `xloader.keras.PyDataset` (2 worker processes) with `xloader.torch.DataLoader`
(2 workers) batch by batch. For every installed Keras backend at once, use `xloader parity PATH`.

    python examples/parity_check.py [--data demo-data]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.synthetic import make_image_folder  # noqa: E402
from xloader.testing import assert_same_batches  # noqa: E402


def make_source(data: str) -> xl.ImageFolder:
    root = os.path.join(data, "photos")
    if not os.path.isdir(root):
        make_image_folder(root, images_per_class=8)
    augment = A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-20, 20), p=0.7), A.Normalize()])
    return xl.ImageFolder(root, image_size=(48, 48), transform=augment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data")
    args = parser.parse_args()
    source = make_source(args.data)
    options = {"batch_size": 8, "shuffle": True, "seed": 0}

    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    with PyDataset(source, workers=2, use_multiprocessing=True, **options) as keras_batches:
        from_keras = [batch for _ in range(3) for batch in keras_batches]
    torch_loader = DataLoader(source, num_workers=2, layout="NHWC", **options)  # NHWC: compare as stored
    from_torch = [batch for _ in range(3) for batch in torch_loader]
    assert_same_batches(from_torch, from_keras)  # raises naming the first batch that differs
    print(f"PASS: {len(from_keras)} batches identical in Keras and torch (3 epochs).")


if __name__ == "__main__":
    main()
