"""`xloader pack SOURCE OUT`: a dataset as WebDataset tar shards with an offset index."""

from __future__ import annotations

import argparse

from xloader import storage
from xloader.cli._open import open_dataset
from xloader.shards import pack


def run(args: argparse.Namespace) -> int:
    options = args.storage_options  # for whichever of SOURCE and OUT is a URL

    def for_url(path: str) -> dict | None:
        return options if storage.is_url(path) else None

    layout, source = open_dataset(args.source, image_size=None, transform=None, storage_options=for_url(args.source))
    result = pack(
        source, args.out, shard_size=args.shard_size, progress=not args.quiet, storage_options=for_url(args.out)
    )
    print(
        f"packed {result.samples} samples of {args.source} ({layout}) into {result.shards} shards, "
        f"{result.bytes / 1e6:.1f} MB, in {result.out}"
    )
    return 0
