"""`xloader parity PATH`: are the batches the same in Keras (every backend) and torch, here?"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys

from tqdm import tqdm

from xloader.batching import Batches
from xloader.cli._open import load_transform, open_dataset
from xloader.testing import fingerprint

BACKENDS = ("tensorflow", "jax", "torch")
SEED_ADVICE = (
    "Every loader here was given seed={seed}. Pass seed= explicitly in your training code too: an unseeded "
    "loader (seed=None) draws its seed from the framework's global RNG (torch.manual_seed for "
    "xloader.torch.DataLoader, random.seed / keras.utils.set_random_seed for xloader.keras.PyDataset), "
    "so a torch run and a Keras run see the same batches only with the same explicit seed."
)


def installed_backends() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def keras_fingerprints(backend: str, spec: dict) -> dict[str, list[str]]:
    """Fingerprints from a fresh process running Keras on `backend` (fixed at Keras's first import)."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "xloader.cli._keras_fingerprints", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    for line in done.stdout.splitlines():
        if line.startswith("FINGERPRINTS "):
            return json.loads(line[len("FINGERPRINTS ") :])
    raise RuntimeError(f"Keras on {backend} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def torch_fingerprints(source, options: dict, epochs: int, num_workers: int, persistent: bool) -> list[str]:
    from xloader.torch import DataLoader

    loader = DataLoader(source, layout="NHWC", num_workers=num_workers, persistent_workers=persistent, **options)
    return [fingerprint(batch) for _ in range(epochs) for batch in loader]


def run(args: argparse.Namespace) -> int:
    transform = load_transform(args.transform)
    _, source = open_dataset(args.path, image_size=args.image_size, transform=transform, masks=args.masks)
    options = {"batch_size": args.batch_size, "shuffle": args.shuffle, "seed": args.seed}
    reference = Batches(source, **options)
    expected = [fingerprint(reference.get_batch(e, b)) for e in range(args.epochs) for b in range(len(reference))]

    results: dict[str, list[str]] = {}
    w = args.workers
    steps: list[tuple[str, str, tuple[int, bool] | None]] = [
        ("torch", "torch num_workers=0", (0, False)),
        ("torch", f"torch num_workers={w}", (w, False)),
        ("torch", f"torch num_workers={w} persistent", (w, True)),
    ]
    backends = args.backends or installed_backends()
    steps += [("keras", backend, None) for backend in backends]
    spec = {
        "path": args.path,
        "masks": args.masks,
        "image_size": args.image_size,
        "transform": args.transform,
        "epochs": args.epochs,
        **options,
        "configs": [["workers=0", 0, False], [f"{w} threads", w, False], [f"{w} processes", w, True]],
    }
    for kind, name, setting in tqdm(steps, desc="loaders", disable=args.quiet, leave=False):
        if kind == "torch":
            results[name] = torch_fingerprints(source, options, args.epochs, *setting)
        else:
            for config, prints in keras_fingerprints(name, spec).items():
                results[f"keras/{name} {config}"] = prints

    names = list(results)
    batches_per_epoch = len(reference)
    print(
        f"{len(expected)} batches ({args.epochs} epochs x {batches_per_epoch}); loaders compared with xloader.Batches:"
    )
    for column, name in enumerate(names, 1):
        print(f"  [{column}] {name}")
    header = " ".join(f"{column:>2}" for column in range(1, len(names) + 1))
    print(f"epoch batch  xloader.Batches    {header}")
    for position, want in enumerate(expected):
        marks = " ".join(
            " =" if position < len(results[name]) and results[name][position] == want else " X" for name in names
        )
        epoch, batch = divmod(position, batches_per_epoch)
        print(f"{epoch:>5} {batch:>5}  {want}   {marks}")
    mismatched = [name for name in names if results[name] != expected]
    if mismatched:
        print(f"FAIL: {len(mismatched)} of {len(names)} loaders differ: {', '.join(mismatched)}", file=sys.stderr)
        return 1
    print(f"PASS: {len(names)} loaders gave the same {len(expected)} batches, bit for bit.")
    print(SEED_ADVICE.format(seed=args.seed))
    return 0
