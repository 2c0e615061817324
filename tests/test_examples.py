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
        (
            "train_both.py",
            ["--images-per-class", "12", "--image-size", "48", "--batch-size", "8"],
            "PASS: Keras model.fit and the torch loop",
        ),
        (
            "train_both.py",
            ["--images-per-class", "8", "--image-size", "48", "--batch-size", "8", "--processes"],
            "PASS",
        ),
        ("segmentation.py", [], "PASS: 6 image+mask batches identical"),
        ("tutorial_npy.py", [], "validation accuracy from predict()"),
    ],
    ids=["train_both", "train_both-processes", "segmentation", "tutorial_npy"],
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
