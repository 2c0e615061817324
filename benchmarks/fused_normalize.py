"""CPU per sample with and without the fused Normalize (NOTE [ Normalize fused into the batch write ]).

    python benchmarks/fused_normalize.py [--rounds 10]

One process, OpenCV on one thread, the same files and pipeline as `loaders.py` (224x224, its
augmentation ending in A.Normalize). Each round times 8 batches of 32 through
`Batches.get_batch`, alternating fused and whole-pipeline rounds, into a NumPy batch (NHWC, as
Keras receives it) and into a shared-memory slot laid out NCHW (as the torch adapter's workers
write it). Prints the best round of each, in ms per image, and checks that the batches are equal.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loaders import BATCH, SIZE, augment  # noqa: E402

BATCHES = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    import cv2
    import numpy as np

    import xloader as xl
    from xloader import _slots
    from xloader.synthetic import make_image_folder

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="xloader-bench-") as work:
        root = make_image_folder(os.path.join(work, "photos"), images_per_class=80, long_side=(350, 500))
        source = xl.ImageFolder(root, image_size=(SIZE, SIZE), transform=augment(resize=False))
        batches = xl.Batches(source, batch_size=BATCH, shuffle=True, seed=0)
        runner = source._runner
        assert runner is not None and runner.fuses_normalize
        slot = _slots.allocate(1, BATCH * SIZE * SIZE * 3 * 4 + BATCH * 8)[0]

        def nhwc(batch: int) -> np.ndarray:
            return batches.get_batch(0, batch)[0]

        def nchw(batch: int) -> np.ndarray:
            writer = _slots.SlotWriter(slot, ("x",))
            batches.get_batch(0, batch, allocate=writer.allocate)
            return _slots.read(slot, writer.layout(True))[0]

        for name, write in [("NHWC (Keras)", nhwc), ("NCHW slot (torch workers)", nchw)]:
            runner.fuses_normalize = False
            whole = np.array(write(1))
            runner.fuses_normalize = True
            assert np.array_equal(np.array(write(1)), whole), "fused batch differs"
            best = {True: float("inf"), False: float("inf")}
            for round_ in range(2 * args.rounds):
                runner.fuses_normalize = round_ % 2 == 0
                start = time.perf_counter()
                for batch in range(BATCHES):
                    write(batch)
                seconds = (time.perf_counter() - start) / (BATCHES * BATCH)
                best[runner.fuses_normalize] = min(best[runner.fuses_normalize], seconds)
            print(
                f"{name:26s} whole pipeline {best[False] * 1e3:.3f} ms/image, fused {best[True] * 1e3:.3f} ms/image "
                f"({best[True] / best[False]:.2f}x), batches equal"
            )


if __name__ == "__main__":
    main()
