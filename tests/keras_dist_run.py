"""One of two JAX processes training with `model.fit` under `keras.distribution.DataParallel`.

Usage: python keras_dist_run.py PROCESS_ID PORT OUT_DIR [auto_shard]
The process joins a 2-process JAX run on 127.0.0.1:PORT (CPU, gloo collectives), trains 3 epochs
on an xloader PyDataset (rank and world size left to the distribution) and writes
OUT_DIR/process<id>.json: the sample ids each `train_step` saw on this process, per epoch.
`auto_shard` keeps Keras's default `auto_shard_dataset=True` (Keras 3.16+ strides PyDataset
batches then; 3.15 refuses a PyDataset), else the distribution gets `auto_shard_dataset=False`.
"""

from __future__ import annotations

import json
import os
import sys

SAMPLES, BATCH, EPOCHS = 26, 4, 3  # 13 samples a process: 4 batches, the last of 1


def main(process_id: int, port: int, out_dir: str, auto_shard: bool) -> None:
    # Set here, not at import: the test imports this module for its constants, and must not
    # switch its own Keras to JAX.
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    import keras
    import numpy as np

    import xloader as xl
    from xloader.keras import PyDataset

    distribution = keras.distribution.DataParallel(auto_shard_dataset=auto_shard)
    keras.distribution.set_distribution(distribution)
    x = np.repeat(np.arange(SAMPLES, dtype=np.float32)[:, None], 3, axis=1)
    data = xl.ArrayDataset(x, np.arange(SAMPLES, dtype=np.int64) % 2)
    seen: list[list[int]] = []

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = keras.layers.Dense(2)

        def call(self, x, training=False):
            return self.head(x)

        def train_step(self, *args):
            x = args[-1][0]
            local = np.concatenate([np.asarray(shard.data) for shard in x.addressable_shards])
            seen.append(local[:, 0].astype(int).tolist())
            return super().train_step(*args)

    epochs: list[list[list[int]]] = []

    class PerEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append(seen[:])
            seen.clear()

    keras.utils.set_random_seed(0)  # the same initial weights in both processes
    model = Recorder()
    model.build((None, 3))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    with PyDataset(data, batch_size=BATCH, shuffle=True, seed=3) as dataset:
        shard = (dataset.batches.options.rank, dataset.batches.options.world_size)
        model.fit(dataset, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[PerEpoch()])
    result = {"keras": keras.__version__, "shard": shard, "epochs": epochs}
    with open(os.path.join(out_dir, f"process{process_id}.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:5] == ["auto_shard"])
    sys.stdout.flush()
    os._exit(0)  # JAX's distributed client may wait on its peer at teardown: the results are written
