"""The classic Keras data-generator tutorial, with xloader: ids + labels, one .npy per sample.

The tutorial keeps `partition = {"train": [ids], "validation": [ids]}` and `labels = {id: class}`,
saves each sample as `data/<id>.npy`, and writes a `keras.utils.Sequence` with `__len__`,
`__getitem__`, `on_epoch_end` (shuffle) and a `to_fit` switch. `xloader.FileList` replaces the
hand-written class: same ids and labels, same files, but shuffling, batching, workers and
`to_fit` are options, and the batches are the same in Keras and torch.

    python examples/tutorial_npy.py [--data demo-data]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.keras import EpochSync, PyDataset  # noqa: E402

N_CLASSES = 3
SHAPE = (32, 32, 1)


def write_samples(folder: str, count: int) -> tuple[dict[str, list[str]], dict[str, int]]:
    """One .npy per sample, as in the tutorial; the class is the brightness band of the sample."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    labels: dict[str, int] = {}
    for i in range(count):
        sample_id = f"id-{i}"
        label = i % N_CLASSES
        sample = rng.normal(loc=label, scale=0.5, size=SHAPE).astype(np.float32)
        np.save(os.path.join(folder, f"{sample_id}.npy"), sample)
        labels[sample_id] = label
    ids = sorted(labels)
    return {"train": ids[: count * 3 // 4], "validation": ids[count * 3 // 4 :]}, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data")
    args = parser.parse_args()
    folder = os.path.join(args.data, "npy")
    partition, labels = write_samples(folder, 120)

    # The tutorial's DataGenerator(partition["train"], labels, batch_size=32, n_classes=3, shuffle=True):
    train = xl.FileList(partition["train"], labels, root=folder, suffix=".npy", num_classes=N_CLASSES)
    validation = xl.FileList(partition["validation"], labels, root=folder, suffix=".npy", num_classes=N_CLASSES)

    keras.utils.set_random_seed(0)  # the model's initial weights: the run ends the same way every time
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Flatten(),
            keras.layers.Dense(N_CLASSES, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    training = PyDataset(train, batch_size=32, shuffle=True, seed=0, workers=2)
    model.fit(
        training,
        validation_data=PyDataset(validation, batch_size=32),
        epochs=5,
        shuffle=False,
        verbose=2,
        callbacks=[EpochSync(training)],
    )
    # to_fit=False: inputs only, for predict (the tutorial's to_fit switch).
    predictions = model.predict(PyDataset(validation, batch_size=32, to_fit=False), verbose=0)
    truth = np.array([labels[i] for i in partition["validation"]])
    accuracy = float((predictions.argmax(1) == truth).mean())
    print(f"validation accuracy from predict(): {accuracy:.2f} on {len(truth)} samples")
    return 0 if accuracy > 1 / N_CLASSES else 1


if __name__ == "__main__":
    sys.exit(main())
