"""Run in a subprocess with KERAS_BACKEND set: records what Keras actually consumes.

Usage: python keras_probe.py SPEC.json OUT.npz

SPEC holds a list of `datasets` (each: `name`, `task` "classification" or "segmentation", its
directories, `image_size`, `num_classes`, loader `options`) and a list of Keras configurations.
For each dataset and configuration it records, in order:
- `fit`: the batches seen inside `train_step` of an unbuilt model during
  `model.fit(..., epochs=3, validation_data=..., shuffle=False)`;
- `direct`: `ds[b]` for every batch of epochs 0, 1, 2, advancing with `on_epoch_end()`.
Arrays are saved as `<dataset>/<config>/<mode>/<step>/x` and `.../y`.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from parity_data import build_source, loader_options  # noqa: E402

from xloader.keras import PyDataset  # noqa: E402


class RecordingModel(keras.Model):
    """An unbuilt model whose train_step keeps a copy of every batch it trains on."""

    def __init__(self, task: str, num_classes: int):
        super().__init__()
        self.task = task
        self.rescale = keras.layers.Rescaling(1.0 / 255)
        if task == "classification":
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(num_classes)
        else:
            self.head = keras.layers.Conv2D(num_classes, 1)
        self.recorded: list[tuple[np.ndarray, np.ndarray]] = []

    def call(self, x, training=False):
        x = self.rescale(x)
        if self.task == "classification":
            x = self.pool(x)
        return self.head(x)

    def train_step(self, *args):
        data = args[-1]  # tf/torch: train_step(data); jax: train_step(state, data)
        x, y = data
        self.recorded.append((keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)))
        return super().train_step(*args)


def record(dataset: dict, config: dict, name: str, arrays: dict[str, np.ndarray]) -> None:
    source = build_source(dataset)
    val_source = build_source(dataset, augment=False)
    options = dict(loader_options(dataset), workers=config["workers"], use_multiprocessing=config["processes"])
    val_options = dict(
        batch_size=dataset["options"]["batch_size"], workers=config["workers"], use_multiprocessing=config["processes"]
    )
    # A batch_transform (MixUp, CutMix) gives one-hot label weights: validate on them too.
    mixed = "batch_transform" in options
    if mixed:
        val_options["batch_transform"] = options["batch_transform"]
    with PyDataset(source, **options) as train, PyDataset(val_source, **val_options) as val:
        model = RecordingModel(dataset["task"], dataset["num_classes"])
        model.compile(
            optimizer="sgd",
            loss=(keras.losses.CategoricalCrossentropy if mixed else keras.losses.SparseCategoricalCrossentropy)(
                from_logits=True
            ),
            run_eagerly=True,
        )
        model.fit(train, epochs=3, validation_data=val, shuffle=False, verbose=0)
        for step, (x, y) in enumerate(model.recorded):
            arrays[f"{name}/fit/{step}/x"] = x
            arrays[f"{name}/fit/{step}/y"] = y
    with PyDataset(source, **options) as direct:
        step = 0
        for _epoch in range(3):
            for b in range(len(direct)):
                x, y = direct[b]
                arrays[f"{name}/direct/{step}/x"] = x
                arrays[f"{name}/direct/{step}/y"] = y
                step += 1
            direct.on_epoch_end()


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as file:
        spec = json.load(file)
    arrays: dict[str, np.ndarray] = {}
    warned: dict[str, list[str]] = {}
    for dataset in spec["datasets"]:
        for config in spec["keras_configs"]:
            name = f"{dataset['name']}/{config['name']}"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                record(dataset, config, name, arrays)
            warned[name] = [str(w.message) for w in caught if "xloader" in str(w.message)]
    arrays["__backend__"] = np.array(keras.backend.backend())
    arrays["__warnings__"] = np.array(json.dumps(warned))
    np.savez(out_path, **arrays)


if __name__ == "__main__":
    main()
