"""`xloader inspect PATH`: what is in a dataset, and what is wrong with it."""

from __future__ import annotations

import argparse
import json
import warnings

from xloader.cli._open import LAYOUTS, open_dataset
from xloader.validation import validate


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout, source = open_dataset(args.path, image_size=args.image_size, transform=None)
    report = validate(source, workers=args.workers, progress=not args.quiet and not args.json)
    notes = [str(w.message) for w in caught]
    status = 0 if report.ok else 1  # so `xloader inspect data || exit 1` works in scripts
    if args.json:
        print(json.dumps({"path": args.path, "layout": layout, "warnings": notes, **report.to_dict()}, indent=2))
        return status
    print(f"{args.path}: {LAYOUTS[layout]}")
    for note in notes:
        print(f"warning: {note}")
    print(report)
    return status
