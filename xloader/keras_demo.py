"""The Keras half of `xloader demo` (xloader/cli/demo.py): a small CNN trained with `model.fit`
from `xloader.keras.PyDataset`, noting a fingerprint of every batch `train_step` receives.

Only `xloader/keras*.py` and `xloader/torch*.py` import a framework, so the demo's two halves
live beside their adapters (this file and xloader/torch_demo.py), not under xloader/cli/.
"""

from __future__ import annotations

import time

import keras

from xloader.testing import fingerprint


class KerasCNN(keras.Model):
    """A small CNN whose train_step also notes a fingerprint of every batch it trains on."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = [
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),
        ]
        self.seen: list[str] = []

    def call(self, x):
        for layer in self.body:
            x = layer(x)
        return x

    def train_step(self, *args):
        x, y = args[-1]  # jax passes (state, data); tensorflow and torch pass (data)
        self.seen.append(fingerprint((keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))))
        return super().train_step(*args)


def train_keras(dataset, args, loader_options: dict) -> tuple[list[str], float]:
    """Train for `args.epochs` with `model.fit`; return the batch fingerprints and the seconds taken."""
    from xloader.keras import EpochSync, PyDataset

    train = PyDataset(dataset, **loader_options, workers=args.workers, use_multiprocessing=args.processes)
    model = KerasCNN(len(dataset.class_names))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=True,
    )  # eager only so train_step can fingerprint
    # Keras's `loss` and `accuracy` at an epoch's end are means over that epoch's batches (the
    # loss weighted by batch size); xloader/torch_demo.py prints the same figures in the same form.
    name = f"keras ({keras.backend.backend()})"
    report = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: print(
            f"{name} epoch {epoch + 1}/{args.epochs}: loss {logs['loss']:.3f}, accuracy {logs['accuracy']:.2f}"
        )
    )
    start = time.perf_counter()
    # shuffle=False: xloader shuffles the samples; Keras must keep the batch order.
    model.fit(train, epochs=args.epochs, shuffle=False, verbose=0, callbacks=[EpochSync(train), report])
    seconds = time.perf_counter() - start
    train.close()
    return model.seen, seconds
