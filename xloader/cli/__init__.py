"""The `xloader` command (also `python -m xloader`): look at a dataset before training on it.

Subcommands: demo, inspect, preview, parity, bench, pack; `xloader SUBCOMMAND --help` for each.
Each subcommand's implementation is imported only when it runs, so `xloader inspect` never
imports Keras or torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

__all__ = ["main"]


def _dataset_arguments(parser: argparse.ArgumentParser, *, default_size: int | None) -> None:
    parser.add_argument(
        "path",
        help="a folder of class folders (root/<class>/*.jpg), a folder holding images/ and masks/, "
        "an images folder with --masks, or a CSV manifest (columns filename, class)"
        + (", or (inspect) a split root holding train/ and val/, validation/ or test/" if default_size is None else ""),
    )
    parser.add_argument(
        "--masks",
        metavar="DIR",
        help="the masks folder paired with the images in PATH by file stem (e.g. Oxford Pets: "
        "PATH=pets/images --masks pets/annotations/trimaps)",
    )
    parser.add_argument(
        "--image-size",
        nargs="+",
        metavar="H W|none",
        default=(default_size, default_size) if default_size else None,
        help="resize every image to H x W (one number: a square); none keeps each file's size "
        "(e.g. when the transform crops, as A.RandomResizedCrop)",
    )
    parser.add_argument(
        "--transform",
        metavar="FILE",
        help="the augmentation: a Python file that defines `transform`, or an albumentations "
        "pipeline serialized as .json/.yaml (albumentations.save)",
    )


def _loader_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, help="samples per batch")
    parser.add_argument("--seed", type=int, default=0, help="the loader seed (order and augmentation)")
    parser.add_argument(
        "--no-shuffle",
        dest="shuffle",
        action="store_false",
        help="keep dataset order (without it, shuffle=%(default)s)",
    )


def _storage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        type=json.loads,
        metavar="JSON",
        help='fsspec options for a URL PATH (s3://, gs://, http(s)://), e.g. \'{"endpoint_url": "http://host:9000"}\'',
    )


def _command(
    commands: argparse._SubParsersAction,
    name: str,
    summary: str,
    description: str,
    *,
    dataset: bool = True,
    image_size: int | None = None,
    quiet: bool = True,
) -> argparse.ArgumentParser:
    """A sub-command whose help shows every default; with `dataset`, one that reads a dataset
    (`_dataset_arguments`, `image_size` the default `--image-size`); with `quiet`, a `--quiet`."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    command = commands.add_parser(name, formatter_class=formatter, help=summary, description=description)
    if dataset:
        _dataset_arguments(command, default_size=image_size)
    if quiet:
        command.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xloader", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(
        commands, "demo", "generate a small photo dataset, train with Keras fit and a torch loop, check parity",
        "Writes a small photo dataset, trains the same CNN with Keras model.fit and with a "
        "torch loop from one xloader dataset, and checks both trained on the same batches.",
        dataset=False,
    )
    demo.add_argument("--data", default="demo-data", help="where to write the dataset")
    demo.add_argument("--images-per-class", type=int, default=40, help="photos per class (4 classes)")
    demo.add_argument("--image-size", type=int, default=96, help="side of the square images, pixels")
    demo.add_argument("--batch-size", type=int, default=16, help="samples per batch")
    demo.add_argument("--epochs", type=int, default=2, help="epochs trained in each framework")
    demo.add_argument("--workers", type=int, default=2, help="Keras workers and torch num_workers")
    demo.add_argument("--processes", action="store_true", help="Keras workers as processes, not threads")
    demo.add_argument("--seed", type=int, default=0, help="the loader seed (order and augmentation)")

    inspect = _command(
        commands, "inspect", "layout, counts per class, image sizes, bad and orphan files",
        "Finds the layout of PATH, decodes every file once and reports counts per class, "
        "stored image sizes, files that cannot be read and images without masks. Exits 1 if any were found.",
    )
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding threads (default: XLOADER_VALIDATION_WORKERS or one per core)",
    )
    _storage_arguments(inspect)

    preview = _command(
        commands, "preview", "a PNG grid of samples over epochs, augmentation applied, masks overlaid",
        "Writes a PNG grid: one row per sample, one column per epoch, each tile the sample as "
        "the model sees it that epoch (augmented; masks overlaid in colour).",
        image_size=128,
        quiet=False,
    )
    preview.add_argument("--out", required=True, help="the PNG file to write")
    preview.add_argument("--samples", type=int, default=4, help="rows")
    preview.add_argument("--epochs", type=int, default=4, help="columns")
    preview.add_argument("--seed", type=int, default=0, help="the loader seed (augmentation)")

    parity = _command(
        commands, "parity", "the same batches through Keras (each installed backend) and torch, compared",
        "Runs the dataset through xloader.Batches, xloader.torch.DataLoader (several "
        "num_workers) and xloader.keras.PyDataset on each installed Keras backend (each in its own "
        "process, several worker settings), and prints per-batch fingerprints. Exits 1 on a mismatch.",
        image_size=64,
    )
    _loader_arguments(parity)
    parity.add_argument("--epochs", type=int, default=2, help="epochs compared")
    parity.add_argument(
        "--backends",
        nargs="+",
        choices=["tensorflow", "jax", "torch"],
        help="Keras backends to check (default: every installed one)",
    )
    parity.add_argument("--workers", type=int, default=2, help="the multi-worker setting tried")

    bench = _command(
        commands, "bench", "images/s, CPU per image and peak memory for your options",
        "Times full epochs of the dataset with the chosen loader and prints images/s, CPU "
        "milliseconds per image (all processes) and peak memory (main process plus workers).",
        image_size=224,
    )
    _loader_arguments(bench)
    bench.add_argument("--loader", choices=["torch", "keras", "core"], default="torch", help="which loader to time")
    bench.add_argument("--workers", type=int, default=2, help="torch num_workers or Keras workers")
    bench.add_argument("--processes", action="store_true", help="Keras workers as processes, not threads")
    bench.add_argument("--epochs", type=int, default=2, help="epochs timed (the first starts the workers)")
    _storage_arguments(bench)

    pack = _command(
        commands,
        "pack",
        "copy a dataset into WebDataset tar shards with an offset index (xloader.TarShards reads them)",
        "Writes the samples of SOURCE (class folders, images/ + masks/, or a CSV manifest) into "
        "OUT as WebDataset tar shards (original file bytes, <key>.cls labels, <key>.mask.png masks) and one "
        "index file; xloader.TarShards(OUT, ...) then gives the same batches as the source.",
        dataset=False,
    )
    pack.add_argument("source", help="the dataset to pack, as for inspect")
    pack.add_argument(
        "out",
        help="the folder or fsspec URL to write (created; must not hold a packed dataset), e.g. s3://bucket/packed",
    )
    pack.add_argument("--shard-size", default="256MB", help="bytes per shard: 256MB (10**6 bytes per MB), 1GiB...")
    _storage_arguments(pack)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `xloader` command line; returns the exit status."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up log lines are not ours to print
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"xloader.cli.{args.command}")
    try:
        if hasattr(args, "image_size") and args.command != "demo":
            from xloader.cli._open import parse_image_size

            args.image_size = parse_image_size(args.image_size)
        return int(module.run(args) or 0)
    except (OSError, ValueError) as error:  # bad paths, options or data (DatasetError): one line
        print(f"xloader {args.command}: error: {error}", file=sys.stderr)
        return 2
