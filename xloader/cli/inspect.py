"""`xloader inspect PATH`: what is in a dataset, and what is wrong with it."""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from xloader.cli._open import LAYOUTS, find_layout, find_splits, ignored_files, open_dataset
from xloader.decoding import read_mask
from xloader.errors import BadImageError
from xloader.validation import validate, validation_workers


def mask_values(mask_files: list[str], workers: int | None) -> dict[int, int]:
    """Pixels per mask value over every readable mask file, values ascending (unreadable masks
    are the decode check's to report)."""

    def count(path: str) -> Counter[int]:
        if not path:  # an image kept without a mask (unpaired="background")
            return Counter()
        try:
            mask = read_mask(path)
        except BadImageError:
            return Counter()
        values, counts = np.unique(mask, return_counts=True)
        return Counter(dict(zip(values.tolist(), counts.tolist(), strict=True)))

    total: Counter[int] = Counter()
    with ThreadPoolExecutor(validation_workers(workers), thread_name_prefix="xloader-masks") as pool:
        for found in pool.map(count, mask_files):
            total.update(found)
    return dict(sorted(total.items()))


def describe_mask_values(values: dict[int, int]) -> list[str]:
    if not values:
        return []
    pixels = sum(values.values())
    shares = ", ".join(f"{value} ({100 * count / pixels:.1f}%)" for value, count in values.items())
    lines = [f"mask values {min(values)}..{max(values)}, share of pixels: {shares}"]
    if min(values) > 0:
        mapping = ", ".join(f"{value}: {index}" for index, value in enumerate(values))
        lines.append(
            f"note: no mask has value 0. If the classes are {min(values)}..{max(values)} (as in Oxford Pets' "
            "trimaps), a model with num_classes outputs needs them as 0..num_classes-1: pass "
            f"mask_values={{{mapping}}} to ImageMaskFolder (stored value -> class index)."
        )
    return lines


def inspect_one(path: str, args: argparse.Namespace, masks: str | None) -> tuple[dict[str, Any], list[str], bool]:
    """(JSON report, text lines, ok) for one dataset (not a split root)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout, source = open_dataset(
            path, image_size=args.image_size, transform=None, masks=masks, storage_options=args.storage_options
        )
    report = validate(source, workers=args.workers, progress=not args.quiet and not args.json)
    notes = [str(w.message) for w in caught]
    description = LAYOUTS[layout] + (f" ({path} with {masks})" if masks is not None else "")
    lines = [f"{path}: {description}", *(f"warning: {note}" for note in notes), str(report)]
    out: dict[str, Any] = {"path": path, "layout": layout, "warnings": notes, **report.to_dict()}
    folders = [path, masks] if masks is not None else [path] if os.path.isdir(path) else []
    if folders:
        out["ignored_files"] = ignored = ignored_files(*folders)
        lines.append(
            f"ignored files: {ignored['hidden']} hidden (names starting with '.'), {ignored['not images']} not images"
        )
    mask_files, masks_dir = getattr(source, "mask_files", None), getattr(source, "masks_dir", None)
    if isinstance(mask_files, list) and isinstance(masks_dir, str):
        values = mask_values([os.path.join(masks_dir, f) if f else "" for f in mask_files], args.workers)
        out["mask_value_pixels"] = {str(value): count for value, count in values.items()}
        lines += describe_mask_values(values)
    return out, lines, report.ok


def run(args: argparse.Namespace) -> int:
    masks = getattr(args, "masks", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # open_dataset warns again, and the report shows it
        layout = find_layout(args.path, masks, args.storage_options)
    if layout != "split_root":
        out, lines, ok = inspect_one(args.path, args, masks)
    else:
        splits = find_splits(args.path)
        reports = {name: inspect_one(os.path.join(args.path, name), args, None) for name in splits}
        ok = all(report[2] for report in reports.values())
        out = {"path": args.path, "layout": "split_root", "ok": ok, "splits": {n: r[0] for n, r in reports.items()}}
        lines = [f"{args.path}: {LAYOUTS['split_root']} with {len(splits)} splits: {', '.join(splits)}"]
        for name, (_, split_lines, _) in reports.items():
            lines += ["", f"[{name}]", *split_lines]
        classes = {name: report[0].get("class_counts") for name, report in reports.items()}
        if "train" in classes and classes["train"] is not None:
            for name, counts in classes.items():
                if counts is not None and list(counts) != list(classes["train"]):
                    lines.append(
                        f"warning: {name}'s classes differ from train's ({', '.join(counts)} vs "
                        f"{', '.join(classes['train'])}): label numbers would not match."
                    )
    status = 0 if ok else 1  # so `xloader inspect data || exit 1` works in scripts
    print(json.dumps(out, indent=2) if args.json else "\n".join(lines))
    return status
