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


def test_torchvision_reference_resumes_on_the_next_epoch(tmp_path):
    """The ported torchvision reference (examples/torchvision_reference.py) trains, evaluates
    with the reference's length check (a warning fails the run), and saves the loader's state in
    its checkpoint; --resume continues at the next epoch, not at epoch 0 (the
    `if args.distributed: set_epoch` trap)."""
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    script = os.path.join(EXAMPLES, "torchvision_reference.py")
    runs = []
    for extra in (["--epochs", "1"], ["--epochs", "2", "--resume", str(tmp_path / "checkpoint.pth")]):
        runs.append(
            subprocess.run(
                [sys.executable, "-W", "error::UserWarning", script, "--data", str(tmp_path), *extra],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                cwd=tmp_path,
            )
        )
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    assert "Epoch: [0]" in runs[0].stdout and "Test: Acc@1" in runs[0].stdout
    assert "on 20 of 20 samples" in runs[0].stdout
    assert "resumed at epoch 1 (loader epoch 1)\nEpoch: [1]" in runs[1].stdout
