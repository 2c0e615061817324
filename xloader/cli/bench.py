"""`xloader bench PATH`: how fast your options load, what CPU and memory they cost."""

from __future__ import annotations

import argparse
import os
import time

from tqdm import tqdm

from xloader.cli._open import load_transform, open_dataset
from xloader.cli._proc import cpu_seconds, peak_rss_mib, process_tree


def _batches(args: argparse.Namespace, source):
    options = {"batch_size": args.batch_size, "shuffle": args.shuffle, "seed": args.seed}
    if args.loader == "torch":
        from xloader.torch import DataLoader

        loader = DataLoader(source, num_workers=args.workers, persistent_workers=args.workers > 0, **options)
        return loader, lambda: loader
    if args.loader == "keras":
        from xloader.keras import PyDataset

        dataset = PyDataset(source, workers=args.workers, use_multiprocessing=args.processes, **options)
        return dataset, lambda: dataset
    from xloader.batching import Batches

    batches = Batches(source, **options)
    return batches, lambda: batches


def run(args: argparse.Namespace) -> int:
    _, source = open_dataset(
        args.path,
        image_size=args.image_size,
        transform=load_transform(args.transform),
        masks=args.masks,
        storage_options=args.storage_options,
    )
    loader, epoch_iterable = _batches(args, source)
    me = os.getpid()
    cpu_before = cpu_seconds(me)
    rows = []
    first_batch_seconds = None
    for epoch in range(args.epochs):
        images = 0
        start = time.perf_counter()
        for batch in tqdm(epoch_iterable(), desc=f"epoch {epoch}", leave=False, disable=args.quiet):
            x = batch[0] if isinstance(batch, tuple) else batch
            if first_batch_seconds is None:
                first_batch_seconds = time.perf_counter() - start
            images += len(x)
        rows.append((epoch, images, time.perf_counter() - start))
    tree = process_tree(me)
    cpu = cpu_seconds(me) - cpu_before + sum(cpu_seconds(pid) for pid in tree[1:])
    peak_main = peak_rss_mib(me)
    peak_workers = [peak_rss_mib(pid) for pid in tree[1:]]
    total_images = sum(images for _, images, _ in rows)
    mode = "processes" if args.loader == "keras" and args.processes else "threads" if args.loader == "keras" else ""
    print(f"{args.path}: {len(source)} samples, loader {args.loader} workers={args.workers} {mode}".rstrip())
    for epoch, images, seconds in rows:
        print(f"epoch {epoch}: {images / seconds:8.0f} images/s ({seconds:.2f} s)")
    print(f"time to first batch: {first_batch_seconds:.3f} s")
    print(f"CPU per image (all processes): {cpu / total_images * 1000:.2f} ms")
    print(
        f"peak memory: main {peak_main:.0f} MiB, workers {' + '.join(f'{m:.0f}' for m in peak_workers) or 'none'} MiB"
    )
    close = getattr(loader, "close", None)
    if close is not None:
        close()
    return 0
