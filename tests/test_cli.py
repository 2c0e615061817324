"""The `xloader` command, run as a user runs it (a subprocess) on generated data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

AUGMENTATION = """
import albumentations as A
transform = A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-30, 30), p=1.0)])
"""


def xloader(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", KERAS_BACKEND="torch")
    return subprocess.run(
        [sys.executable, "-m", "xloader", *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def augmentation_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("aug") / "augment.py"
    path.write_text(AUGMENTATION)
    return str(path)


@pytest.fixture
def class_root_with_a_bad_file(tmp_path, class_root) -> str:
    import shutil

    root = tmp_path / "photos"
    shutil.copytree(class_root, root)
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    return str(root)


def test_every_subcommand_has_help():
    for command in ("demo", "inspect", "preview", "parity", "bench"):
        done = xloader(command, "--help")
        assert done.returncode == 0 and f"usage: xloader {command}" in done.stdout


def test_inspect_reports_layout_counts_and_the_bad_file(class_root_with_a_bad_file):
    done = xloader("inspect", class_root_with_a_bad_file, "--quiet")
    assert done.returncode == 1, done.stderr  # something was found
    assert "class folders" in done.stdout
    assert "29 samples checked: 1 bad files" in done.stdout
    assert "per class: astronaut 7, cat 8, coffee 7, rocket 7" in done.stdout
    broken = os.path.join(class_root_with_a_bad_file, "cat", "broken.jpg")
    assert f"bad: {broken}: not a decodable image" in done.stdout


def test_inspect_json_is_machine_readable(class_root_with_a_bad_file, seg_dirs, tmp_path):
    report = json.loads(xloader("inspect", class_root_with_a_bad_file, "--json").stdout)
    assert report["layout"] == "class_folders" and report["ok"] is False
    assert report["class_counts"] == {"astronaut": 7, "cat": 8, "coffee": 7, "rocket": 7}
    assert [os.path.basename(bad["path"]) for bad in report["bad_files"]] == ["broken.jpg"]
    assert sum(report["image_sizes"].values()) == 28
    # images/ + masks/ with an orphan image: found, skipped, reported
    import shutil

    pairs = tmp_path / "pairs"
    shutil.copytree(os.path.dirname(seg_dirs[0]), pairs)
    first_mask = sorted(os.listdir(pairs / "masks"))[0]
    os.remove(pairs / "masks" / first_mask)
    report = json.loads(xloader("inspect", str(pairs), "--json").stdout)
    assert report["layout"] == "image_mask_pairs"
    assert [entry["reason"] for entry in report["skipped"]] == ["image has no mask"]


def test_inspect_names_a_missing_path_in_one_line(tmp_path):
    done = xloader("inspect", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"xloader inspect: error: {str(tmp_path / 'nowhere')!r} does not exist."


def test_preview_writes_a_grid_of_augmented_samples(class_root, seg_dirs, augmentation_file, tmp_path):
    out = tmp_path / "grid.png"
    done = xloader(
        "preview", class_root, "--transform", augmentation_file, "--out", str(out), "--samples", "3", "--epochs", "4"
    )
    assert done.returncode == 0, done.stderr
    grid = np.asarray(Image.open(out))
    assert grid.shape == (3 * 164 + 4, 4 * 164 + 4, 3)
    tiles = [grid[4:164, 4 + 164 * e : 164 + 164 * e] for e in range(4)]
    assert tiles[0].std() > 10  # a photo, not a blank tile
    assert any(not np.array_equal(tiles[0], t) for t in tiles[1:])  # epochs differ: augmentation applied
    seg_out = tmp_path / "seg.png"
    done = xloader("preview", os.path.dirname(seg_dirs[0]), "--out", str(seg_out), "--samples", "2", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert np.asarray(Image.open(seg_out)).shape == (2 * 164 + 4, 164 + 4, 3)


def test_parity_prints_matching_fingerprints_for_every_loader(class_root, augmentation_file):
    done = xloader(
        "parity",
        class_root,
        "--transform",
        augmentation_file,
        "--image-size",
        "32",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--backends",
        "torch",
        "jax",
        "--quiet",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS: 9 loaders gave the same 8 batches, bit for bit." in done.stdout
    assert "keras/jax 2 processes" in done.stdout and "torch num_workers=2 persistent" in done.stdout
    assert "Every loader here was given seed=0. Pass seed= explicitly in your training code too" in done.stdout


def test_bench_prints_speed_cpu_and_memory(class_root):
    done = xloader("bench", class_root, "--image-size", "64", "64", "--batch-size", "8", "--quiet")
    assert done.returncode == 0, done.stderr
    for expected in ("images/s", "time to first batch", "CPU per image (all processes)", "peak memory: main"):
        assert expected in done.stdout


def test_demo_trains_both_frameworks_on_the_same_batches(tmp_path):
    done = xloader(
        "demo", "--data", str(tmp_path), "--images-per-class", "8", "--image-size", "48", "--batch-size", "8", "--quiet"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "PASS: Keras model.fit and the torch loop trained on the same 8 batches, bit for bit." in done.stdout
    # Both halves report the same figures (epoch means of loss and accuracy) in the same form.
    for framework in (r"keras \(\w+\)", "torch"):  # the Keras backend in parentheses
        for epoch in (1, 2):
            line = rf"^{framework} epoch {epoch}/2: loss \d+\.\d{{3}}, accuracy [01]\.\d{{2}}$"
            assert re.search(line, done.stdout, re.MULTILINE), done.stdout
    assert "each start their model from different random weights, so loss and accuracy differ" in done.stdout


def test_inspect_reads_a_csv_manifest(class_root, tmp_path):
    import shutil

    shutil.copytree(class_root, tmp_path / "photos")
    rows = ["filename,class"] + [
        f"photos/{name}/{file},{name}"
        for name in sorted(os.listdir(tmp_path / "photos"))
        for file in sorted(os.listdir(tmp_path / "photos" / name))
    ]
    manifest = tmp_path / "train.csv"
    manifest.write_text("\n".join(rows) + "\n")
    done = xloader("inspect", str(manifest), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["layout"] == "manifest" and report["ok"] is True
    assert report["class_counts"] == {"astronaut": 7, "cat": 7, "coffee": 7, "rocket": 7}


def test_preview_reads_a_pipeline_saved_by_albumentations(class_root, tmp_path):
    import albumentations as A

    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(tmp_path / "flip.json"))
    out, plain = tmp_path / "flipped.png", tmp_path / "plain.png"
    tile = ["--image-size", "160", "160", "--samples", "1", "--epochs", "1"]  # 160: tiles are not resized
    flipped = xloader("preview", class_root, "--transform", str(tmp_path / "flip.json"), "--out", str(out), *tile)
    assert flipped.returncode == 0, flipped.stderr
    assert xloader("preview", class_root, "--out", str(plain), *tile).returncode == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(plain))[:, ::-1])


# --- real layouts: Pets-style pairs, split roots, no resize ---------------------------------------


@pytest.fixture
def pets_tree(tmp_path) -> str:
    """Oxford Pets' shape: images/*.jpg (and a stray .mat), annotations/trimaps/*.png with values
    1..3 next to macOS AppleDouble `._*.png` files, annotations/xmls/."""
    rng = np.random.default_rng(0)
    pets = tmp_path / "pets"
    for folder in ("images", "annotations/trimaps", "annotations/xmls"):
        (pets / folder).mkdir(parents=True)
    for i in range(1, 6):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(pets / "images" / f"Abyssinian_{i}.jpg")
        trimap = np.full((20, 24), 2, np.uint8)
        trimap[5:15, 6:18], trimap[5, 6:18] = 1, 3  # foreground, a border line, background
        Image.fromarray(trimap).save(pets / "annotations" / "trimaps" / f"Abyssinian_{i}.png")
        (pets / "annotations" / "trimaps" / f"._Abyssinian_{i}.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (pets / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB")
    return str(pets)


def test_inspect_pairs_pets_images_with_trimaps_and_shows_mask_values(pets_tree):
    images, trimaps = os.path.join(pets_tree, "images"), os.path.join(pets_tree, "annotations", "trimaps")
    report = json.loads(xloader("inspect", images, "--masks", trimaps, "--json").stdout)
    assert (report["layout"], report["num_samples"], report["ok"]) == ("image_mask_pairs", 5, True)
    assert report["mask_value_pixels"] == {"1": 5 * 108, "2": 5 * 360, "3": 5 * 12}  # 480 pixels each
    assert report["ignored_files"] == {"hidden": 5, "not images": 1}
    text = xloader("inspect", images, "--masks", trimaps, "--quiet").stdout
    assert "mask values 1..3, share of pixels: 1 (22.5%), 2 (75.0%), 3 (2.5%)" in text
    assert (
        "note: no mask has value 0. If the classes are 1..3 (as in Oxford Pets' trimaps), a model with num_classes "
        "outputs needs them as 0..num_classes-1: pass mask_values={1: 0, 2: 1, 3: 2} to ImageMaskFolder"
    ) in text
    # The Pets root itself is not two classes "annotations" and "images" without a word.
    root = xloader("inspect", pets_tree, "--quiet").stdout
    assert f"(Oxford Pets: --masks {trimaps})" in root


def test_inspect_reports_each_split_of_a_split_root(class_root, tmp_path):
    import shutil

    shutil.copytree(class_root, tmp_path / "data" / "train")
    shutil.copytree(os.path.join(class_root, "cat"), tmp_path / "data" / "val" / "cat")
    done = xloader("inspect", str(tmp_path / "data"), "--json")
    report = json.loads(done.stdout)
    assert (report["layout"], report["ok"], list(report["splits"])) == ("split_root", True, ["train", "val"])
    assert report["splits"]["train"]["class_counts"] == {"astronaut": 7, "cat": 7, "coffee": 7, "rocket": 7}
    assert report["splits"]["val"]["class_counts"] == {"cat": 7}
    text = xloader("inspect", str(tmp_path / "data"), "--quiet").stdout
    assert text.startswith(f"{tmp_path / 'data'}: a split root with 2 splits: train, val\n")
    assert "warning: val's classes differ from train's (cat vs astronaut, cat, coffee, rocket)" in text


def test_image_size_none_keeps_file_sizes(class_root, tmp_path):
    from xloader.cli._open import parse_image_size

    assert [parse_image_size(v) for v in (["none"], ["224", "160"], ["96"])] == [None, (224, 160), (96, 96)]
    with pytest.raises(ValueError) as caught:
        parse_image_size(["big"])
    assert str(caught.value) == (
        "--image-size big: give H W (e.g. 224 224), one side for a square, or none to keep file sizes."
    )
    crop = tmp_path / "crop.py"
    crop.write_text("import albumentations as A\ntransform = A.Compose([A.RandomResizedCrop(size=(32, 32))])\n")
    out = tmp_path / "grid.png"
    done = xloader(
        "preview",
        class_root,
        "--image-size",
        "none",
        "--transform",
        str(crop),
        "--out",
        str(out),
        "--samples",
        "2",
        "--epochs",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "x 2 epochs (columns)" in done.stdout
