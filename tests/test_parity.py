"""The promise: Keras (each backend, in its own process) and torch get the same batches, bit for bit.

For each Keras backend a subprocess (`keras_probe.py`) records the batches an unbuilt model's
`train_step` receives during `model.fit(epochs=3, validation_data=..., shuffle=False)`, and the
batches `ds[b]` gives directly, for Keras workers 1 / 2 threads / 2 processes. Here torch loops
with num_workers 0 / 2 / 2 persistent run epochs 0, 1, 2. Everything must equal
`Batches.get_batch(epoch, b)`, with augmentation on (flip, affine, brightness/contrast).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from parity_data import build_source

import xloader as xl

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCHS = 3
KERAS_CONFIGS = [
    {"name": "workers1", "workers": 1, "processes": False},
    {"name": "threads2", "workers": 2, "processes": False},
    {"name": "processes2", "workers": 2, "processes": True},
]
TORCH_CONFIGS = [
    {"num_workers": 0, "persistent_workers": False},
    {"num_workers": 2, "persistent_workers": False},
    {"num_workers": 2, "persistent_workers": True},
]


def more_sources(class_root: str, seg_dirs: tuple[str, str], folder) -> list[dict]:
    """The sources added after the first two: a CSV manifest, a split ImageFolder with Keras's
    aspect crop, binary masks per class, and run-length-encoded masks (all with few samples)."""
    import shutil

    from PIL import Image

    rows = ["filename,class"]
    for name in sorted(os.listdir(class_root)):
        rows += [f"{name}/{file},{name}" for file in sorted(os.listdir(os.path.join(class_root, name)))[:3]]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")

    images_dir, masks_dir = seg_dirs
    small = folder / "images"
    small.mkdir()
    by_class, rle_rows = folder / "masks_by_class", ["image_id,class,rle"]
    for file in sorted(os.listdir(images_dir))[:9]:
        shutil.copy(os.path.join(images_dir, file), small / file)
        stem = os.path.splitext(file)[0]
        mask = np.asarray(Image.open(os.path.join(masks_dir, stem + ".png")))
        for k, name in ((1, "leaf"), (2, "stem")):
            (by_class / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(((mask == k) * 255).astype(np.uint8)).save(by_class / name / f"{stem}.png")
            rle_rows.append(f"{stem},{name},{xl.rle_encode(mask == k)}")
    (folder / "masks.csv").write_text("\n".join(rle_rows) + "\n")
    seg = {"task": "segmentation", "images_dir": str(small), "image_size": [24, 32], "num_classes": 3}
    return [
        {
            "name": "manifest",
            "task": "classification",
            "source": "ImageManifest",
            "csv": str(folder / "train.csv"),
            "source_options": {"base_dir": class_root},
            "image_size": [32, 32],
            "num_classes": 4,
            "options": {"batch_size": 5, "shuffle": True, "seed": 3},
        },
        {
            "name": "split_aspect_crop",
            "task": "classification",
            "root": class_root,
            "image_size": [24, 40],
            "source_options": {
                "validation_split": 0.3,
                "subset": "training",
                "split_seed": 5,
                "keep_aspect_ratio": True,
                "interpolation": "nearest",
            },
            "num_classes": 4,
            "options": {"batch_size": 6, "shuffle": True, "seed": 4},
        },
        {
            "name": "masks_by_class",
            "source": "MultiMaskFolder",
            "masks_dir": str(by_class),
            "source_options": {"layout": "by_class"},
            **seg,
            "options": {"batch_size": 4, "shuffle": True, "seed": 5},
        },
        {
            "name": "rle",
            "source": "RLEMasks",
            "csv": str(folder / "masks.csv"),
            **seg,
            "options": {"batch_size": 4, "shuffle": True, "seed": 6},
        },
    ]


@pytest.fixture(scope="module")
def datasets(class_root, seg_dirs, tmp_path_factory) -> list[dict]:
    images_dir, masks_dir = seg_dirs
    return more_sources(class_root, seg_dirs, tmp_path_factory.mktemp("parity_sources")) + [
        # 28 images, batch 8: 4 batches, the last one partial.
        {
            "name": "classification",
            "task": "classification",
            "root": class_root,
            "image_size": [40, 48],
            "num_classes": 4,
            "options": {"batch_size": 8, "shuffle": True, "seed": 7},
        },
        # The training part of a seeded split (xl.split): 16 of the 22 pairs, index masks.
        {
            "name": "segmentation_split",
            "task": "segmentation",
            "images_dir": images_dir,
            "masks_dir": masks_dir,
            "image_size": [24, 24],
            "num_classes": 3,
            "source_options": {"num_classes": 3},
            "split": {"validation_split": 0.3, "seed": 2, "part": 0},
            "options": {"batch_size": 6, "shuffle": True, "seed": 12},
        },
        # 22 pairs, batch 5, drop_last: 4 batches of 5 (2 samples dropped each epoch).
        {
            "name": "segmentation",
            "task": "segmentation",
            "images_dir": images_dir,
            "masks_dir": masks_dir,
            "image_size": [32, 40],
            "num_classes": 3,
            "options": {"batch_size": 5, "shuffle": True, "seed": 11, "drop_last": True},
        },
    ]


def expected_epochs(dataset: dict) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    batches = xl.Batches(build_source(dataset), **dataset["options"])
    return [[batches.get_batch(epoch, b) for b in range(len(batches))] for epoch in range(EPOCHS)]


def assert_batch_equal(actual: tuple, expected: tuple, where: str) -> None:
    for name, a, e in zip(("x", "y"), actual, expected, strict=True):
        assert a.dtype == e.dtype, f"{where}: {name} dtype {a.dtype} != {e.dtype}"
        np.testing.assert_array_equal(a, e, err_msg=f"{where}: {name} differs")


@pytest.fixture(scope="module")
def expected(datasets) -> dict[str, list]:
    return {d["name"]: expected_epochs(d) for d in datasets}


def test_batches_cover_every_sample_once_per_epoch(datasets, expected):
    for dataset in datasets:
        batches = xl.Batches(build_source(dataset), **dataset["options"])
        for epoch in range(EPOCHS):
            seen = np.concatenate([batches.batch_indices(epoch, b) for b in range(len(batches))])
            n = len(batches.dataset)
            kept = n - (n % batches.options.batch_size if batches.options.drop_last else 0)
            assert len(seen) == kept and len(np.unique(seen)) == kept
        orders = [batches.plan.order(epoch).tolist() for epoch in range(EPOCHS)]
        assert len({tuple(order) for order in orders}) == EPOCHS, "shuffle must give each epoch its own order"


@pytest.mark.parametrize(
    "config", TORCH_CONFIGS, ids=lambda c: f"w{c['num_workers']}{'p' if c['persistent_workers'] else ''}"
)
def test_torch_loader_matches_core(datasets, expected, config):
    from xloader.torch import DataLoader

    for dataset in datasets:
        loader = DataLoader(build_source(dataset), **dataset["options"], **config)
        for epoch in range(EPOCHS):
            got = [(x.numpy(), y.numpy()) for x, y in loader]
            assert len(got) == len(expected[dataset["name"]][epoch])
            for b, ((x, y), (ex, ey)) in enumerate(zip(got, expected[dataset["name"]][epoch], strict=True)):
                assert x.shape == (ex.shape[0], ex.shape[3], ex.shape[1], ex.shape[2]), "torch images are NCHW"
                assert_batch_equal((x.transpose(0, 2, 3, 1), y), (ex, ey), f"{dataset['name']} {config} e{epoch} b{b}")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_fit_trains_on_the_torch_batches(tmp_path, datasets, expected, backend):
    spec = {"datasets": datasets, "keras_configs": KERAS_CONFIGS}
    spec_path, out_path = tmp_path / "spec.json", tmp_path / "out.npz"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, KERAS_BACKEND=backend, NO_ALBUMENTATIONS_UPDATE="1", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, os.path.join(HERE, "keras_probe.py"), str(spec_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    recorded = np.load(out_path)
    assert str(recorded["__backend__"]) == backend
    assert json.loads(str(recorded["__warnings__"])) == {
        f"{d['name']}/{c['name']}": [] for d in datasets for c in KERAS_CONFIGS
    }, "no out-of-order warning with fit(shuffle=False)"
    for dataset in datasets:
        flat = [batch for epoch in expected[dataset["name"]] for batch in epoch]
        for config in KERAS_CONFIGS:
            for mode in ("fit", "direct"):
                prefix = f"{dataset['name']}/{config['name']}/{mode}"
                steps = sorted({int(k.split("/")[3]) for k in recorded.files if k.startswith(prefix + "/")})
                assert steps == list(range(len(flat))), f"{prefix}: {len(steps)} batches, expected {len(flat)}"
                for step, (ex, ey) in enumerate(flat):
                    got = (recorded[f"{prefix}/{step}/x"], recorded[f"{prefix}/{step}/y"])
                    assert_batch_equal(got, (ex, ey), f"{backend} {prefix} step {step}")
