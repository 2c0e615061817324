"""The torch half of `xloader demo` (xloader/cli/demo.py): the same small CNN trained with a
plain loop over `xloader.torch.DataLoader`, fingerprinting every batch (back in NHWC).

Only `xloader/keras*.py` and `xloader/torch*.py` import a framework, so the demo's two halves
live beside their adapters (this file and xloader/keras_demo.py), not under xloader/cli/.
"""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from xloader.testing import fingerprint


def train_torch(dataset, args, loader_options: dict) -> tuple[list[str], float]:
    """Train for `args.epochs` with a plain loop; return the batch fingerprints and the seconds taken."""
    from xloader.torch import DataLoader

    loader = DataLoader(dataset, **loader_options, num_workers=args.workers, persistent_workers=args.workers > 0)
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
        # Means over the epoch's batches, the loss weighted by batch size: the figures Keras prints.
        loss_sum = 0.0
        correct = total = 0
        batches = tqdm(loader, desc=f"torch epoch {epoch + 1}/{args.epochs}", leave=False, disable=args.quiet)
        for x, y in batches:  # x: float32 (N, 3, H, W), y: int64 (N,)
            seen.append(fingerprint((x.permute(0, 2, 3, 1).contiguous(), y)))
            optimizer.zero_grad()
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
        print(f"torch epoch {epoch + 1}/{args.epochs}: loss {loss_sum / total:.3f}, accuracy {correct / total:.2f}")
    return seen, time.perf_counter() - start
