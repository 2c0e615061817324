"""`xloader pack SOURCE OUT`: a dataset as WebDataset tar shards with an offset index."""

from __future__ import annotations

import argparse

from xloader.cli._open import open_dataset
from xloader.shards import pack


def run(args: argparse.Namespace) -> int:
    layout, source = open_dataset(args.source, image_size=None, transform=None)
    result = pack(source, args.out, shard_size=args.shard_size, progress=not args.quiet)
    print(
        f"packed {result.samples} samples of {args.source} ({layout}) into {result.shards} shards, "
        f"{result.bytes / 1e6:.1f} MB, in {result.out}"
    )
    return 0
