"""Classification with a plain PyTorch loop from a folder per class.

python examples/torch_classification.py [--data demo-data]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import torch  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.synthetic import make_image_folder  # noqa: E402
from xloader.torch import DataLoader  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    root = os.path.join(args.data, "photos")
    if not os.path.isdir(root):
        make_image_folder(root, images_per_class=16)

    augment = A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-15, 15), p=0.5), A.Normalize()])
    images = xl.ImageFolder(root, image_size=(64, 64), transform=augment)
    loader = DataLoader(images, batch_size=16, shuffle=True, seed=0, num_workers=2, persistent_workers=True)

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, len(images.class_names)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):  # each pass over the loader is the next epoch
        total_loss = 0.0
        for x, y in loader:  # x: float32 (N, 3, 64, 64) after Normalize, y: int64 (N,)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
        print(f"epoch {epoch}: mean loss {total_loss / len(images):.3f}")


if __name__ == "__main__":
    main()
