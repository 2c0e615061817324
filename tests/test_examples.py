"""Every example runs as a user would run it, on data it generates, and reports success."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("keras_classification.py", [], "predicted 64 images into 4 classes"),
        ("torch_classification.py", [], "epoch 1: mean loss"),
        ("parity_check.py", [], "PASS: 12 batches identical in Keras and torch"),
        ("segmentation.py", [], "PASS: 6 image+mask batches identical"),
        ("tutorial_npy.py", [], "validation accuracy from predict()"),
    ],
    ids=["keras_classification", "torch_classification", "parity_check", "segmentation", "tutorial_npy"],
)
def test_example_runs(tmp_path, script, args, expected):
    env = dict(os.environ, KERAS_BACKEND="torch", NO_ALBUMENTATIONS_UPDATE="1")
    run = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), "--data", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, f"{script} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    assert expected in run.stdout
