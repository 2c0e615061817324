"""MixUp in the workers: xloader's `batch_transform` against torch's DataLoader with a MixUp `collate_fn`.

    python benchmarks/mixup.py [--images-per-class 150] [--repeats 2] [--epochs 3]

Both loaders run 2 worker processes, batches of 32 float32 160x160x3 images, shuffled, and the
same per-sample work: the xloader source's own `load` (OpenCV decode and resize, then
HorizontalFlip + RandomBrightnessContrast + Normalize from albumentations). They differ only in
what happens to the batch:
- xloader: `xloader.torch.DataLoader(..., num_workers=2, batch_transform=xloader.MixUp(alpha=0.2))`:
  stacked in shared memory by the worker, MixUp (NumPy) in the worker, NCHW tensors out;
- torch: `torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, num_workers=2,
  collate_fn=mix)` where `mix` is torchvision's reference recipe written in torch (torchvision
  is not installed here): `default_collate`, NHWC -> NCHW, one-hot labels, `lam ~ Beta(0.2, 0.2)`,
  `x.roll(1, 0) * (1 - lam) + x * lam`, in the worker.
Each (loader, repeat) runs in a fresh interpreter, repeats interleaved; images/s is over the
epochs after the first (which starts the workers), the median over repeats. The ratio is
xloader / torch.
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

BATCH = 32
SIZE = 160
NUM_CLASSES = 4


def build_source(root: str):
    import albumentations as A

    import xloader as xl

    transform = A.Compose([A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5), A.Normalize()])
    return xl.ImageFolder(root, image_size=(SIZE, SIZE), transform=transform)


class SampleDataset:
    """A map-style torch dataset doing the xloader source's per-sample work (module level: picklable)."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        return self.source.load(index, seed=0, epoch=0, with_targets=True)


def torch_mixup_collate(samples):
    import torch
    from torch.utils.data import default_collate

    x, y = default_collate(samples)
    x = x.permute(0, 3, 1, 2).contiguous()
    y = torch.nn.functional.one_hot(y, NUM_CLASSES).float()
    lam = float(torch.distributions.Beta(0.2, 0.2).sample(()))
    return x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam)), y.roll(1, 0).mul_(1.0 - lam).add_(y.mul(lam))


def run_one(kind: str, root: str, epochs: int) -> dict:
    import torch
    import torch.utils.data

    import xloader as xl
    from xloader.torch import DataLoader

    source = build_source(root)
    if kind == "xloader":
        loader = DataLoader(
            source, batch_size=BATCH, shuffle=True, seed=0, num_workers=2,
            batch_transform=xl.MixUp(alpha=0.2, num_classes=NUM_CLASSES),
        )  # fmt: skip
    else:
        loader = torch.utils.data.DataLoader(
            SampleDataset(source), batch_size=BATCH, shuffle=True, num_workers=2, collate_fn=torch_mixup_collate
        )
    times, count = [], 0
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for x, y in loader:
            assert x.shape[1:] == (3, SIZE, SIZE) and y.shape[1] == NUM_CLASSES
            count += len(x)
        times.append(time.perf_counter() - start)
    return {"images_per_s": count * (epochs - 1) / sum(times[1:]), "images": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.epochs)))
        return
    from xloader.synthetic import make_image_folder

    with tempfile.TemporaryDirectory() as folder:
        root = make_image_folder(folder, images_per_class=args.images_per_class, long_side=(350, 500))
        results: dict[str, list[float]] = {"xloader": [], "torch": []}
        for _ in range(args.repeats):
            for kind in results:
                command = [sys.executable, __file__, "--epochs", str(args.epochs), "--child", kind, root]
                done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
                results[kind].append(json.loads(done.stdout.splitlines()[-1])["images_per_s"])
    medians = {kind: statistics.median(values) for kind, values in results.items()}
    for kind, values in results.items():
        print(f"{kind:8} {medians[kind]:8.0f} images/s  (repeats: {', '.join(f'{v:.0f}' for v in values)})")
    print(f"ratio xloader / torch: {medians['xloader'] / medians['torch']:.2f}")


if __name__ == "__main__":
    main()
