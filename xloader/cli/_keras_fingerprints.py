"""Run by `xloader parity` in a fresh process per Keras backend (KERAS_BACKEND is set by the caller).

Usage: python -m xloader.cli._keras_fingerprints SPEC_JSON
Prints one JSON object: {config name: [batch fingerprints, epoch after epoch]}.
"""

from __future__ import annotations

import json
import sys


def main(spec: dict) -> dict[str, list[str]]:
    from xloader.cli._open import load_transform, open_dataset
    from xloader.keras import PyDataset
    from xloader.testing import fingerprint

    _, source = open_dataset(
        spec["path"], image_size=spec["image_size"], transform=load_transform(spec["transform"]), masks=spec["masks"]
    )
    out = {}
    for name, workers, processes in spec["configs"]:
        with PyDataset(
            source,
            batch_size=spec["batch_size"],
            shuffle=spec["shuffle"],
            seed=spec["seed"],
            workers=workers,
            use_multiprocessing=processes,
        ) as dataset:
            out[name] = [fingerprint(batch) for _ in range(spec["epochs"]) for batch in dataset]
    return out


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    print("FINGERPRINTS " + json.dumps(result))
